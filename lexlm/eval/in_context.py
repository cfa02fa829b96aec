"""References and checks for models that predict from their context (lexinvariant LMs).

A lexinvariant LM (Huang et al., 2023, section 4.1) knows nothing about a token but what its
context says, so its loss at position t is judged against predictors that need no training:

* ``in_context_unigram_nll``: an add-alpha count model over the tokens seen so far in the
  window, the simplest lexinvariant predictor. Streaming over positions with a [batch, V]
  count table, so it runs at V = 32k and long contexts (never a [N, T, V] one-hot).
* ``random_readout_unigram_nll``: the same count model's log-probabilities written into a
  width-D hidden state as a superposition of the seen types' random rows, h = sum_v w_v g_v, and
  read out through the tied random unembedding, logits_u = h . g_u. With unit-norm random rows
  every logit picks up crosstalk of about ||w|| / sqrt(D), so this is what a lexinvariant LM
  of width D that computed the count model exactly would still pay.
* ``bag_of_tokens_nll``: what uniform attention over the context plus the tied random readout
  reaches, logits linear in the in-context counts, the strategy a lexinvariant LM learns first.
* ``repeated_span_windows`` + ``copy_gain``: the mechanism check. Real text windows whose second
  half repeats the first; a model that can use its context (an induction/copy circuit) has a
  far lower loss on the second copy than on the first.

Positions are 1-based in tables (position 1 predicts the second token from the first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float, Int

from lexlm.text import PAD_ID


def bucket_ranges(left_edges, length: int) -> list[tuple[int, int]]:
    """Inclusive 1-based position ranges from ascending left edges; the last runs to ``length``.

    ``bucket_ranges((1, 4, 16), 20) == [(1, 3), (4, 15), (16, 20)]``; edges past ``length`` are
    dropped, so one bucket list serves every context length.
    """
    edges = sorted({int(e) for e in left_edges if 1 <= int(e) <= length})
    if not edges or edges[0] != 1:
        edges = [1, *edges]
    rights = [e - 1 for e in edges[1:]] + [length]
    return list(zip(edges, rights, strict=True))


def bucket_means(values: Float[np.ndarray, " T"] | Sequence[float], ranges) -> list[float]:
    """Mean of a per-position array (index 0 = position 1) over each inclusive range."""
    v = np.asarray(values, np.float64)
    return [float(v[lo - 1 : hi].mean()) for lo, hi in ranges]


def in_context_unigram_nll(
    windows: dict[str, np.ndarray],
    vocab_size: int,
    alpha: float = 0.1,
    batch_windows: int = 256,
) -> Float[np.ndarray, " T"]:
    """Mean per-position loss [T] of p(y_t = v) = (c_t(v) + alpha) / (t + alpha V), where
    c_t(v) counts v among inputs x_1..x_t of the window; masked targets are left out."""
    x, y, mask = windows["inputs"], windows["targets"], windows["mask"]
    n, t_len = x.shape
    sums = np.zeros(t_len, np.float64)
    for start in range(0, n, batch_windows):
        xb, yb = x[start : start + batch_windows], y[start : start + batch_windows]
        mb = mask[start : start + batch_windows].astype(np.float64)
        rows = np.arange(xb.shape[0])
        counts = np.zeros((xb.shape[0], vocab_size), np.float32)
        for t in range(t_len):
            counts[rows, xb[:, t]] += 1.0
            seen = counts[rows, yb[:, t]]
            nll = -np.log((seen + alpha) / (t + 1 + alpha * vocab_size))
            sums[t] += float((nll * mb[:, t]).sum())
    return sums / np.maximum(mask.sum(0), 1.0)


def count_log_probs(
    inputs: Int[np.ndarray, " T"], vocab_size: int, alpha: float = 0.1
) -> Float[np.ndarray, "T V"]:
    """log p of the in-context add-alpha count model at every position of one window."""
    onehot = np.zeros((inputs.shape[0], vocab_size), np.float64)
    onehot[np.arange(inputs.shape[0]), inputs] = 1.0
    counts = np.cumsum(onehot, axis=0)
    t = np.arange(1, inputs.shape[0] + 1)[:, None]
    return np.log((counts + alpha) / (t + alpha * vocab_size))


def random_readout_unigram_nll(
    windows: dict[str, np.ndarray],
    vocab_size: int,
    width: int,
    seed: int = 0,
    alpha: float = 0.1,
    max_windows: int = 64,
) -> Float[np.ndarray, " T"]:
    """Per-position loss [T] of the count model read out through random rows of width D.

    For each window a fresh G [V, D] ~ N(0, I/D) (as ``lexlm.nn.lexinvariant`` draws), hidden
    state h_t = sum_v w_tv g_v with w_tv the count model's log-probability of v minus that of an
    unseen type (zero for unseen types, whose rows would only add crosstalk), logits
    h_t . g_u = (w_t G G^T)_u. Exact at D -> infinity (G G^T -> I); small D adds crosstalk.
    Uses at most ``max_windows`` windows: it builds a [V, V] Gram matrix per window.
    """
    rng = np.random.default_rng(seed)
    x, y, mask = windows["inputs"], windows["targets"], windows["mask"]
    n = min(x.shape[0], max_windows)
    sums = np.zeros(x.shape[1], np.float64)
    for i in range(n):
        g = rng.standard_normal((vocab_size, width)) / math.sqrt(width)
        w = count_log_probs(x[i], vocab_size, alpha)
        # Relative to an unseen type's log-probability, so unseen rows add no crosstalk.
        w = w - w.min(axis=1, keepdims=True)
        logits = w @ (g @ g.T)
        logits -= logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(axis=1))
        nll = log_z - logits[np.arange(x.shape[1]), y[i]]
        sums += nll * mask[i]
    return sums / np.maximum(mask[:n].sum(0), 1.0)


def bag_of_tokens_nll(
    windows: dict[str, np.ndarray],
    vocab_size: int,
    beta: float,
    width: int | None = None,
    seed: int = 0,
    max_windows: int = 64,
) -> Float[np.ndarray, " T"]:
    """Per-position loss [T] of the readout that uniform causal attention gives a lexinvariant
    LM: h_t = beta * mean_{s <= t} g_{x_s}, logits h_t . g_u = beta * (c_t G G^T)_u / t.

    Logits are *linear* in the in-context counts (the count model's are logarithmic), so this
    is the bag-of-tokens strategy's ceiling; ``width=None`` uses exactly orthogonal rows
    (G G^T = I, no crosstalk), else random rows of that width as the model draws them.
    """
    rng = np.random.default_rng(seed)
    x, y, mask = windows["inputs"], windows["targets"], windows["mask"]
    n, t_len = min(x.shape[0], max_windows), x.shape[1]
    sums = np.zeros(t_len, np.float64)
    steps = np.arange(1, t_len + 1)[:, None]
    for i in range(n):
        onehot = np.zeros((t_len, vocab_size))
        onehot[np.arange(t_len), x[i]] = 1.0
        freq = np.cumsum(onehot, axis=0) / steps
        if width is not None:
            g = rng.standard_normal((vocab_size, width)) / math.sqrt(width)
            freq = freq @ (g @ g.T)
        logits = beta * freq
        logits -= logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(axis=1))
        sums += (log_z - logits[np.arange(t_len), y[i]]) * mask[i]
    return sums / np.maximum(mask[:n].sum(0), 1.0)


def best_bag_scale(windows, vocab_size: int, width: int | None, betas=(4, 8, 16, 32, 64)):
    """The beta of ``bag_of_tokens_nll`` with the lowest mean loss on ``windows`` (use a
    validation split, then report another)."""
    losses = [float(bag_of_tokens_nll(windows, vocab_size, b, width).mean()) for b in betas]
    return float(betas[int(np.argmin(losses))])


def repeated_span_windows(windows: dict[str, np.ndarray], span: int) -> dict[str, np.ndarray]:
    """Windows of 2 * span tokens: a real span of the text, then the same span again.

    Built from the first ``span`` inputs of each window that has at least ``span + 1`` real
    tokens. Targets are the next token of the doubled sequence, so positions span..2*span-2
    (0-based) predict tokens of the second copy that the first copy shows; the last target is
    masked (what follows the repeat is not in the text).
    """
    x, mask = windows["inputs"], windows["mask"]
    if span < 2 or 2 * span > x.shape[1]:
        raise ValueError(
            f"span: needs 2 <= span and 2 * span <= window length, got span={span} "
            f"for windows of {x.shape[1]}"
        )
    keep = mask[:, :span].sum(1) >= span
    if not keep.any():
        raise ValueError(f"span: no window has {span} real tokens")
    s = x[keep, :span]
    doubled = np.concatenate([s, s, np.full((s.shape[0], 1), PAD_ID, s.dtype)], axis=1)
    new_mask = np.ones((s.shape[0], 2 * span), np.float32)
    new_mask[:, -1] = 0.0
    return {"inputs": doubled[:, :-1], "targets": doubled[:, 1:], "mask": new_mask}


def copy_gain(
    loss_by_position: Float[np.ndarray, " T"] | Sequence[float], span: int
) -> dict[str, float]:
    """Mean loss on the first copy (targets 1..span-1 of the span) and on the second copy
    (the same targets, predicted with the first copy in context), and their difference.

    Target index span-1 (0-based) is the jump from the end of the span back to its start,
    which the text does not contain, so it belongs to neither copy.
    """
    loss = np.asarray(loss_by_position, np.float64)
    first = float(loss[: span - 1].mean())
    second = float(loss[span : 2 * span - 1].mean())
    return {"first_copy": first, "second_copy": second, "drop": first - second}
