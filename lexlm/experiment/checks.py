"""Config checks every project's ``validate`` uses: each raises a one-line ``ConfigError``
naming the field and what is allowed, before anything is read, counted or trained."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lexlm.errors import ConfigError


def unknown_variant(project: str, variant: Any, variants: Sequence[str]) -> ConfigError:
    return ConfigError(
        "config", f"unknown variant {variant!r} of {project}; variants: {', '.join(variants)}"
    )


def names(value: Any, allowed: Sequence[str], field: str) -> list[str]:
    """A comma-separated value as a list of names from ``allowed`` (at least one)."""
    out = [m.strip() for m in str(value).split(",") if m.strip()]
    bad = [m for m in out if m not in allowed]
    if bad or not out:
        raise ConfigError(field, f"unknown {bad or value!r}; choose from {', '.join(allowed)}")
    return out


def number(value: Any, field: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ConfigError(field, f"must be finite, got {value!r}")
    return x


def integer(value: Any, field: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not float(number(value, field)).is_integer():
        raise ConfigError(field, f"must be an integer, got {value!r}")
    x = int(value)
    if minimum is not None and x < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value!r}")
    return x


def positive(value: Any, field: str) -> float:
    x = number(value, field)
    if x <= 0:
        raise ConfigError(field, f"must be > 0, got {value!r}")
    return x


def in_range(value: Any, field: str, lo: float, hi: float, *, hi_open: bool = False) -> float:
    """``lo <= value <= hi`` (``< hi`` with ``hi_open``)."""
    x = number(value, field)
    if x < lo or x > hi or (hi_open and x == hi):
        raise ConfigError(field, f"must lie in [{lo}, {hi}{')' if hi_open else ']'}, got {value!r}")
    return x


def flops_list(value: Any, field: str) -> list[float]:
    """A comma-separated list of positive finite FLOP budgets."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    if not parts:
        raise ConfigError(field, f"needs one or more FLOP budgets, got {value!r}")
    out = [positive(p, field) for p in parts]
    if len(set(out)) != len(out):
        raise ConfigError(field, f"lists a budget twice: {value!r}")
    return out


def flops_name(budget: float) -> str:
    """A budget as a grid entry's name: 3e12 -> 'budget_3e12', 1.5e11 -> 'budget_1.5e11'."""
    text = f"{budget:.6g}".replace("e+", "e").replace("e0", "e")
    return f"budget_{text}"
