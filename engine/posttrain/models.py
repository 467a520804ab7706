"""Model pieces of post-training, all over ``engine.model.build_model``: masked attention, a scalar head,
backbone-only loading, per-token log-probs, and forward-only passes that collect outputs.

- ``with_masked_attention(cls)``: a model class whose SDPA core attention honours megatron's
  ``attention_mask`` ([b, 1, s, s], True = masked) — packed SFT rows attend within their own example.
  Without a mask it is exactly the causal SDPA path of pretraining.
- ``ValueGPT``: the policy architecture with a scalar head on the last pipeline stage (reward model,
  PPO critic): returns ``[b, s]`` scores instead of logits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import dist_checkpointing, tensor_parallel
from megatron.core import parallel_state as ps
from megatron.core.models.gpt import GPTModel
from megatron.core.pipeline_parallel import get_forward_backward_func

from engine.checkpoint_safety import check_checkpoint
from engine.layers import SDPAttention
from engine.model import unwrap
from engine.posttrain.batches import model_device, to_device

Batch = dict[str, torch.Tensor]


class MaskedSDPAttention(SDPAttention):
    """``SDPAttention`` that applies ``attention_mask`` when one is given (per-document packing)."""

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, attn_mask_type: Any = None,
                attention_bias: Any = None, packed_seq_params: Any = None) -> torch.Tensor:
        if attention_mask is None:
            return super().forward(query, key, value, None, attn_mask_type, attention_bias, packed_seq_params)
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=~attention_mask.to(q.device), scale=self.softmax_scale,
            enable_gqa=q.shape[1] != k.shape[1], dropout_p=self.dropout if self.training else 0.0)
        s, b = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)


def with_masked_attention(model_cls: type = GPTModel) -> Callable[..., torch.nn.Module]:
    """A ``build_model(model_cls=...)`` factory: the same model, SDPA core attention swapped for the
    masked one (Transformer Engine specs take masks themselves and are left alone)."""

    def build(**kwargs: Any) -> torch.nn.Module:
        spec = copy.deepcopy(kwargs["transformer_layer_spec"])
        for layer in spec.layer_specs:
            attn = layer.submodules.self_attention.submodules
            if isinstance(attn.core_attention, type) and issubclass(attn.core_attention, SDPAttention):
                attn.core_attention = MaskedSDPAttention
        return model_cls(**{**kwargs, "transformer_layer_spec": spec})

    return build


class ValueGPT(GPTModel):
    """GPTModel with a scalar head (zero-initialised) in place of the logits on the last stage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.post_process:
            self.value_head = torch.nn.Linear(self.config.hidden_size, 1, dtype=self.config.params_dtype)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)

    def _postprocess(self, hidden_states: torch.Tensor, **_: Any) -> torch.Tensor:
        if not self.post_process:
            return hidden_states
        if self.config.sequence_parallel:
            hidden_states = tensor_parallel.gather_from_sequence_parallel_region(
                hidden_states, tensor_parallel_output_grad=False)
        return self.value_head(hidden_states.float()).squeeze(-1).transpose(0, 1).contiguous()  # [b, s]


HEAD_PREFIX = "value_head."


def load_backbone(path: str | Path, model: Sequence[torch.nn.Module], optimizer: Any = None) -> None:
    """Load a checkpoint's transformer weights into ``model``, keeping its own head when the checkpoint
    has none (reward model / critic from SFT weights)."""
    check_checkpoint(path)
    stored = set(dist_checkpointing.load_tensors_metadata(str(path)).keys())
    request = {}
    for i, m in enumerate(model):
        sd = unwrap(m).sharded_state_dict()
        request[f"model{i}"] = {k: v for k, v in sd.items()
                                if not k.startswith(HEAD_PREFIX) or getattr(v, "key", k) in stored}
    with torch.no_grad():
        loaded = dist_checkpointing.load(request, str(path))
    for i, m in enumerate(model):
        missing, unexpected = unwrap(m).load_state_dict(loaded[f"model{i}"], strict=False)
        bad = [k for k in [*missing, *unexpected] if not k.startswith(HEAD_PREFIX) and "_extra_state" not in k]
        if bad:
            raise RuntimeError(f"{path}: checkpoint does not fit the model: {bad[:5]}")
    if optimizer is not None:
        optimizer.reload_model_params()


def token_logps(model: torch.nn.Module, batch: Batch, vocab_size: int, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each ``labels`` token at its position, ``[b, s]`` (last stage; else hidden).

    The softmax runs over the tokenizer's ``vocab_size`` ids only: megatron pads the output layer to a
    multiple of ``make_vocab_size_divisible_by × tp`` and those padded logits are masked out here exactly
    as the generator masks them when it samples, so these are the log-probs of the sampling distribution
    (at ``temperature``; top-p truncation is not modelled). Works on vocab-sharded (TP) logits.
    """
    batch = to_device(batch, model_device(model))
    out = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"))
    if not unwrap(model).post_process:
        return out
    return vocab_logps(out, batch["labels"].to(out.device), vocab_size, temperature)


def vocab_logps(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int,
                temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[labels]`` over the real vocabulary; ``logits`` is this TP rank's shard."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    part = logits.shape[-1]
    start = ps.get_tensor_model_parallel_rank() * part
    padded = torch.arange(start, start + part, device=logits.device) >= vocab_size
    logits = logits.masked_fill(padded, -1e30)  # exp() of it is 0: no mass on padded ids
    return -tensor_parallel.vocab_parallel_cross_entropy(logits, labels)


def forward_collect(model: Sequence[torch.nn.Module], microbatches: list[Batch],
                    forward: Callable[[torch.nn.Module, Batch], torch.Tensor],
                    collect: Callable[[Batch, torch.Tensor], torch.Tensor], seq_length: int,
                    micro_batch_size: int) -> list[torch.Tensor] | None:
    """A forward-only pipeline pass; ``collect(batch, output)`` per micro-batch on the last stage (else
    None). Used for frozen models (DPO/PPO reference, reward model) and held-out metrics."""
    fwd_bwd = get_forward_backward_func()

    def step(data_iterator: Any, chunk: torch.nn.Module) -> Any:
        batch = next(data_iterator)
        batch = to_device(batch, model_device(chunk))
        output = forward(chunk, batch)

        def report(out: torch.Tensor) -> tuple:
            value = collect(batch, out).detach()
            return out.sum() * 0.0, torch.tensor(1, dtype=torch.int), {"value": value}

        return output, report

    for m in model:
        m.eval()
    iterators: Any = [iter(microbatches) for _ in model]
    with torch.no_grad():
        reports = fwd_bwd(forward_step_func=step, data_iterator=iterators if len(model) > 1 else iterators[0],
                          model=list(model) if len(model) > 1 else model[0],
                          num_microbatches=len(microbatches), seq_length=seq_length,
                          micro_batch_size=micro_batch_size, forward_only=True)
    if not ps.is_pipeline_last_stage():
        return None
    return [r["value"] for r in reports]
