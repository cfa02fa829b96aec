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

Bad input never vanishes silently: undecodable bytes are replaced (U+FFFD) and the lines
counted, and dropped pairs are counted by reason (``PairStats``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
from jaxtyping import Float32, Int32

from lexlm.data.labelled import decode_counted
from lexlm.errors import ConfigError
from lexlm.paths import as_path

LEE_DOCS_FILE = "lee.cor"
LEE_SIMILARITY_FILE = "similarities0-1.txt"
STSB_FIELDS = 7  # genre, file, year, id, score, sentence1, sentence2


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


def parse_stsb(lines: Iterable[bytes], stats: PairStats | None = None) -> Pairs:
    """STS-B lines (TAB-separated, fields after the 7th ignored) -> the pairs kept, in order.

    Blank lines are skipped. A line with fewer than 7 fields or a 5th field that is not a
    finite number (which covers a header line) is counted in ``unparsable``; a pair with an
    empty sentence (after stripping) in ``empty``. ``stats``, if given, is updated in place
    (``read`` grows by the number of pairs kept).
    """
    stats = PairStats() if stats is None else stats
    left: list[str] = []
    right: list[str] = []
    scores: list[float] = []
    for raw in lines:
        line = decode_counted(raw, stats).rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        score = _score(fields[4]) if len(fields) >= STSB_FIELDS else None
        if score is None:
            stats.unparsable += 1
            continue
        a, b = fields[5].strip(), fields[6].strip()
        if not a or not b:
            stats.empty += 1
            continue
        left.append(a)
        right.append(b)
        scores.append(score)
    stats.read += len(scores)
    return Pairs(tuple(left), tuple(right), np.asarray(scores, np.float32).reshape(-1))


def read_stsb(path: str | os.PathLike, stats: PairStats | None = None) -> Pairs:
    """One STS-B file (``sts-dev.csv`` etc.), local or a URI (``lexlm.paths.as_path``)."""
    file = as_path(path)
    if not file.exists():
        raise ValueError(f"STS-B file not found: {file}")
    return parse_stsb(file.read_bytes().splitlines(), stats)


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
