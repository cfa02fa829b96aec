"""Result identity: which config fields made a saved result, as a flat dict and a digest.

A run, an evaluation, a tokenizer or a cached count is reused only when the fields that made
it equal the current ones. ``fields(cfg)`` flattens a config to ``{"train.lr": 0.003, ...}``
with JSON values (tuples become lists), leaving out ``VOLATILE`` fields, which never change a
result: how often to log, whether to draw a progress bar, how many checkpoints to keep, the
mesh (a checkpoint restores onto any mesh; the numbers agree to float rounding), the attention
kernel, reader threads and the dataset cache folder. ``differences`` names what changed, for
the one-line refusal.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

# Matched on the last two components of a dotted key, so nested configs
# (``base.train.progress``, ``lama.train.mesh``) are covered too.
VOLATILE = frozenset(
    {
        "train.progress",
        "train.tensorboard",
        "train.log_every",
        "train.keep",
        "train.ckpt_async",
        "train.distributed",
        "train.coordinator_address",
        "train.num_processes",
        "train.process_id",
        "train.mesh",
        "data.worker_count",
        "data.read_threads",
        "data.data_dir",
        "model.attention",
    }
)


def _plain(value: Any) -> Any:
    """JSON-normal form: tuples -> lists, numpy scalars -> Python, NaN kept as a string."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of a config or nested mapping."""
    out: dict[str, Any] = {}
    for key, value in _plain(cfg).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def is_volatile(key: str) -> bool:
    return ".".join(key.split(".")[-2:]) in VOLATILE


def fields(cfg: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The identity fields of ``cfg``: every leaf but the volatile ones and those under any
    prefix in ``exclude`` (e.g. ``("eval",)``: evaluations carry their own identity)."""
    prefixes = tuple(f"{p}." for p in exclude)
    return {
        k: v
        for k, v in flatten(cfg).items()
        if not is_volatile(k) and not k.startswith(prefixes) and k not in exclude
    }


def digest(value: Any) -> str:
    """A 16-hex-digit hash of the canonical JSON of ``value``."""
    text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], limit: int = 4) -> str:
    """``"train.lr 0.003 -> 0.001, model.width 64 -> 128"``: the keys whose values differ
    (``<absent>`` where a side lacks one), at most ``limit`` named."""
    diffs = [
        f"{k} {_short(saved.get(k, '<absent>'))} -> {_short(current.get(k, '<absent>'))}"
        for k in sorted(set(saved) | set(current))
        if saved.get(k, "<absent>") != current.get(k, "<absent>")
    ]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more
