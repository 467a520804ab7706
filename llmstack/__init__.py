"""What dataproc and engine share: the config system (``llmstack.config``) and the file formats that
flow from one to the other (``llmstack.formats``). Imports neither torch nor megatron."""
