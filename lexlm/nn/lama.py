"""LAMA: low-rank factorised multi-head attention pooling (Mehta, Rangwala, Ramakrishnan, 2019,
"Low Rank Factorization for Compact Multi-Head Self-Attention").

LAMA turns a sequence of hidden states H [B, T, D] into m head vectors M = A·H [B, m, D]
without any T x T matrix. Head j scores token t by a rank-1 bilinear form between a global
context vector c and the token's key u_t,

    score_j(t) = c^T (p_j q_j^T) u_t = (P^T c)_j (Q^T u_t)_j,        P, Q in R^{D x m},

so all m heads share the two D x m factor matrices, and the scores of every head come from
two matrix-vector products (the Hadamard low-rank bilinear trick of Kim et al., 2017, with
the rank index used as the head index). Then, per token, tanh and an L2 normalisation across
the m heads, and per head a softmax over the tokens that the mask keeps:

    f_t = tanh(P^T c * Q^T u_t) / ||tanh(P^T c * Q^T u_t)||_2      [m]
    A_j = softmax_t(f_{t,j})  over kept tokens                      [m, T]

Decisions where the paper is unclear (only its Fig. 1 is recoverable; the paper notes on
LAMA say what can be read from it); each is a field here and tested:

* ``key_mlp=True``: u_t = tanh(W h_t + b), the HAN-style per-token MLP that Fig. 1 draws;
  ``False`` scores the states themselves (as the third-party PyTorch code does).
* ``context='learned'`` (LAMA): c is one learned D-vector. ``'mean'`` (LAMA+CTX): c is the
  masked mean of the states, so each sequence brings its own context.
* The L2 norm has an epsilon (1e-6) so that an all-zero score row (c = 0) stays finite; the
  softmax is then uniform over the kept tokens.
* Padding (``mask`` False) gets exactly zero weight: its scores are replaced by -inf before
  the softmax, and a row with no kept token gets zero weights (not NaN).
* No ||AA^T - I|| penalty (Fig. 1 shows none); ``lexlm.nn.pooling.diversity_penalty`` exists
  for the structured self-attention baseline and can be added by a caller.

Parameters: 2 D m (P and Q), + D (learned c), + D^2 + D (key MLP). ``lama_param_count``
gives the formula the tests check against the module.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

CONTEXTS = ("learned", "mean")
NORM_EPS = 1e-6


def masked_mean(h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]) -> Float[Array, "B D"]:
    """Mean of the kept states (zeros for a row with none kept)."""
    h, m = jnp.asarray(h), jnp.asarray(mask).astype(jnp.float32)
    total = jnp.einsum("btd,bt->bd", h.astype(jnp.float32), m)
    return (total / jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)).astype(h.dtype)


def masked_softmax(
    scores: Float[ArrayLike, "B T M"], mask: Bool[ArrayLike, "B T"]
) -> Float[Array, "B M T"]:
    """Per head (last axis of ``scores``), a softmax over the kept tokens; padding gets
    exactly 0, and a row with no kept token gets all zeros."""
    scores = jnp.swapaxes(jnp.asarray(scores, jnp.float32), 1, 2)  # [B, M, T]
    keep = jnp.asarray(mask)[:, None, :]
    scores = jnp.where(keep, scores, -jnp.inf)
    top = jnp.max(scores, axis=-1, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.where(keep, jnp.exp(scores - top), 0.0)
    return e / jnp.maximum(e.sum(axis=-1, keepdims=True), 1e-30)


def tanh_head_normalised(raw: Float[Array, "B T M"]) -> Float[Array, "B T M"]:
    """tanh, then L2 normalisation across the heads (with the epsilon of the docstring)."""
    f = jnp.tanh(raw)
    return f / jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True) + NORM_EPS**2)


def lama_scores(
    context: Float[ArrayLike, "B D"],
    keys: Float[ArrayLike, "B T D"],
    p: Float[ArrayLike, "D M"],
    q: Float[ArrayLike, "D M"],
) -> Float[Array, "B T M"]:
    """f_t = l2norm_heads(tanh(P^T c * Q^T u_t)): the factorised rank-1 bilinear scores."""
    c_proj = jnp.einsum("bd,dm->bm", context, p, preferred_element_type=jnp.float32)
    u_proj = jnp.einsum("btd,dm->btm", keys, q, preferred_element_type=jnp.float32)
    return tanh_head_normalised(c_proj[:, None, :] * u_proj)


def bilinear_scores_reference(
    context: Float[ArrayLike, "B D"],
    keys: Float[ArrayLike, "B T D"],
    p: Float[ArrayLike, "D M"],
    q: Float[ArrayLike, "D M"],
) -> Float[Array, "B T M"]:
    """The same scores from each head's explicit D x D matrix W_j = p_j q_j^T (tests only:
    m D^2 memory)."""
    w = jnp.einsum("dm,em->mde", p, q)  # [M, D, D]
    return tanh_head_normalised(jnp.einsum("bd,mde,bte->btm", context, w, keys))


def lama_param_count(width: int, heads: int, context: str = "learned", key_mlp: bool = True):
    """Parameters of ``LAMA(heads, context, key_mlp)`` over states of width D."""
    factors = 2 * width * heads
    ctx = width if context == "learned" else 0
    mlp = width * width + width if key_mlp else 0
    return factors + ctx + mlp


class LAMA(nn.Module):
    """m-head LAMA pooling: ``(M [B, m, D], A [B, m, T]) = LAMA(m)(h, mask)``."""

    heads: int
    context: str = "learned"  # 'learned' (LAMA) | 'mean' (LAMA+CTX)
    key_mlp: bool = True

    @nn.compact
    def __call__(
        self, h: Float[ArrayLike, "B T D"], mask: Bool[ArrayLike, "B T"]
    ) -> tuple[Float[Array, "B M D"], Float[Array, "B M T"]]:
        if self.context not in CONTEXTS:
            raise ValueError(f"model.context: {self.context!r} is not one of {CONTEXTS}")
        h = jnp.asarray(h)
        d = h.shape[-1]
        init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
        p = self.param("p", init, (d, self.heads), jnp.float32)
        q = self.param("q", init, (d, self.heads), jnp.float32)
        keys = jnp.tanh(nn.Dense(d, name="key_mlp")(h)) if self.key_mlp else h
        if self.context == "learned":
            c = self.param("context", nn.initializers.normal(1.0), (d,), jnp.float32)
            c = jnp.broadcast_to(c, (h.shape[0], d))
        else:
            c = masked_mean(h, mask)
        weights = masked_softmax(lama_scores(c, keys, p, q), mask)
        pooled = jnp.einsum("bmt,btd->bmd", weights.astype(h.dtype), h)
        return pooled, weights
