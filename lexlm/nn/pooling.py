"""Attention pooling baselines for LAMA (``lexlm.nn.lama``): each maps states H [B, T, D] and a
keep-mask [B, T] to head vectors [B, m, D] and attention weights [B, m, T] (padding: 0).

* ``AdditiveAttention`` (HAN, Yang et al., 2016): one head, u_t = tanh(W h_t + b), weight
  softmax_t(u_t . u_w) with a learned u_w. Parameters D^2 + 2D.
* ``StructuredSelfAttention`` (Lin et al., 2017): r heads, A = softmax_t(W2 tanh(W1 H^T)) with
  W1 [d_a, D], W2 [r, d_a] (no biases, as in the paper); train with ``diversity_penalty``,
  ||A A^T - I||_F^2. Parameters d_a D + r d_a.
* ``SelfAttentionPooling``: standard multi-head self-attention over the tokens (query, key,
  value and output projections, padding keys masked), then a masked mean. One "head" vector
  out. Parameters 4 D^2 + 4 D, whatever the head count. Its weights are each head's
  effective pooling weights over the tokens: the mean over the kept queries of that head's
  attention rows (the output projection is affine, so the pooled vector is what the values
  pooled by these weights give).
* ``MeanPooling``: the masked mean of the states, no parameters (the control that any
  attention pooling has to beat). Its weights are uniform over the kept tokens.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from lexlm.nn.attention import masked_attention
from lexlm.nn.lama import masked_mean, masked_softmax


def diversity_penalty(weights: Float[ArrayLike, "B M T"]) -> Float[Array, " B"]:
    """Lin et al.'s ||A A^T - I||_F^2 per example (0 when the heads attend to disjoint
    single tokens)."""
    a = jnp.asarray(weights, jnp.float32)
    gram = jnp.einsum("bmt,bnt->bmn", a, a)
    eye = jnp.eye(a.shape[1], dtype=jnp.float32)
    return jnp.sum((gram - eye[None]) ** 2, axis=(1, 2))


def additive_param_count(width: int) -> int:
    return width * width + 2 * width


def structured_param_count(width: int, heads: int, hidden: int) -> int:
    return hidden * width + heads * hidden


def self_attention_param_count(width: int) -> int:
    return 4 * width * width + 4 * width


def self_attention_qk_param_count(width: int) -> int:
    """Self-attention's query and key projections alone (what scores the tokens)."""
    return 2 * width * width + 2 * width


def uniform_weights(mask: Bool[ArrayLike, "B T"]) -> Float[Array, "B 1 T"]:
    """1 / (kept tokens) on each kept token, 0 on padding (a row with none kept: all 0)."""
    mask = jnp.asarray(mask)
    return mask.astype(jnp.float32)[:, None] / jnp.maximum(mask.sum(axis=1)[:, None, None], 1)


def _pool(weights, h):
    return jnp.einsum("bmt,btd->bmd", weights.astype(h.dtype), h)


class AdditiveAttention(nn.Module):
    @nn.compact
    def __call__(self, h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]):
        h = jnp.asarray(h)
        d = h.shape[-1]
        u = jnp.tanh(nn.Dense(d, name="key_mlp")(h))
        context = self.param("context", nn.initializers.normal(1.0 / d**0.5), (d,), jnp.float32)
        scores = jnp.einsum("btd,d->bt", u, context)[..., None]
        weights = masked_softmax(scores, mask)
        return _pool(weights, h), weights


class StructuredSelfAttention(nn.Module):
    heads: int  # r
    hidden: int  # d_a

    @nn.compact
    def __call__(self, h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]):
        h = jnp.asarray(h)
        s = jnp.tanh(nn.Dense(self.hidden, use_bias=False, name="w1")(h))
        scores = nn.Dense(self.heads, use_bias=False, name="w2")(s)  # [B, T, r]
        weights = masked_softmax(scores, mask)
        return _pool(weights, h), weights


class SelfAttentionPooling(nn.Module):
    heads: int

    @nn.compact
    def __call__(self, h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]):
        h = jnp.asarray(h)
        b, t, d = h.shape
        if d % self.heads:
            raise ValueError(f"model.heads: width {d} is not divisible by {self.heads}")
        k = d // self.heads
        q, kk, v = (
            nn.Dense(d, name=name)(h).reshape(b, t, self.heads, k) for name in ("q", "k", "v")
        )
        mask = jnp.asarray(mask)
        allowed = jnp.broadcast_to(mask[:, None, :], (b, t, t))
        y = masked_attention(q, kk, v, allowed)
        y = nn.Dense(d, name="out")(y.reshape(b, t, d))
        pooled = masked_mean(y, mask)[:, None]
        # each head's attention rows [B, H, T, S], averaged over the kept queries
        scores = jnp.einsum("bthk,bshk->bhts", q, kk, preferred_element_type=jnp.float32)
        rows = masked_softmax(jnp.swapaxes(scores * k**-0.5, 2, 3).reshape(b * self.heads, t, t),
                              jnp.repeat(mask, self.heads, axis=0))  # fmt: skip
        rows = rows.reshape(b, self.heads, t, t)  # [B, H, query T, key S]
        weights = jnp.einsum("bhts,bt->bhs", rows, uniform_weights(mask)[:, 0])
        return pooled, weights


class MeanPooling(nn.Module):
    """The masked mean of the states: ``(mean [B, 1, D], uniform weights [B, 1, T])``."""

    @nn.compact
    def __call__(self, h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]):
        h = jnp.asarray(h)
        return masked_mean(h, mask)[:, None], uniform_weights(mask)
