"""Bytes -> clean text documents, counting every repair instead of crashing on it.

Real corpora contain invalid UTF-8, empty documents and stray whitespace. Each of these is
repaired (or skipped) and counted in `TextStats`, and a single summary line is logged so the
user learns how much of the corpus was touched without a flood of per-document warnings.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable

REPLACEMENT_CHAR = "\ufffd"


def decode_utf8(raw: bytes | bytearray | memoryview | str) -> tuple[str, int]:
    """Decodes UTF-8, replacing each invalid byte sequence by U+FFFD.

    Returns the text and the number of replacement characters that decoding introduced (a
    U+FFFD already present in valid input is not counted: it was not a repair).
    """
    if isinstance(raw, str):
        return raw, 0
    raw = bytes(raw)
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    already_there = raw.count(REPLACEMENT_CHAR.encode("utf-8"))
    return text, text.count(REPLACEMENT_CHAR) - already_there


@dataclasses.dataclass
class TextStats:
    """What cleaning did to a corpus. Counters add up over calls via `merge`."""

    documents: int = 0  # kept
    empty_skipped: int = 0  # empty or whitespace-only after decoding
    replacement_chars: int = 0  # U+FFFD introduced by invalid UTF-8
    truncated: int = 0  # over-long items cut to a length limit

    def merge(self, other: TextStats) -> TextStats:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self

    @property
    def anything_repaired(self) -> bool:
        return bool(self.empty_skipped or self.replacement_chars or self.truncated)

    def summary(self) -> str:
        parts = [f"kept {self.documents} documents"]
        if self.empty_skipped:
            parts.append(f"skipped {self.empty_skipped} empty")
        if self.replacement_chars:
            parts.append(f"{self.replacement_chars} invalid UTF-8 sequences replaced by U+FFFD")
        if self.truncated:
            parts.append(f"{self.truncated} over-long items truncated")
        return "; ".join(parts)


def clean_document(doc: bytes | str, stats: TextStats | None = None) -> str:
    """Decodes and strips one document; returns '' for one that should be skipped.

    `stats` (if given) is updated in place, so a streaming pipeline can count as it goes.
    """
    text, replaced = decode_utf8(doc)
    text = text.strip()
    if stats is not None:
        stats.replacement_chars += replaced
        if text:
            stats.documents += 1
        else:
            stats.empty_skipped += 1
    return text


def clean_documents(
    docs: Iterable[bytes | str], *, source: str = "documents", warn: bool = True
) -> tuple[list[str], TextStats]:
    """Decodes, strips and drops empty documents.

    When anything was replaced or skipped, one summary line goes to `warnings.warn` naming
    `source` (a file or split), so the user learns where without a warning per document.
    """
    stats = TextStats()
    kept = [text for text in (clean_document(d, stats) for d in docs) if text]
    if warn and stats.anything_repaired:
        warnings.warn(f"{source}: {stats.summary()}", stacklevel=2)
    return kept, stats
