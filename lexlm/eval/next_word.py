"""Next-word accuracy, by training-set frequency bucket and on numbers (pure functions).

Every model is asked for the next word after the same context: the longest run of whole
words just before the target whose characters number at most ``context_chars``
(``context_start``), so byte, character, subword, word and word-pooled models see the same
text. A prediction is correct when its first word (``first_word``: the first word of the
generated text under ``segment_words``, leading whitespace dropped) equals the target's body
exactly.

Buckets follow the paper's thresholds on the target body's count in the *training* split:
``unseen`` (0), ``1-10``, ``11-45`` and ``>45``. (The paper counts over the whole file,
validation included, and puts f = 10 and f = 45 in "low"; we use closed ranges.) Numeracy is
exact match on targets whose body contains a decimal digit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import Bool, Int

from lexlm.text.words import segment_words, word_body

BUCKETS = ("unseen", "1-10", "11-45", ">45")


def frequency_bucket(count: int) -> str:
    if count <= 0:
        return "unseen"
    if count <= 10:
        return "1-10"
    if count <= 45:
        return "11-45"
    return ">45"


def has_digit(word: str) -> bool:
    return any(ch.isdecimal() for ch in word)


def first_word(text: str) -> str:
    """The body of the first word of ``text`` ("" if it has none)."""
    for word in segment_words(text):
        body = word_body(word)
        if body:
            return body
    return ""


def context_start(chars: Int[np.ndarray, " N"], i: int, context_chars: int, max_words: int) -> int:
    """First index j of the longest run of items j..i-1 with at most ``context_chars``
    characters in all and at most ``max_words`` items (at least one item when i > 0)."""
    cum = np.concatenate([[0], np.cumsum(chars, dtype=np.int64)])
    j = int(np.searchsorted(cum, cum[i] - context_chars, side="left"))
    return min(max(j, i - max_words), max(i - 1, 0))


def select_targets(
    words: Sequence[str],
    eligible: Bool[np.ndarray, " N"],
    n: int,
) -> np.ndarray:
    """Up to ``n`` eligible indices, evenly spaced over the split (deterministic)."""
    candidates = np.flatnonzero(eligible & np.array([bool(word_body(w)) for w in words]))
    if len(candidates) <= n:
        return candidates
    return candidates[np.linspace(0, len(candidates) - 1, n).round().astype(int)]


def bigram_predictions(
    train_bodies: Sequence[str], previous: Sequence[str], fallback: str | None = None
) -> list[str]:
    """A reference that needs no training: after each word in ``previous``, the body that
    followed it most often in ``train_bodies`` (ties: the one seen first), else the most
    frequent training body (or ``fallback``). Bodies that are "" (eos) separate nothing: they
    are skipped as predictions."""
    import collections

    following: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    unigram: collections.Counter = collections.Counter()
    for prev, nxt in itertools.pairwise(train_bodies):
        if nxt:
            following[prev][nxt] += 1
            unigram[nxt] += 1
    top = fallback if fallback is not None else (unigram.most_common(1)[0][0] if unigram else "")
    return [following[p].most_common(1)[0][0] if following.get(p) else top for p in previous]


def accuracy_report(
    predictions: Sequence[str],
    targets: Sequence[str],
    train_counts: Mapping[str, int],
) -> dict:
    """Exact-match accuracy overall, per frequency bucket and on numbers, with counts."""
    correct = np.array([p == t for p, t in zip(predictions, targets)], bool)
    buckets = np.array([frequency_bucket(train_counts.get(t, 0)) for t in targets])
    numeric = np.array([has_digit(t) for t in targets], bool)

    def cell(sel):
        n = int(sel.sum())
        return {"accuracy": float(correct[sel].mean()) if n else float("nan"), "n": n}

    return {
        "overall": cell(np.ones(len(targets), bool)),
        "buckets": {b: cell(buckets == b) for b in BUCKETS},
        "numeracy": cell(numeric),
    }
