"""Lexinvariant token embeddings (Huang et al., "Lexinvariant Language Models", NeurIPS 2023).

Section 3 of the paper: every sequence draws its own Gaussian matrix G in R^{V x D}; token x_t
is embedded as G[x_t], and G is redrawn for every sequence, so no token has a fixed identity.
The model is then *lexinvariant*: p(x_1..x_n) = p(pi(x_1)..pi(x_n)) for any permutation pi of
the vocabulary (in expectation over G; exactly, for one draw, if G's rows move with pi).

Decisions where the paper notes leave room (each is tested in tests/test_lexinvariant.py):

* **Scale.** Rows are N(0, I/D): unit expected norm, like the N(0, 1/D) initialisation of the
  learned table of the standard LM we compare against, so the two models see inputs of the same
  size and a semi-lexinvariant mix of them is not distinguishable by norm alone.
* **Output layer.** Logits use the *same* per-sequence matrix (tied random unembedding):
  ``logits[b, t, v] = h[b, t] . G_b[v]``, with no extra 1/sqrt(D) factor; the final LayerNorm's
  learned scale sets the temperature. A fixed output matrix would break invariance.
* **Reproducible rows without a [B, V, D] tensor.** Row v of sequence b is drawn from its own key,
  ``fold_in(seq_key[b], v)``. Input embedding needs only the T rows of the tokens present, and the
  cross-entropy over V is computed in vocabulary chunks with an online log-sum-exp whose chunk
  body is rematerialised in the backward pass (``chunked_tied_nll``), so peak memory holds
  [B, T, C] logits and [B, C, D] rows for a chunk of C types, never [B, V, D] or [B, T, V] at once.
  Unseen types cannot be skipped: exact normalisation needs every row.
* **Semi-lexinvariance** (paper section 6): with probability p a type's learned embedding is
  replaced by its random row. We draw the replacement **per sequence and per type** (a [B, V]
  Bernoulli mask), not per token occurrence: within a sequence a replaced type must keep one
  vector so that in-context identity, the only thing a random vector carries, stays learnable;
  per-occurrence draws would make repeated tokens look unrelated. Input and output stay tied to
  the same mixed table. At evaluation p is 0 unless a caller passes a mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key

RowsFn = Callable[[Int[Array, " C"]], Float[Array, "B C D"] | Float[Array, "C D"]]


def sequence_keys(key: jax.Array, batch_size: int) -> Key[Array, " B"]:
    """One independent typed key per sequence: keys[B]."""
    return jax.random.split(key, batch_size)


def random_rows(
    seq_keys: Key[Array, " B"],
    ids: Int[ArrayLike, "B N"] | Int[ArrayLike, " N"],
    width: int,
    dtype=jnp.float32,
) -> Float[Array, "B N D"]:
    """Row ``ids[b, n]`` (or ``ids[n]`` for every b) of sequence b's random matrix G_b.

    The row depends only on (seq_keys[b], id): the same token gets the same vector anywhere in a
    sequence, and independent vectors in different sequences.
    """

    def one_row(key, i):
        return jax.random.normal(jax.random.fold_in(key, i), (width,), jnp.float32)

    per_seq = jax.vmap(one_row, in_axes=(None, 0))
    if ids.ndim == 1:
        rows = jax.vmap(per_seq, in_axes=(0, None))(seq_keys, ids)
    else:
        rows = jax.vmap(per_seq, in_axes=(0, 0))(seq_keys, ids)
    return (rows * (1.0 / math.sqrt(width))).astype(dtype)


def random_table(
    seq_keys: Key[Array, " B"], vocab_size: int, width: int, dtype=jnp.float32
) -> Float[Array, "B V D"]:
    """The whole per-sequence matrix G: [B, V, D]. For small V, tests and probes only."""
    return random_rows(seq_keys, jnp.arange(vocab_size), width, dtype)


def random_embed(
    seq_keys: Key[Array, " B"], tokens: Int[ArrayLike, "B T"], width: int, dtype=jnp.float32
) -> Float[Array, "B T D"]:
    """Lexinvariant input embedding G_b[x_{b,t}] without building G."""
    return random_rows(seq_keys, tokens, width, dtype)


def semi_lexinvariant_mask(
    key: jax.Array, batch_size: int, vocab_size: int, p: float
) -> Bool[Array, "B V"]:
    """Bernoulli(p) mask [B, V]: True where sequence b uses the random row for type v."""
    return jax.random.bernoulli(key, p, (batch_size, vocab_size))


def mixed_rows(
    table: Float[Array, "V D"],
    seq_keys: Key[Array, " B"],
    mask: Bool[ArrayLike, "B V"],
    ids: Int[ArrayLike, "B N"] | Int[ArrayLike, " N"],
    dtype=jnp.float32,
) -> Float[Array, "B N D"]:
    """Semi-lexinvariant rows: random row where mask[b, id], learned row otherwise."""
    width = table.shape[-1]
    rand = random_rows(seq_keys, ids, width, dtype)
    learned = jnp.take(table, ids, axis=0).astype(dtype)
    if ids.ndim == 1:
        use_random = mask[:, ids]
        learned = learned[None]
    else:
        use_random = jnp.take_along_axis(mask, ids, axis=1)
    return jnp.where(use_random[..., None], rand, learned)


def chunked_tied_nll(
    h: Float[Array, "B T D"],
    targets: Int[Array, "B T"],
    rows_fn: RowsFn,
    vocab_size: int,
    chunk_size: int,
) -> Float[Array, "B T"]:
    """Per-token cross-entropy ``logsumexp_v(h . row_v) - h . row_target`` over V in chunks.

    ``rows_fn(ids[C])`` returns the output rows of a chunk of vocabulary ids, either shared by
    the batch ([C, D]) or per sequence ([B, C, D]). With ``chunk_size >= vocab_size`` this is one
    ordinary softmax cross-entropy; otherwise a scan keeps a running max and sum per token and the
    chunk body is rematerialised in the backward pass, so memory is O(B*T*C + B*C*D).
    """
    n_chunks = max(1, -(-vocab_size // chunk_size))
    chunk = min(chunk_size, vocab_size)
    ids = jnp.arange(n_chunks * chunk, dtype=jnp.int32).reshape(n_chunks, chunk)

    def chunk_stats(ids_c):
        rows = rows_fn(jnp.minimum(ids_c, vocab_size - 1))
        spec = "btd,cd->btc" if rows.ndim == 2 else "btd,bcd->btc"
        logits = jnp.einsum(spec, h.astype(rows.dtype), rows, preferred_element_type=jnp.float32)
        valid = ids_c < vocab_size
        logits = jnp.where(valid, logits, -1e30)
        target_logit = jnp.sum(jnp.where(ids_c == targets[..., None], logits, 0.0), axis=-1)
        return logits, target_logit

    if n_chunks == 1:
        logits, target_logit = chunk_stats(ids[0])
        return jax.nn.logsumexp(logits, axis=-1) - target_logit

    @jax.checkpoint
    def body(carry, ids_c):
        run_max, run_sum, tgt = carry
        logits, target_logit = chunk_stats(ids_c)
        new_max = jnp.maximum(run_max, jnp.max(logits, axis=-1))
        run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.sum(
            jnp.exp(logits - new_max[..., None]), axis=-1
        )
        return (new_max, run_sum, tgt + target_logit), None

    zeros = jnp.zeros(targets.shape, jnp.float32)
    init = (jnp.full(targets.shape, -1e30, jnp.float32), zeros, zeros)
    (run_max, run_sum, tgt), _ = jax.lax.scan(body, init, ids)
    return run_max + jnp.log(run_sum) - tgt


def tied_logits(
    h: Float[Array, "B T D"], rows: Float[Array, "B V D"] | Float[Array, "V D"]
) -> Float[Array, "B T V"]:
    """Full logits against an explicit table (small V: tests, probes, sampling)."""
    spec = "btd,vd->btv" if rows.ndim == 2 else "btd,bvd->btv"
    return jnp.einsum(spec, h.astype(rows.dtype), rows, preferred_element_type=jnp.float32)
