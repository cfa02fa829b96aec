"""The data block of ``experiments/pixel_sentence.py``: training sentences and pairs, and the
human similarity judgments that select (dev) and report (test) a model.

* ``lee`` (embedded, the tiny config): training text is the Lee background corpus (300 news
  documents in the gensim wheel's test data), cut into sentences; the topical stage pairs
  neighbouring sentences of one document. Evaluation is the separate 50-document Lee set with
  its 50 x 50 matrix of mean human similarity ratings: the documents are split by a fixed seed
  into two halves, dev = the 300 pairs inside one half, test = the 300 inside the other (no
  document is in both). A document's embedding is the mean of its chunks'
  (``lexlm.eval.sts.doc_similarity_scores``).
* ``stsb``: STS Benchmark files (tab-separated genre, file, year, id, score, s1, s2); the
  unsupervised stages use every distinct train sentence (labels unused), the supervised stage
  the train pairs scored at least ``sup_min_score`` of 5. Optional ``unlabelled`` text files
  (one document per blank-line-separated block) add sentences and topical pairs.
* ``tfds``: a TFDS dataset with sentence1 / sentence2 / label fields (``glue/stsb``). Its test
  labels are hidden (-1) and refused: point ``tfds_splits.test`` at a labelled split.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from lexlm.data import sts
from lexlm.data.labelled import decode_counted
from lexlm.data.sentence_pairs import split_sentences
from lexlm.errors import ConfigError
from lexlm.paths import as_path

SOURCES = ("lee", "stsb", "tfds")
SPLITS = ("train", "validation", "test")


def default_data_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.source = "lee"
    c.files = {"train": "", "validation": "", "test": ""}  # stsb
    c.unlabelled = ""  # comma-separated text files, documents separated by blank lines
    c.tfds_name = ""  # e.g. 'glue/stsb'
    c.tfds_splits = {"train": "train", "validation": "validation", "test": "test"}
    c.tfds_keys = ("sentence1", "sentence2", "label")
    c.data_dir = ""
    c.eval_split_seed = 0  # lee: which documents are dev and which test
    c.max_chars = 120  # training sentences and document chunks are cut to this many characters
    c.sup_min_score = 4.0  # stsb / tfds: train pairs at least this similar are positives
    c.max_sentences = 0  # cap on unsupervised sentences (0 = all)
    return c


@dataclasses.dataclass
class SentenceData:
    sentences: list[str]  # unsupervised stages
    docs: list[list[str]]  # topical stage: each document's sentences
    sup: tuple[list[str], list[str]] | None  # supervised positive pairs
    dev: object  # sts.Pairs or sts.DocSimilarity
    test: object
    stats: dict


def split_doc_similarity(sim: sts.DocSimilarity, seed: int):
    """Two halves of the documents by a fixed permutation; each keeps the pairs inside it."""
    n = len(sim.docs)
    order = np.random.default_rng(seed).permutation(n)
    halves = []
    for part in (np.sort(order[: n // 2]), np.sort(order[n // 2 :])):
        new = -np.ones(n, np.int64)
        new[part] = np.arange(len(part))
        keep = (new[sim.pairs[:, 0]] >= 0) & (new[sim.pairs[:, 1]] >= 0)
        halves.append(
            sts.DocSimilarity(
                docs=tuple(sim.docs[i] for i in part),
                pairs=new[sim.pairs[keep]].astype(np.int32),
                scores=sim.scores[keep],
            )
        )
    return halves[0], halves[1]


def chunked(sentences, max_chars: int) -> list[str]:
    return [piece for s in sentences for piece in sts.doc_chunks(s, max_chars)]


def _unlabelled_docs(c) -> list[list[str]]:
    docs = []
    for name in filter(None, (s.strip() for s in str(c.unlabelled).split(","))):
        path = as_path(name)
        if not path.exists():
            raise ConfigError("data.unlabelled", f"no such file: {name}")
        text = path.read_bytes().decode("utf-8", errors="replace")
        for block in text.split("\n\n"):
            sents = chunked(split_sentences(block), int(c.max_chars))
            if sents:
                docs.append(sents)
    return docs


def _lee(c) -> SentenceData:
    from lexlm.data.builders import _read_lee_lines

    docs = []
    for line in dict.fromkeys(_read_lee_lines()):  # 293 distinct documents, corpus order
        sents = chunked(split_sentences(line.decode("utf-8", errors="replace")), int(c.max_chars))
        if sents:
            docs.append(sents)
    dev, test = split_doc_similarity(sts.read_lee_similarity(), int(c.eval_split_seed))
    sentences = [s for d in docs for s in d]
    return SentenceData(sentences, docs, None, dev, test, {"documents": len(docs)})


def _file(c, split: str) -> str:
    name = c.files[split]
    if not name:
        raise ConfigError(f"data.files.{split}", f"source {c.source!r} needs a file for {split}")
    if not as_path(name).exists():
        raise ConfigError(f"data.files.{split}", f"no such file: {name}")
    return name


def _tfds_pairs(c, split: str) -> tuple[sts.Pairs, sts.PairStats]:
    from lexlm.data.sources import prepared_builder

    builder = prepared_builder({"source": "tfds", "tfds_name": c.tfds_name, "data_dir": c.data_dir})
    k1, k2, kl = tuple(c.tfds_keys)
    left, right, scores, stats = [], [], [], sts.PairStats()
    for record in builder.as_data_source(split=c.tfds_splits[split]):
        a, b = (decode_counted(record[k], stats) if isinstance(record[k], bytes)
                else str(record[k]) for k in (k1, k2))  # fmt: skip
        if not a.strip() or not b.strip():
            stats.empty += 1
            continue
        left.append(a.strip())
        right.append(b.strip())
        scores.append(float(record[kl]))
        stats.read += 1
    pairs = sts.Pairs(tuple(left), tuple(right), np.asarray(scores, np.float32))
    if len(pairs) and float(pairs.scores.min()) < 0:
        raise ConfigError(
            f"data.tfds_splits.{split}",
            f"split {c.tfds_splits[split]!r} has unlabelled pairs (score -1); point it at a "
            "labelled split",
        )
    return pairs, stats


def _pairs(c) -> SentenceData:
    if c.source == "tfds":
        if not c.tfds_name:
            raise ConfigError("data.tfds_name", "source 'tfds' needs a dataset name")
        read = {s: _tfds_pairs(c, s) for s in SPLITS}
    else:
        read = {}
        for s in SPLITS:
            stats = sts.PairStats()
            read[s] = (sts.read_stsb(_file(c, s), stats), stats)
    for s, (p, _) in read.items():
        if not len(p):
            raise ConfigError("data", f"split {s!r} has no sentence pairs")
    train = read["train"][0]
    sentences = list(dict.fromkeys(chunked([*train.left, *train.right], int(c.max_chars))))
    docs = _unlabelled_docs(c)
    sentences += [s for d in docs for s in d]
    keep = np.flatnonzero(train.scores >= float(c.sup_min_score))
    sup = ([train.left[i] for i in keep], [train.right[i] for i in keep])
    stats = {s: dataclasses.asdict(st) for s, (_, st) in read.items()}
    return SentenceData(sentences, docs, sup, read["validation"][0], read["test"][0], stats)


def load_data(c) -> SentenceData:
    if c.source not in SOURCES:
        raise ConfigError("data.source", f"{c.source!r} is not one of {SOURCES}")
    data = _lee(c) if c.source == "lee" else _pairs(c)
    if int(c.max_sentences) > 0 and len(data.sentences) > int(c.max_sentences):
        data.sentences = data.sentences[: int(c.max_sentences)]
    if not data.sentences:
        raise ConfigError("data", "no training sentences")
    data.stats["sentences"] = len(data.sentences)
    data.stats["sup_pairs"] = len(data.sup[0]) if data.sup else 0
    data.stats["topical_pairs"] = sum(max(len(d) - 1, 0) for d in data.docs)
    return data
