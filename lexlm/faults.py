"""Named kill points for fault-injection tests.

``LEXLM_FAULT="train_step:3"`` makes the process SIGKILL itself the 3rd time it reaches
``point("train_step")``; several points are separated by commas and the first one reached
wins. Unset (every normal run), ``point`` is a dictionary lookup. The points:

* ``train_step``: after a training step, before any checkpoint of it;
* ``checkpoint``: right after a checkpoint is written, before the hooks that evaluate it;
* ``write``: inside an atomic write, after the temporary file is complete, before the rename;
* ``evaluate``: when an evaluation is computed, before its result is written;
* ``report``: after ``findings.json`` is written, before ``report.md``.

A rerun of the same command after any of them must end with the same findings as a run that
was never killed (``tests/test_faults.py``).
"""

from __future__ import annotations

import os
import signal

ENV = "LEXLM_FAULT"
POINTS = ("train_step", "checkpoint", "write", "evaluate", "report")

_spec: dict[str, int] | None = None
_hits: dict[str, int] = {}


def _parse(text: str) -> dict[str, int]:
    spec = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown point {name!r}; points: {', '.join(POINTS)}")
        spec[name] = int(count or 1)
    return spec


def point(name: str) -> None:
    """SIGKILLs this process if ``LEXLM_FAULT`` asks for this hit of ``name``."""
    global _spec
    if _spec is None:
        _spec = _parse(os.environ.get(ENV, ""))
    if name not in _spec:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _spec[name]:
        os.kill(os.getpid(), signal.SIGKILL)
