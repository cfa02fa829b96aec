"""Batches for the sentence encoders (``lexlm.train.contrastive_task``): text -> encoder inputs,
positive pairs (perturbed copies, neighbouring sentences of one document, labelled pairs), and
PIXEL's span masks for MAE.

Featurizers turn texts into ``(inputs, mask)``:

* ``PixelFeatures``: rendered strips (``lexlm.text.render``) cut into [N, P, patch^2] uint8
  patches, mask = text patches + the end patch. Text beyond P patches is cut and counted in
  ``render_stats``; characters without a glyph are drawn as the font's box and counted.
* ``TokenFeatures``: tokenizer ids [N, T] int32 cut to T (cut tokens counted in
  ``truncated_tokens``), mask = ids != 0. A text with no ids keeps one unknown id so that its
  embedding is defined (counted in ``empty``).

Every stream is deterministic in (seed, step) and its state is the step, so a resumed run sees
the same batches (``ClassBatches``' scheme, ``labelled.shuffled_batch``).

``sentence_data(data_cfg, ...)`` is the text a ``data`` block gives the encoders
(``lexlm.data.sts.read_similarity``): training sentences cut to ``max_chars`` (Lee: the
background documents' sentences; STS-B / TFDS: every distinct sentence of the train pairs,
their scores unused), documents for the topical pairs (Lee, or extra unlabelled text files,
one document per blank-line-separated block), the train pairs scored at least
``sup_min_score`` as supervised positives, and the validation and test judgements.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Bool, Int, UInt8

from lexlm.data import sts
from lexlm.data.labelled import shuffled_batch
from lexlm.errors import DataError
from lexlm.paths import as_path
from lexlm.text.perturb import perturb

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before
# whitespace and an upper-case letter, a digit or an opening quote.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(doc: str) -> list[str]:
    """A document's sentences (``_SENTENCE_END``), whitespace-collapsed, empty ones dropped.
    Joined with single spaces they give back ``' '.join(doc.split())`` except that a closing
    quote or bracket right after the end mark goes with its sentence."""
    out = []
    start = 0
    for m in _SENTENCE_END.finditer(doc):
        out.append(doc[start : m.start()] + m.group(0).strip())  # the closing quote stays
        start = m.end()
    out.append(doc[start:])
    return [" ".join(s.split()) for s in out if s.strip()]


class PixelFeatures:
    kind = "pixel"

    def __init__(self, render_cfg=None):
        from lexlm.text.render import RenderConfig, Renderer, RenderStats

        self.renderer = Renderer(render_cfg or RenderConfig(max_patches=64))
        self.render_stats = RenderStats()

    @property
    def max_len(self) -> int:
        return self.renderer.cfg.max_patches

    def __call__(
        self, texts: Sequence[str]
    ) -> tuple[UInt8[np.ndarray, "N P X"], Bool[np.ndarray, "N P"]]:
        r = self.renderer.render(list(texts), self.render_stats)
        n, p = r.mask.shape
        patches = np.ascontiguousarray(r.patches()).reshape(n, p, -1)
        return patches, r.mask

    def stats(self) -> dict:
        return dataclasses.asdict(self.render_stats)


class TokenFeatures:
    kind = "token"

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer, self.max_len = tokenizer, int(max_len)
        self.truncated_texts = self.truncated_tokens = self.empty = self.texts = 0

    def __call__(
        self, texts: Sequence[str]
    ) -> tuple[Int[np.ndarray, "N T"], Bool[np.ndarray, "N T"]]:
        from lexlm.text.tokenizers import UNK_ID

        ids = np.zeros((len(texts), self.max_len), np.int32)
        for i, t in enumerate(texts):
            row = np.asarray(self.tokenizer.encode(t), np.int32)
            if len(row) > self.max_len:
                self.truncated_texts += 1
                self.truncated_tokens += len(row) - self.max_len
                row = row[: self.max_len]
            if len(row) == 0:
                self.empty += 1
                row = np.asarray([UNK_ID], np.int32)
            ids[i, : len(row)] = row
        self.texts += len(texts)
        return ids, ids != 0

    def stats(self) -> dict:
        return {"texts": self.texts, "truncated_texts": self.truncated_texts,
                "truncated_tokens": self.truncated_tokens, "empty": self.empty}  # fmt: skip


def adjacent_pairs(docs: Sequence[Sequence[str]]) -> tuple[list[str], list[str]]:
    """Topical positives (Pixel-Linguist's stage 1 pairs two spans of one page): every pair of
    neighbouring sentences (i, i + 1) of one document."""
    left, right = [], []
    for sents in docs:
        for a, b in itertools.pairwise(sents):
            left.append(a)
            right.append(b)
    return left, right


def text_ids(texts: Sequence[str]) -> Int[np.ndarray, "N 2"]:
    """Each text's identity for the contrastive loss: a 64-bit BLAKE2b hash of its UTF-8 bytes
    as two int32 halves ([N, 2]; JAX keeps 32-bit integers). Equal texts, equal rows."""
    import hashlib

    raw = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts)
    return np.frombuffer(raw, "<i4").reshape(len(texts), 2).astype(np.int32)


class PairBatches:
    """Endless batches of positive pairs.

    ``right=None``: the positive of each sentence is ``perturb(sentence, kind, rate)``, drawn
    with ``default_rng([seed, step])`` (perturbation positives). Otherwise row i of ``left`` and
    of ``right`` are a given pair. Each batch carries the rows' text identities (``a_id``,
    ``b_id``: ``text_ids``), so that a repeated sentence is no negative of itself and a
    perturbation that changed nothing is counted (``contrastive_task``)."""

    def __init__(self, features, left: Sequence[str], right: Sequence[str] | None, batch_size: int,
                 seed: int = 0, kind: str = "typo", rate: float = 0.1):  # fmt: skip
        if right is not None and len(right) != len(left):
            raise ValueError(f"pairs: {len(left)} left sentences but {len(right)} right ones")
        if len(left) < batch_size:
            raise ValueError(f"pairs: {len(left)} training pairs < batch {batch_size}")
        self.features, self.left, self.right = features, list(left), right
        self.batch_size, self.seed, self.kind, self.rate = batch_size, seed, kind, rate
        self.step = 0

    def __iter__(self):
        return self

    def texts(self, step: int) -> tuple[list[str], list[str]]:
        idx = shuffled_batch(len(self.left), self.batch_size, self.seed, step)
        a = [self.left[i] for i in idx]
        if self.right is not None:
            return a, [self.right[i] for i in idx]
        rng = np.random.default_rng([self.seed, step, 1])
        return a, [perturb(t, self.kind, rng, self.rate) for t in a]

    def __next__(self) -> dict[str, np.ndarray]:
        a, b = self.texts(self.step)
        self.step += 1
        xa, ma = self.features(a)
        xb, mb = self.features(b)
        return {"a": xa, "a_mask": ma, "b": xb, "b_mask": mb,
                "weight": np.ones(len(a), np.float32),
                "a_id": text_ids(a), "b_id": text_ids(b)}  # fmt: skip

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


SPAN_WEIGHTS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)  # PIXEL: cumulative weights of span lengths 1..6


def span_mask(
    num_text: Int[np.ndarray, " N"],
    length: int,
    rng: np.random.Generator,
    ratio: float = 0.25,
    cumulative: Sequence[float] = SPAN_WEIGHTS,
) -> Bool[np.ndarray, "N P"]:
    """PIXEL's span masking: for each row, spans of 1..len(cumulative) patches (length k with
    probability cumulative[k-1] - cumulative[k-2]) at uniform starts inside the text patches
    0 .. n-1, until at least ``round(ratio * n)`` (and at least one) are hidden. The end patch
    and padding are never hidden; a row whose spans would hide every text patch keeps its
    last-placed span cut so that one text patch stays visible (a row with a single text patch
    hides it: there is nothing else to predict from)."""
    if not 0 < ratio < 1:
        raise ValueError(f"mae.ratio: must be in (0, 1), got {ratio}")
    probs = np.diff(np.concatenate([[0.0], np.asarray(cumulative, np.float64)]))
    if np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError("mae.span_weights: must be increasing and end at 1")
    out = np.zeros((len(num_text), length), bool)
    for i, n in enumerate(np.asarray(num_text).tolist()):
        n = min(int(n), length)
        if n <= 0:
            continue
        target = max(1, round(ratio * n))
        limit = n - 1 if n > 1 else 1
        target = min(target, limit)
        while out[i, :n].sum() < target:
            k = min(int(rng.choice(len(probs), p=probs)) + 1, n)
            s = int(rng.integers(0, n - k + 1))
            span = np.flatnonzero(~out[i, s : s + k]) + s
            room = limit - int(out[i, :n].sum())
            out[i, span[:room]] = True
    return out


class MAEBatches:
    """Endless MAE batches over ``sentences``: rendered patches, their mask, a span mask drawn
    with ``default_rng([seed, step, 2])``, and the text patches (the end patch excluded)."""

    def __init__(self, features: PixelFeatures, sentences: Sequence[str], batch_size: int,
                 seed: int = 0, ratio: float = 0.25):  # fmt: skip
        if len(sentences) < batch_size:
            raise ValueError(f"mae: {len(sentences)} sentences < batch {batch_size}")
        self.features, self.sentences = features, list(sentences)
        self.batch_size, self.seed, self.ratio, self.step = batch_size, seed, ratio, 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        idx = shuffled_batch(len(self.sentences), self.batch_size, self.seed, self.step)
        rng = np.random.default_rng([self.seed, self.step, 2])
        self.step += 1
        x, mask = self.features([self.sentences[i] for i in idx])
        n_text = mask.sum(1) - 1  # the end patch is the last masked-in patch
        text = np.arange(mask.shape[1])[None, :] < n_text[:, None]
        hidden = span_mask(n_text, mask.shape[1], rng, self.ratio)
        return {"a": x, "a_mask": mask, "hidden": hidden, "text": text}

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


@dataclasses.dataclass
class SentenceData:
    sentences: list[str]  # the unsupervised stages' sentences
    docs: list[list[str]]  # the topical stage: each document's sentences
    sup: tuple[list[str], list[str]] | None  # supervised positive pairs (None: no labels)
    dev: sts.Pairs | sts.DocSimilarity  # selects
    test: sts.Pairs | sts.DocSimilarity  # reports
    stats: dict


def chunked(sentences: Sequence[str], max_chars: int) -> list[str]:
    """Every sentence cut into ``sts.doc_chunks`` of at most ``max_chars`` characters."""
    return [piece for s in sentences for piece in sts.doc_chunks(s, max_chars)]


def text_documents(paths: Sequence[str], max_chars: int) -> list[list[str]]:
    """Unlabelled text files: each blank-line-separated block a document of sentences."""
    docs = []
    for name in paths:
        path = as_path(name)
        if not path.exists():
            raise DataError(f"no such text file: {name}")
        text = path.read_bytes().decode("utf-8", errors="replace")
        for block in text.split("\n\n"):
            sents = chunked(split_sentences(block), max_chars)
            if sents:
                docs.append(sents)
    return docs


def sentence_data(
    data_cfg: Any,
    *,
    max_chars: int = 120,
    sup_min_score: float = 4.0,
    max_sentences: int = 0,
    unlabelled: Sequence[str | os.PathLike] = (),
) -> SentenceData:
    """The encoders' text from a ``data`` block (module docstring). ``max_sentences`` > 0
    keeps the first that many training sentences."""
    read = sts.read_similarity(data_cfg)
    docs = [d for d in (chunked(split_sentences(x), max_chars) for x in read.documents) if d]
    docs += text_documents([os.fspath(p) for p in unlabelled], max_chars)
    sentences = [s for d in docs for s in d]
    sup = None
    if read.train is not None:
        train = read.train
        pair_sentences = chunked([*train.left, *train.right], max_chars)
        sentences = list(dict.fromkeys(pair_sentences)) + sentences
        keep = np.flatnonzero(train.scores >= sup_min_score)
        sup = ([train.left[i] for i in keep], [train.right[i] for i in keep])
    if max_sentences > 0:
        sentences = sentences[:max_sentences]
    stats = dict(read.stats)
    stats.update(
        documents=len(docs),
        sentences=len(sentences),
        train_pairs=len(read.train) if read.train is not None else 0,
        sup_pairs=len(sup[0]) if sup else 0,
        topical_pairs=sum(max(len(d) - 1, 0) for d in docs),
    )
    return SentenceData(sentences, docs, sup, read.validation, read.test, stats)
