"""In-context symbol tasks for lexinvariant LMs (Huang et al., NeurIPS 2023, the synthetic
in-context reasoning experiment; tasks in the spirit of Wu et al. 2022).

Symbols are extra vocabulary ids after the text tokenizer's (``make_layout``): with a text
vocabulary of V ids and S symbols the model's vocabulary is V + S; the first half of the symbols
may be trained on, the second half is held out. Text never contains a symbol id. Each task
instance is written with distinct symbols (so its context determines every answer) and
structured by characters of the text vocabulary, one per role (``_`` is the pair separator):

    lookup:  k1 v1 _ k2 v2 _ ... kn vn | kj  ->  vj
    copy:    s1 s2 ... sn =                  ->  s1 s2 ... sn
    reverse: s1 s2 ... sn <                  ->  sn ... s2 s1

Keys sit directly before their values and listed symbols are not separated, so each answer needs
only one-token matching (an induction head for lookup and copy, a look-back-to-the-predecessor
head for reverse), which a 2-layer model can implement; a ``k:v`` separator would need a
two-token pattern. Copy and reverse have distinct query markers, or the first answer of each
would be a coin flip between the two.

A row (``pack_tasks``) is a few-shot prompt: instances of *one* task separated by eos, starting
with eos like the evaluation windows of ``lexlm.data.pipeline``. A lexinvariant model sees every
marker as a fresh random vector in every sequence, so it can tell copy from reverse only by the
earlier instances of its row.

``SymbolMix`` mixes task rows into natural-text LM batches for training; it is checkpointable
like the grain iterator it wraps. Everything here is numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from jaxtyping import Bool, Int32

from lexlm.text.tokenizers import EOS_ID, PAD_ID, UNK_ID, Tokenizer

TASKS = ("lookup", "copy", "reverse")
# Per role, in order of preference: the first character of the run's vocabulary not already
# taken is used, so a task is identified by its query marker.
SEPARATOR_CANDIDATES = {
    "pair": (" ", ",", ";"),
    "lookup": ("|", ":", "?", "/"),
    "copy": ("=", ">", "]", "&"),
    "reverse": ("<", "[", "$", "("),
}
# Instance sizes (lookup: pairs; copy, reverse: symbols), drawn uniformly in [lo, hi].
DEFAULT_LENGTHS = {"lookup": (2, 6), "copy": (2, 8), "reverse": (2, 8)}

Tokens = Int32[np.ndarray, "T"]
AnswerMask = Bool[np.ndarray, "T"]
Symbols = Sequence[int] | np.ndarray  # the ids an instance draws from


# ----------------------------------------------------------------------------- symbol layout


@dataclasses.dataclass(frozen=True)
class Separators:
    """Character ids that structure the instances; the three query markers are distinct."""

    pair: int  # between the key/value pairs of a lookup
    lookup: int  # query marker of each task: ends the context, the answer part follows
    copy: int
    reverse: int


@dataclasses.dataclass(frozen=True)
class SymbolLayout:
    """Where the symbols live in the model's vocabulary."""

    text_vocab: int
    n_symbols: int
    train_ids: tuple[int, ...]
    heldout_ids: tuple[int, ...]
    separators: Separators
    separator_chars: dict[str, str]  # role -> character, for reports

    @property
    def vocab_size(self) -> int:
        return self.text_vocab + self.n_symbols

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["vocab_size"] = self.vocab_size
        return d

    @classmethod
    def from_json(cls, d: dict) -> SymbolLayout:
        return cls(
            text_vocab=int(d["text_vocab"]),
            n_symbols=int(d["n_symbols"]),
            train_ids=tuple(int(i) for i in d["train_ids"]),
            heldout_ids=tuple(int(i) for i in d["heldout_ids"]),
            separators=Separators(**{k: int(v) for k, v in d["separators"].items()}),
            separator_chars=dict(d["separator_chars"]),
        )


def _char_id(tok: Tokenizer, candidates, taken) -> tuple[int, str]:
    for ch in candidates:
        ids = tok.encode(ch)
        if len(ids) == 1 and int(ids[0]) not in (UNK_ID, PAD_ID, EOS_ID, *taken):
            return int(ids[0]), ch
    raise ValueError(f"none of the separator characters {candidates!r} is in the vocabulary")


def make_layout(tok: Tokenizer, n_symbols: int) -> SymbolLayout:
    """Symbols after the text vocabulary; the first half trains, the second half is held out."""
    if n_symbols < 4 or n_symbols % 2:
        raise ValueError(f"n_symbols must be even and >= 4, got {n_symbols}")
    v = int(tok.vocab_size)
    ids = list(range(v, v + n_symbols))
    half = n_symbols // 2
    seps: dict[str, int] = {}
    chars: dict[str, str] = {}
    for role, candidates in SEPARATOR_CANDIDATES.items():
        seps[role], chars[role] = _char_id(tok, candidates, seps.values())
    return SymbolLayout(
        v, n_symbols, tuple(ids[:half]), tuple(ids[half:]), Separators(**seps), chars
    )


def as_lengths(raw) -> dict[str, tuple[int, int]]:
    """``{task: (lo, hi)}`` from a dict or ConfigDict of pairs."""
    raw = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    return {k: (int(v[0]), int(v[1])) for k, v in raw.items()}


def symbols_needed(task: str, size: int) -> int:
    """Distinct symbols one instance of ``size`` takes (a lookup pair takes two)."""
    return 2 * size if task == "lookup" else size


# ----------------------------------------------------------------------------- task generators
#
# Each generator returns (tokens, answer); answer[t] marks the positions whose *next*-token
# prediction is an answer token, i.e. tokens[t + 1] is part of the answer.


def _distinct(rng: np.random.Generator, symbols, n: int) -> np.ndarray:
    symbols = np.asarray(symbols, np.int32)
    if n > len(symbols):
        raise ValueError(f"an instance needs {n} distinct symbols, only {len(symbols)} given")
    return rng.choice(symbols, size=n, replace=False).astype(np.int32)


def _with_answer(context: list[int], answer: np.ndarray) -> tuple[Tokens, AnswerMask]:
    tokens = np.concatenate([np.asarray(context, np.int32), answer.astype(np.int32)])
    mask = np.zeros(len(tokens), bool)
    # The position before each answer token predicts it: the last context token and all answer
    # tokens but the last.
    mask[len(context) - 1 : len(tokens) - 1] = True
    return tokens, mask


def lookup_task(
    rng: np.random.Generator, symbols: Symbols, n_pairs: int, seps: Separators
) -> tuple[Tokens, AnswerMask]:
    """``k1 v1 _ ... kn vn | kj`` -> ``vj`` (keys and values all distinct)."""
    s = _distinct(rng, symbols, 2 * n_pairs)
    keys, values = s[:n_pairs], s[n_pairs:]
    context: list[int] = []
    for i in range(n_pairs):
        if i:
            context.append(seps.pair)
        context += [int(keys[i]), int(values[i])]
    j = int(rng.integers(n_pairs))
    context += [seps.lookup, int(keys[j])]
    return _with_answer(context, values[j : j + 1])


def copy_task(
    rng: np.random.Generator, symbols: Symbols, length: int, seps: Separators
) -> tuple[Tokens, AnswerMask]:
    """``s1 .. sn =`` -> ``s1 .. sn``."""
    s = _distinct(rng, symbols, length)
    return _with_answer([*s.tolist(), seps.copy], s)


def reverse_task(
    rng: np.random.Generator, symbols: Symbols, length: int, seps: Separators
) -> tuple[Tokens, AnswerMask]:
    """``s1 .. sn <`` -> ``sn .. s1`` (a fixed permutation of the list)."""
    s = _distinct(rng, symbols, length)
    return _with_answer([*s.tolist(), seps.reverse], s[::-1].copy())


GENERATORS = {"lookup": lookup_task, "copy": copy_task, "reverse": reverse_task}


def pack_tasks(
    rng: np.random.Generator,
    symbols: Symbols,
    length: int,
    seps: Separators,
    task: str,
    lengths: Mapping | None = None,
) -> tuple[Tokens, AnswerMask]:
    """One few-shot row of ``length`` tokens: eos, instance, eos, instance, eos, ..., pad.

    Instances are added while they fit whole, so no answer is cut off (only a first instance
    longer than the row is truncated); each instance's size is drawn uniformly from
    ``lengths[task] = (lo, hi)`` inclusive.
    """
    lo, hi = (lengths or DEFAULT_LENGTHS)[task]
    tokens = np.full(length, PAD_ID, np.int32)
    answer = np.zeros(length, bool)
    tokens[0] = EOS_ID
    used = 1
    while True:
        inst, ans = GENERATORS[task](rng, symbols, int(rng.integers(lo, hi + 1)), seps)
        need = len(inst) + 1  # the instance and its closing eos
        if used + need > length:
            if used == 1:  # nothing fits: keep what does, answers beyond the cut are lost
                n = length - used
                tokens[used:] = inst[:n]
                answer[used : length - 1] = ans[: n - 1]
            break
        tokens[used : used + len(inst)] = inst
        answer[used : used + len(inst)] = ans
        tokens[used + len(inst)] = EOS_ID
        used += need
    return tokens, answer


def task_rows(
    rng: np.random.Generator,
    symbols: Symbols,
    seq_len: int,
    n_rows: int,
    seps: Separators,
    tasks: Sequence[str] = TASKS,
    lengths: Mapping | None = None,
) -> dict[str, np.ndarray]:
    """``n_rows`` packed rows as LM windows: inputs/targets/mask [B, T] and answer [B, T].

    Each row's task is drawn uniformly from ``tasks``.
    """
    packed = []
    for _ in range(n_rows):
        task = tasks[int(rng.integers(len(tasks)))]
        packed.append(pack_tasks(rng, symbols, seq_len + 1, seps, task, lengths))
    rows = np.stack([r for r, _ in packed])
    answers = np.stack([a for _, a in packed])
    targets = rows[:, 1:]
    return {
        "inputs": rows[:, :-1],
        "targets": targets,
        "mask": (targets != PAD_ID).astype(np.float32),
        "answer": answers[:, :-1],
    }


# ----------------------------------------------------------------------------- training mix


class SymbolMix:
    """Natural-text batches with some rows replaced by task rows over training symbols.

    Each row is replaced with probability ``mix_prob`` by a row of a task drawn uniformly; the
    whole row is ordinary LM data (loss on every real token, pad masked), as in the paper's
    mixing of tasks into text. Held-out symbols never appear. Batch i's draws come from
    ``default_rng([seed, i])`` alone, so the state is the inner iterator's state plus i and
    ``set_state(get_state())`` resumes exactly.
    """

    def __init__(
        self,
        inner: Iterator[dict[str, np.ndarray]],
        layout: SymbolLayout,
        seq_len: int,
        mix_prob: float,
        seed: int,
        tasks: Sequence[str] = TASKS,
        lengths: Mapping | None = None,
    ):
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"mix_prob: {mix_prob} is not a probability")
        self.inner, self.layout, self.seq_len = inner, layout, seq_len
        self.mix_prob, self.seed, self.tasks = mix_prob, seed, tuple(tasks)
        self.lengths = dict(lengths or DEFAULT_LENGTHS)
        self.index = 0
        self.rows_replaced = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = {k: np.array(v, copy=True) for k, v in next(self.inner).items()}
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        replace = rng.random(batch["inputs"].shape[0]) < self.mix_prob
        for b in np.flatnonzero(replace):
            row = task_rows(
                rng,
                self.layout.train_ids,
                self.seq_len,
                1,
                self.layout.separators,
                self.tasks,
                self.lengths,
            )
            for k in ("inputs", "targets", "mask"):
                batch[k][b] = row[k][0].astype(batch[k].dtype)
        self.rows_replaced += int(replace.sum())
        return batch

    def get_state(self) -> dict:
        return {"inner": self.inner.get_state(), "index": int(self.index)}

    def set_state(self, state: dict) -> None:
        self.inner.set_state(state["inner"])
        self.index = int(state["index"])
