"""The training stages, one module each, all run the same way:

    torchrun --nproc-per-node N -m engine.stages.<stage> --config YAML [key.sub=value ...] [--verbose]

``pretrain`` (GPT pretraining on token files), then the post-training stages on its checkpoint: ``sft``,
``reward`` (Bradley–Terry reward model), ``ppo``, ``dpo``, ``grpo`` (GRPO / RLOO from a Python reward
function) and ``constitutional`` (Constitutional AI data: critique-revision SFT rows, AI-feedback pairs;
its prompts in ``constitutional_prompts``). ``common`` is what they share: the command line, the exit
codes (2 bad config, 3 NaN/Inf loss, 4 bad data rows), the fit/teardown tail and the post-training
building blocks.
"""
