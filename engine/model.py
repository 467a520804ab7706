"""Model builder: a Llama-style ``GPTModel`` (RMSNorm, RoPE, SwiGLU, GQA) per pipeline chunk, wrapped in DDP.

The model itself is megatron-core's; parallelism enters only through the ``TransformerConfig`` and the
layer spec (``engine.layers``). ``build_model`` returns one module per virtual pipeline stage held by
this rank (a list of one without interleaving). Later stages can pass their own model class (e.g. a
GPTModel with a value head) and extra constructor arguments.

The ``kernels`` config switches (see ``engine.layers``) enter through the layer spec, two fields of the
TransformerConfig (``use_te_activation_func`` for SwiGLU, ``kernels_rope`` for RoPE) and, for
``kernels.fused_linear_cross_entropy``, :class:`FusedLinearCrossEntropyMixin` on the model class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.module import Float16Module
from megatron.core.transformer.transformer_config import TransformerConfig

from engine.config import PretrainConfig, padded_vocab_size
from engine.layers import block_spec, install_kernels_rope


def precision(cfg: PretrainConfig) -> str:
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "bf16" if torch.cuda.is_available() else "fp32"


@dataclass
class EngineTransformerConfig(TransformerConfig):
    """megatron's TransformerConfig plus the engine's own switches read inside megatron's modules."""

    kernels_rope: bool = False
    """Apply RoPE with the Triton kernel (``engine.layers.install_kernels_rope``)."""


class FusedLinearCrossEntropyMixin:
    """Put before a ``GPTModel`` (sub)class: with labels, the last stage returns per-token fp32 losses
    ``[b, s]`` from ``llmkernels.modules.language_model_loss`` without materialising the logits. Without
    labels (or with multi-token prediction or an inference context) it is megatron's own ``_postprocess``.
    Needs the whole vocabulary on the rank (tensor-parallel size 1)."""

    def _postprocess(self, hidden_states: torch.Tensor, labels: torch.Tensor | None = None,
                     **kwargs: Any) -> torch.Tensor:
        model: Any = self
        if (labels is None or not model.post_process or model.config.mtp_num_layers is not None
                or kwargs.get("mtp_in_postprocess") or kwargs.get("inference_context") is not None):
            return super()._postprocess(hidden_states=hidden_states, labels=labels, **kwargs)  # type: ignore[misc]
        from llmkernels.modules import language_model_loss

        if model.share_embeddings_and_output_weights:
            weight = model.shared_embedding_or_output_weight()
        else:
            weight = model.output_layer.weight
        return language_model_loss(hidden_states, weight, labels)


def model_class(cfg: PretrainConfig, model_cls: type = GPTModel) -> type:
    """``model_cls``, or a subclass with the fused output layer + loss when the config switches it on."""
    if not cfg.kernels.fused_linear_cross_entropy or issubclass(model_cls, FusedLinearCrossEntropyMixin):
        return model_cls
    return type(f"FusedLinearCE{model_cls.__name__}", (FusedLinearCrossEntropyMixin, model_cls), {})


def transformer_config(cfg: PretrainConfig) -> TransformerConfig:
    m, p, k = cfg.model, cfg.parallel, cfg.kernels
    bf16 = precision(cfg) == "bf16"
    return EngineTransformerConfig(
        num_layers=m.num_layers,
        hidden_size=m.hidden_size,
        num_attention_heads=m.num_attention_heads,
        num_query_groups=m.num_query_groups,
        ffn_hidden_size=m.ffn_hidden_size,
        kv_channels=m.hidden_size // m.num_attention_heads,
        normalization="RMSNorm",
        layernorm_epsilon=m.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=m.init_std,
        bias_activation_fusion=False,
        # megatron's MLP calls the spec's activation module (FusedSwiGLU) once on the [gate | up] fc1
        # output under this flag; no Transformer Engine involved
        use_te_activation_func=k.swiglu,
        kernels_rope=k.rope,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        cross_entropy_loss_fusion=False,
        tensor_model_parallel_size=p.tp,
        pipeline_model_parallel_size=p.pp,
        virtual_pipeline_model_parallel_size=p.vpp,
        sequence_parallel=p.sp,
        params_dtype=torch.float32,
        bf16=bf16,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_cpu_initialization=not torch.cuda.is_available(),
        calculate_per_token_loss=True,
        # interleaved 1F1B with batch_p2p_comm=True trains wrongly at PP=2 (Megatron-LM#750)
        overlap_p2p_comm=p.vpp is not None,
        batch_p2p_comm=p.vpp is None,
    )


def build_model(cfg: PretrainConfig, model_cls: type = GPTModel, wrap_ddp: bool = True,
                **model_kwargs: Any) -> list[torch.nn.Module]:
    """This rank's model chunks (one per virtual stage), bf16-wrapped if needed, then in megatron DDP."""
    tcfg = transformer_config(cfg)
    if cfg.kernels.rope:
        install_kernels_rope()
    model_cls = model_class(cfg, model_cls)
    vpp = cfg.parallel.vpp or 1
    chunks: list[torch.nn.Module] = []
    for stage in range(vpp):
        vp_stage = stage if cfg.parallel.vpp else None
        model = model_cls(
            config=tcfg,
            transformer_layer_spec=block_spec(tcfg, cfg.model.attention_backend, vp_stage, cfg.kernels),
            vocab_size=padded_vocab_size(cfg),
            max_sequence_length=cfg.model.seq_length,
            pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=cfg.model.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=cfg.model.rotary_base,
            vp_stage=vp_stage,
            **model_kwargs,
        )
        model.vp_stage = vp_stage
        for param in model.parameters():
            tensor_parallel.set_defaults_if_not_set_tensor_model_parallel_attributes(param)
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        if tcfg.bf16:
            model = Float16Module(tcfg, model)
        chunks.append(model)
    if not wrap_ddp:
        return chunks
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=cfg.parallel.overlap_grad_reduce,
        overlap_param_gather=cfg.parallel.overlap_param_gather,
        use_distributed_optimizer=cfg.parallel.distributed_optimizer,
    )
    wrapped: list[torch.nn.Module] = []
    for i, chunk in enumerate(chunks):
        ddp = DistributedDataParallel(config=tcfg, ddp_config=ddp_config, module=chunk,
                                      disable_bucketing=i > 0)
        ddp.broadcast_params()
        wrapped.append(ddp)
    return wrapped


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside DDP / Float16Module wrappers."""
    while isinstance(model, (DistributedDataParallel, Float16Module)):
        model = model.module
    return model


def num_parameters(cfg: PretrainConfig) -> int:
    """Parameters of the whole (unsharded) model, embeddings included."""
    m = cfg.model
    vocab = padded_vocab_size(cfg)
    head_dim = m.hidden_size // m.num_attention_heads
    attn = m.hidden_size * head_dim * (m.num_attention_heads + 2 * m.num_query_groups)
    attn += m.num_attention_heads * head_dim * m.hidden_size
    mlp = 3 * m.hidden_size * m.ffn_hidden_size
    per_layer = attn + mlp + 2 * m.hidden_size
    embed = vocab * m.hidden_size * (1 if m.tie_embeddings else 2)
    return m.num_layers * per_layer + embed + m.hidden_size
