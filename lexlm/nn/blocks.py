"""Transformer building blocks shared by several models.

``token_nll`` and ``empty_kv``: the loss and the cache layout every block-based LM shares.
``CachedBlock``: a pre-LayerNorm block with an explicit boolean attention mask (bidirectional,
causal or anything else) and an optional key/value cache, used by the word-pooled LM's three
stacks and by the pixel/token sentence encoders (``lexlm.nn.vit``). ``logical_param``: a
float32 parameter with logical axis names for the mesh rules (``lexlm.train.sharding``).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lexlm.nn.attention import banded_attention, masked_attention
from lexlm.nn.layers import Projection, layer_norm


class CachedBlock(nn.Module):
    """Pre-LayerNorm Transformer block with an explicit mask and an optional key/value cache.

    ``allowed`` [#B, T, S] says which keys each query sees; ``allowed=None`` with ``window`` > 0
    (no cache) is causal sliding-window self-attention computed on the band only
    (``attention.banded_attention``), so it costs O(T * window), not O(T^2).
    ``cache`` is ``(k, v)`` [B, S, H, K] for all S positions; the block writes this call's keys
    and values at ``index`` and returns the updated cache (``None`` without one)."""

    width: int
    heads: int
    mlp_ratio: int
    depth: int  # of the stack, for the output-projection init scale
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, allowed, cache=None, index=0, window=0):
        d, h, dt = self.width, self.heads, self.dtype
        k_dim = d // h
        out_std = 0.02 / math.sqrt(2 * self.depth)
        y = layer_norm("ln_attn", dt)(x)
        qkv = Projection(
            (d,), (3, h, k_dim), ("embed", "qkv", "heads", "kv"), 0.02, dt, name="qkv"
        )(y)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cache is not None:
            ck, cv = cache
            k = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=1)
            cache = (k, v)
        if allowed is None:
            if cache is not None or window < 1:
                raise ValueError("CachedBlock: allowed=None needs window >= 1 and no cache")
            y = banded_attention(q, k, v, window)
        else:
            y = masked_attention(q, k, v, allowed)
        y = Projection((h, k_dim), (d,), ("heads", "kv", "embed"), out_std, dt, name="attn_out")(y)
        x = x + y
        y = layer_norm("ln_mlp", dt)(x)
        f = d * self.mlp_ratio
        y = Projection((d,), (f,), ("embed", "mlp"), 0.02, dt, name="mlp_in")(y)
        y = Projection((f,), (d,), ("mlp", "embed"), out_std, dt, name="mlp_out")(nn.gelu(y))
        return nn.with_logical_constraint(x + y, ("batch", "length", "embed")), cache


def token_nll(logits, targets):
    """Per-position negative log-likelihood (nats) of integer ``targets`` under ``logits``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, jnp.asarray(targets)[..., None], axis=-1)[..., 0]


def empty_kv(batch: int, slots: int, width: int, heads: int, dtype):
    """A zero key/value cache ``(k, v)`` [batch, slots, heads, width // heads] for one block."""
    shape = (batch, slots, heads, width // heads)
    return (jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def logical_param(module, name, shape, std, axes):
    """A float32 parameter N(0, std) (zeros for std 0) with logical axis names."""
    init = nn.initializers.normal(std) if std > 0 else nn.initializers.zeros
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)
