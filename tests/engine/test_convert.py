"""``engine/convert.py``: HF Llama ↔ engine checkpoints give the same logits, and round-trip bit for bit.

A small random ``LlamaForCausalLM`` (4 layers, hidden 64, 4 heads / 2 KV heads, FFN 192) over a character
tokenizer of 15 ids is built locally (no network). Logits are compared in fp32 with a max abs difference
``TOL`` = 1e-4 (measured ≤ 4e-6: the same fp32 arithmetic in a different order). The
checkpoints are loaded by the engine at TP=1 in this process and at TP=2 and PP=2 in one 2-rank torchrun
launch (``convert_worker.py``), which also saves TP=2-sharded weights for export; a 2-step PP=2
pretraining run is exported through its ``run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.engine.harness import ROOT, TINY, data_overrides, torchrun

TOL = 1e-4  # max abs logit difference, fp32
VOCAB = 15  # the char tokenizer's ids
WORKER = ROOT / "tests" / "engine" / "convert_worker.py"
SMALL_RUN = ["train.steps=2", "train.global_batch_size=2", "train.micro_batch_size=1", "model.seq_length=64",
             "train.progress=false", "train.eval_batches=1", "logging.tensorboard=false", "checkpoint.resume=false"]


def _hf_model(path: Path, tie: bool = False, dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    """A random Llama with O(1) logits (wide init, perturbed norms) and the char tokenizer, saved to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from examples.sorting.task import char_tokenizer

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, rope_theta=20000.0, initializer_range=0.15, tie_word_embeddings=tie,
                      bos_token_id=1, eos_token_id=0, pad_token_id=None)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    model.to(dtype).save_pretrained(path)
    char_tokenizer(path / "tokenizer.json")
    return path


def _hf_logits(path: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        return model(tokens).logits


def _engine_logits(checkpoint_dir: Path | str, overrides: list[str], tokens: torch.Tensor) -> torch.Tensor:
    """Logits of the engine model (TP=1, this process) loaded with ``checkpoint.load_weights``."""
    from engine import checkpoint
    from engine.config import load_config
    from engine.model import build_model
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    cfg = load_config(TINY, ["data.prefix=unused", *overrides], world_size=1, check_files=False)
    init_distributed()
    setup_model_parallel(cfg.parallel)
    seed_everything(1)
    (model,) = build_model(cfg, wrap_ddp=False)
    checkpoint.load_weights(str(checkpoint_dir), [model], None)
    model.eval()
    with torch.no_grad():
        return model(tokens, torch.arange(tokens.shape[1]).expand(tokens.shape[0], -1), None)


def _use(ckpt: Path) -> list[str]:
    return [f"model.preset={ckpt / 'model.yaml'}", f"tokenizer.path={ckpt / 'tokenizer.json'}"]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a[..., : b.shape[-1]] - b).abs().max())


def _convert(*args: str) -> int:
    from engine.convert import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    work = tmp_path_factory.mktemp("convert")
    path = _hf_model(work / "hf")
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    return {"work": work, "path": path, "tokens": tokens, "logits": _hf_logits(path, tokens)}


@pytest.fixture(scope="module")
def imported(hf):
    """The HF model imported for TP=1, for TP=2 and for PP=2."""
    out = {}
    for name, layout in (("tp1", []), ("tp2", ["--tp", "2"]), ("pp2", ["--pp", "2"])):
        out[name] = hf["work"] / f"ckpt_{name}"
        assert _convert("import", "--hf", hf["path"], "--output", out[name], *layout) == 0
    return out


def test_import_gives_hf_logits_at_tp1(hf, imported):
    ckpt = imported["tp1"]
    assert {"model.yaml", "tokenizer.json", "convert.json", "metadata.json"} <= {p.name for p in ckpt.iterdir()}
    info = json.loads((ckpt / "convert.json").read_text())
    assert info["vocab_size"] == VOCAB and info["padded_vocab_size"] == 128 and info["tp"] == 1
    assert f"checkpoint.load={ckpt}" in info["overrides"]
    logits = _engine_logits(ckpt, _use(ckpt), hf["tokens"])
    assert logits.shape[-1] == 128  # padded
    assert hf["logits"].abs().max() > 1.0  # O(1) logits: the comparison means something
    diff = _max_diff(logits, hf["logits"])
    print(f"import tp1: max abs logit diff {diff:.3e}")
    assert diff <= TOL


def test_round_trip_is_exact(hf, imported, tmp_path):
    from safetensors.torch import load_file
    from transformers import LlamaConfig

    out = tmp_path / "hf_again"
    assert _convert("export", "--checkpoint", imported["tp1"], "--output", out) == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= {p.name for p in out.iterdir()}
    before, after = load_file(str(hf["path"] / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert sorted(before) == sorted(after)
    for key, tensor in before.items():
        assert after[key].dtype == tensor.dtype and torch.equal(after[key], tensor), key
    a, b = LlamaConfig.from_pretrained(hf["path"]), LlamaConfig.from_pretrained(out)
    for field in ("architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters",
                  "max_position_embeddings", "tie_word_embeddings", "bos_token_id", "eos_token_id", "dtype",
                  "hidden_act", "attention_bias", "mlp_bias"):
        assert getattr(a, field) == getattr(b, field), field
    diff = _max_diff(_hf_logits(out, hf["tokens"]), hf["logits"])
    assert diff == 0.0


def test_tied_and_bf16_models_round_trip(tmp_path):
    """Tied embeddings (no lm_head tensor) match the engine's logits; a bf16 model comes back in bf16."""
    from safetensors.torch import load_file

    tokens = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(1))
    for name, tie, dtype in (("tied", True, torch.float32), ("bf16", False, torch.bfloat16)):
        src = _hf_model(tmp_path / f"{name}_hf", tie=tie, dtype=dtype, seed=3)
        ckpt, back = tmp_path / f"{name}_ckpt", tmp_path / f"{name}_back"
        assert _convert("import", "--hf", src, "--output", ckpt) == 0
        assert _convert("export", "--checkpoint", ckpt, "--output", back) == 0
        before, after = load_file(str(src / "model.safetensors")), load_file(str(back / "model.safetensors"))
        assert sorted(before) == sorted(after), name
        assert all(after[k].dtype == dtype and torch.equal(after[k], v) for k, v in before.items()), name
        if tie:
            assert "lm_head.weight" not in after
            diff = _max_diff(_engine_logits(ckpt, _use(ckpt), tokens), _hf_logits(src, tokens))
            print(f"tied: max abs logit diff {diff:.3e}")
            assert diff <= TOL


def test_tp2_and_pp2_load_and_tp2_saved_checkpoint_exports(hf, imported, tmp_path):
    """2 ranks: the --tp 2 import at TP=2 and the --pp 2 import at PP=2 give the HF logits; weights changed
    and saved by the TP=2 ranks export to a LlamaForCausalLM with the engine's logits."""
    saved = tmp_path / "tp2_saved"
    spec = {"tokens": hf["tokens"].tolist(), "out": str(tmp_path / "logits.pt"),
            "layouts": {"tp2": {"checkpoint": str(imported["tp2"]),
                                "overrides": [*_use(imported["tp2"]), "parallel.tp=2"]},
                        "pp2": {"checkpoint": str(imported["pp2"]),
                                "overrides": [*_use(imported["pp2"]), "parallel.pp=2"]}},
            "perturb": {"layout": "tp2", "dir": str(saved)}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    torchrun(2, WORKER, [str(tmp_path / "spec.json")], timeout=300)
    logits = torch.load(tmp_path / "logits.pt")
    assert logits["tp2"].shape[-1] == 256  # padded for tp=2
    for name in ("tp2", "pp2"):
        diff = _max_diff(logits[name], hf["logits"])
        print(f"import {name}: max abs logit diff {diff:.3e}")
        assert diff <= TOL, name
    out = tmp_path / "hf_from_tp2"
    ckpt = imported["tp2"]
    assert _convert("export", "--checkpoint", saved, "--output", out, "--config", ckpt / "model.yaml",
                    "--tokenizer", ckpt / "tokenizer.json") == 0
    exported = _hf_logits(out, hf["tokens"])
    assert _max_diff(exported, hf["logits"]) > 0.1  # the weights did change
    diff = _max_diff(logits["perturbed"], exported)
    print(f"export of the TP=2-saved checkpoint: max abs logit diff {diff:.3e}")
    assert diff <= TOL


def test_export_pretrain_run_under_pp2(token_data, tmp_path):
    """A 2-step PP=2 pretraining run (``torchrun -m engine.stages.pretrain``) exports from its run directory
    (config from run.json)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    torchrun(2, "engine.stages.pretrain",
             ["--config", str(TINY), *data_overrides(token_data), f"train.run_dir={run}", "parallel.pp=2",
              *SMALL_RUN], timeout=300)
    out = tmp_path / "hf"
    assert _convert("export", "--checkpoint", run, "--output", out) == 0
    config = json.loads((out / "config.json").read_text())
    vocab = Tokenizer.from_file(str(token_data.tokenizer)).get_vocab_size()
    assert config["vocab_size"] == vocab and config["num_hidden_layers"] == 4 and config["torch_dtype"] == "float32"
    tokens = torch.randint(0, vocab, (2, 32), generator=torch.Generator().manual_seed(2))
    engine = _engine_logits(run / "checkpoints" / "step_000002", [*data_overrides(token_data), "model.seq_length=64"],
                            tokens)
    diff = _max_diff(engine, _hf_logits(out, tokens))
    print(f"export of a PP=2 pretraining run: max abs logit diff {diff:.3e}")
    assert diff <= TOL
    text = "def convert(checkpoint): return checkpoint"
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"] == Tokenizer.from_file(
        str(token_data.tokenizer)).encode(text).ids


def _error(capsys, *args) -> str:
    assert _convert(*args) == 2
    return capsys.readouterr().err


def test_bad_input_fails_naming_the_file_or_key(hf, imported, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json: missing" in _error(capsys, "import", "--hf", empty, "--output", tmp_path / "o1")
    config = json.loads((hf["path"] / "config.json").read_text())
    bad = tmp_path / "bad"
    for key, value, message in (("rope_scaling", {"rope_type": "llama3", "factor": 8.0}, "rope_scaling"),
                                ("attention_bias", True, "attention_bias=true"),
                                ("model_type", "mistral", "only Llama")):
        bad.mkdir(exist_ok=True)
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        assert message in _error(capsys, "import", "--hf", bad, "--output", tmp_path / "o2")
    err = _error(capsys, "import", "--hf", hf["path"], "--output", tmp_path / "o3", "--tp", "3")
    assert "--tp 3 does not divide num_attention_heads=4" in err
    assert "not empty" in _error(capsys, "import", "--hf", hf["path"], "--output", imported["tp1"])
    bare = tmp_path / "bare"  # checkpoint files without model.yaml or run.json
    bare.mkdir()
    for f in imported["tp1"].iterdir():
        if f.name not in ("model.yaml", "convert.json") and f.is_file():
            (bare / f.name).write_bytes(f.read_bytes())
    assert "pass the training config with --config" in _error(capsys, "export", "--checkpoint", bare,
                                                              "--output", tmp_path / "o4")
    assert "not a dist checkpoint" in _error(capsys, "export", "--checkpoint", empty, "--output", tmp_path / "o5")


def test_help_shows_examples(capsys):
    for args in ([], ["import"], ["export"]):
        with pytest.raises(SystemExit) as exc:
            _convert(*args, "--help")
        assert exc.value.code == 0
        assert "python -m engine.convert import --hf" in capsys.readouterr().out
