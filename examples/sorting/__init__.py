"""The digit-sorting task (``task``: prompts, the exact checker, a character tokenizer, a sloppy
demonstrator) and its end-to-end post-training check (``posttrain_check``: pretrain → SFT → reward model →
PPO / DPO and the controls, ``python -m examples.sorting.posttrain_check``)."""
