"""Sentence- and document-similarity judgements for evaluating embeddings (``lexlm.eval.sts``).

* STS Benchmark (Cer et al., SemEval 2017): ``sts-{train,dev,test}.csv``, one pair a line,
  TAB-separated ``genre, file, year, id, score, sentence1, sentence2`` with a mean human
  similarity score in [0, 5]; some lines carry extra trailing source fields, which are
  ignored. The files have no header and contain unbalanced quote characters, so lines are
  split on TAB and never read with CSV quoting.
* Lee document similarity (Lee, Pincombe & Welsh 2005): 50 news documents (``lee.cor``, one
  a line) and the mean human similarity of every pair in [0, 1] (``similarities0-1.txt``, a
  50x50 TAB-separated matrix whose upper triangle holds the judgements). Both ship in the
  ``gensim==4.4.0`` wheel's test data next to the embedded default corpus
  (``lexlm.data.builders.lee_corpus_path``), so this works offline.

``read_similarity(data_cfg)`` reads the judgements a config's ``data`` block names
(``lexlm.data.config``): ``source='lee'`` (the background corpus's documents as training text,
the 50-document set cut by ``data.split_seed`` into two halves of documents: validation and
test, no document in both); ``source='files'`` with ``format='stsb'`` (one file per split in
``data.split_files``, or one file in ``data.files`` cut by a seeded permutation of its pairs into
``data.holdout`` fractions); ``source='tfds'`` (``data.tfds_name`` such as ``glue/stsb``, the
two sentences in the two fields of ``data.text_key``, the score in ``data.label_key``, the
splits as TFDS split strings in ``data.splits``).

Bad input never vanishes silently: undecodable bytes are replaced (U+FFFD) and the lines
counted, and dropped pairs are counted by reason (``PairStats``). Input that cannot be used is
a one-line ``DataError`` naming the file and line (a score outside STS-B's [0, 5]) or the
split (no pairs); a TFDS split with hidden scores (glue/stsb's test, all -1) is a
``ConfigError`` on ``data.splits.<split>``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from jaxtyping import Float32, Int32

from lexlm.data.config import (
    SPLITS,
    as_list,
    check_holdout,
    field,
    split_file,
    split_names,
    text_keys,
)
from lexlm.data.labelled import decode_counted
from lexlm.errors import ConfigError, DataError
from lexlm.paths import as_path

LEE_DOCS_FILE = "lee.cor"
LEE_SIMILARITY_FILE = "similarities0-1.txt"
STSB_FIELDS = 7  # genre, file, year, id, score, sentence1, sentence2
STSB_RANGE = (0.0, 5.0)  # mean human similarity, 0 (unrelated) to 5 (equivalent)
JUDGED_SPLITS = ("validation", "test")


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Sentence pairs with a gold similarity score each (STS-B: 0-5)."""

    left: tuple[str, ...]
    right: tuple[str, ...]
    scores: Float32[np.ndarray, " N"]

    def __post_init__(self) -> None:
        if not len(self.left) == len(self.right) == len(self.scores):
            raise ValueError(
                f"pairs need as many left ({len(self.left)}) as right ({len(self.right)}) "
                f"sentences and scores ({len(self.scores)})"
            )

    def __len__(self) -> int:
        return len(self.left)


@dataclasses.dataclass
class PairStats:
    read: int = 0  # pairs kept
    empty: int = 0  # dropped: an empty sentence
    unparsable: int = 0  # dropped: fewer than 7 fields or a non-numeric (or non-finite) score
    replaced_bytes: int = 0  # lines with invalid UTF-8, decoded with U+FFFD

    def merge(self, other: PairStats) -> PairStats:
        return PairStats(
            *(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other)))
        )


def _score(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_score(score: float, where: str) -> float:
    """``score`` if it lies in STS-B's [0, 5], else a one-line ``DataError`` at ``where``."""
    lo, hi = STSB_RANGE
    if not lo <= score <= hi:
        raise DataError(f"{where}: score {score:g} lies outside STS-B's [{lo:g}, {hi:g}]")
    return score


def parse_stsb(
    lines: Iterable[bytes], stats: PairStats | None = None, name: str = "STS-B input"
) -> Pairs:
    """STS-B lines (TAB-separated, fields after the 7th ignored) -> the pairs kept, in order.

    Blank lines are skipped. A line with fewer than 7 fields or a 5th field that is not a
    finite number (which covers a header line) is counted in ``unparsable``; a pair with an
    empty sentence (after stripping) in ``empty``. A score outside [0, 5] is a ``DataError``
    naming ``name`` and the line number. ``stats``, if given, is updated in place (``read``
    grows by the number of pairs kept).
    """
    stats = PairStats() if stats is None else stats
    left: list[str] = []
    right: list[str] = []
    scores: list[float] = []
    for number, raw in enumerate(lines, 1):
        line = decode_counted(raw, stats).rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        score = _score(fields[4]) if len(fields) >= STSB_FIELDS else None
        if score is None:
            stats.unparsable += 1
            continue
        check_score(score, f"{name} line {number}")
        a, b = fields[5].strip(), fields[6].strip()
        if not a or not b:
            stats.empty += 1
            continue
        left.append(a)
        right.append(b)
        scores.append(score)
    stats.read += len(scores)
    return Pairs(tuple(left), tuple(right), np.asarray(scores, np.float32).reshape(-1))


def read_stsb(
    path: str | os.PathLike, stats: PairStats | None = None, name: str | None = None
) -> Pairs:
    """One STS-B file (``sts-dev.csv`` etc.), local or a URI (``lexlm.paths.as_path``);
    ``name`` (default: the path) is how an error names it."""
    file = as_path(path)
    name = name or str(path)
    if not file.exists():
        raise DataError(f"{name}: STS-B file not found: {file}")
    return parse_stsb(file.read_bytes().splitlines(), stats, name=name)


@dataclasses.dataclass(frozen=True)
class DocSimilarity:
    """Documents and the human similarity of each pair ``(i, j)``, ``i < j``, row-major."""

    docs: tuple[str, ...]
    pairs: Int32[np.ndarray, "M 2"]
    scores: Float32[np.ndarray, " M"]
    replaced_bytes: int = 0  # document lines with invalid UTF-8, decoded with U+FFFD

    def __len__(self) -> int:
        return len(self.scores)


def lee_similarity_paths() -> tuple[str, str]:
    """``(lee.cor, similarities0-1.txt)`` in the installed gensim's test data: the folder of
    the checksum-checked default corpus (``lexlm.data.builders.lee_corpus_path``)."""
    # builders imports TensorFlow Datasets, so only when the files are asked for.
    from lexlm.data.builders import SETUP_HINT, lee_corpus_path

    folder = os.path.dirname(lee_corpus_path())
    paths = tuple(os.path.join(folder, name) for name in (LEE_DOCS_FILE, LEE_SIMILARITY_FILE))
    for path in paths:
        if not as_path(path).exists():
            raise ConfigError(
                "data.source", f"Lee similarity file not found at {path}: {SETUP_HINT}"
            )
    return paths


def parse_doc_similarity(
    doc_lines: Sequence[bytes], matrix_lines: Sequence[bytes]
) -> DocSimilarity:
    """Documents (one a line, stripped) and a square TAB-separated matrix -> every pair
    ``i < j`` with the matrix's upper-triangle value (the diagonal and lower triangle are not
    read). Blank matrix lines are skipped. ValueError if a document is empty (the judgements
    refer to every document), a value is not a finite number, or the matrix is not square
    with one row per document."""
    stats = PairStats()
    docs = tuple(decode_counted(raw, stats).strip() for raw in doc_lines)
    for i, doc in enumerate(docs):
        if not doc:
            raise ValueError(f"document {i} is empty; every document needs a similarity row")
    rows = []
    for raw in matrix_lines:
        text = decode_counted(raw, PairStats()).strip()
        if not text:
            continue
        values = [_score(field) for field in text.split("\t")]
        if None in values:
            raise ValueError(f"similarity row {len(rows)} has a non-numeric value: {text[:60]!r}")
        rows.append(values)
    n = len(docs)
    widths = sorted({len(row) for row in rows})
    if len(rows) != n or widths != [n] * (n > 0):
        raise ValueError(
            f"similarity matrix must be {n}x{n} (one row and column per document), "
            f"found {len(rows)} rows of {widths} values"
        )
    matrix = np.asarray(rows, np.float64).reshape(n, n)
    i, j = np.triu_indices(n, k=1)
    pairs = np.stack([i, j], axis=1).astype(np.int32).reshape(-1, 2)
    return DocSimilarity(docs, pairs, matrix[i, j].astype(np.float32), stats.replaced_bytes)


def read_lee_similarity() -> DocSimilarity:
    """The 50 Lee documents and their 1225 pair judgements (``lee.cor``'s last line has no
    newline and one byte that is not UTF-8, replaced and counted in ``replaced_bytes``)."""
    docs_path, matrix_path = lee_similarity_paths()
    return parse_doc_similarity(
        as_path(docs_path).read_bytes().splitlines(),
        as_path(matrix_path).read_bytes().splitlines(),
    )


def doc_chunks(doc: str, max_chars: int) -> list[str]:
    """A document cut into consecutive chunks of at most ``max_chars`` characters.

    Words (split on whitespace) are packed greedily, joined by single spaces; a word longer
    than ``max_chars`` is cut into pieces of ``max_chars`` (its last piece may share a chunk
    with the next words), so nothing is dropped. When no word is longer than ``max_chars``,
    ``" ".join(chunks) == " ".join(doc.split())``; in every case the chunks hold the same
    non-space characters in the same order. An empty or all-whitespace document gives [].
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    pieces = [
        word[k : k + max_chars] for word in doc.split() for k in range(0, len(word), max_chars)
    ]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) <= max_chars:
            current += " " + piece
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def split_doc_similarity(sim: DocSimilarity, seed: int) -> tuple[DocSimilarity, DocSimilarity]:
    """Two halves of the documents by a seeded permutation; each keeps the pairs inside it
    (the pairs across the halves are judged by neither), so no document is in both."""
    n = len(sim.docs)
    order = np.random.default_rng(seed).permutation(n)
    halves = []
    for part in (np.sort(order[: n // 2]), np.sort(order[n // 2 :])):
        new = -np.ones(n, np.int64)
        new[part] = np.arange(len(part))
        keep = (new[sim.pairs[:, 0]] >= 0) & (new[sim.pairs[:, 1]] >= 0)
        halves.append(
            DocSimilarity(
                docs=tuple(sim.docs[i] for i in part),
                pairs=new[sim.pairs[keep]].astype(np.int32).reshape(-1, 2),
                scores=sim.scores[keep],
            )
        )
    return halves[0], halves[1]


def split_pairs(pairs: Pairs, holdout: Sequence[float], seed: int) -> dict[str, Pairs]:
    """train / validation / test by a seeded permutation of the pairs; ``holdout`` =
    (validation, test) fractions (``lexlm.data.labelled.fixed_split``'s scheme)."""
    val, test = check_holdout(holdout)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val, n_test = round(val * len(pairs)), round(test * len(pairs))
    parts = {"validation": order[:n_val], "test": order[n_val : n_val + n_test],
             "train": order[n_val + n_test :]}  # fmt: skip
    return {
        name: Pairs(
            tuple(pairs.left[i] for i in idx), tuple(pairs.right[i] for i in idx), pairs.scores[idx]
        )
        for name, idx in parts.items()
    }


@dataclasses.dataclass
class SimilarityData:
    """What a ``data`` block gives a sentence encoder: labelled training pairs (STS-B, TFDS)
    or training documents (Lee), and the judgements that select (validation) and report
    (test) a model."""

    train: Pairs | None  # labelled training pairs (None for lee)
    documents: tuple[str, ...]  # lee: the background corpus's distinct documents
    validation: Pairs | DocSimilarity
    test: Pairs | DocSimilarity
    stats: dict[str, dict]  # per split: PairStats as a dict

    def judged(self, split: str) -> Pairs | DocSimilarity:
        if split not in JUDGED_SPLITS:
            raise ConfigError(
                "eval.split", f"unknown {split!r}; judged: {', '.join(JUDGED_SPLITS)}"
            )
        return getattr(self, split)


def read_lee_background() -> tuple[str, ...]:
    """The Lee background corpus's distinct documents, in corpus order (the embedded corpus,
    ``lexlm.data.builders.read_lee_lines``)."""
    from lexlm.data.builders import read_lee_lines

    lines = dict.fromkeys(line.strip() for line in read_lee_lines())
    return tuple(x.decode("utf-8", errors="replace") for x in lines if x)


def _tfds_pairs(data_cfg: Any, split: str) -> tuple[Pairs, PairStats]:
    from lexlm.data.sources import prepared_builder

    keys = text_keys(data_cfg)
    if len(keys) != 2:
        raise ConfigError("data.text_key", f"sentence pairs need two fields, got {keys}")
    label = field(data_cfg, "label_key")
    name = split_names(data_cfg)[split]
    where = f"data.splits.{split}"
    records = prepared_builder(data_cfg).as_data_source(split=name)
    left, right, scores, stats = [], [], [], PairStats()
    for i, record in enumerate(records):
        a, b = (decode_counted(record[k], stats) if isinstance(record[k], bytes)
                else str(record[k]) for k in keys)  # fmt: skip
        if not a.strip() or not b.strip():
            stats.empty += 1
            continue
        score = float(record[label])
        if score == -1:  # glue/stsb's test split: scores withheld
            raise ConfigError(
                where,
                f"split {name!r} has unlabelled pairs (score -1); point it at a labelled split",
            )
        check_score(score, f"{where} ({field(data_cfg, 'tfds_name')} {name!r}) record {i}")
        left.append(a.strip())
        right.append(b.strip())
        scores.append(score)
        stats.read += 1
    pairs = Pairs(tuple(left), tuple(right), np.asarray(scores, np.float32).reshape(-1))
    return _nonempty(pairs, f"{where} ({field(data_cfg, 'tfds_name')} {name!r})"), stats


def _nonempty(pairs: Pairs, where: str) -> Pairs:
    if not len(pairs):
        raise DataError(f"{where}: no sentence pairs")
    return pairs


def _file_pairs(data_cfg: Any) -> dict[str, tuple[Pairs, PairStats]]:
    if any(dict(field(data_cfg, "split_files")).values()):
        out = {}
        for split in SPLITS:
            stats = PairStats()
            path = split_file(data_cfg, split)
            name = f"data.split_files.{split} ({path})"
            out[split] = (_nonempty(read_stsb(path, stats, name), name), stats)
        return out
    names = as_list(field(data_cfg, "files"))
    if len(names) != 1:
        raise ConfigError("data.files", f"STS-B reads one file (or data.split_files), got {names}")
    stats = PairStats()
    path = os.path.abspath(os.path.expanduser(names[0]))
    pairs = read_stsb(path, stats, f"data.files ({path})")
    parts = split_pairs(pairs, field(data_cfg, "holdout"), int(field(data_cfg, "split_seed")))
    for split, part in parts.items():
        _nonempty(part, f"data.files ({path}), cut by data.holdout: the {split} split")
    return {s: (p, stats if s == "train" else PairStats(read=len(p))) for s, p in parts.items()}


def read_similarity(data_cfg: Any) -> SimilarityData:
    """The training text or pairs and the judged splits of a ``data`` block (module
    docstring); a split without pairs is a one-line ``DataError`` naming it."""
    source = field(data_cfg, "source")
    if source == "lee":
        dev, test = split_doc_similarity(read_lee_similarity(), int(field(data_cfg, "split_seed")))
        stats = {s: {"pairs": len(t.pairs), "documents": len(t.docs)}
                 for s, t in (("validation", dev), ("test", test))}  # fmt: skip
        return SimilarityData(None, read_lee_background(), dev, test, stats)
    if source == "files":
        if field(data_cfg, "format") != "stsb":
            raise ConfigError("data.format", "sentence pairs are read from 'stsb' files")
        read = _file_pairs(data_cfg)
    elif source == "tfds":
        read = {s: _tfds_pairs(data_cfg, s) for s in SPLITS}
    else:
        raise ConfigError("data.source", f"{source!r} holds no similarity judgements")
    stats = {s: dataclasses.asdict(st) for s, (_, st) in read.items()}
    return SimilarityData(read["train"][0], (), read["validation"][0], read["test"][0], stats)
