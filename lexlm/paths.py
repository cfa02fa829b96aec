"""Run-artifact paths: ``etils.epath`` everywhere, so a ``gs://bucket/run`` workdir stays one.

``pathlib.Path("gs://bucket/run")`` is the local path ``gs:/bucket/run``; every checkpoint,
config, tokenizer, metrics file, TensorBoard log and evaluation lexlm writes goes through
``as_path`` instead, which keeps URIs as written (orbax and tensorstore write them directly)
and makes local paths absolute.
"""

from __future__ import annotations

import os

from etils import epath


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike) -> epath.Path:
    """An ``epath.Path``; a local relative path is made absolute, a URI is kept as written."""
    text = os.fspath(path)
    if is_uri(text):
        return epath.Path(text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))
