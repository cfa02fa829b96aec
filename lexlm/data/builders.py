"""TFDS builders for the corpora lexlm can build offline: the embedded default and local files.

Both write `array_record`, so they are read back with `tfds.data_source` (random access, no
TensorFlow) and fed to grain. Each has one feature, `{'text': Text}`, and the splits
train / validation / test.

- `LeeCorpus`: the Lee background news corpus (Lee, Pincombe & Welsh 2005: 300 Australian
  news articles, one per line) from the `gensim==4.4.0` wheel's test data. Real human-written
  text that a registry package ships, so it works without the internet; its sha256 is checked.
  Seven articles appear twice; the second copies are dropped so that no test document is also
  a training document, leaving 293. Split by document with a fixed permutation:
  263 train / 15 validation / 15 test.
- `LocalText`: text files or folders named by the user, split into documents by line,
  paragraph or file, and split into contiguous regions: the first documents train, the next
  validation, the last test (so the test set of one long book is its end). Its builder config
  name is a fingerprint of the resolved paths, sizes, mtimes and options, so changed inputs
  build a new dataset next to the old one instead of silently reusing it.

Both keep documents in generation order (`disable_shuffling`), so evaluation reads a split in
its natural order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from lexlm.data.config import (
    DOC_SPLITS,
    SPLITS,
    check_heading_pattern,
    check_holdout,
    default_data_dir,
    resolve_text_files,
)
from lexlm.errors import ConfigError
from lexlm.text.decode import TextStats, clean_document, decode_utf8

LEE_SHA256 = "5d78d6dafd953bbf65797bef09a9ffb9ec430583381be705f8fd460000f370fb"
LEE_PACKAGE_PATH = ("test", "test_data", "lee_background.cor")
LEE_NUM_LINES = 300
LEE_NUM_DOCS = 293  # after dropping 7 exact duplicates
LEE_SPLIT_SIZES = {"train": 263, "validation": 15, "test": 15}
_LEE_SPLIT_SEED = 2005  # the corpus's publication year; any fixed value would do
SETUP_HINT = "install the data extra (pip install -e '.[data]'), which pins gensim==4.4.0"


def _text_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({"text": tfds.features.Text()})


def lee_corpus_path() -> str:
    """The corpus file inside the installed gensim package, checked against its sha256.

    `find_spec` locates gensim without importing it (importing gensim takes seconds).
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "data.source", f"the default corpus ships with gensim, which is missing: {SETUP_HINT}"
        )
    path = os.path.join(spec.submodule_search_locations[0], *LEE_PACKAGE_PATH)
    if not os.path.isfile(path):
        raise ConfigError("data.source", f"default corpus not found at {path}: {SETUP_HINT}")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != LEE_SHA256:
        raise ConfigError(
            "data.source",
            f"default corpus at {path} has sha256 {digest}, expected {LEE_SHA256}: {SETUP_HINT}",
        )
    return path


def read_lee_lines() -> list[bytes]:
    with open(lee_corpus_path(), "rb") as f:
        lines = f.read().split(b"\n")
    if len(lines) != LEE_NUM_LINES:
        raise ValueError(f"expected {LEE_NUM_LINES} lines, found {len(lines)}")
    return lines


def lee_split_indices(lines: Sequence[bytes] | None = None) -> dict[str, np.ndarray]:
    """Line numbers of each Lee split: unique documents, fixed permutation, cut 263/15/15.

    Each split's line numbers are sorted, so a split reads in corpus order.
    """
    lines = read_lee_lines() if lines is None else lines
    first_seen: dict[bytes, int] = {}
    for index, line in enumerate(lines):
        first_seen.setdefault(line.strip(), index)
    unique = np.array(sorted(first_seen.values()))
    if len(unique) != LEE_NUM_DOCS:
        raise ValueError(f"expected {LEE_NUM_DOCS} distinct documents, found {len(unique)}")
    order = unique[np.random.default_rng(_LEE_SPLIT_SEED).permutation(len(unique))]
    n_train, n_val = LEE_SPLIT_SIZES["train"], LEE_SPLIT_SIZES["validation"]
    parts = np.split(order, [n_train, n_train + n_val])
    return {name: np.sort(part) for name, part in zip(SPLITS, parts)}


class LeeCorpus(tfds.core.GeneratorBasedBuilder):
    """The Lee background news corpus: 293 distinct documents, 263 / 15 / 15 by document."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "gensim 4.4.0 lee_background.cor, deduplicated; 263/15/15."
    }

    def __init__(self, *, data_dir: str | os.PathLike | None = None, **kwargs):
        super().__init__(data_dir=default_data_dir(data_dir), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Lee background corpus: 300 news articles from the Australian Broadcasting "
                "Corporation, one per line, as shipped in gensim 4.4.0's test data."
            ),
            features=_text_features(),
            homepage="https://radimrehurek.com/gensim/",
            citation=(
                "Lee, M. D., Pincombe, B., & Welsh, M. (2005). An empirical evaluation of "
                "models of text document similarity. Proceedings of the 27th Annual "
                "Conference of the Cognitive Science Society."
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download: the file comes with an installed package
        lines = read_lee_lines()
        return {
            name: self._generate_examples(lines, indices)
            for name, indices in lee_split_indices(lines).items()
        }

    def _generate_examples(self, lines: Sequence[bytes], indices: np.ndarray) -> Iterator:
        for index in indices.tolist():
            text, _ = decode_utf8(lines[index])
            yield index, {"text": text.strip()}


def split_documents(text: str, doc_split: str, heading_pattern: str = "") -> list[str]:
    """Cuts one file's text into documents ('line', 'paragraph' = blank-line separated, 'file',
    'heading' = a new document at every line matching ``heading_pattern``, e.g. one per book
    of a Bible whose books start with "<name> 1"; text before the first heading is a
    document of its own)."""
    text = text.replace("\r\n", "\n")
    if doc_split == "heading":
        starts = [m.start() for m in check_heading_pattern(heading_pattern).finditer(text)]
        bounds = sorted({0, *starts, len(text)})
        return [text[a:b] for a, b in itertools.pairwise(bounds)]
    if doc_split == "line":
        return text.split("\n")
    if doc_split == "paragraph":
        return re.split(r"\n[^\S\n]*\n\s*", text)
    if doc_split == "file":
        return [text]
    raise ConfigError("data.doc_split", f"unknown {doc_split!r}; allowed: {', '.join(DOC_SPLITS)}")


def contiguous_split_sizes(n_docs: int, holdout: Sequence[float]) -> dict[str, int]:
    """Documents per split: each holdout fraction rounded, but at least one document."""
    val, test = check_holdout(holdout)
    n_val = max(1, round(val * n_docs))
    n_test = max(1, round(test * n_docs))
    n_train = n_docs - n_val - n_test
    if n_train < 1:
        raise ConfigError(
            "data.doc_split",
            f"the files hold only {n_docs} non-empty document(s), too few for train, "
            "validation and test; use a finer data.doc_split ('line' or 'paragraph') "
            "or more files",
        )
    return {"train": n_train, "validation": n_val, "test": n_test}


@dataclasses.dataclass(eq=False)
class LocalTextConfig(tfds.core.BuilderConfig):
    """A `LocalText` config; `name` is the fingerprint of everything below."""

    paths: tuple[str, ...] = ()
    doc_split: str = "paragraph"
    holdout: tuple[float, float] = (0.05, 0.05)
    heading_pattern: str = ""


def local_text_config(
    files: str | Sequence[str],
    doc_split: str = "paragraph",
    holdout: Sequence[float] = (0.05, 0.05),
    heading_pattern: str = "",
) -> LocalTextConfig:
    """Validates the options and fingerprints the inputs (path, size, mtime of each file)."""
    if doc_split not in DOC_SPLITS:
        raise ConfigError(
            "data.doc_split", f"unknown {doc_split!r}; allowed: {', '.join(DOC_SPLITS)}"
        )
    holdout = check_holdout(holdout)
    if doc_split == "heading":
        check_heading_pattern(heading_pattern)
    else:
        heading_pattern = ""
    paths = tuple(resolve_text_files(files))
    inputs = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths]
    blob = [LocalText.VERSION.__str__(), inputs, doc_split, holdout]
    blob = json.dumps(blob + ([heading_pattern] if heading_pattern else []))
    fingerprint = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return LocalTextConfig(
        name=f"{doc_split}_{fingerprint}",
        description=f"{len(paths)} file(s): {shown}; doc_split={doc_split}, holdout={holdout}",
        paths=paths,
        doc_split=doc_split,
        holdout=holdout,
        heading_pattern=heading_pattern,
    )


class LocalText(tfds.core.GeneratorBasedBuilder):
    """Local text files, split into documents and then into contiguous train/val/test regions.

    Build counts (documents kept, empty documents skipped, invalid UTF-8 repaired, per split)
    are written into the dataset's metadata (`builder.info.metadata['stats']`) and warned
    about once at build time.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Contiguous train/validation/test regions."}
    builder_config: LocalTextConfig

    def __init__(
        self,
        *,
        files: str | Sequence[str] | None = None,
        doc_split: str = "paragraph",
        holdout: Sequence[float] = (0.05, 0.05),
        heading_pattern: str = "",
        config: LocalTextConfig | None = None,
        data_dir: str | os.PathLike | None = None,
        **kwargs,
    ):
        if config is None:
            config = local_text_config(files, doc_split, holdout, heading_pattern)
        super().__init__(config=config, data_dir=default_data_dir(data_dir), **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Local text files: " + (self.builder_config.description or ""),
            features=_text_features(),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager
        config = self.builder_config
        stats = TextStats()
        docs: list[str] = []
        for path in config.paths:
            with open(path, "rb") as f:
                text, replaced = decode_utf8(f.read())
            stats.replacement_chars += replaced
            for doc in split_documents(text, config.doc_split, config.heading_pattern):
                doc = clean_document(doc, stats)
                if doc:
                    docs.append(doc)
        sizes = contiguous_split_sizes(len(docs), config.holdout)
        if stats.anything_repaired:
            warnings.warn(f"data.files: {stats.summary()}", stacklevel=2)
        self.info.metadata["stats"] = {**dataclasses.asdict(stats), "split_sizes": sizes}
        bounds = np.cumsum([0] + [sizes[name] for name in SPLITS]).tolist()
        return {
            name: self._generate_examples(docs, bounds[i], bounds[i + 1])
            for i, name in enumerate(SPLITS)
        }

    def _generate_examples(self, docs: Sequence[str], start: int, stop: int) -> Iterator:
        for index in range(start, stop):
            yield index, {"text": docs[index]}
