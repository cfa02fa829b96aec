"""The text every model of the word-pooled grid reads: a split's documents, its whole words
(the same for every model), word-pooled streams, and the next-word targets.

The grid reads each split several times (FLOP counting, training, every model's evaluation,
the count reference), so splits and streams are kept in an in-process memo keyed by the data
fields that make them; nothing here writes a file.
"""

from __future__ import annotations

import json

import numpy as np

from lexlm.eval import next_word as nw

_MEMO: dict = {}


def _memo(key, make):
    if key not in _MEMO:
        _MEMO[key] = make()
    return _MEMO[key]


def data_key(cfg, split: str) -> str:
    """What a split's documents depend on: the data fields but the units, and the content of
    the files they read (an edited file is not the memo's old one)."""
    from lexlm.data.config import input_fingerprints
    from lexlm.experiment import identity as ident

    fields = {k: v for k, v in ident.fields(cfg.data).items() if k not in ("unit", "vocab_size")}
    return json.dumps([fields, input_fingerprints(cfg.data), split], sort_keys=True, default=str)


def split_docs(cfg, split: str) -> list[str]:
    """The cleaned documents of ``split`` (``lexlm.data.read_documents``)."""
    from lexlm.data import open_split, read_documents

    return _memo(
        ("docs", data_key(cfg, split)),
        lambda: read_documents(open_split(cfg.data, split), name=split),
    )


def split_words(cfg, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The split's whole words, model-independent: (texts, is_eos, characters per word), in
    the word-stream order (an eos word first and after every document)."""
    return _memo(("words", data_key(cfg, split)), lambda: _split_words(cfg, split))


def _split_words(cfg, split: str):
    from lexlm.text.tokenizers import EOS_TEXT
    from lexlm.text.words import segment_words

    texts, is_eos = [EOS_TEXT], [True]
    for doc in split_docs(cfg, split):
        words = segment_words(doc)
        texts += [*words, EOS_TEXT]
        is_eos += [False] * len(words) + [True]
    chars = np.array([len(t) for t in texts], np.int64)
    return texts, np.asarray(is_eos, bool), chars


def word_stream(cfg, tok, split: str):
    """The split as word pieces of at most ``cfg.max_units`` units of ``tok``."""
    from lexlm.data.word_windows import build_word_stream

    key = ("stream", data_key(cfg, split), tok.kind, tok.vocab_size, int(cfg.max_units))
    return _memo(key, lambda: build_word_stream(split_docs(cfg, split), tok, int(cfg.max_units)))


def eval_targets(texts, is_eos, max_units: int, n: int) -> np.ndarray:
    """Up to n target word indices, the same for every model: not eos, not the first word,
    and at most ``max_units`` UTF-8 bytes (so one piece whether units are bytes or chars)."""
    fits = np.array([len(t.encode("utf-8")) <= max_units for t in texts], bool)
    eligible = fits & ~is_eos & (np.arange(len(texts)) > 0)
    return nw.select_targets(texts, eligible, n)


def targets_of(cfg, split: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(texts, is_eos, chars, target indices) of a run's evaluation on ``split``, from its
    ``eval.targets`` and ``eval.max_units``."""
    texts, is_eos, chars = split_words(cfg, split)
    targets = eval_targets(texts, is_eos, int(cfg.eval.max_units), int(cfg.eval.targets))
    return texts, is_eos, chars, targets
