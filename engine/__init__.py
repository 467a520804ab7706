"""The megatron-core trainer: pretraining and the post-training stages over one shared loop.

Stages (``engine/stages/``), each ``torchrun --nproc-per-node N -m engine.stages.<stage> --config YAML``:
``pretrain``, ``sft``, ``reward``, ``ppo``, ``dpo``, ``grpo``, ``constitutional``; ``stages/common`` holds
their shared command line, exit codes and fit/teardown tail (``engine/pretrain.py`` is kept as a script
shim: ``torchrun ... engine/pretrain.py --config configs/pretrain/<name>.yaml``).
Modules: ``config`` (YAML → dataclasses), ``cpu_compat`` (megatron-core without CUDA), ``parallel``,
``layers`` / ``model`` (Llama-style GPTModel), ``data`` (GPTDataset over ``.bin/.idx``), ``optim``,
``loop`` (the shared Trainer: a stage supplies batches + a loss), ``checkpoint``, ``metrics``,
``posttrain/`` (post-training data, losses, models), ``convert`` (HF Llama in/out), ``report`` (HTML run
report: ``python -m engine.report RUN``).
Reads only the files ``dataproc`` writes (Parquet, Megatron ``.bin/.idx``), never its internals.
"""
