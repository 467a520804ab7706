"""Post-training configs: the pretraining config plus ``dataset``, ``template``, ``sft``, ``dpo`` and ``ppo``.

Same YAML → typed dataclasses → dotted overrides → validation naming the bad key as pretraining
(``engine.config``), so one config system serves every stage. ``data.prefix`` is unused here: the
stage's rows come from ``dataset.train`` (Parquet or JSONL). ``checkpoint.load`` is the previous stage.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import (
    ConfigError,
    PretrainConfig,
    _build,
    config_tree,
    resolve_tokenizer,
    validate,
)


@dataclass
class DatasetConfig:
    train: str = ""  # Parquet or JSONL rows
    valid: str | None = None  # held-out rows (null: the last valid_fraction of train)
    valid_fraction: float = 0.0
    format: str = "auto"  # auto | alpaca | chat | pairs | ranked
    on_bad_row: str = "error"  # error (name file and row) | skip (count and go on)
    judge: str | None = None  # "module:function(prompt, answer) -> score" ranking each row's `answers`
    shuffle_seed: int = 1234


@dataclass
class TemplateConfig:
    system: str = "<|system|>"  # special tokens opening each role's turn
    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    end: str = "<|end|>"  # closes a turn; the end of an answer (generation stops on it)
    default_system: str | None = None  # system prompt put before prompts that have none


@dataclass
class SFTConfig:
    pack: bool = True  # several examples per row, attention masked per example


@dataclass
class DPOConfig:
    beta: float = 0.1
    reference: str | None = None  # frozen reference weights (default: checkpoint.load)
    # weight of the chosen answers' per-token NLL added to each pair's loss (RPO; TRL's rpo_alpha):
    # 0 is plain DPO; > 0 stops near-identical pairs from pushing the chosen likelihood down
    nll_coef: float = 0.0


@dataclass
class PPOConfig:
    reward_model: str = ""  # the trained reward model's checkpoint
    critic: str | None = None  # critic init (default: reward_model)
    reference: str | None = None  # frozen reference (default: checkpoint.load)
    prompts_per_rollout: int = 32  # global; a multiple of train.global_batch_size (one minibatch each)
    epochs: int = 2  # PPO epochs over each rollout
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    init_kl_coef: float = 0.05
    target_kl: float | None = 0.5  # per-sequence KL the adaptive controller tracks (null: fixed coef)
    kl_horizon: int = 1000
    kl_estimator: str = "k1"  # k1 | k2 | k3, in the per-token penalty
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    critic_lr: float | None = None  # default optim.lr
    whiten_advantages: bool = True
    log_every: int = 1


@dataclass
class PosttrainConfig(PretrainConfig):
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)


PAIR_STAGES = ("reward", "dpo")


def load_posttrain_config(stage: str, path: str | Path | None = None, overrides: list[str] | None = None,
                          world_size: int | None = None) -> PosttrainConfig:
    """Read a stage's YAML, apply ``key.sub=value`` overrides, validate (``ConfigError`` names the key)."""
    cfg = _build(PosttrainConfig, config_tree(path, overrides))
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if not cfg.tokenizer.path:
        raise ConfigError("tokenizer.path", "required for post-training: the HF tokenizer.json with the "
                          "template's special tokens")
    resolve_tokenizer(cfg)
    # the pretraining checks, minus the token-file ones (post-training reads dataset.* instead)
    validate(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, prefix="<dataset>")), world_size,
             check_files=False)
    validate_posttrain(cfg, stage, world_size)
    return cfg


def validate_posttrain(cfg: PosttrainConfig, stage: str, world_size: int) -> None:
    d, p = cfg.dataset, cfg.ppo
    if stage != "ppo" and not d.train:
        raise ConfigError("dataset.train", "required: a Parquet or JSONL file of rows")
    for key in ("train", "valid"):
        value = getattr(d, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"dataset.{key}", f"{value} does not exist")
    if d.format not in ("auto", "alpaca", "chat", "pairs", "ranked"):
        raise ConfigError("dataset.format", f"must be auto, alpaca, chat, pairs or ranked, got {d.format!r}")
    if d.on_bad_row not in ("error", "skip"):
        raise ConfigError("dataset.on_bad_row", f"must be error or skip, got {d.on_bad_row!r}")
    if not 0.0 <= d.valid_fraction < 1.0:
        raise ConfigError("dataset.valid_fraction", "must be in [0, 1)")
    if stage in PAIR_STAGES and cfg.train.micro_batch_size % 2:
        raise ConfigError("train.micro_batch_size", "counts sequences; pair stages need it even "
                          "(chosen and rejected of each pair share a micro-batch)")
    if stage in ("reward", "dpo", "ppo") and not cfg.checkpoint.load:
        raise ConfigError("checkpoint.load", f"required: the {stage} stage starts from the SFT checkpoint")
    if stage == "ppo":
        if not p.reward_model:
            raise ConfigError("ppo.reward_model", "required: the reward model checkpoint")
        if cfg.parallel.pp != 1 or cfg.parallel.vpp:
            raise ConfigError("parallel.pp", "PPO rollouts run the KV-cache generator, which needs pp=1 "
                              "(use tp and data parallelism)")
        dp = world_size // (cfg.parallel.tp * cfg.parallel.pp)
        if p.prompts_per_rollout % cfg.train.global_batch_size or p.prompts_per_rollout % dp:
            raise ConfigError("ppo.prompts_per_rollout", f"{p.prompts_per_rollout} must be a multiple of "
                              f"train.global_batch_size={cfg.train.global_batch_size} and of dp={dp}")
        if p.kl_estimator not in ("k1", "k2", "k3"):
            raise ConfigError("ppo.kl_estimator", "must be k1, k2 or k3")
        if p.temperature < 0 or not 0 < p.top_p <= 1:
            raise ConfigError("ppo.temperature", "temperature >= 0 and 0 < top_p <= 1")
