"""The `data` config block, its validation, and `open_split`: config -> random-access records.

Four sources, chosen by `data.source`:

- 'default': the embedded Lee news corpus (`builders.LeeCorpus`), built on first use.
- 'python_stdlib': the running interpreter's standard library `.py` files, one document per
             file, split 90/5/5 by a hash of the path (`code_corpus.PythonStdlib`): embedded
             human-written code. `code_corpus.python_stdlib_manifest(cfg)` lists its files.
- 'files':   the user's local text files (`builders.LocalText`), rebuilt when they change.
- 'tfds':    any TFDS catalog dataset by name (`data.tfds_name`, e.g. 'tiny_shakespeare',
             'lm1b', 'wiki40b/en'); downloaded and prepared as array_record on first use,
             which needs the internet (and Apache Beam for Beam datasets such as wiki40b).

Every split is read with TFDS's array_record data source, which needs no TensorFlow, and comes
back as a sequence of `{'text': bytes | str}` records whatever the dataset's own field name
(`data.text_key`). Datasets are written under `data.data_dir`, or $LEXLM_DATA_DIR, or
~/.cache/lexlm/tfds.

`data.chunk_chars > 0` cuts each record into chunks of about that many characters at read
time, for catalog datasets whose split is one huge document (tiny_shakespeare): a chunk ends
at the first paragraph break ("\\n\\n") after `chunk_chars` characters, or, if there is none
within twice that, at the last line break, else the last space, else exactly at `chunk_chars`.
Because documents are joined by eos, which stands for "\\n\\n", chunks cut at paragraph breaks
put back together to the original text. Chunk boundaries are found by reading the whole split
once when it is opened, so use this for splits made of a few long records.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from lexlm.errors import ConfigError
from lexlm.text.decode import decode_utf8
from lexlm.text.tokenizers import NUM_SPECIAL, UNIT_KINDS

SOURCES = ("default", "files", "tfds", "python_stdlib")
SPLITS = ("train", "validation", "test")
DOC_SPLITS = ("line", "paragraph", "file", "heading")
DEFAULT_DATA_DIR = "~/.cache/lexlm/tfds"


def default_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """`data_dir` if given, else $LEXLM_DATA_DIR, else ~/.cache/lexlm/tfds (user-expanded).

    A bucket (``gs://...``) is kept as written, so every pod worker reads one prepared copy."""
    chosen = os.fspath(data_dir) if data_dir else ""
    chosen = chosen or os.environ.get("LEXLM_DATA_DIR", "") or DEFAULT_DATA_DIR
    if "://" in chosen:
        return chosen
    return os.path.abspath(os.path.expanduser(chosen))


def _as_list(files: str | Sequence[str] | None) -> list[str]:
    # Configs arrive as a tuple, a list or a comma-separated string; a command-line override
    # of a tuple field can also arrive as a one-element tuple holding "a.txt,b.txt".
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
    names = _as_list(files)
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


def default_data_config() -> ml_collections.ConfigDict:
    """The `data` block of every experiment config, with its defaults."""
    cfg = ml_collections.ConfigDict()
    cfg.source = "default"  # 'default' | 'files' | 'tfds' | 'python_stdlib'
    cfg.files = ()  # paths or folders (folders: their *.txt, recursively); commas separate
    cfg.doc_split = "paragraph"  # 'line' | 'paragraph' (blank-line separated) | 'file' | 'heading'
    cfg.heading_pattern = ""  # doc_split='heading': a document starts at each matching line
    cfg.holdout = (0.05, 0.05)  # validation, test fractions for 'files' (contiguous regions)
    cfg.tfds_name = ""  # e.g. 'tiny_shakespeare', 'lm1b', 'wiki40b/en'
    cfg.text_key = "text"  # the record field holding the text
    cfg.splits = {"train": "train", "validation": "validation", "test": "test"}
    cfg.chunk_chars = 0  # > 0: cut records into paragraph-aligned chunks at read time
    cfg.data_dir = ""  # '' -> $LEXLM_DATA_DIR or ~/.cache/lexlm/tfds
    cfg.unit = "char"  # 'byte' | 'char' | 'subword'
    cfg.vocab_size = 0  # subword: required (> 259); char: maximum (0 = all characters)
    cfg.seed = 0
    cfg.worker_count = 0  # grain worker processes (0: tokenize in this process)
    cfg.read_threads = 0  # grain read-ahead threads (0: read in the training thread; see pipeline)
    return cfg


def _field(data_cfg: Any, name: str) -> Any:
    """`data_cfg.name`, falling back to the default, so partial configs and dicts work."""
    if isinstance(data_cfg, Mapping):
        if name in data_cfg:
            return data_cfg[name]
    elif hasattr(data_cfg, name):
        return getattr(data_cfg, name)
    return default_data_config()[name]


def data_dir_of(data_cfg: Any) -> str:
    return default_data_dir(_field(data_cfg, "data_dir"))


def _int_field(data_cfg: Any, name: str, minimum: int) -> int:
    value = _field(data_cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data.{name}", f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _split_names(data_cfg: Any) -> dict[str, str]:
    splits = _field(data_cfg, "splits")
    if not isinstance(splits, Mapping) and not hasattr(splits, "items"):
        raise ConfigError("data.splits", "must map train/validation/test to split names")
    splits = dict(splits.items())
    missing = [s for s in SPLITS if not isinstance(splits.get(s), str) or not splits.get(s)]
    if missing:
        raise ConfigError(
            "data.splits", f"needs a split name for {', '.join(missing)} (got {splits})"
        )
    return splits


def validate_data_config(data_cfg: Any, *, check_tfds_name: bool = True) -> None:
    """Checks every data field; raises ConfigError naming the first bad one.

    Cheap and offline: meant to run before anything is compiled. With `check_tfds_name`, a
    'tfds' source's name is looked up in the TFDS catalog (no download).
    """
    source = _field(data_cfg, "source")
    if source not in SOURCES:
        raise ConfigError("data.source", f"unknown {source!r}; allowed: {', '.join(SOURCES)}")
    doc_split = _field(data_cfg, "doc_split")
    if doc_split not in DOC_SPLITS:
        raise ConfigError(
            "data.doc_split", f"unknown {doc_split!r}; allowed: {', '.join(DOC_SPLITS)}"
        )
    check_holdout(_field(data_cfg, "holdout"))
    if doc_split == "heading":
        check_heading_pattern(_field(data_cfg, "heading_pattern"))
    if source == "files":
        resolve_text_files(_field(data_cfg, "files"))
    if source == "python_stdlib":
        import sysconfig

        root = sysconfig.get_paths()["stdlib"]
        if not os.path.isdir(root):
            raise ConfigError("data.source", f"python_stdlib: this interpreter has no {root}")
    if source == "tfds":
        name = _field(data_cfg, "tfds_name")
        if not isinstance(name, str) or not name:
            raise ConfigError("data.tfds_name", "must name a TFDS dataset for data.source='tfds'")
        if check_tfds_name:
            tfds_builder(data_cfg)
    text_key = _field(data_cfg, "text_key")
    if not isinstance(text_key, str) or not text_key:
        raise ConfigError("data.text_key", f"must be a field name, got {text_key!r}")
    _split_names(data_cfg)
    _int_field(data_cfg, "chunk_chars", 0)
    unit = _field(data_cfg, "unit")
    if unit not in UNIT_KINDS:
        raise ConfigError("data.unit", f"unknown unit {unit!r}; allowed: {', '.join(UNIT_KINDS)}")
    vocab_size = _int_field(data_cfg, "vocab_size", 0)
    if unit == "subword" and vocab_size <= NUM_SPECIAL + 256:
        raise ConfigError(
            "data.vocab_size",
            f"must be > {NUM_SPECIAL + 256} for data.unit='subword' (3 special + 256 byte "
            f"pieces + merges), got {vocab_size}",
        )
    if unit == "char" and 0 < vocab_size <= NUM_SPECIAL:
        raise ConfigError("data.vocab_size", f"must be 0 (all) or > {NUM_SPECIAL} for char")
    _int_field(data_cfg, "seed", 0)
    _int_field(data_cfg, "worker_count", 0)
    _int_field(data_cfg, "read_threads", 0)


def tfds_builder(data_cfg: Any):
    """The TFDS builder `data.tfds_name` names; ConfigError before any download if unknown."""
    import tensorflow_datasets as tfds

    name = _field(data_cfg, "tfds_name")
    try:
        return tfds.builder(name, data_dir=data_dir_of(data_cfg))
    except tfds.core.registered.DatasetNotFoundError:
        base = name.split("/")[0].split(":")[0]
        catalog = sorted(set(tfds.list_builders(with_community_datasets=False)))
        close = difflib.get_close_matches(base, catalog)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            "data.tfds_name", f"no TFDS dataset named {name!r} (see tfds.list_builders()){hint}"
        ) from None
    except ValueError as e:  # an unknown config ('wiki40b/xx') or version
        raise ConfigError("data.tfds_name", f"{name!r}: {str(e).splitlines()[0]}") from None


def prepared_builder(data_cfg: Any):
    """The builder for the config's source, prepared as array_record if it was not yet."""
    from lexlm.data import builders

    source = _field(data_cfg, "source")
    data_dir = data_dir_of(data_cfg)
    if source == "default":
        builder = builders.LeeCorpus(data_dir=data_dir)
    elif source == "files":
        builder = builders.LocalText(
            files=_field(data_cfg, "files"),
            doc_split=_field(data_cfg, "doc_split"),
            holdout=_field(data_cfg, "holdout"),
            heading_pattern=_field(data_cfg, "heading_pattern"),
            data_dir=data_dir,
        )
    elif source == "tfds":
        builder = tfds_builder(data_cfg)
    elif source == "python_stdlib":
        from lexlm.data import code_corpus

        builder = code_corpus.PythonStdlib(data_dir=data_dir)
    else:
        raise ConfigError("data.source", f"unknown {source!r}; allowed: {', '.join(SOURCES)}")
    if not builder.is_prepared():
        builder.download_and_prepare(file_format="array_record")
        return builder
    # Prepared earlier, perhaps by `tfds build` with its tfrecord default, which needs TF.
    file_format = getattr(builder.info, "file_format", None)
    if file_format is not None and getattr(file_format, "value", file_format) != "array_record":
        raise ConfigError(
            "data.data_dir",
            f"{builder.name} in {builder.data_dir} was prepared as {file_format.value}; "
            "lexlm reads array_record: choose another data.data_dir or delete that folder",
        )
    return builder


def open_split(data_cfg: Any, split: str) -> Sequence[dict[str, Any]]:
    """A random-access source of `{'text': bytes | str}` records for one split.

    `split` is 'train', 'validation' or 'test' (translated through `data.splits`), or any
    TFDS split string such as 'train[:10%]'.
    """
    builder = prepared_builder(data_cfg)
    split_name = _split_names(data_cfg).get(split, split)
    known = dict(getattr(builder.info, "splits", {}) or {})
    base = split_name.split("[")[0]
    if known and base not in known:
        raise ConfigError(
            "data.splits",
            f"{builder.name} has no split {base!r} (for {split}); it has {', '.join(known)}",
        )
    records = builder.as_data_source(split=split_name)
    text_key = _field(data_cfg, "text_key")
    source: Sequence[dict[str, Any]] = TextFieldSource(records, text_key)
    chunk_chars = _int_field(data_cfg, "chunk_chars", 0)
    if chunk_chars:
        source = ChunkedSource(source, chunk_chars)
    return source


class TextFieldSource(Sequence):
    """Records reduced to `{'text': ...}`, taken from the dataset's own `text_key` field."""

    def __init__(self, records: Sequence[Mapping[str, Any]], text_key: str = "text"):
        self.records = records
        self.text_key = text_key
        if len(records):
            first = records[0]
            if text_key not in first:
                raise ConfigError(
                    "data.text_key",
                    f"records have no field {text_key!r}; fields: {', '.join(first)}",
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return {"text": self.records[index][self.text_key]}

    def __repr__(self) -> str:
        return f"TextFieldSource({self.records!r}, text_key={self.text_key!r})"


def chunk_bounds(text: str, chunk_chars: int) -> list[tuple[int, int]]:
    """[start, end) character ranges covering `text`, cut as the module docstring says."""
    bounds = []
    start, n = 0, len(text)
    while start < n:
        target = start + chunk_chars
        limit = min(n, start + 2 * chunk_chars)
        end = n
        if target < n:
            paragraph = text.find("\n\n", target, limit)
            if paragraph >= 0:
                end = paragraph
            elif limit < n:
                line = text.rfind("\n", start + 1, limit)
                space = text.rfind(" ", start + 1, limit)
                end = line if line > start else space if space > start else target
        bounds.append((start, end))
        start = end
    return bounds


class ChunkedSource(Sequence):
    """Each record of `source` cut into chunks of about `chunk_chars` characters."""

    def __init__(self, source: Sequence[Mapping[str, Any]], chunk_chars: int):
        if chunk_chars <= 0:
            raise ConfigError("data.chunk_chars", f"must be > 0 here, got {chunk_chars}")
        self.source = source
        self.chunk_chars = chunk_chars
        rows = []
        for record_index in range(len(source)):
            text, _ = decode_utf8(source[record_index]["text"])
            rows.extend((record_index, s, e) for s, e in chunk_bounds(text, chunk_chars))
        self._chunks = np.asarray(rows, np.int64).reshape(-1, 3)
        self._cache: tuple[int, str] = (-1, "")

    def __len__(self) -> int:
        return len(self._chunks)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        record_index, start, end = (int(x) for x in self._chunks[index])
        # Consecutive reads mostly hit the same huge record: keep its decoded text. One tuple
        # assignment keeps the cache consistent under grain's reader threads.
        cached_index, text = self._cache
        if cached_index != record_index:
            text, _ = decode_utf8(self.source[record_index]["text"])
            self._cache = (record_index, text)
        return {"text": text[start:end]}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = (-1, "")
        return state
