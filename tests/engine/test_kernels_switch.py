"""The ``kernels.*`` switches: training with the Triton kernels on gives the losses of training with them off.

On CPU the kernels run as Triton only under ``TRITON_INTERPRET=1`` (else the dispatcher takes their torch
references and the comparison would prove nothing). The interpreter has to be chosen before ``triton`` is
first imported, so the runs happen in one worker process (``kernels_worker.py``) started with it set; a
spy there counts which Triton kernels were launched, and on which variant. The model is cut down
(2 layers, 16 tokens, one micro-batch of 2 sequences) so the interpreter stays affordable (~40 s in all).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.engine.harness import ROOT, TINY, data_overrides, env

HAS_CUDA = torch.cuda.is_available()
WORKER = ROOT / "tests" / "engine" / "kernels_worker.py"
SWITCHES = ("rms_norm", "swiglu", "rope", "flash_attention", "fused_linear_cross_entropy")
# the Triton kernels each switch launches (forward and backward)
LAUNCHES = {
    "rms_norm": {"_rms_fwd", "_rms_bwd"},
    "swiglu": {"_swiglu_fwd", "_swiglu_bwd"},
    "rope": {"_rope_kernel"},
    "flash_attention": {"_attn_fwd", "_attn_bwd_dkdv", "_attn_bwd_dq"},
    "fused_linear_cross_entropy": {"_ce_kernel"},
}
SMALL = ["model.num_layers=2", "model.seq_length=16", "train.global_batch_size=2", "train.micro_batch_size=2",
         "train.precision=fp32", "optim.schedule=constant", "optim.warmup_steps=0", "train.progress=false",
         "train.eval_batches=1", "checkpoint.resume=false", "checkpoint.save_at_end=false",
         "logging.tensorboard=false"]
STEPS = 3
# fp32 on CPU (the interpreter's fp32 dots are exact); on a GPU Triton's fp32 dots use TF32
REL = 1e-5 if not HAS_CUDA else 2e-3
VARIANT = "compiled" if HAS_CUDA else "interpret"


def _switches(on: tuple[str, ...]) -> list[str]:
    return [f"kernels.{name}={str(name in on).lower()}" for name in SWITCHES]


@pytest.fixture(scope="module")
def runs(token_data, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """All switches on, then all off (one process: nothing of the first may leak into the second), for
    STEPS steps from the same seed; then each switch alone for one step (stopped before the last, so no
    eval); then the fused output layer + loss with tied embeddings (its other weight source), on and off."""
    one_step = ["train.steps=2", "train.stop_after=1"]
    tied = ["model.tie_embeddings=true", *one_step]
    work = tmp_path_factory.mktemp("kernels_switch")
    spec = {
        "base": [*data_overrides(token_data), f"train.run_dir={work / 'run'}", *SMALL],
        "out": str(work / "out.json"),
        "runs": {"on": [*_switches(SWITCHES), f"train.steps={STEPS}"],
                 "off": [*_switches(()), f"train.steps={STEPS}"],
                 **{name: [*_switches((name,)), *one_step] for name in SWITCHES},
                 "tied_off": [*_switches(()), *tied],
                 "tied_fused_linear_cross_entropy": [*_switches(("fused_linear_cross_entropy",)), *tied]},
    }
    (work / "spec.json").write_text(json.dumps(spec))
    e = env()
    if not HAS_CUDA:
        e["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, str(WORKER), str(work / "spec.json")], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return json.loads((work / "out.json").read_text())


def _launched(run: dict) -> set[str]:
    return {kernel for kernel, variants in run["launches"].items() if variants.get(VARIANT)}


def test_kernels_on_train_like_kernels_off(runs):
    if not HAS_CUDA:
        assert runs["backend_cpu"] == "interpret"  # the Triton path, not the torch reference
    on, off = runs["runs"]["on"], runs["runs"]["off"]
    assert _launched(on) == set().union(*LAUNCHES.values())
    assert {v for variants in on["launches"].values() for v in variants} == {VARIANT}
    assert off["launches"] == {}, "kernels launched with every switch off"
    # same initial weights under the same names and shapes: checkpoints are interchangeable
    assert on["init"] == off["init"]
    assert len(on["losses"]) == STEPS
    assert on["losses"] == pytest.approx(off["losses"], rel=REL), (on["losses"], off["losses"])
    assert on["grad_norms"] == pytest.approx(off["grad_norms"], rel=10 * REL)
    assert on["eval_loss"] == pytest.approx(off["eval_loss"], rel=REL)
    assert on["losses"][-1] < on["losses"][0]


@pytest.mark.parametrize("switch", [*SWITCHES, "tied_fused_linear_cross_entropy"])
def test_each_switch_alone(runs, switch):
    """One switch launches only its own kernels, and its first step is the kernels-off first step."""
    alone = runs["runs"][switch]
    off = runs["runs"]["tied_off" if switch.startswith("tied_") else "off"]
    assert _launched(alone) == LAUNCHES[switch.removeprefix("tied_")]
    assert alone["init"] == off["init"]
    assert ("output_layer.weight" in alone["init"]) == (not switch.startswith("tied_"))
    assert alone["losses"][0] == pytest.approx(off["losses"][0], rel=REL)
    assert alone["grad_norms"][0] == pytest.approx(off["grad_norms"][0], rel=10 * REL)


@pytest.mark.parametrize("direction", ["on_to_off", "off_to_on"])
def test_checkpoints_interchange(token_data, tmp_path, direction):
    """A checkpoint saved with every switch on loads into a model with every switch off, and back
    (megatron's distributed checkpoint, through the modules' sharded state dicts; no forward pass)."""
    from engine import checkpoint
    from engine.config import load_config
    from engine.model import unwrap
    from engine.stages.pretrain import build_run

    def run(on: tuple[str, ...], seed: int):
        cfg = load_config(TINY, [*data_overrides(token_data), f"train.run_dir={tmp_path / str(seed)}", *SMALL,
                                 "train.steps=5", f"train.seed={seed}", *_switches(on)], world_size=1)
        return build_run(cfg, resume=False)

    def weights(r) -> dict[str, torch.Tensor]:
        return {k: v for k, v in unwrap(r.trainer.model[0]).state_dict().items() if isinstance(v, torch.Tensor)}

    first, second = (SWITCHES, ()) if direction == "on_to_off" else ((), SWITCHES)
    source = run(first, seed=1)
    path = source.trainer.save(tmp_path / "ckpt")
    target = run(second, seed=2)
    assert any(not torch.equal(v, weights(target)[k]) for k, v in weights(source).items())
    checkpoint.load_weights(path, target.trainer.model, target.trainer.optimizer)
    loaded = weights(target)
    assert list(loaded) == list(weights(source))
    for key, value in weights(source).items():
        assert torch.equal(loaded[key], value), key


def test_fused_linear_cross_entropy_needs_tp1():
    from engine.config import ConfigError, load_config

    ok = ["data.prefix=/nonexistent/tokens", "tokenizer.vocab_size=1024", "tokenizer.eod_id=0"]
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [*ok, "kernels.fused_linear_cross_entropy=true", "parallel.tp=2"], world_size=2,
                    check_files=False)
    assert err.value.key == "kernels.fused_linear_cross_entropy"
    assert "parallel.tp=1" in str(err.value)
    cfg = load_config(TINY, [*ok, "kernels.fused_linear_cross_entropy=false", "parallel.tp=2",
                             *[f"kernels.{s}=true" for s in SWITCHES[:4]]], world_size=2, check_files=False)
    assert cfg.kernels.enabled() == list(SWITCHES[:4])
    with pytest.raises(ConfigError) as err:
        load_config(TINY, [*ok, "kernels.rope=true", "model.attention_backend=te"], world_size=1,
                    check_files=False)
    assert err.value.key == "kernels.rope"
    with pytest.raises(ConfigError, match="unknown key") as err:
        load_config(TINY, [*ok, "kernels.layer_norm=true"], world_size=1, check_files=False)
    assert err.value.key == "kernels.layer_norm"


def test_presets_document_the_switches():
    from engine.config import load_config

    tiny = load_config(TINY, ["data.prefix=/x", "tokenizer.vocab_size=8", "tokenizer.eod_id=0"], world_size=1,
                       check_files=False)
    assert tiny.kernels.enabled() == []
    h200 = load_config(ROOT / "configs/pretrain/llama_1b_h200.yaml", world_size=1, check_files=False)
    assert h200.kernels.enabled() == list(SWITCHES)
    assert h200.parallel.tp == 1 and h200.train.precision == "bf16"

