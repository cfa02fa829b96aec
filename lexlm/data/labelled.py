"""Labelled text for classification: readers, a fixed-seed split, a word vocabulary, batches.

Sources (``data.source`` of a classification config, ``experiments/lama.py``):

* ``'vader'`` (the embedded default): the movie-review snippets of Hutto & Gilbert (ICWSM
  2014), 10,605 sentences, each with the mean of 10 human sentiment ratings in [-4, 4]. They
  ship in the ``vaderSentiment==3.3.2`` source archive (MIT licence), which the README's setup
  commands fetch from the package registry (``pip download``) into ``.venv/lexlm-data``;
  the archive and the inner tarball are checked against their SHA-256. Label 1 if the mean
  rating is > 0, 0 if < 0; the 37 sentences rated exactly 0 are dropped and counted.
* ``'sst2'``: ``label<TAB>sentence`` files (``train.tsv``, ``dev.tsv``, ``test.tsv``), a
  header line ``label<TAB>sentence`` or ``sentence<TAB>label`` allowed.
* ``'ag_news'``: ``label,title,description`` CSV, labels 1-based (1 World .. 4 Sci/Tech);
  text = title + " " + description, label - 1.
* ``'tfds'``: any TFDS classification set read with ``tfds.data_source`` (no TensorFlow):
  ``data.text_keys`` are joined by a space (``('sentence',)`` for ``glue/sst2``,
  ``('title', 'description')`` for ``ag_news_subset``), ``data.label_key`` holds the label.

A source with a single labelled file (vader, an AG News test.csv) is split train/dev/test by
``fixed_split`` (a seeded permutation, fractions ``data.holdout``); splits that exist are used
as they are. Bad input never vanishes silently: undecodable bytes are replaced (U+FFFD) and
counted, empty texts and unparsable lines are dropped and counted (``ReadStats``), and texts
longer than ``max_len`` tokens are truncated and counted (``encode_texts``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
import tarfile
from collections import Counter
from collections.abc import Sequence

import numpy as np
from etils import epath
from jaxtyping import Int, Int32

from lexlm.data.config import check_holdout
from lexlm.data.word_windows import rank_by_count
from lexlm.errors import ConfigError

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
VADER_MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
VADER_FETCH = (
    "python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .venv/lexlm-data"
)
PAD, UNK = 0, 1
TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


@dataclasses.dataclass
class ReadStats:
    read: int = 0  # examples kept
    empty: int = 0  # dropped: no text
    unparsable: int = 0  # dropped: a line without a label and a text
    neutral: int = 0  # vader: dropped, mean rating exactly 0
    replaced_bytes: int = 0  # lines with invalid UTF-8, decoded with U+FFFD

    def merge(self, other: ReadStats) -> ReadStats:
        return ReadStats(
            *(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other)))
        )


@dataclasses.dataclass(frozen=True)
class Labelled:
    texts: tuple[str, ...]
    labels: Int[np.ndarray, " N"]

    def __len__(self) -> int:
        return len(self.texts)


def decode_counted(raw: bytes, stats) -> str:
    """UTF-8, or with U+FFFD replacements counted in ``stats.replaced_bytes`` (any stats
    record with that counter: ``ReadStats``, ``sts.PairStats``)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.replaced_bytes += 1
        return raw.decode("utf-8", errors="replace")


def _lines(data: bytes, stats: ReadStats) -> list[str]:
    return [decode_counted(line, stats).rstrip("\r") for line in data.split(b"\n")]


def finish_pairs(pairs: list[tuple[str, int]], stats: ReadStats) -> tuple[Labelled, ReadStats]:
    kept = []
    for text, label in pairs:
        text = " ".join(text.split())
        if not text:
            stats.empty += 1
            continue
        kept.append((text, label))
    stats.read = len(kept)
    texts = tuple(t for t, _ in kept)
    return Labelled(texts, np.asarray([lab for _, lab in kept], np.int32)), stats


def parse_sst2(data: bytes) -> tuple[Labelled, ReadStats]:
    """``label<TAB>sentence`` lines (or ``sentence<TAB>label``, told by a header or by which
    field is 0/1)."""
    stats, pairs = ReadStats(), []
    for line in _lines(data, stats):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            stats.unparsable += 1
            continue
        a, b = fields
        if {a.strip().lower(), b.strip().lower()} & {"label", "sentence"}:
            continue  # header
        if a.strip() in ("0", "1"):
            pairs.append((b, int(a)))
        elif b.strip() in ("0", "1"):
            pairs.append((a, int(b)))
        else:
            stats.unparsable += 1
    return finish_pairs(pairs, stats)


def parse_ag_news(data: bytes) -> tuple[Labelled, ReadStats]:
    """``label,title,description`` CSV with 1-based labels; label - 1, title + " " + text."""
    stats, pairs = ReadStats(), []
    text = "\n".join(_lines(data, stats))
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].strip().lower() == "label":  # blank line or header
            continue
        if len(row) < 2 or not row[0].strip().isdigit() or int(row[0]) < 1:
            stats.unparsable += 1
            continue
        pairs.append((" ".join(row[1:]).replace("\\", " "), int(row[0]) - 1))
    return finish_pairs(pairs, stats)


def parse_vader_ratings(data: bytes) -> tuple[Labelled, ReadStats]:
    """``id<TAB>mean rating<TAB>text`` lines; label 1 if the rating is > 0, 0 if < 0, and
    ratings of exactly 0 dropped (counted as ``neutral``)."""
    stats, pairs = ReadStats(), []
    for line in _lines(data, stats):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            rating = float(fields[1])
        except (IndexError, ValueError):
            stats.unparsable += 1
            continue
        if rating == 0:
            stats.neutral += 1
            continue
        pairs.append(("\t".join(fields[2:]), int(rating > 0)))
    return finish_pairs(pairs, stats)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vader_archive(archive_dir: str = "") -> epath.Path:
    """The vaderSentiment source archive: ``archive_dir``, else $LEXLM_VADER_DIR, else
    ``.venv/lexlm-data`` under the working directory or the repository."""
    repo = epath.Path(__file__).parent.parent.parent
    candidates = [archive_dir, os.environ.get("LEXLM_VADER_DIR", "")]
    candidates += [os.path.join(".venv", "lexlm-data"), os.fspath(repo / ".venv" / "lexlm-data")]
    for folder in filter(None, candidates):
        path = epath.Path(folder) / VADER_SDIST
        if path.exists():
            return path
    raise ConfigError(
        "data.archive_dir",
        f"{VADER_SDIST} not found (looked in {[c for c in candidates if c]}); fetch it with: "
        f"{VADER_FETCH}",
    )


def read_vader_movies(archive_dir: str = "") -> tuple[Labelled, ReadStats]:
    """The movie-review snippets from the checksum-checked vaderSentiment archive."""
    path = vader_archive(archive_dir)
    outer = path.read_bytes()
    if _sha256(outer) != VADER_SDIST_SHA256:
        raise ConfigError("data.archive_dir", f"{path}: SHA-256 mismatch (corrupt download?)")
    with tarfile.open(fileobj=io.BytesIO(outer)) as tar:
        inner = tar.extractfile(VADER_INNER).read()
    if _sha256(inner) != VADER_INNER_SHA256:
        raise ConfigError("data.archive_dir", f"{path}: {VADER_INNER} has the wrong SHA-256")
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        return parse_vader_ratings(tar.extractfile(VADER_MOVIES).read())


def fixed_split(data: Labelled, holdout: Sequence[float], seed: int) -> dict[str, Labelled]:
    """train/validation/test by a seeded permutation; ``holdout`` = (validation, test)
    fractions. The same seed gives the same split on every machine (numpy PCG64)."""
    val, test = check_holdout(holdout)
    order = np.random.default_rng(seed).permutation(len(data))
    n_val, n_test = round(val * len(data)), round(test * len(data))
    parts = {
        "validation": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    return {
        name: Labelled(tuple(data.texts[i] for i in idx), data.labels[idx])
        for name, idx in parts.items()
    }


def word_tokens(text: str) -> list[str]:
    """Lower-cased words (with an apostrophe suffix: "don't", "film's") and punctuation."""
    return TOKEN_RE.findall(text.lower())


class ClassVocab:
    """Word vocabulary from the training texts: id 0 = padding, 1 = unknown, then words by
    descending count (ties alphabetical), those seen at least ``min_count`` times, at most
    ``max_size`` ids in all (0 = no cap)."""

    def __init__(self, words: Sequence[str]):
        self.words = tuple(words)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 1, max_size: int = 0) -> ClassVocab:
        counts = Counter(w for t in texts for w in word_tokens(t))
        return cls(rank_by_count(counts, min_count, max_size - 2 if max_size else None))

    @property
    def size(self) -> int:
        return len(self.words) + 2

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, UNK) for w in word_tokens(text)]

    def save(self, directory) -> None:
        (epath.Path(directory) / "vocab.txt").write_text("\n".join(self.words) + "\n")

    @classmethod
    def load(cls, directory) -> ClassVocab:
        return cls((epath.Path(directory) / "vocab.txt").read_text().splitlines())


@dataclasses.dataclass(frozen=True)
class Encoded:
    tokens: Int32[np.ndarray, "N T"]
    labels: Int32[np.ndarray, " N"]
    truncated: int  # texts longer than T tokens, cut to T
    unknown: int  # tokens outside the vocabulary (id UNK)
    empty: int  # texts with no token at all, given one UNK so that they are still scored


def encode_texts(data: Labelled, vocab: ClassVocab, max_len: int) -> Encoded:
    """[N, T] token ids, 0-padded, T = min(max_len, the longest text)."""
    ids = [vocab.encode(t) for t in data.texts]
    empty = sum(not x for x in ids)
    ids = [x or [UNK] for x in ids]
    t = min(max_len, max(map(len, ids), default=1))
    tokens = np.zeros((len(ids), t), np.int32)
    for i, x in enumerate(ids):
        tokens[i, : min(len(x), t)] = x[:t]
    truncated = sum(len(x) > t for x in ids)
    unknown = sum(v == UNK for x in ids for v in x)
    return Encoded(tokens, data.labels.astype(np.int32), truncated, unknown, empty)


def shuffled_batch(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of batch ``step`` of an endless stream over ``n`` examples: epoch e is
    ``default_rng([seed, e])``'s permutation cut into ``n // batch_size`` whole batches."""
    epoch, k = divmod(step, n // batch_size)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size]


class ClassBatches:
    """Endless shuffled training batches: epoch e is ``default_rng([seed, e])``'s permutation;
    the state is the number of batches drawn, so a resumed run sees the same stream."""

    def __init__(self, enc: Encoded, batch_size: int, seed: int = 0):
        if len(enc.labels) < batch_size:
            raise ValueError(f"training split has {len(enc.labels)} texts < batch {batch_size}")
        self.enc, self.batch_size, self.seed, self.step = enc, batch_size, seed, 0
        self.per_epoch = len(enc.labels) // batch_size

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        idx = shuffled_batch(len(self.enc.labels), self.batch_size, self.seed, self.step)
        self.step += 1
        return {
            "tokens": self.enc.tokens[idx],
            "label": self.enc.labels[idx],
            "weight": np.ones(len(idx), np.float32),
        }

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


def eval_batches(enc: Encoded, batch_size: int):
    """Every example once, the last batch padded with weight-0 rows."""
    n = len(enc.labels)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        real = idx < n
        idx = np.where(real, idx, 0)
        yield {
            "tokens": enc.tokens[idx],
            "label": enc.labels[idx],
            "weight": real.astype(np.float32),
        }
