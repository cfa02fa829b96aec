"""The one ``data`` block of every experiment config, and its validation.

Plain Python (ml_collections and numpy only): configs are built and checked on machines
without the data stack, and the builders and readers import this, never the reverse.

``data.source`` picks where the text comes from:

* an embedded corpus by name, installed by the setup command, no internet needed:
  ``lee`` (the Lee background news corpus: 300 ABC news articles in the gensim 4.4.0 wheel's
  test data, and the 50-document set with its matrix of human similarity ratings),
  ``python_stdlib`` (this interpreter's standard-library ``.py`` files: human-written code),
  ``vader_movies`` (movie-review snippets with human sentiment ratings, from the
  vaderSentiment 3.3.2 source archive);
* ``files``: local files. ``data.files`` names one corpus (paths, folders of ``*.txt``, or a
  comma-separated list) that is cut into train / validation / test by ``data.holdout``
  (contiguous regions for text, a seeded split for labelled rows); ``data.split_files``
  names one file per split instead. ``data.format`` says how a file is read: ``text``
  (documents by ``data.doc_split``), ``sst2`` (label TAB sentence), ``ag_news`` (CSV: class,
  title, description), ``stsb`` (STS Benchmark rows: ..., score, sentence 1, sentence 2);
* ``tfds``: a TFDS catalog dataset by name (``data.tfds_name``), its splits as TFDS split
  strings (``data.splits.train='train[:95%]'``), the text in ``data.text_key`` (fields
  joined by a comma are joined by a space; pairs take two) and labels in ``data.label_key``.

Each project says which sources and formats it reads (``validate_data_config``); a field
set for another source (``data.files`` with ``source='lee'``) is a one-line error, never
silently ignored. ``data.unit`` and ``data.vocab_size`` say how text becomes units for the
models that take one kind of unit.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from lexlm.errors import ConfigError
from lexlm.text.tokenizers import NUM_SPECIAL, UNIT_KINDS

EMBEDDED = ("lee", "python_stdlib", "vader_movies")
SOURCES = (*EMBEDDED, "files", "tfds")
FORMATS = ("text", "sst2", "ag_news", "stsb")
SPLITS = ("train", "validation", "test")
DOC_SPLITS = ("line", "paragraph", "file", "heading")
DEFAULT_DATA_DIR = "~/.cache/lexlm/tfds"
# files larger than this are fingerprinted by size and modification time, not by content
HASH_LIMIT_BYTES = 1 << 28


def default_data_config(source: str = "lee") -> ml_collections.ConfigDict:
    """The ``data`` block of every experiment config, with its defaults."""
    cfg = ml_collections.ConfigDict()
    cfg.source = source  # an embedded corpus (EMBEDDED), 'files' or 'tfds'
    cfg.files = ()  # files: paths or folders (folders: their *.txt); commas separate
    cfg.split_files = {"train": "", "validation": "", "test": ""}  # files: one per split
    cfg.format = "text"  # files: 'text' | 'sst2' | 'ag_news' | 'stsb'
    cfg.doc_split = "paragraph"  # text: 'line' | 'paragraph' | 'file' | 'heading'
    cfg.heading_pattern = ""  # doc_split='heading': a document starts at each matching line
    cfg.holdout = (0.05, 0.05)  # validation, test fractions when one corpus is split here
    cfg.split_seed = 0  # the seeded split of labelled rows and of the Lee similarity set
    cfg.tfds_name = ""  # tfds: e.g. 'tiny_shakespeare', 'lm1b', 'glue/sst2'
    cfg.splits = {"train": "train", "validation": "validation", "test": "test"}
    cfg.text_key = "text"  # tfds: the text field(s), comma-separated
    cfg.label_key = "label"  # tfds: the label or score field
    cfg.chunk_chars = 0  # > 0: cut records into paragraph-aligned chunks at read time
    cfg.data_dir = ""  # '' -> $LEXLM_DATA_DIR or ~/.cache/lexlm/tfds
    cfg.unit = "char"  # 'byte' | 'char' | 'subword'
    cfg.vocab_size = 0  # subword: required (> 259); char: maximum (0 = all characters)
    cfg.seed = 0  # shuffling of the training data
    cfg.worker_count = 0  # grain worker processes (0: tokenize in this process)
    cfg.read_threads = 0  # grain read-ahead threads (0: read in the training thread)
    return cfg


def default_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """``data_dir`` if given, else $LEXLM_DATA_DIR, else ~/.cache/lexlm/tfds (user-expanded).

    A bucket (``gs://...``) is kept as written, so every pod worker reads one prepared copy."""
    chosen = os.fspath(data_dir) if data_dir else ""
    chosen = chosen or os.environ.get("LEXLM_DATA_DIR", "") or DEFAULT_DATA_DIR
    if "://" in chosen:
        return chosen
    return os.path.abspath(os.path.expanduser(chosen))


def field(data_cfg: Any, name: str) -> Any:
    """``data_cfg.name``, falling back to the default, so partial configs and dicts work."""
    if isinstance(data_cfg, Mapping):
        if name in data_cfg:
            return data_cfg[name]
    elif hasattr(data_cfg, name):
        return getattr(data_cfg, name)
    return default_data_config()[name]


def data_dir_of(data_cfg: Any) -> str:
    return default_data_dir(field(data_cfg, "data_dir"))


def as_list(files: str | Sequence[str] | None) -> list[str]:
    """A file list from a tuple, a list or a comma-separated string (a command-line override
    of a tuple field can also arrive as a one-element tuple holding ``"a.txt,b.txt"``)."""
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    names = [name.strip() for f in files for name in os.fspath(f).split(",")]
    return [name for name in names if name]


def resolve_text_files(files: str | Sequence[str] | None) -> list[str]:
    """Absolute paths of the named files, with folders expanded to their *.txt files.

    Order: as named; inside a folder, sorted by relative path so it does not depend on the
    file system's listing order.
    """
    names = as_list(files)
    if not names:
        raise ConfigError("data.files", "no files given (a path, a folder or a list of them)")
    resolved: list[str] = []
    for name in names:
        path = os.path.abspath(os.path.expanduser(name))
        if os.path.isfile(path):
            resolved.append(path)
        elif os.path.isdir(path):
            found = sorted(
                os.path.join(root, f)
                for root, _, filenames in os.walk(path)
                for f in filenames
                if f.endswith(".txt")
            )
            if not found:
                raise ConfigError("data.files", f"no *.txt files under folder: {name}")
            resolved.extend(found)
        else:
            raise ConfigError("data.files", f"no such file or folder: {name}")
    return resolved


def split_file(data_cfg: Any, split: str) -> str:
    """The absolute path of ``data.split_files.<split>``; a one-line error if unset or missing."""
    name = str(dict(field(data_cfg, "split_files")).get(split, "") or "")
    if not name:
        raise ConfigError(f"data.split_files.{split}", "needs a file (one file per split)")
    path = os.path.abspath(os.path.expanduser(name))
    if not os.path.isfile(path):
        raise ConfigError(f"data.split_files.{split}", f"no such file: {name}")
    return path


def check_holdout(holdout: Sequence[float]) -> tuple[float, float]:
    try:
        val, test = (float(x) for x in holdout)
    except (TypeError, ValueError):
        raise ConfigError(
            "data.holdout", f"must be two fractions (validation, test), got {holdout!r}"
        ) from None
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ConfigError(
            "data.holdout",
            f"fractions must each lie in (0, 1) and sum below 1, got ({val}, {test})",
        )
    return val, test


def check_heading_pattern(pattern: str) -> re.Pattern:
    """The compiled ``data.heading_pattern`` (matched per line, ``re.MULTILINE``)."""
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError("data.heading_pattern", "doc_split='heading' needs a line regex")
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise ConfigError("data.heading_pattern", f"not a regular expression: {e}") from None


def int_field(data_cfg: Any, name: str, minimum: int) -> int:
    value = field(data_cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data.{name}", f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def split_names(data_cfg: Any) -> dict[str, str]:
    """``data.splits``: the split string for train / validation / test."""
    splits = field(data_cfg, "splits")
    if not isinstance(splits, Mapping) and not hasattr(splits, "items"):
        raise ConfigError("data.splits", "must map train/validation/test to split names")
    splits = dict(splits.items())
    missing = [s for s in SPLITS if not isinstance(splits.get(s), str) or not splits.get(s)]
    if missing:
        raise ConfigError(
            "data.splits", f"needs a split name for {', '.join(missing)} (got {splits})"
        )
    return splits


def text_keys(data_cfg: Any) -> tuple[str, ...]:
    value = field(data_cfg, "text_key")
    keys = tuple(k.strip() for k in (value if isinstance(value, (list, tuple)) else
                                     str(value).split(",")) if k.strip())  # fmt: skip
    if not keys:
        raise ConfigError("data.text_key", f"must name a field, got {value!r}")
    return keys


def _is_default(data_cfg: Any, name: str) -> bool:
    value, default = field(data_cfg, name), default_data_config()[name]
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if hasattr(default, "to_dict"):
        default = default.to_dict()
    if isinstance(default, tuple):
        return tuple(as_list(value)) == default
    return value == default


# Fields that only one kind of source reads: set with another source they are an error.
_SOURCE_FIELDS = {
    "files": ("files", "split_files", "format", "doc_split", "heading_pattern"),
    "tfds": ("tfds_name", "splits", "text_key", "label_key"),
}


def validate_data_config(
    data_cfg: Any,
    *,
    sources: Sequence[str] = ("lee", "python_stdlib", "files", "tfds"),
    formats: Sequence[str] = ("text",),
    units: Sequence[str] | None = UNIT_KINDS,
    check_tfds_name: bool = True,
) -> None:
    """Checks every data field, offline and before anything is read; raises a one-line
    ``ConfigError`` naming the first bad field. ``sources`` / ``formats``: what the calling
    project reads; ``units``: the units it accepts (``None``: it does not use ``data.unit``);
    ``check_tfds_name``: look a 'tfds' name up in the TFDS catalog (offline, imports TFDS)."""
    source = field(data_cfg, "source")
    if source not in SOURCES:
        raise ConfigError("data.source", f"unknown {source!r}; sources: {', '.join(SOURCES)}")
    if source not in sources:
        raise ConfigError(
            "data.source",
            f"{source!r} is not read by this experiment; it reads {', '.join(sources)}",
        )
    for owner, names in _SOURCE_FIELDS.items():
        if source == owner:
            continue
        for name in names:
            if not _is_default(data_cfg, name):
                raise ConfigError(
                    f"data.{name}",
                    f"is set but data.source is {source!r}; set --config.data.source={owner} "
                    f"to read it",
                )
    doc_split = field(data_cfg, "doc_split")
    if doc_split not in DOC_SPLITS:
        raise ConfigError(
            "data.doc_split", f"unknown {doc_split!r}; allowed: {', '.join(DOC_SPLITS)}"
        )
    check_holdout(field(data_cfg, "holdout"))
    if doc_split == "heading":
        check_heading_pattern(field(data_cfg, "heading_pattern"))
    fmt = field(data_cfg, "format")
    if fmt not in FORMATS:
        raise ConfigError("data.format", f"unknown {fmt!r}; formats: {', '.join(FORMATS)}")
    if source == "files":
        if fmt not in formats:
            raise ConfigError(
                "data.format",
                f"{fmt!r} is not read by this experiment; it reads {', '.join(formats)}",
            )
        per_split = any(dict(field(data_cfg, "split_files")).values())
        if per_split and as_list(field(data_cfg, "files")):
            raise ConfigError("data.split_files", "give data.files or data.split_files, not both")
        if per_split:
            if fmt == "text":
                raise ConfigError(
                    "data.split_files", "text is cut into splits by data.holdout: use data.files"
                )
            for split in SPLITS:
                split_file(data_cfg, split)
        elif fmt == "text":
            resolve_text_files(field(data_cfg, "files"))
        else:
            names = as_list(field(data_cfg, "files"))
            if len(names) != 1:
                raise ConfigError(
                    "data.files",
                    f"format {fmt!r} reads one file (or data.split_files), got {names}",
                )
            if not os.path.isfile(os.path.expanduser(names[0])):
                raise ConfigError("data.files", f"no such file: {names[0]}")
    if source == "python_stdlib":
        import sysconfig

        root = sysconfig.get_paths()["stdlib"]
        if not os.path.isdir(root):
            raise ConfigError("data.source", f"python_stdlib: this interpreter has no {root}")
    if source == "tfds":
        name = field(data_cfg, "tfds_name")
        if not isinstance(name, str) or not name:
            raise ConfigError("data.tfds_name", "must name a TFDS dataset for data.source='tfds'")
        text_keys(data_cfg)
        if check_tfds_name:
            from lexlm.data.sources import tfds_builder

            tfds_builder(data_cfg)
        if not isinstance(field(data_cfg, "label_key"), str):
            raise ConfigError("data.label_key", "must be a field name")
    split_names(data_cfg)
    int_field(data_cfg, "chunk_chars", 0)
    int_field(data_cfg, "split_seed", 0)
    if units is not None:
        unit = field(data_cfg, "unit")
        if unit not in units:
            raise ConfigError("data.unit", f"unknown unit {unit!r}; allowed: {', '.join(units)}")
        vocab_size = int_field(data_cfg, "vocab_size", 0)
        if unit == "subword" and vocab_size <= NUM_SPECIAL + 256:
            raise ConfigError(
                "data.vocab_size",
                f"must be > {NUM_SPECIAL + 256} for data.unit='subword' (3 special + 256 byte "
                f"pieces + merges), got {vocab_size}",
            )
        if unit == "char" and 0 < vocab_size <= NUM_SPECIAL:
            raise ConfigError("data.vocab_size", f"must be 0 (all) or > {NUM_SPECIAL} for char")
    int_field(data_cfg, "seed", 0)
    int_field(data_cfg, "worker_count", 0)
    int_field(data_cfg, "read_threads", 0)


def _file_fingerprint(path: str) -> str:
    size = os.path.getsize(path)
    if size > HASH_LIMIT_BYTES:
        return f"size {size}, mtime {os.stat(path).st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def input_fingerprints(data_cfg: Any) -> dict[str, str]:
    """A fingerprint of every local file the data block reads (its content's hash), so a run
    records what it was trained on and an edited file is not mistaken for the old one."""
    if field(data_cfg, "source") != "files":
        return {}
    names = [v for v in dict(field(data_cfg, "split_files")).values() if v]
    paths = (
        [os.path.abspath(os.path.expanduser(n)) for n in names]
        if names
        else resolve_text_files(field(data_cfg, "files"))
        if field(data_cfg, "format") == "text"
        else [os.path.abspath(os.path.expanduser(n)) for n in as_list(field(data_cfg, "files"))]
    )
    return {os.path.basename(p) + f"#{i}": _file_fingerprint(p) for i, p in enumerate(paths)}
