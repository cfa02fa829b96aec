"""Run-artifact paths and writes: ``etils.epath`` everywhere, so a ``gs://bucket/run``
workdir stays one, and every result file is written whole or not at all.

``pathlib.Path("gs://bucket/run")`` is the local path ``gs:/bucket/run``; every checkpoint,
config, tokenizer, metrics file, TensorBoard log and evaluation lexlm writes goes through
``as_path`` instead, which keeps URIs as written (orbax and tensorstore write them directly)
and makes local paths absolute.

Atomic writes (``write_text`` / ``write_bytes`` / ``write_json``): on a local disk the bytes
go to a temporary file next to the target, which is then renamed over it, so a reader (or a
rerun after a kill) sees the old file or the new one, never a torn one. On an object store
an object appears only when its upload completes, so one put is already atomic.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from etils import epath

from lexlm import faults

TMP_MARK = ".tmp-"  # temporary files and folders carry this in their names; readers skip them


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike) -> epath.Path:
    """An ``epath.Path``; a local relative path is made absolute, a URI is kept as written."""
    text = os.fspath(path)
    if is_uri(text):
        return epath.Path(text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def temporary_sibling(path: epath.Path) -> epath.Path:
    """A fresh name next to ``path`` for a file or folder that is renamed over it when whole."""
    return path.parent / f"{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` whole or not at all (see the module docstring)."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_uri(path):
        path.write_bytes(data)
        return
    tmp = temporary_sibling(path)
    with open(os.fspath(tmp), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    faults.point("write")  # a kill here leaves only the temporary file
    os.replace(os.fspath(tmp), os.fspath(path))


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (bool, int, float, str))


def dumps_compact(value: Any, indent: int = 1, level: int = 0) -> str:
    """JSON like ``json.dumps(value, indent=indent)``, except that a list of scalars (per-unit
    test results: thousands of 0/1 or per-document bits) stays on one line."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(value, (list, tuple)):
        if not value or all(_scalar(x) for x in value):
            return json.dumps(list(value), allow_nan=True)
        items = [inner + dumps_compact(x, indent, level + 1) for x in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{json.dumps(str(k))}: {dumps_compact(v, indent, level + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    return json.dumps(value, allow_nan=True)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 1) -> None:
    """Atomic JSON write; lists of scalars on one line (``dumps_compact``) when indented."""
    text = json.dumps(value, allow_nan=True) if indent is None else dumps_compact(value, indent)
    write_text(path, text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(as_path(path).read_text())


def publish_dir(tmp: epath.Path, path: epath.Path) -> None:
    """Moves a folder built under ``tmp`` (``temporary_sibling(path)``) to ``path`` in one
    rename on a local disk. On an object store, where folders are prefixes, ``tmp`` is
    ``path`` itself and the caller marks it complete with a file written last."""
    if tmp == path:
        return
    faults.point("write")
    os.replace(os.fspath(tmp), os.fspath(path))
