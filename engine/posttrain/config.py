"""Post-training configs: the pretraining config plus ``dataset``, ``template``, ``sft``, ``dpo``, ``ppo``,
``grpo`` and ``reward`` (a Python reward function for GRPO/RLOO).

Same YAML → typed dataclasses → dotted overrides → validation naming the bad key as pretraining
(``engine.config`` over ``llmstack.config``), so one config system serves every stage. ``checkpoint.load``
is the previous stage. Keys a stage inherits but never reads are rejected when set (``UNREAD``): no
stage reads ``data.*`` (its rows come from ``dataset.train``), and the rollout stages (PPO, GRPO) neither
resume, evaluate on a split nor save periodically.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import (
    CheckpointConfig,
    ConfigError,
    DataConfig,
    PretrainConfig,
    TrainConfig,
    _build,
    config_tree,
    resolve_tokenizer,
    validate,
)
from llmstack.config import field_default, reject_unread


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
    # bounds of the adaptive coefficient: without a floor a KL under target decays it to ~0 (no constraint)
    min_kl_coef: float = 1e-3
    max_kl_coef: float = 1.0
    # scores → (score − running mean) / running std before the KL penalty and GAE, so the returns the
    # critic regresses on are O(1) whatever the reward model's scale (its value loss can then fall)
    normalise_rewards: bool = True
    kl_estimator: str = "k1"  # k1 | k2 | k3, in the per-token penalty
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    critic_lr: float | None = None  # default optim.lr
    whiten_advantages: bool = True


@dataclass
class GRPOConfig:
    estimator: str = "grpo"  # grpo: (r − group mean) / group std | rloo: r − mean of the other answers
    group_size: int = 8  # answers sampled per prompt
    prompts_per_rollout: int = 16  # global; × group_size sequences, a multiple of train.global_batch_size
    epochs: int = 1  # passes over each rollout
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    kl_coef: float = 0.04  # β of the k3 KL(π‖ref) term inside the loss (GRPO paper)
    clip: float = 0.2
    reference: str | None = None  # frozen reference (default: checkpoint.load)


@dataclass
class RewardFnConfig:
    fn: str = ""  # "module:function(prompt: str, answer: str) -> float", e.g. examples.sorting.task:score


@dataclass
class PosttrainConfig(PretrainConfig):
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    reward: RewardFnConfig = field(default_factory=RewardFnConfig)


PAIR_STAGES = ("reward", "dpo")

# key → the value the stage behaves as if it had: setting anything else is a ConfigError
_NO_DATA = {f"data.{k}": field_default(DataConfig, k) for k in ("prefix", "weights", "split", "cache_dir", "seed")}
_ROLLOUT = {**_NO_DATA, "checkpoint.resume": False,
            "checkpoint.save_every": field_default(CheckpointConfig, "save_every"),
            "checkpoint.keep_last": field_default(CheckpointConfig, "keep_last"),
            "train.eval_every": field_default(TrainConfig, "eval_every"),
            "train.eval_batches": field_default(TrainConfig, "eval_batches")}
UNREAD: dict[str, dict[str, object]] = {"sft": _NO_DATA, "reward": _NO_DATA, "dpo": _NO_DATA,
                                        "ppo": _ROLLOUT, "grpo": _ROLLOUT}


def load_posttrain_config(stage: str, path: str | Path | None = None, overrides: list[str] | None = None,
                          world_size: int | None = None) -> PosttrainConfig:
    """Read a stage's YAML, apply ``key.sub=value`` overrides, validate (``ConfigError`` names the key)."""
    tree = config_tree(path, overrides)
    reject_unread(tree, stage, UNREAD.get(stage, {}))
    cfg = _build(PosttrainConfig, tree)
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
    if stage not in ("ppo", "grpo") and not d.train:
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
    if stage in ("reward", "dpo", "ppo", "grpo") and not cfg.checkpoint.load:
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
        if not 0 <= p.min_kl_coef <= p.max_kl_coef:
            raise ConfigError("ppo.min_kl_coef", f"need 0 <= min_kl_coef <= max_kl_coef, got "
                              f"{p.min_kl_coef} and {p.max_kl_coef}")
    if stage == "grpo":
        validate_grpo(cfg, world_size)


def load_reward_fn(spec: str) -> Callable[[str, str], float]:
    """``module:function`` → the callable; ``ConfigError`` naming ``reward.fn`` when it is not one."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError("reward.fn", f"write it as module:function (e.g. examples.sorting.task:score), "
                          f"got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("reward.fn", f"cannot load {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError("reward.fn", f"{spec!r} is not callable")
    return fn


def validate_grpo(cfg: PosttrainConfig, world_size: int) -> None:
    g = cfg.grpo
    if not cfg.reward.fn:
        raise ConfigError("reward.fn", "required: the Python reward function, module:function(prompt, answer)")
    load_reward_fn(cfg.reward.fn)
    if g.estimator not in ("grpo", "rloo"):
        raise ConfigError("grpo.estimator", f"must be grpo or rloo, got {g.estimator!r}")
    if g.group_size < 2:
        raise ConfigError("grpo.group_size", "needs >= 2 answers per prompt (advantages are group-relative)")
    if cfg.parallel.pp != 1 or cfg.parallel.vpp:
        raise ConfigError("parallel.pp", "GRPO rollouts run the KV-cache generator, which needs pp=1")
    dp = world_size // (cfg.parallel.tp * cfg.parallel.pp)
    seqs = g.prompts_per_rollout * g.group_size
    if seqs % cfg.train.global_batch_size or g.prompts_per_rollout % dp:
        raise ConfigError("grpo.prompts_per_rollout", f"{g.prompts_per_rollout} × group_size={g.group_size} "
                          f"must be a multiple of train.global_batch_size={cfg.train.global_batch_size}, and "
                          f"prompts_per_rollout of dp={dp}")
    if g.temperature <= 0 or not 0 < g.top_p <= 1:
        raise ConfigError("grpo.temperature", "temperature > 0 (a group needs distinct answers) and 0 < top_p <= 1")
