"""Semantic-similarity evaluation of text embeddings: rank and linear correlation with human
judgements (STS-B pairs, Lee documents), anisotropy, and the loss under typos.

An embedding model enters as an ``EmbedFn``: a list of texts -> a [N, D] float array. Scores
are the cosine of the two embeddings; Spearman and Pearson correlations with the gold scores
are reported x100, as in the literature (SentEval, Reimers & Gurevych 2019).

Every correlation is nan (never an exception) when it is undefined: fewer than 2 items, a
constant side, or a non-finite value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float

from lexlm.data.sts import DocSimilarity, Pairs, doc_chunks

EmbedFn = Callable[[Sequence[str]], np.ndarray]
ANISOTROPY_PAIRS = 256  # anisotropy: the left sentences of (at most) this many first pairs


def rankdata(x: np.ndarray) -> Float[np.ndarray, " N"]:
    """1-based ranks of a 1-D array, ties given the mean of the ranks they span (scipy's
    ``rankdata(method='average')``). ValueError for NaN or an array that is not 1-D."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"rankdata needs a 1-D array, got shape {x.shape}")
    if x.size and np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
        raise ValueError("rankdata: NaN has no rank")
    if not x.size:
        return np.zeros(0, np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start of each run of equal values in sorted order, and the run's 1-based mean rank.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(x.size, np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as float64 1-D; None where a correlation is undefined (documented as nan)."""
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"correlation needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # constant: exactly, not up to rounding
        return None
    return a, b


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ac, bc = a - a.mean(), b - b.mean()
    sab, saa, sbb = float(ac @ bc), float(ac @ ac), float(bc @ bc)
    # sqrt(s * s) == s exactly, so identical (or mirrored) inputs give exactly 1 (or -1).
    return float(np.clip(sab / np.sqrt(saa * sbb), -1.0, 1.0))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r in [-1, 1]; nan if fewer than 2 items, a side is constant or non-finite.
    ValueError if the lengths differ."""
    both = _pair(a, b)
    return float("nan") if both is None else _pearson(*both)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the average ranks (``rankdata``); nan if fewer than 2
    items, a side is constant or non-finite. ValueError if the lengths differ."""
    both = _pair(a, b)
    return float("nan") if both is None else _pearson(rankdata(both[0]), rankdata(both[1]))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> Float[np.ndarray, " N"]:
    """Row-wise cosine of two [N, D] arrays (any norms); a pair with a zero row gives 0."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"cosine_rows needs two [N, D] arrays of one shape, got {a.shape}, {b.shape}"
        )
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("nd,nd->n", a, b)
    return np.divide(dots, norms, out=np.zeros(len(a)), where=norms > 0)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def embed_texts(embed: EmbedFn, texts: Sequence[str], batch: int = 256) -> np.ndarray:
    """[len(texts), D] float64 embeddings, each distinct text embedded once, ``batch`` texts a
    call (rows of repeated texts are copies)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    distinct = list(dict.fromkeys(texts))
    where = {text: k for k, text in enumerate(distinct)}
    parts = []
    for start in range(0, len(distinct), batch):
        chunk = distinct[start : start + batch]
        out = np.asarray(embed(chunk), np.float64)
        if out.ndim != 2 or len(out) != len(chunk):
            raise ValueError(
                f"embed returned shape {out.shape} for {len(chunk)} texts; want [N, D]"
            )
        parts.append(out)
    if not parts:
        return np.zeros((0, 0), np.float64)
    table = np.concatenate(parts)
    return table[np.asarray([where[t] for t in texts], np.int64)]


def mean_offdiagonal_cosine(x: np.ndarray) -> float:
    """Mean cosine over ordered pairs of distinct rows (zero rows count as cosine 0); nan for
    fewer than 2 rows."""
    n = len(x)
    if n < 2:
        return float("nan")
    unit = _unit_rows(np.asarray(x, np.float64))
    gram = unit @ unit.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


def sts_scores(embed: EmbedFn, pairs: Pairs, batch: int = 256) -> dict:
    """``{"spearman", "pearson", "cos", "n", "anisotropy"}`` for ``pairs``.

    Each distinct sentence (either side) is embedded once. Spearman and Pearson (x100) are
    between the pairs' cosines (``cos``, [N]) and the gold scores. ``anisotropy`` is the mean
    cosine between the embeddings of different sentences: the distinct left sentences of the first
    ``ANISOTROPY_PAIRS`` pairs (near 1 = the embeddings crowd into a narrow cone).
    """
    n = len(pairs)
    vectors = embed_texts(embed, list(pairs.left) + list(pairs.right), batch)
    cos = cosine_rows(vectors[:n], vectors[n:]) if n else np.zeros(0)
    return _scored(cos, pairs.scores) | {
        "n": n,
        "anisotropy": _anisotropy(vectors, pairs) if n else float("nan"),
    }


def _scored(cos: np.ndarray, gold) -> dict:
    """Spearman and Pearson x 100 of per-pair cosines against the gold scores, and the
    cosines themselves (``cos``, float64 [N]: the test units of ``mean_spearman_of``)."""
    return {"spearman": 100.0 * spearman(cos, gold), "pearson": 100.0 * pearson(cos, gold),
            "cos": np.asarray(cos, np.float64)}  # fmt: skip


def _anisotropy(vectors: np.ndarray, pairs: Pairs) -> float:
    first_row: dict[str, int] = {}
    for k, text in enumerate(pairs.left[:ANISOTROPY_PAIRS]):
        first_row.setdefault(text, k)
    rows = np.asarray(list(first_row.values()), np.int64)
    return mean_offdiagonal_cosine(vectors[rows])


def doc_embeddings(
    embed: EmbedFn, docs: Sequence[str], max_chars: int, batch: int = 256
) -> np.ndarray:
    """[len(docs), D] unit-norm document embeddings: each document cut by ``doc_chunks``,
    each chunk's embedding L2-normalised, their mean L2-normalised again (so long documents
    are not dominated by a few high-norm chunks). A document with no chunk is a zero row."""
    chunks = [doc_chunks(doc, max_chars) for doc in docs]
    flat = [c for doc in chunks for c in doc]
    unit = _unit_rows(embed_texts(embed, flat, batch))
    width = unit.shape[1] if len(flat) else 0
    out = np.zeros((len(docs), width), np.float64)
    start = 0
    for i, doc in enumerate(chunks):
        if doc:
            out[i] = unit[start : start + len(doc)].mean(axis=0)
        start += len(doc)
    return _unit_rows(out)


def doc_similarity_scores(
    embed: EmbedFn, sim: DocSimilarity, max_chars: int, batch: int = 256
) -> dict:
    """``{"spearman", "pearson", "cos", "n"}``: correlations (x100) between the cosine
    (``cos``) of each pair's document embeddings (``doc_embeddings``) and the human scores;
    n = pairs."""
    vectors = doc_embeddings(embed, sim.docs, max_chars, batch)
    i, j = sim.pairs[:, 0], sim.pairs[:, 1]
    cos = cosine_rows(vectors[i], vectors[j])
    return _scored(cos, sim.scores) | {"n": len(sim.scores)}


def mean_spearman_of(pred: str, gold: str):
    """A metric of per-pair units (``lexlm.eval.intervals``): ``units[pred]`` is [N, D], the
    cosines of N pairs under D draws (training seeds, or training seeds x typo draws),
    ``units[gold]`` [N] the human scores; the metric is the mean over the D draws of each
    draw's Spearman x 100 (nan draws left out; nan when all are). Each draw is scored as one
    model on one typo draw, so the value is what one such draw is expected to score, not the
    score of the cosines averaged over draws (which would be an ensemble, and higher).

        units = {"cos": cos_n_by_d, "gold": scores}
        bootstrap_interval(mean_spearman_of("cos", "gold"), units)  # resamples the pairs
    """

    def metric(units) -> float:
        values = per_draw_spearman(units[pred], units[gold])
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else float("nan")

    return metric


def per_draw_spearman(cos, gold) -> np.ndarray:
    """[D] Spearman x 100 of each column of ``cos`` ([N, D], or [N] for one draw) against
    ``gold`` [N]. ValueError when the shapes disagree."""
    cos = np.asarray(cos, np.float64)
    cos = cos[:, None] if cos.ndim == 1 else cos
    gold = np.asarray(gold, np.float64)
    if cos.ndim != 2 or gold.ndim != 1 or len(cos) != len(gold):
        raise ValueError(
            f"per-pair cosines {cos.shape} and gold scores {gold.shape} disagree: want [N, D], [N]"
        )
    return np.array([100.0 * spearman(cos[:, d], gold) for d in range(cos.shape[1])])


_WORD = re.compile(r"\w+")


def tfidf_embedder(train_texts: Sequence[str], max_vocab: int = 20000) -> EmbedFn:
    """A reference that needs no training: bag-of-words TF-IDF vectors. Words are lower-cased
    ``\\w+`` runs; the vocabulary is the ``max_vocab`` words in most training texts (ties by
    first appearance); idf = log((1 + N) / (1 + df)) + 1 over the N training texts; a text's
    vector is its word counts times idf (words outside the vocabulary are ignored)."""
    df: dict[str, int] = {}
    for text in train_texts:
        for w in dict.fromkeys(_WORD.findall(text.lower())):  # first-appearance order
            df[w] = df.get(w, 0) + 1
    words = sorted(df, key=lambda w: -df[w])[:max_vocab]  # stable: first-seen order on ties
    index = {w: i for i, w in enumerate(words)}
    n = len(train_texts)
    idf = np.log((1 + n) / (1 + np.array([df[w] for w in words], np.float64))) + 1

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), max(len(words), 1)), np.float32)
        for row, text in enumerate(texts):
            for w in _WORD.findall(text.lower()):
                if w in index:
                    out[row, index[w]] += idf[index[w]]
        return out

    return embed
