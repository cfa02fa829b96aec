"""Word streams and windows for word-pooled and word-level LMs (numpy only, no grain).

A split becomes one *word stream*: an eos word, then each document's words (``segment_words``,
exact round trip) followed by an eos word, the way ``lm_eval_windows`` joins documents with
eos. The eos word is the single unit ``EOS_ID`` and stands for "\\n\\n", as for the token LMs,
so bits per character count the same text for every model.

* ``build_word_stream``: the stream as pieces of at most L units ([N, L], over-long words
  split into continuation pieces, counted in ``stats``), with each piece's characters and
  bytes (from the tokenizer's ``token_chars`` / ``token_bytes``) and each whole word's text.
* ``WordWindowBatches``: training batches of random windows of W+1 consecutive pieces,
  ``{'units': int32 [B, W+1, L], 'word_mask': float32 [B, W]}``. Window starts are drawn from
  ``default_rng([seed, step, host])``, so ``get_state``/``set_state`` (the step) resume exactly.
* ``word_eval_windows``: back-to-back windows in which every piece after the first is a
  target exactly once; ``word_mask`` marks real targets.
* ``WordVocab``: a closed word vocabulary for the word-level baseline (ids 0/1/2 are pad, eos,
  unk as for every tokenizer), and ``SpellingModel``, the documented character model that
  spells its out-of-vocabulary words (see its docstring).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from jaxtyping import Bool, Float32, Int32

from lexlm.paths import as_path
from lexlm.text.tokenizers import EOS_ID, EOS_TEXT, UNK_ID, Tokenizer
from lexlm.text.words import PieceStats, pad_pieces, segment_words, word_pieces


@dataclasses.dataclass
class WordStream:
    """One split as a stream of word pieces. ``words[i]`` is the text of the whole word that
    piece i belongs to (``EOS_TEXT`` for eos words); ``continued[i]`` marks continuation
    pieces; ``chars`` / ``bytes`` count what each piece stands for."""

    units: Int32[np.ndarray, "N L"]
    continued: Bool[np.ndarray, " N"]
    is_eos: Bool[np.ndarray, " N"]
    chars: Int32[np.ndarray, " N"]
    n_bytes: Int32[np.ndarray, " N"]
    words: list[str]
    stats: PieceStats

    def __len__(self) -> int:
        return len(self.units)


def build_word_stream(docs: Sequence[str], tokenizer: Tokenizer, max_units: int) -> WordStream:
    """Documents (already cleaned, non-empty) -> a word stream; see the module docstring."""
    pieces: list[np.ndarray] = [np.array([EOS_ID], np.int32)]
    continued, is_eos, words = [False], [True], [EOS_TEXT]
    stats = PieceStats()
    for doc in docs:
        doc_words = segment_words(doc)
        doc_pieces, doc_continued, doc_stats = word_pieces(
            doc_words, max_units, encoded=encode_words(tokenizer, doc, doc_words)
        )
        stats.add(doc_stats)
        word = -1
        for piece, cont in zip(doc_pieces, doc_continued):
            word += not cont
            pieces.append(piece)
            continued.append(cont)
            is_eos.append(False)
            words.append(doc_words[word])
        pieces.append(np.array([EOS_ID], np.int32))
        continued.append(False)
        is_eos.append(True)
        words.append(EOS_TEXT)
    units = pad_pieces(pieces, max_units)
    return WordStream(
        units=units,
        continued=np.asarray(continued, bool),
        is_eos=np.asarray(is_eos, bool),
        chars=tokenizer.token_chars[units].sum(axis=1).astype(np.int32),
        n_bytes=tokenizer.token_bytes[units].sum(axis=1).astype(np.int32),
        words=words,
        stats=stats,
    )


def encode_words(tokenizer: Tokenizer, text: str, words: Sequence[str]) -> list[np.ndarray]:
    """Unit ids of each word of ``text`` (``words = segment_words(text)``). Byte and character
    tokenizers give one id per byte / character, so the text is encoded once and cut at the
    word lengths; other tokenizers encode word by word."""
    if tokenizer.kind not in ("byte", "char"):
        return [tokenizer.encode(w) for w in words]
    ids = tokenizer.encode(text)
    if tokenizer.kind == "byte":
        lengths = [len(w.encode("utf-8", errors="replace")) for w in words]
    else:
        lengths = [len(w) for w in words]
    if sum(lengths) != len(ids):
        raise AssertionError("tokenizer did not give one id per unit")
    return np.split(ids, np.cumsum(lengths)[:-1]) if words else []


class WordWindowBatches:
    """Endless training batches of random windows of ``window + 1`` consecutive pieces.

    Each host draws its own ``batch_size`` windows per step from
    ``default_rng([seed, step, process_index])``; the state is the step counter."""

    def __init__(
        self,
        units: Int32[np.ndarray, "N ..."],
        window: int,
        batch_size: int,
        seed: int = 0,
        process_index: int = 0,
        key: str = "units",
    ):
        if len(units) < window + 1:
            raise ValueError(
                f"training split has {len(units)} words, fewer than a window of {window + 1}"
            )
        self.units, self.window, self.batch_size = units, window, batch_size
        self.seed, self.process_index, self.key = seed, process_index, key
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.step, self.process_index])
        self.step += 1
        starts = rng.integers(0, len(self.units) - self.window, self.batch_size)
        idx = starts[:, None] + np.arange(self.window + 1)[None, :]
        return {
            self.key: self.units[idx],
            "word_mask": np.ones((self.batch_size, self.window), np.float32),
        }

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


def back_to_back(
    n: int, window: int
) -> tuple[Int32[np.ndarray, "K W1"], Float32[np.ndarray, "K W"]]:
    """Indices of back-to-back windows of ``window + 1`` over ``n`` items (item 0 is only
    context; every later item is a target once) and the target mask. Out-of-range indices
    point at item 0 and are masked."""
    n_targets = max(n - 1, 0)
    k = max(1, -(-n_targets // window))
    idx = np.arange(k)[:, None] * window + np.arange(window + 1)[None, :]
    mask = (idx[:, 1:] < n).astype(np.float32)
    return np.where(idx < n, idx, 0).astype(np.int32), mask


def doc_of_pieces(is_eos: np.ndarray) -> np.ndarray:
    """[N] the document of each piece (or word) of a stream that starts with an eos and closes
    every document with one: -1 for the first eos, and a document's closing eos is its own
    (as in ``lexlm.data.lm_eval_windows``, so both count the same documents)."""
    is_eos = np.asarray(is_eos, bool)
    closed_before = np.concatenate([[0], np.cumsum(is_eos)[:-1]])
    return (closed_before - 1).astype(np.int64)


def unit_of_pieces(is_eos: np.ndarray, n_bytes: np.ndarray) -> np.ndarray:
    """[N] the test unit of each piece (or word) of a stream (``intervals.block_units`` over
    ``doc_of_pieces``): blocks of ``UNIT_BYTES`` bytes within documents, the same blocks as
    ``lexlm.data.lm_eval_windows`` makes of the same documents; -1 for the first eos."""
    from lexlm.eval.intervals import block_units

    doc = doc_of_pieces(is_eos)
    n_docs = int(doc.max()) + 1 if len(doc) else 0
    doc_bytes = doc_sums(doc, n_bytes, n_docs).astype(np.int64)
    return block_units(doc, n_bytes, doc_bytes)


def doc_sums(doc: np.ndarray, values: np.ndarray, n_docs: int) -> np.ndarray:
    """Per-document sums of per-target values (targets with doc -1 are dropped)."""
    doc, values = np.asarray(doc).ravel(), np.asarray(values, np.float64).ravel()
    keep = doc >= 0
    return np.bincount(doc[keep], weights=values[keep], minlength=n_docs)


def word_eval_windows(stream: WordStream, window: int) -> dict[str, np.ndarray]:
    """Every piece after the first is a target once: ``units`` [K, W+1, L], ``word_mask``
    [K, W], and totals over targets (``n_words``, ``n_chars``, ``n_bytes``)."""
    idx, mask = back_to_back(len(stream), window)
    valid = np.concatenate([np.ones_like(mask[:, :1]), mask], axis=1).astype(np.int32)
    units = stream.units[idx] * valid[..., None]
    return {
        "units": units,
        "word_mask": mask,
        "target_pieces": idx[:, 1:],  # [K, W]: the stream index of each target
        "n_words": np.int64(len(stream) - 1),
        "n_chars": np.int64(stream.chars[1:].sum()),
        "n_bytes": np.int64(stream.n_bytes[1:].sum()),
    }


def rank_by_count(counts: Mapping[str, int], min_count: int, limit: int | None = None) -> list[str]:
    """The types seen at least ``min_count`` times, most frequent first (ties by the type),
    at most ``limit`` of them (None = all): the order of every closed vocabulary here."""
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return kept if limit is None else kept[: max(0, limit)]


class WordVocab:
    """Closed word vocabulary for the word-level LM: pad 0, eos 1, unk 2, then the training
    words (whole words, leading whitespace included) seen at least ``min_count`` times, most
    frequent first (ties by the word), at most ``max_size`` ids in all."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, train_words: Sequence[str], min_count: int = 2, max_size: int = 0):
        counts = collections.Counter(w for w in train_words if w != EOS_TEXT)
        limit = max_size - 3 if max_size else None
        return cls(["<pad>", "<eos>", "<unk>", *rank_by_count(counts, min_count, limit)])

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(
        self, words: Sequence[str], is_eos: Sequence[bool] | np.ndarray
    ) -> Int32[np.ndarray, " N"]:
        return np.array(
            [EOS_ID if e else self.index.get(w, UNK_ID) for w, e in zip(words, is_eos)], np.int32
        )

    def save(self, directory: str | os.PathLike) -> None:
        d = as_path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "word_vocab.json").write_text(json.dumps(self.words, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> WordVocab:
        return cls(json.loads((as_path(directory) / "word_vocab.json").read_text()))


class SpellingModel:
    """The character model that spells the word LM's out-of-vocabulary words.

    A unigram model over the characters of the training words plus an end-of-word symbol,
    add-one smoothed: p(c) = (n(c) + 1) / (N + |A| + 2) for the |A| training characters, the
    same for end-of-word (n = the number of training words) and for one "unseen character"
    class (count 0), so that every string has a probability. An OOV word w costs
    -log p(unk | context) - sum_c log p(c) - log p(eow) nats. The spelled strings include
    in-vocabulary ones, so this sub-distribution gives an upper bound on the exact bits, never
    a lower one."""

    def __init__(self, char_counts: dict[str, int], n_words: int):
        self.char_counts = dict(char_counts)
        self.n_words = int(n_words)
        total = sum(self.char_counts.values()) + self.n_words + len(self.char_counts) + 2
        self.log_total = math.log(total)

    @classmethod
    def build(cls, train_words: Sequence[str]) -> SpellingModel:
        words = [w for w in train_words if w != EOS_TEXT]
        return cls(collections.Counter("".join(words)), len(words))

    def nats(self, word: str) -> float:
        cost = self.log_total - math.log(self.n_words + 1)  # end of word
        for ch in word:
            cost += self.log_total - math.log(self.char_counts.get(ch, 0) + 1)
        return cost

    def save(self, directory: str | os.PathLike) -> None:
        d = as_path(directory)
        d.mkdir(parents=True, exist_ok=True)
        payload = {"char_counts": self.char_counts, "n_words": self.n_words}
        (d / "spelling.json").write_text(json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SpellingModel:
        payload = json.loads((as_path(directory) / "spelling.json").read_text())
        return cls(payload["char_counts"], payload["n_words"])


__all__ = [
    "SpellingModel",
    "WordStream",
    "WordVocab",
    "WordWindowBatches",
    "back_to_back",
    "build_word_stream",
    "word_eval_windows",
]
