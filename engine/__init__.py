"""The megatron-core trainer: GPT pretraining today; SFT, reward model, PPO and DPO as thin stages later.

Entry point: ``torchrun --nproc-per-node N engine/pretrain.py --config configs/pretrain/<name>.yaml``.
Modules: ``config`` (YAML → dataclasses), ``cpu_compat`` (megatron-core without CUDA), ``parallel``,
``layers`` / ``model`` (Llama-style GPTModel), ``data`` (GPTDataset over ``.bin/.idx``), ``optim``,
``loop`` (the shared Trainer: a stage supplies batches + a loss), ``checkpoint``, ``metrics``.
Reads only the files ``dataproc`` writes (Parquet, Megatron ``.bin/.idx``), never its internals.
"""
