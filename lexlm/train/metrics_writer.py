"""Metrics to a JSONL file and to TensorBoard event files (tensorboardX: no TensorFlow).

Only process 0 writes. The workdir is an ``etils.epath`` path: on a local disk the JSONL file
is appended to; on an object store (``gs://``, which cannot append) the whole file is rewritten
at each write, which is cheap at one line per logging window. tensorboardX writes ``gs://``
event files itself (it needs ``google-cloud-storage`` installed for that).
"""

from __future__ import annotations

import json
import os

import jax

from lexlm.paths import as_path, is_uri


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return None


class MetricsWriter:
    def __init__(self, workdir: str | os.PathLike, tensorboard: bool = True, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self._jsonl = None
        self._lines: list[str] = []
        self._tb = None
        if not self.enabled:
            return
        workdir = as_path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / "metrics.jsonl"
        if self.path.exists():
            # A run killed after logging past its last checkpoint logs those steps again on
            # resume: drop the stale lines so every step appears once.
            # A line torn by a kill mid-write is dropped with them.
            self._lines = [
                line
                for line in self.path.read_text().splitlines()
                if _step_of(line) is not None and _step_of(line) <= resume_step
            ]
        self.path.write_text("".join(line + "\n" for line in self._lines))
        if not is_uri(self.path):
            self._jsonl = self.path.open("a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.fspath(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        line = json.dumps({"step": step, **metrics})
        self._lines.append(line)
        if self._jsonl is not None:
            self._jsonl.write(line + "\n")
            self._jsonl.flush()
        else:
            self.path.write_text("".join(x + "\n" for x in self._lines))
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
