"""Triton fused kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy, attention): not built yet.

Each kernel will sit beside its torch reference, with a dispatcher; imported by the model only.
"""
