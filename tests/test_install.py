"""The project installs beside the ecosystem without shadowing it.

Our top-level import names must not be any other distribution's: a `kernels/` package once shadowed
Hugging Face's `kernels` (which transformers >= 5 imports), so `from transformers import
LlamaForCausalLM` failed from the repository root. The checks: no installed distribution (the whole
resolved environment, transformers, HF `kernels`, Liger, ray included) provides one of our names;
none of the well-known names below is ours; and transformers, HF `kernels`, Liger (and flash-attn
where installed) really import beside our packages from the repository root and from elsewhere.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = "llmstack"

# Top-level import names of well-known packages an LLM-training user has installed, or soon will.
WELL_KNOWN = {
    "accelerate", "apex", "bitsandbytes", "datasets", "datatrove", "deepspeed", "flash_attn", "kernels",
    "liger_kernel", "megatron", "nemo", "nemo_curator", "peft", "ray", "sentencepiece", "tiktoken",
    "tokenizers", "torch", "torchtitan", "transformer_engine", "transformers", "triton", "triton_kernels",
    "trl", "vllm", "xformers", "openrlhf", "lm_eval", "wandb", "fasttext", "datasketch", "numba",
}


def our_packages() -> set[str]:
    """Top-level packages setuptools installs for this project (pyproject's `packages.find` include)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
    return {p.rstrip("*").rstrip(".") for p in patterns}


def test_our_names_are_not_well_known():
    clash = our_packages() & WELL_KNOWN
    assert not clash, f"top-level package(s) {sorted(clash)} shadow a well-known PyPI package"


def test_no_installed_distribution_provides_our_names():
    owners = md.packages_distributions()
    clashes = {name: sorted(set(owners[name]) - {OURS}) for name in our_packages() if name in owners}
    clashes = {k: v for k, v in clashes.items() if v}
    assert not clashes, f"installed distributions also provide our top-level packages: {clashes}"


PROBE = r"""
import importlib.util, json, sys
out = {}
from transformers import LlamaConfig, LlamaForCausalLM
import torch
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
out["llama_logits"] = list(LlamaForCausalLM(cfg)(torch.arange(8)[None]).logits.shape)
for name in ("kernels", "liger_kernel", "flash_attn", "llmkernels", "engine", "dataproc"):
    if importlib.util.find_spec(name) is None:
        out[name] = None
        continue
    mod = __import__(name)
    out[name] = mod.__file__
if out["liger_kernel"]:
    from liger_kernel.transformers import LigerRMSNorm  # noqa: F401
if out["kernels"]:
    from kernels import get_kernel  # the HF API transformers' hub integration uses  # noqa: F401
print(json.dumps(out))
"""


@pytest.mark.parametrize("where", ["repo_root", "elsewhere"])
def test_ecosystem_imports_beside_us(tmp_path, where):
    pytest.importorskip("transformers")
    cwd = ROOT if where == "repo_root" else tmp_path
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["llama_logits"] == [1, 8, 64]
    for ours in ("llmkernels", "engine", "dataproc"):
        assert out[ours] and Path(out[ours]).resolve().is_relative_to(ROOT), (ours, out[ours])
    for theirs in ("kernels", "liger_kernel", "flash_attn"):
        if out[theirs] is not None:
            assert not Path(out[theirs]).resolve().is_relative_to(ROOT / theirs), (theirs, out[theirs])
            assert "site-packages" in out[theirs], (theirs, out[theirs])
    assert out["liger_kernel"], "liger-kernel is in the test extras and must import"
