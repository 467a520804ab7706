"""The megatron-core trainer (pretraining, SFT, reward model, PPO, DPO): not built yet.

Reads only the files ``dataproc`` writes (Parquet, Megatron ``.bin/.idx``), never its internals.
"""
