"""Trainer configuration: YAML → typed dataclasses, dotted ``key=value`` overrides, validation naming the key.

A pretraining config (``configs/pretrain/*.yaml``) has the sections ``model`` (sizes; ``model.preset``
names a file in ``configs/model/`` whose keys sit beneath the ones given), ``tokenizer``, ``data``,
``parallel``, ``kernels`` (switches for the Triton kernels in ``llmkernels/``), ``optim``, ``train``,
``checkpoint`` and ``logging``. This module imports neither torch nor megatron, so a bad config fails in
well under a second, before any process group or model exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmstack.config import ConfigError, build, check_type, load_tree, read_yaml, set_dotted
from llmstack.formats import BLEND_FORMAT, index_dtype, read_sidecar

CONFIG_ROOT = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class ModelConfig:
    preset: str | None = None  # name in configs/model/ (or a YAML path) providing the defaults below
    num_layers: int = 4
    hidden_size: int = 64
    num_attention_heads: int = 4
    num_query_groups: int = 2  # grouped-query attention: K/V heads
    ffn_hidden_size: int = 192  # SwiGLU inner size
    seq_length: int = 128
    norm_epsilon: float = 1e-5
    rotary_base: int = 10000
    tie_embeddings: bool = False
    init_std: float = 0.02
    make_vocab_size_divisible_by: int = 128  # the padded vocab is a multiple of this × parallel.tp
    attention_backend: str = "auto"  # auto (TE if installed on GPU, else SDPA) | sdpa | te


@dataclass
class TokenizerConfig:
    path: str | None = None  # a HF tokenizer.json: vocab size and EOD id are read from it
    vocab_size: int | None = None
    eod_id: int | None = None
    eod_token: str = "<|endoftext|>"


@dataclass
class DataConfig:
    prefix: str | list[str] = ""  # one .bin/.idx prefix, a list for a blend, or a `dataproc blend` .json
    weights: list[float] | None = None  # blend weights (null: proportional to size)
    split: str = "98,2,0"  # train, valid, test shares of the documents
    cache_dir: str | None = None  # where megatron's sample-index cache goes (default RUN_DIR/data_cache)
    seed: int = 1234  # sample shuffling


@dataclass
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    vpp: int | None = None  # virtual stages per pipeline rank (interleaved 1F1B)
    sp: bool = False  # sequence parallel (needs tp > 1)
    distributed_optimizer: bool = False
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False


@dataclass
class KernelsConfig:
    """Switches for the fused Triton kernels (``llmkernels/``) in the local layer spec; all off by default.

    On CUDA tensors the kernels run compiled; on CPU they run under the Triton interpreter with
    ``TRITON_INTERPRET=1`` and otherwise fall back to their torch references. Any switch on selects the
    local (non-Transformer-Engine) layer spec. Checkpoints are interchangeable between on and off.
    """

    rms_norm: bool = False  # input/pre-MLP/final norms: kernels.modules.FusedRMSNorm
    swiglu: bool = False  # MLP activation on megatron's [gate | up] fc1 output: FusedSwiGLU
    rope: bool = False  # rotary embedding of q and k in megatron's attention
    flash_attention: bool = False  # core attention: FlashCoreAttention (causal, no dropout)
    fused_linear_cross_entropy: bool = False  # output layer + loss without the logits (needs parallel.tp=1)

    def enabled(self) -> list[str]:
        """Names of the switches that are on."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]


@dataclass
class OptimConfig:
    lr: float = 3e-4
    min_lr: float = 3e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0  # 0 disables clipping
    schedule: str = "cosine"  # constant | linear | cosine | wsd
    warmup_steps: int = 0
    wsd_decay_steps: int | None = None  # wsd: steps of final decay (default 10% of train.steps)
    wsd_decay_style: str = "linear"  # linear | cosine | exponential | minus_sqrt


@dataclass
class TrainConfig:
    steps: int = 100
    global_batch_size: int = 8  # sequences per optimizer step, over all data-parallel ranks
    micro_batch_size: int = 2
    seed: int = 1234
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    run_dir: str = "runs/pretrain"
    eval_every: int = 0  # 0: evaluate only at the end
    eval_batches: int = 2  # global batches of the validation split per evaluation
    on_nan: str = "stop"  # stop | skip: what a NaN/Inf loss does to the step
    stop_after: int | None = None  # exit after this step (and its checkpoint), as if killed
    inject_nan_steps: list[int] = field(default_factory=list)  # fault injection, for tests
    progress: bool = True  # tqdm bar on rank 0


@dataclass
class CheckpointConfig:
    dir: str | None = None  # default RUN_DIR/checkpoints
    save_every: int = 0  # 0: only at the end
    save_at_end: bool = True
    resume: bool = True  # continue from the latest checkpoint in dir when there is one
    load: str | None = None  # start from these weights (model only), e.g. a converted checkpoint
    keep_last: int = 0  # 0 keeps all


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    peak_tflops: float | None = None  # per device, for MFU; null: 989 on a GPU in bf16, none on CPU


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    kernels: KernelsConfig = field(default_factory=KernelsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The shared machinery under the names this package's modules import.
_build, _check_type, _set_dotted, _read_yaml = build, check_type, set_dotted, read_yaml


def _model_preset(name: str) -> dict[str, Any]:
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_ROOT / "model" / f"{name}.yaml"
    return _read_yaml(path, "model.preset")


def config_tree(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """The raw config: YAML (optional), dotted ``key=value`` overrides (values parsed as YAML), and the
    ``model.preset`` file's keys beneath the ``model`` keys given. Every stage's loader starts here."""
    tree = load_tree(path, overrides)
    model = tree.get("model") or {}
    if isinstance(model, dict) and model.get("preset"):
        tree["model"] = {**_model_preset(model["preset"]), **model}
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                world_size: int | None = None, check_files: bool = True) -> PretrainConfig:
    """Read YAML (optional), apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    ``world_size`` (default: ``$WORLD_SIZE`` or 1) is checked against the parallel layout.
    """
    cfg = _build(PretrainConfig, config_tree(path, overrides))
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolve_blend(cfg)
    resolve_tokenizer(cfg)
    validate(cfg, world_size, check_files=check_files)
    return cfg


def resolve_tokenizer(cfg: PretrainConfig) -> None:
    """Fill ``tokenizer.vocab_size`` / ``eod_id`` from ``tokenizer.path`` (a HF ``tokenizer.json``)."""
    tok = cfg.tokenizer
    if tok.path is None:
        prefixes = data_prefixes(cfg)
        meta = read_sidecar(prefixes[0]) if prefixes and prefixes[0] else None
        if meta is not None:  # `dataproc tokenize` recorded the data's tokenizer beside the prefix
            info = meta.get("tokenizer", {})  # fills what the config leaves null
            tok.vocab_size = int(info["vocab_size"]) if tok.vocab_size is None else tok.vocab_size
            tok.eod_id = int(info["eod_id"]) if tok.eod_id is None else tok.eod_id
            tok.eod_token = info.get("eod_token", tok.eod_token)
            spec = info.get("spec")
            tok.path = spec if isinstance(spec, str) and spec.endswith(".json") and Path(spec).is_file() else None
            return
        # else a tokenizer.json beside the (first) data prefix is the data's own tokenizer
        beside = Path(prefixes[0]).parent / "tokenizer.json" if prefixes and prefixes[0] else None
        if beside is None or not beside.is_file():
            return
        tok.path, tok.vocab_size, tok.eod_id = str(beside), None, None
    try:
        spec = json.loads(Path(tok.path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError("tokenizer.path", f"cannot read {tok.path}: {exc}") from exc
    vocab = dict(spec.get("model", {}).get("vocab", {}))
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    if tok.vocab_size is None:
        tok.vocab_size = max(vocab.values()) + 1
    if tok.eod_id is None:
        if tok.eod_token not in vocab:
            raise ConfigError("tokenizer.eod_token", f"{tok.eod_token!r} is not in {tok.path}")
        tok.eod_id = vocab[tok.eod_token]




def resolve_blend(cfg: PretrainConfig) -> None:
    """``data.prefix=mix.json`` (a ``dataproc blend`` file) → its prefixes and weights."""
    d = cfg.data
    if not (isinstance(d.prefix, str) and d.prefix.endswith(".json")):
        return
    try:
        blend = json.loads(Path(d.prefix).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError("data.prefix", f"cannot read the blend file {d.prefix}: {exc}") from exc
    if not isinstance(blend, dict) or blend.get("format") != BLEND_FORMAT:
        raise ConfigError("data.prefix", f"{d.prefix} is not a blend file (write one with `dataproc blend`)")
    if d.weights is not None:
        raise ConfigError("data.weights", f"the blend file {d.prefix} sets the weights; drop data.weights")
    d.prefix, d.weights = list(blend["prefixes"]), [float(w) for w in blend["weights"]]


def padded_vocab_size(cfg: PretrainConfig) -> int:
    """Megatron's convention: round the vocab up to a multiple of make_vocab_size_divisible_by × tp."""
    multiple = cfg.model.make_vocab_size_divisible_by * cfg.parallel.tp
    return -(-cfg.tokenizer.vocab_size // multiple) * multiple


def data_prefixes(cfg: PretrainConfig) -> list[str]:
    return [cfg.data.prefix] if isinstance(cfg.data.prefix, str) else list(cfg.data.prefix)


def _positive(section: Any, name: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        if getattr(section, key) < 1:
            raise ConfigError(f"{name}.{key}", f"must be >= 1, got {getattr(section, key)}")


def validate(cfg: PretrainConfig, world_size: int = 1, check_files: bool = True) -> None:
    """Raise ``ConfigError`` naming the first bad key."""
    m, p, t, o, tok = cfg.model, cfg.parallel, cfg.train, cfg.optim, cfg.tokenizer
    _positive(m, "model", ("num_layers", "hidden_size", "num_attention_heads", "num_query_groups",
                           "ffn_hidden_size", "seq_length", "make_vocab_size_divisible_by"))
    _positive(p, "parallel", ("tp", "pp"))
    _positive(t, "train", ("steps", "global_batch_size", "micro_batch_size", "eval_batches"))
    if m.hidden_size % m.num_attention_heads:
        raise ConfigError("model.hidden_size",
                          f"{m.hidden_size} is not divisible by model.num_attention_heads={m.num_attention_heads}")
    if m.num_attention_heads % m.num_query_groups:
        raise ConfigError("model.num_query_groups", f"{m.num_query_groups} does not divide "
                          f"model.num_attention_heads={m.num_attention_heads}")
    if m.attention_backend not in ("auto", "sdpa", "te"):
        raise ConfigError("model.attention_backend", "must be auto, sdpa or te")
    if m.num_attention_heads % p.tp:
        raise ConfigError("parallel.tp", f"parallel.tp={p.tp} does not divide "
                          f"model.num_attention_heads={m.num_attention_heads}")
    if m.num_query_groups % p.tp:
        raise ConfigError("parallel.tp", f"parallel.tp={p.tp} does not divide "
                          f"model.num_query_groups={m.num_query_groups}")
    if m.ffn_hidden_size % p.tp:
        raise ConfigError("parallel.tp", f"parallel.tp={p.tp} does not divide "
                          f"model.ffn_hidden_size={m.ffn_hidden_size}")
    if p.sp and p.tp == 1:
        raise ConfigError("parallel.sp", "sequence parallel needs parallel.tp > 1")
    if p.sp and m.seq_length % p.tp:
        raise ConfigError("parallel.sp", f"model.seq_length={m.seq_length} must be divisible by parallel.tp")
    stages = p.pp * (p.vpp or 1)
    if p.vpp is not None and (p.vpp < 2 or p.pp < 2):
        raise ConfigError("parallel.vpp", "interleaved pipelining needs parallel.pp >= 2 and vpp >= 2")
    if m.num_layers % stages:
        raise ConfigError("parallel.pp", f"model.num_layers={m.num_layers} is not divisible by "
                          f"parallel.pp × parallel.vpp = {stages}")
    if world_size % (p.tp * p.pp):
        raise ConfigError("parallel.tp", f"parallel.tp × parallel.pp = {p.tp * p.pp} does not divide "
                          f"the world size {world_size}")
    dp = world_size // (p.tp * p.pp)
    per_step = t.micro_batch_size * dp
    if t.global_batch_size % per_step:
        raise ConfigError("train.global_batch_size", f"{t.global_batch_size} is not divisible by "
                          f"train.micro_batch_size × data-parallel size = {t.micro_batch_size} × {dp}")
    if p.vpp is not None and (t.global_batch_size // per_step) % p.pp:
        raise ConfigError("train.global_batch_size", "interleaved pipelining needs the number of "
                          f"micro-batches ({t.global_batch_size // per_step}) divisible by parallel.pp={p.pp}")
    _validate_kernels(cfg)
    if t.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError("train.precision", f"must be auto, fp32 or bf16, got {t.precision!r}")
    if t.on_nan not in ("stop", "skip"):
        raise ConfigError("train.on_nan", f"must be stop or skip, got {t.on_nan!r}")
    if o.schedule not in ("constant", "linear", "cosine", "wsd"):
        raise ConfigError("optim.schedule", f"must be constant, linear, cosine or wsd, got {o.schedule!r}")
    if o.warmup_steps < 0:
        raise ConfigError("optim.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if o.warmup_steps >= t.steps:
        # A short run of a preset (e.g. train.steps=3 on tiny_cpu.yaml) still runs: warm up over all
        # but the last step (megatron's scheduler needs warmup < decay steps), and say so.
        warnings.warn(f"optim.warmup_steps={o.warmup_steps} >= train.steps={t.steps}: warming up over "
                      f"{t.steps - 1} step(s) instead", stacklevel=2)
        o.warmup_steps = t.steps - 1
    if o.min_lr > o.lr:
        raise ConfigError("optim.min_lr", f"{o.min_lr} exceeds optim.lr={o.lr}")
    prefixes = data_prefixes(cfg)
    if not prefixes or not all(prefixes):
        raise ConfigError("data.prefix", "required: a .bin/.idx prefix (or a list of them)")
    if cfg.data.weights is not None and len(cfg.data.weights) != len(prefixes):
        raise ConfigError("data.weights", f"{len(cfg.data.weights)} weights for {len(prefixes)} prefixes")
    if check_files:
        for prefix in prefixes:
            for ext in (".bin", ".idx"):
                if not Path(prefix + ext).is_file():
                    raise ConfigError("data.prefix", f"{prefix + ext} does not exist")
    if tok.vocab_size is None or tok.vocab_size < 1:
        raise ConfigError("tokenizer.vocab_size", f"required: no {prefixes[0]}.json (written by `dataproc "
                          "tokenize`) or tokenizer.json beside the data; set tokenizer.path, or "
                          "tokenizer.vocab_size and tokenizer.eod_id")
    if tok.eod_id is None or not 0 <= tok.eod_id < tok.vocab_size:
        raise ConfigError("tokenizer.eod_id", f"required, in [0, tokenizer.vocab_size={tok.vocab_size})")
    if check_files:
        for prefix in prefixes:
            top = _max_token_id(prefix)
            if top >= tok.vocab_size:
                raise ConfigError("tokenizer.vocab_size", f"{tok.vocab_size} but {prefix}.bin holds token id "
                                  f"{top}: set tokenizer.path to the data's tokenizer.json")


def _validate_kernels(cfg: PretrainConfig) -> None:
    k = cfg.kernels
    if k.fused_linear_cross_entropy and cfg.parallel.tp != 1:
        raise ConfigError("kernels.fused_linear_cross_entropy", "needs the whole vocabulary on one rank: "
                          f"parallel.tp=1, got {cfg.parallel.tp} (turn it off for tensor parallelism)")
    on = k.enabled()
    if on and cfg.model.attention_backend == "te":
        raise ConfigError(f"kernels.{on[0]}", "the kernels replace modules of the local layer spec: "
                          "set model.attention_backend to auto or sdpa (not te)")


# dtype codes of Megatron's .idx header (megatron.core.datasets.indexed_dataset.DType)


def _max_token_id(prefix: str, limit: int = 1 << 24) -> int:
    """Largest token id among the first ``limit`` tokens of a .bin (a cheap vocab-size check)."""
    import numpy as np

    dtype = index_dtype(prefix + ".idx")
    if dtype is None:
        raise ConfigError("data.prefix", f"{prefix}.idx is not a Megatron indexed-dataset index")
    tokens = np.memmap(prefix + ".bin", dtype=dtype, mode="r")
    return int(tokens[:limit].max()) if tokens.size else -1
