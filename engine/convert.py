"""HF Llama checkpoints in and out of the engine: ``import`` a Hugging Face directory, ``export`` one.

    python -m engine.convert import --hf HF_DIR --output CKPT_DIR [--tp N --pp M]
    python -m engine.convert export --checkpoint CKPT_DIR --output HF_DIR

**Import** reads ``config.json`` and the weights (``model.safetensors``, a sharded ``*.index.json``, or
``pytorch_model.bin``) of a ``LlamaForCausalLM`` and writes ``CKPT_DIR`` as one ``dist_checkpointing``
checkpoint (the same format ``engine.checkpoint.save`` writes for one step), so every stage loads it with
``checkpoint.load=CKPT_DIR``. Beside the checkpoint files it writes

- ``model.yaml``: the engine's model section, for ``model.preset=CKPT_DIR/model.yaml``;
- ``tokenizer.json`` (copied, with ``tokenizer_config.json`` / ``generation_config.json`` /
  ``special_tokens_map.json`` when the source has them), for ``tokenizer.path=CKPT_DIR/tokenizer.json``;
- ``convert.json``: provenance, the layout it was written for, and the overrides to train from it.

Tensors are stored by global coordinates, so the layout is free at load time except for one thing: the
engine pads the embedding and output layer to a multiple of ``make_vocab_size_divisible_by × parallel.tp``
(the padded rows are zero). ``--tp N`` pads for tensor-parallel size N (and checks that N divides the
heads, the query groups and the FFN size); ``--pp M`` checks that M divides the layers. Load it at that
``parallel.tp`` or at any other that gives the same padded size.

**Export** loads an engine checkpoint — saved under any TP/PP/DP layout — into a TP=1/PP=1 model in
this process and writes ``config.json`` (``LlamaForCausalLM``), ``model.safetensors`` (the vocabulary
padding sliced off) and, when a tokenizer is known, ``tokenizer.json``, ``tokenizer_config.json`` and
``generation_config.json``. ``CKPT_DIR`` may be a checkpoint (``step_N``), a ``checkpoints`` directory
with a ``latest`` marker, or a run directory. The engine model config comes from, in this order:
``--config`` (a pretrain/posttrain YAML or a model preset YAML), a ``model.yaml`` in or beside the
checkpoint (what import writes), or the run's ``run.json`` (``RUN_DIR/checkpoints/step_N`` → ``RUN_DIR``).

The config and tensor mapping (megatron's per-group fused QKV, ``[gate; up]`` fc1, …) is in
``engine/hf_llama.py``. Both directions only move and slice tensors: import → export reproduces every tensor bit for bit, and
the fp32 logits of the engine model and of ``transformers.LlamaForCausalLM`` on the exported directory
agree to a max abs difference ≤ 1e-4 (``tests/engine/test_convert.py``; measured ≤ 4e-6).

Not supported (refused, naming the key): ``rope_scaling`` / non-default ``rope_parameters``, attention or
MLP biases, an activation other than SiLU, ``head_dim`` ≠ hidden_size / num_attention_heads, and model
types other than ``llama``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from engine.config import (
    ConfigError,
    KernelsConfig,
    ModelConfig,
    ParallelConfig,
    PretrainConfig,
    TokenizerConfig,
    TrainConfig,
    _build,
    config_tree,
)
from engine.hf_llama import (
    ConvertError,
    check_layout,
    engine_to_hf,
    hf_config,
    hf_to_engine,
    load_hf_weights,
    model_config_from_hf,
    padded_vocab,
    read_hf_config,
)
from engine.stages.common import add_verbose, guarded, parse_args, run_main

TOKENIZER_EXTRAS = ("tokenizer_config.json", "generation_config.json", "special_tokens_map.json")
CONVERT_INFO = "convert.json"
MODEL_YAML = "model.yaml"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def engine_config(m: ModelConfig, rows: int) -> PretrainConfig:
    """A config that builds the engine model ``m`` whole (TP=1, PP=1) in fp32 on the local layer spec, with
    exactly ``rows`` embedding / output rows (the padded vocabulary of the checkpoint)."""
    model = dataclasses.replace(m, make_vocab_size_divisible_by=1, attention_backend="sdpa")
    return PretrainConfig(model=model, tokenizer=TokenizerConfig(vocab_size=rows, eod_id=0),
                          parallel=ParallelConfig(), kernels=KernelsConfig(),
                          train=TrainConfig(precision="fp32", progress=False))


def build_single(m: ModelConfig, padded: int) -> torch.nn.Module:
    """The engine's GPTModel, whole (TP=1, PP=1), in this process (a world of one if none exists)."""
    import torch.distributed as dist

    from engine.model import build_model
    from engine.parallel import init_distributed, setup_model_parallel

    init_distributed()
    if dist.get_world_size() != 1:
        raise ConvertError("convert runs in one process: run it with python, not torchrun")
    setup_model_parallel(ParallelConfig())
    torch.manual_seed(0)
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed(0)
    (model,) = build_model(engine_config(m, padded), wrap_ddp=False)
    return model


def read_checkpoint(path: str | Path, m: ModelConfig) -> tuple[dict[str, torch.Tensor], torch.dtype]:
    """A checkpoint's model weights, whole (TP=1 names and shapes in fp32, vocab padded as stored), whatever
    the TP/PP/DP layout it was saved under, and the dtype they were stored in."""
    from megatron.core import dist_checkpointing

    from engine import checkpoint
    from engine.checkpoint_safety import check_checkpoint
    from engine.model import unwrap

    check_checkpoint(path)
    stored = dist_checkpointing.load_tensors_metadata(str(path))
    heads = sorted(k for k in stored if "value_head" in k and not k.startswith("optimizer"))
    if heads:
        raise ConvertError(f"{path}: holds {heads[0]}: a reward/value model, not a language model; export "
                           "the policy (SFT/DPO/PPO actor) checkpoint instead")
    emb = stored.get("embedding.word_embeddings.weight")
    if emb is None:
        raise ConvertError(f"{path}: no embedding.word_embeddings.weight: not an engine GPT checkpoint")
    model = build_single(m, int(emb.global_shape[0]))
    try:
        checkpoint.load_weights(path, [model], None)
    except Exception as exc:  # megatron names the mismatching key
        raise ConvertError(f"{path}: does not fit the model config ({exc}); pass the run's config with "
                           "--config") from exc
    sd = {k: v for k, v in unwrap(model).state_dict().items() if isinstance(v, torch.Tensor)}
    return sd, emb.dtype


def write_checkpoint(sd: dict[str, torch.Tensor], m: ModelConfig, padded: int, out: Path) -> None:
    """Save the engine state dict ``sd`` (vocab unpadded) as a dist checkpoint in the new directory ``out``."""
    import torch.distributed as dist

    from engine import checkpoint
    from engine.model import unwrap

    model = build_single(m, padded)
    params = dict(unwrap(model).named_parameters())
    if set(params) != set(sd):
        raise ConvertError(f"internal: engine parameters {sorted(set(params) ^ set(sd))[:4]} do not match")
    with torch.no_grad():
        for name, p in params.items():
            t = sd[name]
            if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
                p.zero_()  # padded rows: zero
                p[: t.shape[0]].copy_(t)
            else:
                p.copy_(t)
    tmp_root = out.parent / f".{out.name}.converting"
    if dist.get_rank() == 0:
        shutil.rmtree(tmp_root, ignore_errors=True)
    saved = checkpoint.save(tmp_root, 0, [model], None, None)
    shutil.rmtree(saved / "rng", ignore_errors=True)  # no training state to resume
    os.replace(saved, out)
    shutil.rmtree(tmp_root, ignore_errors=True)


# -- import --------------------------------------------------------------------------------------------

def _tokenizer_vocab(path: Path) -> dict[str, int]:
    spec = json.loads(path.read_text())
    vocab = dict(spec.get("model", {}).get("vocab", {}) or {})
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    return vocab


def _yaml_model(m: ModelConfig, header: str) -> str:
    import yaml

    keys = dataclasses.asdict(m)
    keys.pop("preset")
    return header + yaml.safe_dump(keys, sort_keys=False)


def import_hf(hf_dir: str | Path, output: str | Path, tp: int = 1, pp: int = 1,
              divisible_by: int = 128) -> Path:
    """Convert a HF Llama directory into the engine checkpoint directory ``output`` (see the module doc)."""
    hf_dir, out = Path(hf_dir), Path(output)
    hf = read_hf_config(hf_dir)
    m = dataclasses.replace(model_config_from_hf(hf, str(hf_dir / "config.json")),
                            make_vocab_size_divisible_by=divisible_by)
    check_layout(m, tp, pp)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConvertError(f"--output {out}: exists and is not empty; choose a new directory or remove it")
    vocab = int(hf["vocab_size"])
    tok = hf_dir / "tokenizer.json"
    if tok.is_file():
        ids = _tokenizer_vocab(tok)
        top = max(ids.values()) + 1 if ids else 0
        if top > vocab:
            raise ConvertError(f"{tok}: has token ids up to {top - 1}, beyond config.json vocab_size={vocab}")
    sd = hf_to_engine(load_hf_weights(hf_dir), m)
    if sd["embedding.word_embeddings.weight"].shape[0] != vocab:
        raise ConvertError(f"weights: model.embed_tokens.weight has {sd['embedding.word_embeddings.weight'].shape[0]}"
                           f" rows but config.json vocab_size={vocab}")
    dtype = sd["embedding.word_embeddings.weight"].dtype
    padded = padded_vocab(vocab, divisible_by, tp)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(sd, m, padded, out)
    overrides = [f"model.preset={out / MODEL_YAML}", f"checkpoint.load={out}", f"parallel.tp={tp}",
                 f"parallel.pp={pp}"]
    if tok.is_file():
        shutil.copyfile(tok, out / "tokenizer.json")
        for extra in TOKENIZER_EXTRAS:
            if (hf_dir / extra).is_file():
                shutil.copyfile(hf_dir / extra, out / extra)
        overrides.append(f"tokenizer.path={out / 'tokenizer.json'}")
        if top != vocab:
            overrides.append(f"tokenizer.vocab_size={vocab}")
    else:
        overrides.append(f"tokenizer.vocab_size={vocab}")
    eos = hf.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(eos, int):
        overrides.append(f"tokenizer.eod_id={eos}")
    header = (f"# Engine model config of {out}, converted from {hf_dir} (LlamaForCausalLM).\n"
              f"# Use: model.preset={out / MODEL_YAML}. The embedding is padded to {padded} rows for "
              f"parallel.tp={tp}.\n")
    (out / MODEL_YAML).write_text(_yaml_model(m, header))
    info = {"format": "engine-convert", "source": str(hf_dir.resolve()), "direction": "import",
            "tp": tp, "pp": pp, "vocab_size": vocab, "padded_vocab_size": padded,
            "dtype": str(dtype).removeprefix("torch."), "overrides": overrides, "hf_config": hf}
    (out / CONVERT_INFO).write_text(json.dumps(info, indent=2))
    return out


# -- export --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Source:
    """What export knows about a checkpoint: its model config, tokenizer and (if imported) HF config."""

    checkpoint: Path
    model: ModelConfig
    origin: str  # where the model config came from
    tokenizer: Path | None = None
    vocab_size: int | None = None
    eod_id: int | None = None
    convert_info: dict[str, Any] | None = None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint, a ``checkpoints`` dir (``latest``) or a run directory."""
    from engine.checkpoint import latest

    p = Path(path)
    if not p.is_dir():
        raise ConvertError(f"--checkpoint {p}: no such directory")
    for root in (p, p / "checkpoints"):
        if (root / "latest").is_file():
            found = latest(root)
            if found is None:
                raise ConvertError(f"{root / 'latest'}: names a checkpoint that does not exist")
            return found
    if not (p / "metadata.json").is_file():
        raise ConvertError(f"--checkpoint {p}: not a dist checkpoint (no metadata.json), nor a directory "
                           "with a 'latest' marker or a run directory with checkpoints/")
    return p


def _model_from_yaml(path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """A model preset YAML or a full stage config YAML → (ModelConfig, its tokenizer section)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConvertError(f"--config {path}: cannot read ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConvertError(f"--config {path}: must hold a mapping")
    try:
        if "model" in raw:  # a pretrain/posttrain config: its model section (with preset) and tokenizer
            tree = config_tree(path, [])
            return _build(ModelConfig, tree.get("model") or {}, "model."), dict(tree.get("tokenizer") or {})
        tree = config_tree(None, [f"model.preset={path}"])
        return _build(ModelConfig, tree["model"], "model."), {}
    except ConfigError as exc:
        raise ConvertError(f"{path}: {exc}") from exc


def _find_run_json(ckpt: Path) -> Path | None:
    for parent in list(ckpt.parents)[:3]:
        if (parent / "run.json").is_file():
            return parent / "run.json"
    return None


def find_source(checkpoint: str | Path, config: str | Path | None = None) -> Source:
    """Locate a checkpoint's model config: ``--config``, else ``model.yaml`` in/beside it, else ``run.json``."""
    ckpt = resolve_checkpoint(checkpoint)
    given = Path(checkpoint)
    tokenizer: dict[str, Any] = {}
    info = None
    for where in (ckpt, ckpt.parent, given):
        if (where / CONVERT_INFO).is_file():
            info = json.loads((where / CONVERT_INFO).read_text())
            break
    if config is not None:
        model, tokenizer = _model_from_yaml(Path(config))
        origin = str(config)
    else:
        yamls = [d / MODEL_YAML for d in (ckpt, ckpt.parent, given) if (d / MODEL_YAML).is_file()]
        run_json = _find_run_json(ckpt)
        if yamls:
            model, _ = _model_from_yaml(yamls[0])
            origin = str(yamls[0])
        elif run_json is not None:
            header = json.loads(run_json.read_text())
            cfg = header.get("config", {})
            try:
                model = _build(ModelConfig, cfg.get("model") or {}, "model.")
            except ConfigError as exc:
                raise ConvertError(f"{run_json}: config.model: {exc}") from exc
            tokenizer = dict(cfg.get("tokenizer") or {})
            origin = str(run_json)
            load = (cfg.get("checkpoint") or {}).get("load")
            if info is None and load and (Path(load) / CONVERT_INFO).is_file():  # trained from an import
                info = json.loads((Path(load) / CONVERT_INFO).read_text())
        else:
            raise ConvertError(f"{ckpt}: no model config found (no {MODEL_YAML} in or beside it, no run.json "
                               "in the run directory above it): pass the training config with --config")
    tok_path = None
    for cand in (tokenizer.get("path"), ckpt / "tokenizer.json", ckpt.parent / "tokenizer.json",
                 given / "tokenizer.json"):
        if cand and Path(cand).is_file():
            tok_path = Path(cand)
            break
    vocab = tokenizer.get("vocab_size")
    if vocab is None and info is not None:
        vocab = info.get("vocab_size")
    return Source(ckpt, model, origin, tok_path, vocab, tokenizer.get("eod_id"), info)


def _token_id(vocab: dict[str, int], value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("content")
    return vocab.get(value) if isinstance(value, str) else None


def export_hf(checkpoint: str | Path, output: str | Path, config: str | Path | None = None,
              tokenizer: str | Path | None = None, vocab_size: int | None = None,
              dtype: str = "auto") -> Path:
    """Write the engine checkpoint as a HF ``LlamaForCausalLM`` directory ``output`` (see the module doc)."""
    from safetensors.torch import save_file

    src = find_source(checkpoint, config)
    if tokenizer is not None:
        if not Path(tokenizer).is_file():
            raise ConvertError(f"--tokenizer {tokenizer}: no such file (a HF tokenizer.json)")
        src.tokenizer = Path(tokenizer)
    vocab_ids = _tokenizer_vocab(src.tokenizer) if src.tokenizer is not None else {}
    vocab = vocab_size or src.vocab_size or (max(vocab_ids.values()) + 1 if vocab_ids else None)
    if vocab is None:
        raise ConvertError(f"{src.checkpoint}: the vocabulary size is unknown (no tokenizer found): pass "
                           "--tokenizer TOKENIZER_JSON or --vocab-size N")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConvertError(f"--output {out}: exists and is not empty; choose a new directory or remove it")
    sd, stored_dtype = read_checkpoint(src.checkpoint, src.model)
    tensors = engine_to_hf(sd, src.model, vocab)
    if dtype == "auto":
        imported_here = src.convert_info is not None and (src.checkpoint / CONVERT_INFO).is_file()
        dtype = src.convert_info["dtype"] if imported_here else str(stored_dtype)
    dtype = dtype.removeprefix("torch.")
    if dtype not in DTYPES:
        raise ConvertError(f"--dtype {dtype}: must be auto, {', '.join(DTYPES)}")
    tensors = {k: v.to(DTYPES[dtype]) for k, v in tensors.items()}
    hf_src = (src.convert_info or {}).get("hf_config", {})
    tok_cfg: dict[str, Any] = {}
    if src.tokenizer is not None and (src.tokenizer.parent / "tokenizer_config.json").is_file():
        tok_cfg = json.loads((src.tokenizer.parent / "tokenizer_config.json").read_text())
    eos = hf_src.get("eos_token_id", _token_id(vocab_ids, tok_cfg.get("eos_token")))
    if eos is None:
        eos = src.eod_id
    if eos is None and vocab_ids:
        eos = vocab_ids.get(TokenizerConfig().eod_token)
    bos = hf_src.get("bos_token_id", _token_id(vocab_ids, tok_cfg.get("bos_token")))
    pad = hf_src.get("pad_token_id", _token_id(vocab_ids, tok_cfg.get("pad_token")))
    out.mkdir(parents=True, exist_ok=True)
    config = hf_config(src.model, vocab, DTYPES[dtype], bos, eos, pad)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    if src.tokenizer is not None:
        shutil.copyfile(src.tokenizer, out / "tokenizer.json")
        for extra in TOKENIZER_EXTRAS:
            if (src.tokenizer.parent / extra).is_file():
                shutil.copyfile(src.tokenizer.parent / extra, out / extra)
        if not (out / "tokenizer_config.json").is_file():
            names = {i: t for t, i in vocab_ids.items()}
            minimal = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": src.model.seq_length,
                       "clean_up_tokenization_spaces": False}
            for key, tid in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad)):
                if isinstance(tid, int) and tid in names:
                    minimal[key] = names[tid]
            (out / "tokenizer_config.json").write_text(json.dumps(minimal, indent=2) + "\n")
    if not (out / "generation_config.json").is_file():
        gen = {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}
        (out / "generation_config.json").write_text(json.dumps({k: v for k, v in gen.items() if v is not None},
                                                               indent=2) + "\n")
    return out


# -- command line ----------------------------------------------------------------------------------------

EXAMPLES = """examples:
  python -m engine.convert import --hf models/llama-hf --output runs/llama/base
  python -m engine.convert import --hf models/llama-hf --output runs/llama/base_tp2 --tp 2
  torchrun --nproc-per-node 2 -m engine.stages.sft --config configs/posttrain/sft_sort.yaml \\
      checkpoint.load=runs/llama/base_tp2 model.preset=runs/llama/base_tp2/model.yaml \\
      tokenizer.path=runs/llama/base_tp2/tokenizer.json parallel.tp=2
      (import prints the exact overrides; they are also in CKPT_DIR/convert.json)
  python -m engine.convert export --checkpoint runs/tiny_cpu --output runs/tiny_cpu/hf
  python -m engine.convert export --checkpoint runs/sft/checkpoints/step_000150 --output runs/sft/hf
  python -m engine.convert export --checkpoint ckpts/step_000100 --config configs/pretrain/tiny_cpu.yaml \\
      --tokenizer runs/demo/tokens/tokenizer.json --output hf_out
then: transformers.AutoModelForCausalLM.from_pretrained("runs/sft/hf"). Exit code 2: bad input.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="HF Llama directory → engine checkpoint directory", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("--hf", required=True, help="HF model directory (config.json + safetensors)")
    imp.add_argument("--output", required=True, help="new engine checkpoint directory (checkpoint.load=...)")
    imp.add_argument("--tp", type=int, default=1, help="tensor-parallel size to load it with (vocab padding)")
    imp.add_argument("--pp", type=int, default=1, help="pipeline-parallel size to load it with (checked)")
    imp.add_argument("--make-vocab-size-divisible-by", type=int, default=ModelConfig.make_vocab_size_divisible_by,
                     help="model.make_vocab_size_divisible_by of the runs that load it (default %(default)s)")
    exp = sub.add_parser("export", help="engine checkpoint → HF LlamaForCausalLM directory", epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("--checkpoint", required=True,
                     help="a checkpoint (step_N), a checkpoints dir with 'latest', or a run directory")
    exp.add_argument("--output", required=True, help="new HF model directory")
    exp.add_argument("--config", help="the run's YAML config or model preset (default: model.yaml or run.json)")
    exp.add_argument("--tokenizer", help="tokenizer.json to ship (default: the run's tokenizer.path)")
    exp.add_argument("--vocab-size", type=int, help="real vocabulary size (default: from the tokenizer)")
    exp.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                     help="tensor dtype (auto: the imported model's, else the checkpoint's)")
    for p in (imp, exp):
        add_verbose(p)
    args = parse_args(parser, argv)

    def body() -> int:
        if args.command == "import":
            out = import_hf(args.hf, args.output, args.tp, args.pp, args.make_vocab_size_divisible_by)
            info = json.loads((out / CONVERT_INFO).read_text())
            print(f"wrote {out}; train from it with:\n  " + " ".join(info["overrides"]))
        else:
            out = export_hf(args.checkpoint, args.output, args.config, args.tokenizer, args.vocab_size, args.dtype)
            print(f"wrote {out} (LlamaForCausalLM)")
        return 0

    return guarded(body, also=(ConvertError,))


if __name__ == "__main__":
    run_main(main)
