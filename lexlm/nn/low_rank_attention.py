"""Low-rank factorised multi-head self-attention: LAMA's shared factors inside a Transformer.

LAMA (``lexlm.nn.lama``) scores token t for head j by c^T p_j q_j^T u_t, with the factor
columns of all heads in two shared matrices. Self-attention has a query token x_t in place of
the global context c. lexlm's low-rank attention keeps LAMA's sharing and lets each head pick
a weighting of r shared rank-1 factors:

    a_t = P_q^T x_t + b_q,  b_s = P_k^T x_s + b_k      (P_q, P_k in R^{D x r}, shared)
    score_h(t, s) = sum_i g_{h,i} a_{t,i} b_{s,i}        (g in R^{H x r}, per head)

i.e. head h's bilinear form is W_h = P_q diag(g_h) P_k^T, rank <= r, built from factors that
all heads share (the Hadamard low-rank bilinear form of Kim et al., 2017, which LAMA uses with
r = heads and g = identity). Values and the output projection are the standard ones.

Decisions (the paper defines LAMA for pooling only; this is lexlm's transfer of it):

* The gains g carry the 1/sqrt(K) scale of standard attention, so there is no separate scale.
  They are initialised N(1, 1) / sqrt(r): heads differ from step 0 (g = 1 for every head
  would make their scores identical) and the score variance matches standard attention's.
* Full rank reproduces standard attention exactly: with r = D, P_q = W_q and P_k = W_k (all
  heads' columns side by side) and g_h = [i in head h's K columns] / sqrt(K), score_h is the
  standard head's scaled dot product (``gains_for_full_rank``; tested).
* Parameters: 2 (D r + r) + H r for the scores, against 2 (D^2 + D) for standard queries and
  keys; the values and output projection (2 D^2 + 2 D) are the same in both.
* Score FLOPs per query-key pair: 2 H r (standard: 2 D). With r = D / H both are the same;
  the saving is in the projections (2 D r instead of 2 D^2 per token) and the parameters.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def low_rank_scores(
    a: Float[ArrayLike, "B T R"], b: Float[ArrayLike, "B S R"], gains: Float[ArrayLike, "H R"]
) -> Float[Array, "B H T S"]:
    """score[b, h, t, s] = sum_i gains[h, i] a[b, t, i] b[b, s, i] (float32)."""
    q = jnp.asarray(a)[:, :, None, :] * jnp.asarray(gains).astype(jnp.asarray(a).dtype)
    return jnp.einsum("bthr,bsr->bhts", q, b, preferred_element_type=jnp.float32)


def gains_for_full_rank(heads: int, width: int) -> Float[Array, "H D"]:
    """The gains with which rank D reproduces standard H-head attention (see the docstring)."""
    k = width // heads
    block = jnp.arange(width)[None, :] // k == jnp.arange(heads)[:, None]
    return block.astype(jnp.float32) / jnp.sqrt(jnp.float32(k))


def low_rank_score_params(width: int, heads: int, rank: int) -> int:
    """Parameters of the low-rank query/key scoring (factors with biases, per-head gains)."""
    return 2 * (width * rank + rank) + heads * rank


def standard_score_params(width: int) -> int:
    """Parameters of standard attention's query and key projections (with biases)."""
    return 2 * (width * width + width)


def value_output_params(width: int) -> int:
    """Parameters of the value and output projections (with biases), shared by both."""
    return 2 * (width * width + width)
