"""Scaled dot-product attention behind one dispatcher.

``impl='xla'`` is the reference (einsum + masked softmax in float32) and runs everywhere.
``impl='cudnn'`` goes through ``jax.nn.dot_product_attention(implementation='cudnn')`` and only
runs on NVIDIA GPUs with bf16/fp16 inputs. ``impl='auto'`` picks cudnn where it can run, else xla.
A TPU splash-attention kernel would be one more branch here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

IMPLS = ("xla", "cudnn", "auto")


NEG_INF = float(jnp.finfo(jnp.float32).min)


def weighted_values(
    scores: Float[Array, "B H T S"], v: Float[Array, "B S H K"], allowed: Bool[Array, "#B T S"]
) -> Float[Array, "B T H K"]:
    """softmax(scores) over the allowed keys (float32), applied to the values. A query with no
    allowed key gets a uniform average (its row is all NEG_INF, never NaN)."""
    scores = jnp.where(allowed[:, None], scores, NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshk->bthk", weights, v)


def masked_attention(
    q: Float[Array, "B T H K"],
    k: Float[Array, "B S H K"],
    v: Float[Array, "B S H K"],
    allowed: Bool[Array, "#B T S"],
) -> Float[Array, "B T H K"]:
    """Scaled dot-product attention with an explicit boolean mask (query t may see key s)."""
    scores = jnp.einsum("bthk,bshk->bhts", q, k, preferred_element_type=jnp.float32)
    return weighted_values(scores * q.shape[-1] ** -0.5, v, allowed)


def causal_allowed(t: int, s: int, window: int = 0) -> Bool[Array, "1 T S"]:
    """Queries are the last t positions of the s keys (equal when there is no cache).

    ``window`` > 0: sliding-window attention, query i sees keys i - window + 1 .. i only."""
    query = jnp.arange(t)[:, None] + (s - t)
    key = jnp.arange(s)[None, :]
    allowed = key <= query
    if window > 0:
        allowed &= key > query - window
    return allowed[None]


def _xla_attention(
    q: Float[Array, "B T H K"],
    k: Float[Array, "B S H K"],
    v: Float[Array, "B S H K"],
    causal: bool,
    window: int = 0,
) -> Float[Array, "B T H K"]:
    t, s = q.shape[1], k.shape[1]
    allowed = causal_allowed(t, s, window) if causal else jnp.ones((1, t, s), bool)
    return masked_attention(q, k, v, allowed)


def _cudnn_usable(q: jax.Array) -> bool:
    return jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)


def dot_product_attention(
    q: Float[Array, "B T H K"],
    k: Float[Array, "B S H K"],
    v: Float[Array, "B S H K"],
    *,
    causal: bool = True,
    impl: str = "xla",
    window: int = 0,
) -> Float[Array, "B T H K"]:
    """Multi-head attention over [batch, length, heads, head_dim] tensors; ``window`` > 0
    (causal only) limits each query to its last ``window`` keys, itself included."""
    if impl not in IMPLS:
        raise ValueError(f"model.attention: unknown attention implementation {impl!r}; use {IMPLS}")
    if impl == "auto":
        impl = "cudnn" if _cudnn_usable(q) else "xla"
    if impl == "cudnn":
        if not _cudnn_usable(q):
            raise ValueError(
                "model.attention: 'cudnn' needs an NVIDIA GPU and bf16/fp16 compute "
                f"(backend={jax.default_backend()}, dtype={q.dtype}); use 'xla' or 'auto'"
            )
        local = (window - 1, 0) if window > 0 else None
        return jax.nn.dot_product_attention(
            q, k, v, is_causal=causal, local_window_size=local, implementation="cudnn"
        )
    return _xla_attention(q, k, v, causal, window)
