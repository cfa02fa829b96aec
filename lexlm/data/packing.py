"""Concat-then-split packing of token arrays into fixed windows, as a grain `IterDataset`.

Kept apart from `pipeline` because it subclasses grain classes at import time, and
`lexlm.data` must import without grain. Used by `pipeline.lm_train_dataset`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np


@dataclasses.dataclass
class PackStats:
    """Documents (non-empty, empty) the packer consumed, and windows it emitted."""

    documents: int = 0
    empty_skipped: int = 0
    windows: int = 0


class PackIterator(grain.DatasetIterator):
    """Iterator of `PackIterDataset`; its state is (upstream state at a document, offset)."""

    def __init__(self, parent, window: int, stats: PackStats, max_empty_run: int):
        super().__init__(parent)
        self._window = window
        self._pack_stats = stats
        self._max_empty_run = max_empty_run
        self._doc: np.ndarray | None = None
        self._offset = 0
        self._doc_state: Any = None

    def __next__(self) -> dict[str, np.ndarray]:
        window = np.empty(self._window, np.int32)
        filled = 0
        empty_run = 0
        while filled < self._window:
            if self._doc is None:
                # Remember where this document came from: that plus an offset is the state.
                self._doc_state = self._parent.get_state()
                doc = next(self._parent)
                if len(doc) == 0:
                    self._pack_stats.empty_skipped += 1
                    empty_run += 1
                    if empty_run > self._max_empty_run:
                        raise ValueError("every document in this host's share is empty")
                    continue
                empty_run = 0
                if self._offset == 0:
                    self._pack_stats.documents += 1
                self._doc = doc
            take = min(self._window - filled, len(self._doc) - self._offset)
            window[filled : filled + take] = self._doc[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset == len(self._doc):
                self._doc, self._offset = None, 0
        self._pack_stats.windows += 1
        return {
            "inputs": window[:-1],
            "targets": window[1:],
            "mask": np.ones(self._window - 1, np.float32),
        }

    def get_state(self) -> dict[str, Any]:
        if self._doc is None and self._offset == 0:
            return {"parent": self._parent.get_state(), "offset": 0}
        return {"parent": self._doc_state, "offset": self._offset}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._doc_state = state["parent"]
        self._doc = None
        self._offset = int(state["offset"])


class PackIterDataset(grain.IterDataset):
    """Concatenates token arrays and cuts them into windows of `window` tokens."""

    def __init__(self, parent, window: int, max_empty_run: int):
        super().__init__(parent)
        self._window = window
        self._max_empty_run = max_empty_run
        self.pack_stats = PackStats()

    def __iter__(self):
        return PackIterator(
            self._parent.__iter__(), self._window, self.pack_stats, self._max_empty_run
        )

    def __str__(self) -> str:
        return f"PackIterDataset(window={self._window})"
