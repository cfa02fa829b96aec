"""Text perturbations: the "visually grounded positives" of Pixel Sentence Representation Learning.

Xiao et al. (2024) train a pixel sentence encoder contrastively with positives made by perturbing
a sentence (character typos, word shuffles), and measure robustness as the drop in quality when
the evaluation text has character typos. These are the perturbations, as pure functions: all
randomness comes from the ``numpy.random.Generator`` passed in, so the output is a function of
the text, the arguments and the generator's state (``perturb_many`` makes the generator from a
seed). Nothing depends on Python's string hashing (every alphabet is sorted before sampling).

Character typos (``typo(text, rate, rng, ops)``):

1. The candidate positions are the *letters* of the text: characters with ``str.isalpha()``, in
   any script (Latin, Greek, Cyrillic, CJK ideographs, ...). Digits, punctuation, whitespace and
   combining marks are never edited.
2. The number of edits is ``k = round(rate * n_letters)`` (Python's ``round``: halves go to the
   even integer), raised to 1 when ``rate > 0`` and the text has a letter. ``rate == 0`` returns
   the text unchanged. ``rate`` must lie in [0, 1] (so ``k <= n_letters``).
3. ``k`` distinct letter positions are drawn without replacement (``rng.choice``) and sorted.
   For each position in increasing order an operation is drawn uniformly from ``ops`` (a
   non-empty sequence of names from ``TYPO_OPS``), then its new letter where it needs one.
4. Operations, where ``i`` is the position in the ORIGINAL text:

   - ``delete``: the letter is removed.
   - ``insert``: a letter is inserted right after it.
   - ``substitute``: the letter is replaced by a different letter.
   - ``swap``: the letter changes place with the next character if that is a letter, otherwise
     with the previous character if that is a letter. A letter with no letter on either side
     (a one-letter word such as "a") is substituted instead, and counted as ``substitute``.
     Swapping two equal letters ("ll") leaves the text as it was; it still counts as an edit.

5. New letters come from the text's own alphabet, so any script works (Greek text gets Greek
   letters). The pool for a letter ``c`` is the sorted set of distinct letters of the text with
   the same case as ``c`` (upper, lower, or uncased such as CJK); for ``substitute`` ``c``
   itself is removed from it. If that pool is empty the sorted set of all distinct letters of
   the text other than ``c`` is used (case cannot be kept). If the text has only one distinct
   letter, a substitute is drawn from the ASCII lowercase letters other than ``c.lower()``, in
   upper case when ``c`` is upper case. So with ``substitute`` alone the output only contains
   characters of the input, unless the input has a single distinct letter.
6. Edits are applied to per-character pieces of the original text (piece ``i`` starts as
   ``text[i]``; delete empties it, substitute replaces it, insert appends to it, swap exchanges
   two pieces), and the output is the pieces joined. So every position refers to the original
   text and edits never shift one another. A swap and a later edit at the swapped neighbour act
   on the neighbour's piece, which then holds the swapped-in letter; two swaps of one pair undo
   each other.

Word shuffles (words are ``text.split()``, i.e. runs of non-whitespace):

- ``word_shuffle``: a uniformly random permutation of all words (``rng.permutation``), joined
  with single spaces (so the original whitespace is not kept). It needs at least 2 words.
- ``conditional_shuffle``: the first and the last word stay in place and the words between them
  are permuted, joined with single spaces. It needs at least 4 words (2 words to permute).
- A permutation may be the identity (or swap equal words), so a shuffle can return the same
  words in the same order; that is still a shuffled text, not a fallback.

``perturb(text, kind, rng, rate)`` dispatches on ``kind`` (one of ``PERTURBATIONS``): ``typo`` at
``rate``, one of the two shuffles (``rate`` is checked but unused), or ``combined``: a word-level
shuffle, random or conditional with probability 1/2 each (one ``rng.integers(2)`` draw), then
``typo`` at ``rate`` on the shuffled text.

Fallback (counted, never silent): a text that a perturbation cannot change -- ``typo`` with
``rate > 0`` on a text without letters (such as "123 !!"), a shuffle of a text with too few
words, or ``combined`` where neither step can (too few words for the chosen shuffle, and no
letters or ``rate == 0``) -- is returned exactly as it was and counted in
``PerturbStats.unchanged``. ``typo`` alone at rate 0 is not a fallback (nothing was asked for).

``PerturbStats`` (pass one to accumulate over calls): ``texts`` counts calls (each call of
``typo``, ``word_shuffle``, ``conditional_shuffle`` or ``perturb`` counts once, ``combined``
included), ``edits`` the character edits applied, ``by_op`` the edits per operation (a swap that
fell back counts under ``substitute``), ``unchanged`` the fallbacks above.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Sequence

import numpy as np

TYPO_OPS = ("insert", "delete", "substitute", "swap")
PERTURBATIONS = ("typo", "word_shuffle", "conditional_shuffle", "combined")


def _zero_ops() -> dict[str, int]:
    return dict.fromkeys(TYPO_OPS, 0)


@dataclasses.dataclass
class PerturbStats:
    """Counts over perturbation calls; the module docstring defines each field."""

    texts: int = 0
    edits: int = 0
    by_op: dict[str, int] = dataclasses.field(default_factory=_zero_ops)
    unchanged: int = 0


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    bad = [op for op in ops if op not in TYPO_OPS]
    if not ops or bad:
        raise ValueError(f"ops must be a non-empty subset of {TYPO_OPS}, got {ops!r}")
    return ops


def _check_kind(kind: str) -> None:
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(PERTURBATIONS)}")


def _case(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2


class _Alphabet:
    """The text's distinct letters, sorted, grouped by case; draws new letters (rule 5)."""

    def __init__(self, letters: Sequence[str]):
        self.all = sorted(set(letters))
        self.by_case: dict[int, list[str]] = {}
        for char in self.all:
            self.by_case.setdefault(_case(char), []).append(char)

    def insert(self, char: str, rng: np.random.Generator) -> str:
        pool = self.by_case[_case(char)]  # never empty: ``char`` itself is in it
        return pool[int(rng.integers(len(pool)))]

    def substitute(self, char: str, rng: np.random.Generator) -> str:
        pool = [c for c in self.by_case[_case(char)] if c != char]
        if not pool:
            pool = [c for c in self.all if c != char]
        if not pool:
            pool = [c for c in string.ascii_lowercase if c != char.lower()]
            if char.isupper():
                pool = [c.upper() for c in pool]
        return pool[int(rng.integers(len(pool)))]


def _typo(
    text: str, rate: float, rng: np.random.Generator, ops: tuple[str, ...], stats: PerturbStats
) -> str:
    """``typo`` without the argument checks and the ``texts`` count."""
    if rate == 0:
        return text
    positions = [i for i, char in enumerate(text) if char.isalpha()]
    if not positions:
        stats.unchanged += 1
        return text
    k = max(1, round(rate * len(positions)))
    chosen = sorted(int(j) for j in rng.choice(len(positions), size=k, replace=False))
    alphabet = _Alphabet([text[i] for i in positions])
    pieces = list(text)
    for j in chosen:
        i = positions[j]
        op = ops[int(rng.integers(len(ops)))]
        if op == "swap":
            if i + 1 < len(text) and text[i + 1].isalpha():
                other = i + 1
            elif i > 0 and text[i - 1].isalpha():
                other = i - 1
            else:
                op = "substitute"
        if op == "delete":
            pieces[i] = ""
        elif op == "insert":
            pieces[i] += alphabet.insert(text[i], rng)
        elif op == "substitute":
            pieces[i] = alphabet.substitute(text[i], rng)
        else:
            pieces[i], pieces[other] = pieces[other], pieces[i]
        stats.edits += 1
        stats.by_op[op] += 1
    return "".join(pieces)


def _shuffle(text: str, rng: np.random.Generator, keep_ends: bool, stats: PerturbStats) -> str:
    """``word_shuffle`` (``keep_ends=False``) or ``conditional_shuffle`` without ``texts``."""
    words = text.split()
    if len(words) < (4 if keep_ends else 2):
        stats.unchanged += 1
        return text
    if keep_ends:
        middle = words[1:-1]
        words = [words[0], *(middle[int(i)] for i in rng.permutation(len(middle))), words[-1]]
    else:
        words = [words[int(i)] for i in rng.permutation(len(words))]
    return " ".join(words)


def typo(
    text: str,
    rate: float,
    rng: np.random.Generator,
    ops: Sequence[str] = TYPO_OPS,
    stats: PerturbStats | None = None,
) -> str:
    """``text`` with character typos at ``rate`` of its letters (module docstring, rules 1-6)."""
    _check_rate(rate)
    ops = _check_ops(ops)
    stats = PerturbStats() if stats is None else stats
    stats.texts += 1
    return _typo(text, rate, rng, ops, stats)


def word_shuffle(text: str, rng: np.random.Generator, stats: PerturbStats | None = None) -> str:
    """All words of ``text`` in random order, joined with single spaces (< 2 words: unchanged)."""
    stats = PerturbStats() if stats is None else stats
    stats.texts += 1
    return _shuffle(text, rng, False, stats)


def conditional_shuffle(
    text: str, rng: np.random.Generator, stats: PerturbStats | None = None
) -> str:
    """The words between the first and the last in random order (< 4 words: unchanged)."""
    stats = PerturbStats() if stats is None else stats
    stats.texts += 1
    return _shuffle(text, rng, True, stats)


def perturb(
    text: str,
    kind: str,
    rng: np.random.Generator,
    rate: float = 0.1,
    stats: PerturbStats | None = None,
) -> str:
    """One perturbation of ``text``; ``kind`` is one of ``PERTURBATIONS`` (module docstring)."""
    _check_kind(kind)
    _check_rate(rate)
    stats = PerturbStats() if stats is None else stats
    stats.texts += 1
    if kind == "typo":
        return _typo(text, rate, rng, TYPO_OPS, stats)
    if kind in ("word_shuffle", "conditional_shuffle"):
        return _shuffle(text, rng, kind == "conditional_shuffle", stats)
    # combined: count a fallback only when neither step could change the text.
    step = PerturbStats()
    shuffled = _shuffle(text, rng, bool(rng.integers(2)), step)
    out = _typo(shuffled, rate, rng, TYPO_OPS, step)
    stats.edits += step.edits
    for op, n in step.by_op.items():
        stats.by_op[op] += n
    stats.unchanged += int(step.unchanged == 2 or (step.unchanged == 1 and rate == 0))
    return out


def perturb_many(
    texts: Sequence[str],
    kind: str,
    rate: float,
    seed: int,
    stats: PerturbStats | None = None,
) -> list[str]:
    """``perturb`` of each text in order, all with one ``np.random.default_rng(seed)``."""
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not one string")
    _check_kind(kind)
    _check_rate(rate)
    rng = np.random.default_rng(seed)
    return [perturb(text, kind, rng, rate, stats) for text in texts]
