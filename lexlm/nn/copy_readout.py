"""Copy readout: mix the vocabulary softmax with a pointer distribution over the context.

    p(y_t = v) = g_t softmax(h_t . E)_v + (1 - g_t) sum_{j <= t} a_tj [x_j = v]

with a causal attention a_tj and a gate g_t on the final hidden states z. The pointer's key
at j reads z_j and z_{j-1}; its score adds a learned multiple of [x_t = x_{j-1}], whether
the token before j equals the current one (an induction head: "copy what followed earlier
occurrences of the current token"), and a learned recency slope that favours nearby
positions. The gate is g_t = sigmoid(w . h_t + b), as in pointer-sentinel /
pointer-generator models (Merity et al., 2017; See et al., 2017). This is lexlm's addition
to the lexinvariant LM of Huang et al. (2023), not part of that paper.

Why it exists. A lexinvariant LM can only name a type through that type's random row, so its
vocabulary readout of "the tokens seen so far" is a superposition sum_v w_v G[v] read back
through the same rows: logits linear in the counts plus crosstalk of size ||w|| / sqrt(D).
The ``bag_of_tokens`` columns of the lexinvariant results page measure that bound, next to
the in-context count model. The pointer term names earlier *positions* instead of types, so it
has no crosstalk and its output is exact in the counts. It uses token identity only through
equality ([x_j = v], [x_t = x_{j-1}]), so it is type-agnostic: with it, the LM stays exactly
lexinvariant.

The pure functions below take precomputed attention and gate logits and return per-token
log-likelihoods (training) or full log-probabilities (small vocabularies). ``log_mix`` is safe
where the pointer puts no mass on the target (its log is -inf; the gradient stays finite).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


def shift_right(z: Float[Array, "B T D"]) -> Float[Array, "B T D"]:
    """z_{j-1} at position j (zeros at j = 0)."""
    return jnp.pad(z, ((0, 0), (1, 0), (0, 0)))[:, :-1]


def induction_match(tokens: Int[Array, "B T"]) -> Float[Array, "B T T"]:
    """[x_t = x_{j-1}]: position j followed an earlier occurrence of the current token t
    (0 at j = 0, which has no predecessor): the score of an induction head.

    Equality is all it uses of token identity, as the copy mass does, so it is type-agnostic;
    a lexinvariant LM could compute it from its rows (e_t . e_{j-1} is ~1 for equal tokens,
    N(0, 1/D) otherwise), and the exact form costs no D-wide product."""
    tokens = jnp.asarray(tokens)
    prev = jnp.pad(tokens, ((0, 0), (1, 0)), constant_values=-1)[:, :-1]
    return (tokens[:, :, None] == prev[:, None, :]).astype(jnp.float32)


def causal_attention(
    q: Float[Array, "B T D"],
    k: Float[Array, "B T D"],
    recency: Float[Array, ""],
    extra: Float[Array, "B T T"] | None = None,
) -> Float[Array, "B T T"]:
    """Softmax over j <= t of q_t . k_j / sqrt(D) - recency * (t - j) / T + extra_tj
    (float32)."""
    t = q.shape[1]
    scores = jnp.einsum("btd,bjd->btj", q.astype(jnp.float32), k.astype(jnp.float32))
    scores = scores / jnp.sqrt(jnp.float32(q.shape[-1]))
    if extra is not None:
        scores = scores + extra
    pos = jnp.arange(t)
    dist = (pos[:, None] - pos[None, :]).astype(jnp.float32)  # t - j
    scores = scores - recency * dist[None] / t
    scores = jnp.where(dist[None] >= 0, scores, -jnp.inf)
    return jax.nn.softmax(scores, axis=-1)


def _safe_log(p: Array) -> Array:
    positive = p > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), -jnp.inf)


def log_mix(
    vocab_logp: Float[Array, "..."], copy_p: Float[Array, "..."], gate_logit: Float[Array, "..."]
) -> Float[Array, "..."]:
    """log(g exp(vocab_logp) + (1 - g) copy_p) with g = sigmoid(gate_logit), in log space."""
    return jnp.logaddexp(
        jax.nn.log_sigmoid(gate_logit) + vocab_logp,
        jax.nn.log_sigmoid(-gate_logit) + _safe_log(copy_p),
    )


def target_copy_mass(
    attn: Float[Array, "B T T"], tokens: Int[Array, "B T"], targets: Int[Array, "B T"]
) -> Float[Array, "B T"]:
    """Pointer mass on each target: sum_j attn[b, t, j] [tokens[b, j] == targets[b, t]]."""
    match = tokens[:, None, :] == targets[:, :, None]  # [B, T(t), T(j)]
    return jnp.sum(jnp.where(match, attn, 0.0), axis=-1)


def copy_distribution(
    attn: Float[Array, "B T T"], tokens: Int[Array, "B T"], vocab_size: int
) -> Float[Array, "B T V"]:
    """Pointer distribution over the vocabulary: [B, T, V] (small vocabularies only)."""
    onehot = jax.nn.one_hot(tokens, vocab_size, dtype=attn.dtype)
    return jnp.einsum("btj,bjv->btv", attn, onehot)


def mixed_nll(
    vocab_nll: Float[Array, "B T"],
    attn: Float[Array, "B T T"],
    gate_logit: Float[Array, "B T"],
    tokens: Int[Array, "B T"],
    targets: Int[Array, "B T"],
) -> Float[Array, "B T"]:
    """Per-token loss of the mixture, from the vocabulary part's own per-token loss."""
    copy_p = target_copy_mass(attn, tokens, targets)
    return -log_mix(-vocab_nll.astype(jnp.float32), copy_p, gate_logit.astype(jnp.float32))


def mixed_log_probs(
    vocab_logits: Float[Array, "B T V"],
    attn: Float[Array, "B T T"],
    gate_logit: Float[Array, "B T"],
    tokens: Int[Array, "B T"],
) -> Float[Array, "B T V"]:
    """Full log-probabilities of the mixture (normalised: logsumexp over V is 0)."""
    vocab_logp = jax.nn.log_softmax(vocab_logits.astype(jnp.float32), axis=-1)
    copy_p = copy_distribution(attn, tokens, vocab_logits.shape[-1])
    return log_mix(vocab_logp, copy_p, gate_logit.astype(jnp.float32)[..., None])
