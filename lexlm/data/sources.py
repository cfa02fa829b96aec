"""`open_split`: a data config -> random-access records of one split, for every source.

The sources and their fields are described in ``lexlm.data.config``. Every split is read with
TFDS's array_record data source, which needs no TensorFlow, and comes back as a sequence of
`{'text': bytes | str}` records whatever the dataset's own field name (`data.text_key`).
Datasets are written under `data.data_dir`, or $LEXLM_DATA_DIR, or ~/.cache/lexlm/tfds.
A 'tfds' dataset is downloaded and prepared as array_record on first use, which needs the
internet (and Apache Beam for Beam datasets such as wiki40b).

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lexlm.data.config import (
    data_dir_of,
    field,
    int_field,
    split_names,
    text_keys,
)
from lexlm.errors import ConfigError
from lexlm.text.decode import decode_utf8


def tfds_builder(data_cfg: Any):
    """The TFDS builder `data.tfds_name` names; ConfigError before any download if unknown."""
    import tensorflow_datasets as tfds

    name = field(data_cfg, "tfds_name")
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

    source = field(data_cfg, "source")
    data_dir = data_dir_of(data_cfg)
    if source == "lee":
        builder = builders.LeeCorpus(data_dir=data_dir)
    elif source == "files":
        builder = builders.LocalText(
            files=field(data_cfg, "files"),
            doc_split=field(data_cfg, "doc_split"),
            holdout=field(data_cfg, "holdout"),
            heading_pattern=field(data_cfg, "heading_pattern"),
            data_dir=data_dir,
        )
    elif source == "tfds":
        builder = tfds_builder(data_cfg)
    elif source == "python_stdlib":
        from lexlm.data import code_corpus

        builder = code_corpus.PythonStdlib(data_dir=data_dir)
    else:
        raise ConfigError("data.source", f"{source!r} is not a text corpus (lexlm.data.config)")
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
    split_name = split_names(data_cfg).get(split, split)
    known = dict(getattr(builder.info, "splits", {}) or {})
    base = split_name.split("[")[0]
    if known and base not in known:
        raise ConfigError(
            "data.splits",
            f"{builder.name} has no split {base!r} (for {split}); it has {', '.join(known)}",
        )
    records = builder.as_data_source(split=split_name)
    keys = text_keys(data_cfg) if field(data_cfg, "source") == "tfds" else ("text",)
    if len(keys) != 1:
        raise ConfigError("data.text_key", f"a text corpus reads one field, got {keys}")
    text_key = keys[0]
    source: Sequence[dict[str, Any]] = TextFieldSource(records, text_key)
    chunk_chars = int_field(data_cfg, "chunk_chars", 0)
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
