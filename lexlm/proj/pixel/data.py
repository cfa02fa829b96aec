"""The encoders' text from a config: the ``data`` block (``lexlm.data.sts``,
``lexlm.data.sentence_pairs.sentence_data``) with the ``sentences`` knobs, read once per
process, and the checks that need the data (each a one-line ``DataError`` raised before
anything is written).
"""

from __future__ import annotations

import hashlib
import os

from lexlm.errors import DataError
from lexlm.experiment import identity as ident

_LOADED: dict[str, object] = {}


def data_fields(c) -> dict:
    """What the text depends on: the data block and the sentence knobs."""
    return {**ident.fields(c.data, exclude=()), **ident.flatten(c.sentences, "sentences.")}


def load(c):
    """``SentenceData`` of ``c`` (cached in this process by its fields)."""
    from lexlm.data.config import as_list
    from lexlm.data.sentence_pairs import sentence_data

    key = ident.digest(data_fields(c))
    if key not in _LOADED:
        s = c.sentences
        _LOADED.clear()  # one data set at a time is enough
        _LOADED[key] = sentence_data(
            c.data,
            max_chars=int(s.max_chars),
            sup_min_score=float(s.sup_min_score),
            max_sentences=int(s.max_sentences),
            unlabelled=as_list(s.unlabelled),
        )
    return _LOADED[key]


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def inputs(c) -> dict[str, str]:
    """Fingerprints of the local files the run reads (an edited file is another run)."""
    from lexlm.data.config import input_fingerprints
    from lexlm.proj.pixel.config import unlabelled_files

    out = dict(input_fingerprints(c.data))
    for i, path in enumerate(unlabelled_files(c)):
        out[f"unlabelled.{os.path.basename(path)}#{i}"] = _sha(path)
    return out


def _train_name(c) -> str:
    """How an error names the training data."""
    from lexlm.data.config import as_list, split_file

    if c.data.source == "files":
        if any(dict(c.data.split_files).values()):
            return f"data.split_files.train ({split_file(c.data, 'train')})"
        return f"data.files ({as_list(c.data.files)[0]}, its train split)"
    if c.data.source == "tfds":
        return f"data.splits.train ({c.data.tfds_name} {c.data.splits.train!r})"
    return f"data.source ({c.data.source})"


def check_sizes(c, data, kind: str) -> None:
    """Every stage of ``kind`` has a batch of examples, and each judged split two."""
    from lexlm.data.sentence_pairs import adjacent_pairs
    from lexlm.proj.pixel.stages import plan

    batch = int(c.train.batch_size)
    train = _train_name(c)
    if c.data.source != "lee" and data.stats["train_pairs"] < batch:
        raise DataError(
            f"{train}: {data.stats['train_pairs']} sentence pairs, fewer than one batch "
            f"(train.batch_size = {batch})"
        )
    for stage, _ in plan(c, kind):
        if stage in ("mae",) or stage.startswith("unsup_"):
            n, what = len(data.sentences), "training sentences"
        elif stage.startswith("topical_"):
            n, what = len(adjacent_pairs(data.docs)[0]), "neighbouring-sentence pairs"
        elif stage.startswith("sup_"):
            n = len(data.sup[0]) if data.sup else 0
            what = f"train pairs scored >= {c.sentences.sup_min_score} (sentences.sup_min_score)"
        else:
            continue
        if n < batch:
            raise DataError(
                f"{train}: {n} {what} for stage {stage}, fewer than train.batch_size = {batch}"
            )
    for split, target in (("validation", data.dev), ("test", data.test)):
        n = len(target.pairs) if hasattr(target, "pairs") else len(target)
        if n < 2:
            raise DataError(f"the {split} split has {n} judged pairs; a correlation needs 2")
