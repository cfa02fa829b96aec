"""Labelled text for classification: readers for the one data schema, a fixed-seed split, a
word vocabulary, batches.

``read_splits(data_cfg)`` reads train / validation / test from a standard ``data`` block
(``lexlm.data.config``) and says how many classes there are:

* ``source='vader_movies'`` (embedded): the movie-review snippets of Hutto & Gilbert (ICWSM
  2014), each with the mean of human sentiment ratings in [-4, 4]. They ship in the
  ``vaderSentiment==3.3.2`` source archive (MIT licence), which the setup commands fetch from
  the package registry (``pip download``) into ``.venv/lexlm-data`` (or a folder named by
  $LEXLM_VADER_DIR); the archive and the inner tarball are checked against their SHA-256.
  Label 1 if the mean rating is > 0, 0 if < 0; sentences rated exactly 0 are dropped and
  counted. Two classes.
* ``source='files'``, ``format='sst2'``: ``label<TAB>sentence`` files (a header line
  ``label<TAB>sentence`` or ``sentence<TAB>label`` allowed), labels 0 / 1: two classes.
* ``source='files'``, ``format='ag_news'``: ``label,title,description`` CSV, labels 1-based
  (1 World .. 4 Sci/Tech): four classes; text = title + " " + description, label - 1.
* ``source='tfds'``: any TFDS classification set, read with ``tfds.data_source`` (no
  TensorFlow): ``data.splits`` are TFDS split strings (``'train[:95%]'``), the fields named in
  ``data.text_key`` (comma-separated) are joined by a space, ``data.label_key`` holds the
  label; the class count is the label feature's, or ``classes`` where it has none.

Files are named per split (``data.split_files.{train,validation,test}``) or as one file
(``data.files``) that ``fixed_split`` cuts by ``data.holdout`` with ``data.split_seed``, as
the embedded set is. Bad input is never silently kept or dropped: undecodable bytes are
replaced (U+FFFD) and counted; empty texts and lines without a label and a text are dropped
and counted (``ReadStats``); texts longer than ``max_len`` tokens are truncated and counted
(``encode_texts``). A label outside the format's classes, hidden labels (TFDS marks them -1)
and an empty split are one-line ``DataError``s naming the file or split.
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
from typing import Any

import numpy as np
from etils import epath
from jaxtyping import Int, Int32

from lexlm.data.config import (
    SPLITS,
    as_list,
    check_holdout,
    field,
    split_file,
    split_names,
    text_keys,
)
from lexlm.data.word_windows import rank_by_count
from lexlm.errors import ConfigError, DataError
from lexlm.paths import write_text

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
VADER_MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
VADER_FETCH = (
    "python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .venv/lexlm-data"
)
# classes each reader's labels come in (TFDS: the dataset's label feature)
CLASSES = {"vader_movies": 2, "sst2": 2, "ag_news": 4}
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


@dataclasses.dataclass(frozen=True)
class LabelledSplits:
    """What ``read_splits`` read: the three splits, what reading dropped or replaced (per
    split, or ``'all'`` for one file split here), and the number of classes."""

    splits: dict[str, Labelled]
    stats: dict[str, ReadStats]
    classes: int


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


def _integer(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else None


def parse_sst2(data: bytes, name: str = "sst2 file") -> tuple[Labelled, ReadStats]:
    """``label<TAB>sentence`` lines (or ``sentence<TAB>label``, told by a header or by which
    field is the integer). A label other than 0 / 1 is a ``DataError`` naming ``name`` and
    the line."""
    stats, pairs = ReadStats(), []
    for number, line in enumerate(_lines(data, stats), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            stats.unparsable += 1
            continue
        a, b = fields
        if {a.strip().lower(), b.strip().lower()} & {"label", "sentence"}:
            continue  # header
        first, second = _integer(a), _integer(b)
        label, text = (first, b) if first is not None else (second, a)
        if label is None:
            stats.unparsable += 1
            continue
        if label not in (0, 1):
            raise DataError(f"{name}: line {number}: label {label} is not an SST-2 class (0, 1)")
        pairs.append((text, label))
    return finish_pairs(pairs, stats)


def parse_ag_news(data: bytes, name: str = "ag_news file") -> tuple[Labelled, ReadStats]:
    """``label,title,description`` CSV with 1-based labels; label - 1, title + " " + text. A
    label outside 1..4 is a ``DataError`` naming ``name`` and the line."""
    stats, pairs = ReadStats(), []
    text = "\n".join(_lines(data, stats))
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if not row or row[0].strip().lower() == "label":  # blank line or header
            continue
        label = _integer(row[0])
        if len(row) < 2 or label is None:
            stats.unparsable += 1
            continue
        if not 1 <= label <= CLASSES["ag_news"]:
            raise DataError(
                f"{name}: line {reader.line_num}: label {label} is not an AG News class (1-4)"
            )
        pairs.append((" ".join(row[1:]).replace("\\", " "), label - 1))
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


def vader_archive(folder: str = "") -> epath.Path:
    """The vaderSentiment source archive: in ``folder`` if given, else $LEXLM_VADER_DIR, else
    ``.venv/lexlm-data`` under the working directory or the repository."""
    repo = epath.Path(__file__).parent.parent.parent
    candidates = [folder, os.environ.get("LEXLM_VADER_DIR", "")]
    candidates += [os.path.join(".venv", "lexlm-data"), os.fspath(repo / ".venv" / "lexlm-data")]
    for candidate in filter(None, candidates):
        path = epath.Path(candidate) / VADER_SDIST
        if path.exists():
            return path
    raise DataError(
        f"data.source='vader_movies': {VADER_SDIST} not found (looked in "
        f"{[c for c in candidates if c]}); fetch it with: {VADER_FETCH} (or set LEXLM_VADER_DIR)"
    )


def read_vader_movies(folder: str = "") -> tuple[Labelled, ReadStats]:
    """The movie-review snippets from the checksum-checked vaderSentiment archive
    (``vader_archive(folder)`` finds it)."""
    path = vader_archive(folder)
    outer = path.read_bytes()
    if _sha256(outer) != VADER_SDIST_SHA256:
        raise DataError(f"data.source='vader_movies': {path}: SHA-256 mismatch (corrupt download?)")
    with tarfile.open(fileobj=io.BytesIO(outer)) as tar:
        inner = tar.extractfile(VADER_INNER).read()
    if _sha256(inner) != VADER_INNER_SHA256:
        raise DataError(f"data.source='vader_movies': {path}: {VADER_INNER} has the wrong SHA-256")
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


# -- the data block -> three labelled splits -----------------------------------------------------
PARSERS = {"sst2": parse_sst2, "ag_news": parse_ag_news}


def format_classes(data_cfg: Any) -> int | None:
    """The class count the source or format fixes (None for TFDS: the dataset says)."""
    source = field(data_cfg, "source")
    if source == "files":
        return CLASSES.get(field(data_cfg, "format"))
    return CLASSES.get(source)


def _read_file(path: str, fmt: str, where: str) -> tuple[Labelled, ReadStats]:
    with open(path, "rb") as f:
        data = f.read()
    return PARSERS[fmt](data, f"{path} ({where})")


def _tfds_classes(builder, label_key: str, classes: int) -> int:
    if classes:
        return classes
    features = getattr(builder.info, "features", None)
    feature = features[label_key] if features is not None and label_key in features else None
    count = getattr(feature, "num_classes", None)
    if not count:
        raise ConfigError(
            "classes",
            f"{builder.name}'s {label_key!r} feature has no class count; give --config.classes",
        )
    return int(count)


def _read_tfds(data_cfg: Any, classes: int) -> LabelledSplits:
    from lexlm.data.sources import prepared_builder

    builder = prepared_builder(data_cfg)
    label_key = str(field(data_cfg, "label_key"))
    keys = text_keys(data_cfg)
    n = _tfds_classes(builder, label_key, classes)
    known = dict(getattr(builder.info, "splits", {}) or {})
    splits, stats = {}, {}
    for split, name in split_names(data_cfg).items():
        if split not in SPLITS:
            continue
        where = f"data.splits.{split}={name!r} of {builder.name}"
        if known and name.split("[")[0] not in known:
            raise ConfigError(f"data.splits.{split}", f"{builder.name} has no split {name!r}")
        pairs, st = [], ReadStats()
        for record in builder.as_data_source(split=name):
            parts = []
            for key in (*keys, label_key):
                if key not in record:
                    field_name = "data.label_key" if key == label_key else "data.text_key"
                    raise ConfigError(field_name, f"{builder.name} has no field {key!r}")
            for key in keys:
                value = record[key]
                parts.append(decode_counted(value, st) if isinstance(value, bytes) else str(value))
            label = int(record[label_key])
            if label == -1:
                raise DataError(
                    f"{where}: its labels are hidden (-1); point data.splits.{split} at a "
                    "labelled split"
                )
            if not 0 <= label < n:
                raise DataError(f"{where}: label {label} is outside the {n} classes")
            pairs.append((" ".join(parts), label))
        splits[split], stats[split] = finish_pairs(pairs, st)
    return LabelledSplits(splits, stats, n)


def _read_unsplit(data_cfg: Any) -> tuple[Labelled, ReadStats]:
    if field(data_cfg, "source") == "vader_movies":
        return read_vader_movies()
    names = as_list(field(data_cfg, "files"))
    if len(names) != 1:
        raise ConfigError("data.files", f"needs one labelled file (or split_files), got {names}")
    path = os.path.abspath(os.path.expanduser(names[0]))
    if not os.path.isfile(path):
        raise ConfigError("data.files", f"no such file: {names[0]}")
    return _read_file(path, field(data_cfg, "format"), "data.files")


def read_splits(data_cfg: Any, classes: int = 0) -> LabelledSplits:
    """train / validation / test of a ``data`` block (sources and formats: the module
    docstring). ``classes``: the class count where the data does not fix one (TFDS without a
    class feature); elsewhere 0 or the format's own. Every split must hold a labelled text."""
    source = field(data_cfg, "source")
    if source == "tfds":
        out = _read_tfds(data_cfg, int(classes))
    else:
        n = format_classes(data_cfg)
        if n is None:
            raise ConfigError(
                "data.format" if source == "files" else "data.source",
                f"{field(data_cfg, 'format') if source == 'files' else source!r} is not "
                f"labelled text; labelled sources: vader_movies, files with format "
                "sst2 / ag_news, tfds",
            )
        if classes and int(classes) != n:
            raise ConfigError("classes", f"the data has {n} classes, got {classes}")
        per_split = {s: f for s, f in dict(field(data_cfg, "split_files")).items() if f}
        if source == "files" and per_split:
            read = {
                s: _read_file(split_file(data_cfg, s), field(data_cfg, "format"),
                              f"data.split_files.{s}")
                for s in SPLITS
            }  # fmt: skip
            out = LabelledSplits({s: r[0] for s, r in read.items()},
                                 {s: r[1] for s, r in read.items()}, n)  # fmt: skip
        else:
            data, stats = _read_unsplit(data_cfg)
            seed = int(field(data_cfg, "split_seed"))
            out = LabelledSplits(fixed_split(data, field(data_cfg, "holdout"), seed),
                                 {"all": stats}, n)  # fmt: skip
    for name in SPLITS:
        if not len(out.splits[name]):
            where = _split_origin(data_cfg, name)
            raise DataError(f"{where}: split {name!r} has no labelled text")
    return out


def _split_origin(data_cfg: Any, split: str) -> str:
    source = field(data_cfg, "source")
    if source == "tfds":
        name = split_names(data_cfg)[split]
        return f"data.splits.{split}={name!r} of {field(data_cfg, 'tfds_name')}"
    per_split = dict(field(data_cfg, "split_files")).get(split)
    if source == "files" and per_split:
        return f"{per_split} (data.split_files.{split})"
    origin = ", ".join(as_list(field(data_cfg, "files"))) or f"data.source={source!r}"
    return f"{origin} cut by data.holdout"


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

    @property
    def sha256(self) -> str:
        """A hash of the word-to-id map (the file ``save`` writes)."""
        return _sha256(self.text().encode("utf-8"))

    def text(self) -> str:
        return "".join(w + "\n" for w in self.words)

    def save(self, directory) -> None:
        write_text(epath.Path(directory) / "vocab.txt", self.text())

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
    the state is the number of batches drawn, so a resumed run sees the same stream.

    ``batch_size`` is the global batch; with ``hosts=(index, count)`` this process yields
    its contiguous ``batch_size // count`` rows of every global batch."""

    def __init__(
        self, enc: Encoded, batch_size: int, seed: int = 0, hosts: tuple[int, int] = (0, 1)
    ):
        if len(enc.labels) < batch_size:
            raise DataError(
                f"the training split has {len(enc.labels)} texts, fewer than train.batch_size "
                f"= {batch_size}"
            )
        self.enc, self.batch_size, self.seed, self.step = enc, batch_size, seed, 0
        self.per_epoch = len(enc.labels) // batch_size
        index, count = hosts
        per_host = batch_size // count
        self.rows = slice(index * per_host, (index + 1) * per_host)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        idx = shuffled_batch(len(self.enc.labels), self.batch_size, self.seed, self.step)
        idx = idx[self.rows]
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
