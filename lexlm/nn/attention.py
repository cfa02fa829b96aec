"""Scaled dot-product attention behind one dispatcher.

``impl='xla'`` is the reference (einsum + masked softmax in float32) and runs everywhere.
``impl='cudnn'`` goes through ``jax.nn.dot_product_attention(implementation='cudnn')`` and only
runs on NVIDIA GPUs with bf16/fp16 inputs. ``impl='auto'`` picks cudnn where it can run, else xla.
A TPU splash-attention kernel would be one more branch here.

Sliding-window attention (``window`` > 0) on the xla path is computed blockwise, on the band
of keys each query block can see (``banded_attention``), so its time and FLOPs fall with the
window; a mask over the full score matrix (``causal_allowed``) is kept for queries against a
cache (cached decoding), where the band is one row anyway.
"""

from __future__ import annotations

from collections.abc import Callable

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


def _blocks(x: Array, block: int, n: int) -> Array:
    """[B, T, ...] zero-padded at the end to n * block positions, as [B, n, block, ...]."""
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, n * block - x.shape[1])
    return jnp.pad(x, pad).reshape(x.shape[0], n, block, *x.shape[2:])


def _band(x: Array, block: int, n: int, prev: int) -> Array:
    """Key blocks as [B * n, (prev + 1) * block, ...]: block i's row holds blocks i - prev .. i
    (zeros before the start), stacked from static slices (no gather)."""
    blocks = _blocks(x, block, n)
    pad = [(0, 0)] * blocks.ndim
    pad[1] = (prev, 0)
    blocks = jnp.pad(blocks, pad)
    band = jnp.concatenate([blocks[:, j : j + n] for j in range(prev + 1)], axis=2)
    return band.reshape(x.shape[0] * n, (prev + 1) * block, *x.shape[2:])


def band_allowed(t: int, window: int, block: int) -> tuple[int, int, Bool[Array, "N Q S"]]:
    """Blocks ``n``, previous key blocks ``prev`` and the exact window mask [n, block,
    (prev + 1) * block] of banded attention: query i * block + a sees band key j, at position
    (i - prev) * block + j, iff that key is in the sequence and 0 <= query - key < window."""
    n = -(-t // block)
    prev = min(-(-(window - 1) // block), n - 1)
    query = jnp.arange(n)[:, None, None] * block + jnp.arange(block)[None, :, None]
    key = (jnp.arange(n)[:, None, None] - prev) * block + jnp.arange((prev + 1) * block)
    diff = query - key
    return n, prev, (key >= 0) & (diff >= 0) & (diff < window)


def banded_weighted_values(
    scores_fn: Callable[[Array, Array], Float[Array, "N H Q S"]],
    q: Float[Array, "B T ..."],
    k: Float[Array, "B T ..."],
    v: Float[Array, "B T H K"],
    window: int,
    block: int = 0,
) -> Float[Array, "B T H K"]:
    """Causal sliding-window attention computed on the band only (self-attention, no cache).

    Queries are split into blocks of ``block`` positions (at most T), T padded to a multiple;
    each query block scores only its own key block and the ``ceil((window - 1) / block)``
    before it, with the exact window mask inside. ``scores_fn(q_blocks [N, block, ...], k_band
    [N, S, ...]) -> [N, H, block, S]`` scores one band (N = B * blocks), so with block = window
    the score and value FLOPs are about 2 * window / T of dense attention's. ``block=0``: block
    = window, and the dense masked scores whenever the band would hold as many scores as the
    full matrix (a window near T), so the cost never exceeds dense attention's."""
    b, t = q.shape[0], q.shape[1]
    if window < 1:
        raise ValueError(f"model.window: banded attention needs a window >= 1, got {window}")
    if block < 0:
        raise ValueError(f"banded attention: block must be >= 0 (0: the window), got {block}")
    auto, block = block == 0, min(block or window, t)
    n, prev, allowed = band_allowed(t, window, block)
    if auto and n * block * (prev + 1) * block >= t * t:
        return weighted_values(scores_fn(q, k), v, causal_allowed(t, t, window))
    qb = _blocks(q, block, n).reshape(b * n, block, *q.shape[2:])
    kb, vb = _band(k, block, n, prev), _band(v, block, n, prev)
    allowed = jnp.broadcast_to(allowed[None], (b, *allowed.shape)).reshape(b * n, block, -1)
    out = weighted_values(scores_fn(qb, kb), vb, allowed)
    return out.reshape(b, n * block, *out.shape[2:])[:, :t]


def banded_attention(
    q: Float[Array, "B T H K"],
    k: Float[Array, "B T H K"],
    v: Float[Array, "B T H K"],
    window: int,
    block: int = 0,
) -> Float[Array, "B T H K"]:
    """Causal sliding-window self-attention (query i sees keys i - window + 1 .. i) computed
    blockwise on the band (``banded_weighted_values``); equals ``masked_attention`` with
    ``causal_allowed(T, T, window)`` to float tolerance, at a cost that falls with the window."""

    def scores(qb, kb):
        s = jnp.einsum("bthk,bshk->bhts", qb, kb, preferred_element_type=jnp.float32)
        return s * q.shape[-1] ** -0.5

    return banded_weighted_values(scores, q, k, v, window, block)


def _xla_attention(
    q: Float[Array, "B T H K"],
    k: Float[Array, "B S H K"],
    v: Float[Array, "B S H K"],
    causal: bool,
    window: int = 0,
) -> Float[Array, "B T H K"]:
    t, s = q.shape[1], k.shape[1]
    if causal and 0 < window < s and t == s:
        return banded_attention(q, k, v, window)
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
