"""The HF Llama ↔ engine mapping: configs (``config.json`` ↔ ``ModelConfig``) and tensors (HF names ↔
megatron-core ``GPTModel`` names), used by ``engine/convert.py``. Pure functions over state dicts:
they only move, split, concatenate and slice tensors, so a round trip is exact.

Engine ← HF: ``embedding.word_embeddings`` ← ``model.embed_tokens``; per layer ``input_layernorm`` ←
``input_layernorm``, ``self_attention.linear_qkv`` ← ``q_proj, k_proj, v_proj`` interleaved per query
group (``[q heads of group g, k_g, v_g]``), ``self_attention.linear_proj`` ← ``o_proj``,
``pre_mlp_layernorm`` ← ``post_attention_layernorm``, ``mlp.linear_fc1`` ← ``[gate_proj; up_proj]``,
``mlp.linear_fc2`` ← ``down_proj``; ``decoder.final_layernorm`` ← ``model.norm``; ``output_layer`` ←
``lm_head`` (absent when tied).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.config import ModelConfig


class ConvertError(ValueError):
    """Bad input for a conversion: the message names the file or key and what to do."""


# -- configs -------------------------------------------------------------------------------------------

def read_hf_config(hf_dir: str | Path) -> dict[str, Any]:
    """``HF_DIR/config.json`` as a dict."""
    path = Path(hf_dir) / "config.json"
    if not Path(hf_dir).is_dir():
        raise ConvertError(f"{hf_dir}: not a directory (pass the HF model directory with config.json)")
    if not path.is_file():
        raise ConvertError(f"{path}: missing; a Hugging Face model directory holds config.json and the "
                           "weights (save one with model.save_pretrained(DIR))")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConvertError(f"{path}: not valid JSON ({exc})") from exc


def _rope_theta(hf: dict[str, Any], where: str) -> float:
    scaling = hf.get("rope_scaling")
    if scaling:
        raise ConvertError(f"{where}: rope_scaling={scaling} is not supported (the engine's RoPE has no "
                           "scaling); only plain RoPE models (rope_scaling null) convert")
    params = hf.get("rope_parameters") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ConvertError(f"{where}: rope_parameters.rope_type={kind!r} is not supported (only 'default')")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def model_config_from_hf(hf: dict[str, Any], where: str = "config.json") -> ModelConfig:
    """The engine's ``ModelConfig`` for a HF Llama config; ``ConvertError`` naming the unsupported key."""
    archs = hf.get("architectures") or ["LlamaForCausalLM"]
    if hf.get("model_type", "llama") != "llama" or "LlamaForCausalLM" not in archs:
        raise ConvertError(f"{where}: model_type={hf.get('model_type')!r}, architectures={archs}: only "
                           "Llama (model_type 'llama', LlamaForCausalLM) converts")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if not isinstance(hf.get(key), int):
            raise ConvertError(f"{where}: {key} is missing or not an integer")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise ConvertError(f"{where}: {key}=true is not supported (the engine's linear layers have no bias)")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ConvertError(f"{where}: hidden_act={act!r} is not supported (the engine's MLP is SwiGLU: 'silu')")
    hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
    groups = hf.get("num_key_value_heads") or heads
    if hidden % heads:
        raise ConvertError(f"{where}: hidden_size={hidden} is not divisible by num_attention_heads={heads}")
    head_dim = hf.get("head_dim") or hidden // heads
    if head_dim != hidden // heads:
        raise ConvertError(f"{where}: head_dim={head_dim} != hidden_size / num_attention_heads = "
                           f"{hidden // heads} is not supported")
    if heads % groups:
        raise ConvertError(f"{where}: num_key_value_heads={groups} does not divide num_attention_heads={heads}")
    theta = _rope_theta(hf, where)
    if theta != int(theta):
        raise ConvertError(f"{where}: rope_theta={theta} is not an integer (the engine's rotary_base is one)")
    return ModelConfig(
        num_layers=hf["num_hidden_layers"], hidden_size=hidden, num_attention_heads=heads,
        num_query_groups=groups, ffn_hidden_size=hf["intermediate_size"],
        seq_length=int(hf.get("max_position_embeddings") or 2048),
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)), rotary_base=int(theta),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )


def hf_config(m: ModelConfig, vocab_size: int, dtype: torch.dtype, bos_id: int | None = None,
              eos_id: int | None = None, pad_id: int | None = None) -> dict[str, Any]:
    """A ``LlamaForCausalLM`` ``config.json`` for the engine model ``m`` (``vocab_size``: the real one)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.ffn_hidden_size,
        "num_hidden_layers": m.num_layers,
        "num_attention_heads": m.num_attention_heads,
        "num_key_value_heads": m.num_query_groups,
        "head_dim": m.hidden_size // m.num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": m.seq_length,
        "initializer_range": m.init_std,
        "rms_norm_eps": m.norm_epsilon,
        "rope_theta": float(m.rotary_base),
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": m.tie_embeddings,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "use_cache": True,
    }


def check_layout(m: ModelConfig, tp: int, pp: int) -> None:
    """``ConvertError`` unless the model splits over ``tp`` tensor- and ``pp`` pipeline-parallel ranks."""
    if tp < 1 or pp < 1:
        raise ConvertError(f"--tp {tp} --pp {pp}: both must be >= 1")
    for name, value in (("num_attention_heads", m.num_attention_heads), ("num_key_value_heads", m.num_query_groups),
                        ("intermediate_size", m.ffn_hidden_size)):
        if value % tp:
            raise ConvertError(f"--tp {tp} does not divide {name}={value} of config.json: pick a --tp that does")
    if m.num_layers % pp:
        raise ConvertError(f"--pp {pp} does not divide num_hidden_layers={m.num_layers} of config.json: "
                           "pick a --pp that does")


def padded_vocab(vocab_size: int, divisible_by: int, tp: int) -> int:
    """The engine's padded vocabulary (``engine.config.padded_vocab_size``)."""
    multiple = divisible_by * tp
    return -(-vocab_size // multiple) * multiple


# -- tensors ------------------------------------------------------------------------------------------

def load_hf_weights(hf_dir: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF model directory (safetensors, sharded safetensors, or ``pytorch_model.bin``)."""
    from safetensors.torch import load_file

    d = Path(hf_dir)
    if (d / "model.safetensors").is_file():
        return load_file(str(d / "model.safetensors"))
    for index, loader in (("model.safetensors.index.json", "st"), ("pytorch_model.bin.index.json", "pt")):
        if (d / index).is_file():
            files = sorted(set(json.loads((d / index).read_text())["weight_map"].values()))
            out: dict[str, torch.Tensor] = {}
            for f in files:
                out.update(load_file(str(d / f)) if loader == "st"
                           else torch.load(d / f, map_location="cpu", weights_only=True))
            return out
    if (d / "pytorch_model.bin").is_file():
        return torch.load(d / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConvertError(f"{d}: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)")


def hf_to_engine(hf: dict[str, torch.Tensor], m: ModelConfig) -> dict[str, torch.Tensor]:
    """HF Llama tensors → the engine's TP=1 state dict (names of ``GPTModel.state_dict``), vocab unpadded."""
    left = dict(hf)
    d = m.hidden_size // m.num_attention_heads
    per = m.num_attention_heads // m.num_query_groups
    h = m.hidden_size

    def take(key: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if key not in left:
            raise ConvertError(f"weights: {key} is missing (is this a LlamaForCausalLM checkpoint?)")
        t = left.pop(key)
        if shape is not None and tuple(t.shape) != shape:
            raise ConvertError(f"weights: {key} has shape {tuple(t.shape)}, config.json implies {shape}")
        return t

    out = {"embedding.word_embeddings.weight": take("model.embed_tokens.weight")}
    vocab = out["embedding.word_embeddings.weight"].shape[0]
    for i in range(m.num_layers):
        p, e = f"model.layers.{i}.", f"decoder.layers.{i}."
        q = take(p + "self_attn.q_proj.weight", (m.num_attention_heads * d, h))
        k = take(p + "self_attn.k_proj.weight", (m.num_query_groups * d, h))
        v = take(p + "self_attn.v_proj.weight", (m.num_query_groups * d, h))
        g = m.num_query_groups
        qkv = torch.cat([q.view(g, per * d, h), k.view(g, d, h), v.view(g, d, h)], dim=1)
        out[e + "input_layernorm.weight"] = take(p + "input_layernorm.weight", (h,))
        out[e + "self_attention.linear_qkv.weight"] = qkv.reshape(g * (per + 2) * d, h)
        out[e + "self_attention.linear_proj.weight"] = take(p + "self_attn.o_proj.weight", (h, h))
        out[e + "pre_mlp_layernorm.weight"] = take(p + "post_attention_layernorm.weight", (h,))
        gate = take(p + "mlp.gate_proj.weight", (m.ffn_hidden_size, h))
        up = take(p + "mlp.up_proj.weight", (m.ffn_hidden_size, h))
        out[e + "mlp.linear_fc1.weight"] = torch.cat([gate, up])
        out[e + "mlp.linear_fc2.weight"] = take(p + "mlp.down_proj.weight", (h, m.ffn_hidden_size))
        left.pop(p + "self_attn.rotary_emb.inv_freq", None)  # a buffer in old checkpoints
    out["decoder.final_layernorm.weight"] = take("model.norm.weight", (h,))
    if m.tie_embeddings:
        head = left.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, out["embedding.word_embeddings.weight"]):
            raise ConvertError("weights: tie_word_embeddings=true but lm_head.weight differs from "
                               "model.embed_tokens.weight")
    else:
        out["output_layer.weight"] = take("lm_head.weight", (vocab, h))
    if left:
        names = sorted(left)
        raise ConvertError(f"weights: unsupported tensors {names[:6]}{' ...' if len(names) > 6 else ''} "
                           "(biases, extra layers or another architecture); only plain Llama converts")
    return out


def engine_to_hf(sd: dict[str, torch.Tensor], m: ModelConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """The engine's TP=1 state dict → HF Llama tensors (fresh contiguous copies), vocab padding sliced off."""
    d = m.hidden_size // m.num_attention_heads
    g, per, h = m.num_query_groups, m.num_attention_heads // m.num_query_groups, m.hidden_size

    def own(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to("cpu").clone().contiguous()

    emb = sd["embedding.word_embeddings.weight"]
    if emb.shape[0] < vocab_size:
        raise ConvertError(f"the checkpoint's embedding has {emb.shape[0]} rows, fewer than the tokenizer's "
                           f"vocab_size={vocab_size}: wrong tokenizer?")
    out = {"model.embed_tokens.weight": own(emb[:vocab_size])}
    for i in range(m.num_layers):
        p, e = f"model.layers.{i}.", f"decoder.layers.{i}."
        qkv = sd[e + "self_attention.linear_qkv.weight"].view(g, (per + 2) * d, h)
        out[p + "input_layernorm.weight"] = own(sd[e + "input_layernorm.weight"])
        out[p + "self_attn.q_proj.weight"] = own(qkv[:, : per * d].reshape(g * per * d, h))
        out[p + "self_attn.k_proj.weight"] = own(qkv[:, per * d : (per + 1) * d].reshape(g * d, h))
        out[p + "self_attn.v_proj.weight"] = own(qkv[:, (per + 1) * d :].reshape(g * d, h))
        out[p + "self_attn.o_proj.weight"] = own(sd[e + "self_attention.linear_proj.weight"])
        out[p + "post_attention_layernorm.weight"] = own(sd[e + "pre_mlp_layernorm.weight"])
        gate, up = sd[e + "mlp.linear_fc1.weight"].chunk(2, dim=0)
        out[p + "mlp.gate_proj.weight"] = own(gate)
        out[p + "mlp.up_proj.weight"] = own(up)
        out[p + "mlp.down_proj.weight"] = own(sd[e + "mlp.linear_fc2.weight"])
    out["model.norm.weight"] = own(sd["decoder.final_layernorm.weight"])
    if not m.tie_embeddings:
        out["lm_head.weight"] = own(sd["output_layer.weight"][:vocab_size])
    return out


# -- the engine model in this process ----------------------------------------------------------------
