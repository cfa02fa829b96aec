"""Seeds, paired bootstrap intervals and the sentences that may state an ordering.

Every comparison in a findings file goes through here. The protocol:

- A metric is computed from **test units** (documents for LMs, pairs for STS, texts for
  classification): per-unit arrays in a dict, and a function of that dict (``ratio_of_sums``
  for bits per byte, ``mean`` for accuracy, ``spearman_of`` for STS).
- **Seeds**: each of S training seeds gives the per-unit arrays on the same units;
  ``seed_spread`` summarises the S metric values, ``mean_over_seeds`` averages the per-unit
  arrays, so the bootstrap below sees the seed-averaged model.
- LM test units are blocks of ``UNIT_BYTES`` bytes within documents (``block_units``): the
  same blocks for every model, many even where a split holds a few long documents.
- **Paired bootstrap**: ``compare`` resamples the units with replacement (the same draw for both
  models) and gives the percentile interval of the difference of the metric.
- ``ordering_sentence`` states "A < B" only when that interval excludes 0, and otherwise says
  that the two are tied at this budget.

    a = {"nll": bits_a, "n": bytes}; b = {"nll": bits_b, "n": bytes}
    d = compare(ratio_of_sums("nll", "n"), a, b)       # {'diff', 'lo', 'hi', ...}
    ordering_sentence("SpaceByte", "MegaByte", d, lower_is_better=True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

Units = Mapping[str, npt.ArrayLike]  # per-unit arrays (lists from JSON too)
Metric = Callable[[Units], float]

LEVEL = 0.95
RESAMPLES = 1000
MIN_UNITS = 10  # below this many test units no ordering is stated, whatever the interval
UNIT_BYTES = 1024  # LM test units: blocks of this many bytes within each document


def block_units(
    doc: npt.ArrayLike, nbytes: npt.ArrayLike, doc_bytes: npt.ArrayLike, unit_bytes=UNIT_BYTES
) -> np.ndarray:
    """The test unit of each target of a text stream: block ``offset // unit_bytes`` of its
    document, where offset is the byte at which the target starts within its document.

    ``doc`` [N]: each target's document (-1: no document), in stream order; ``nbytes`` [N]:
    each target's bytes; ``doc_bytes`` [D]: each document's total bytes (the same for every
    model of a comparison, so every model gets the same units). Returns unit ids [N] (-1 where
    ``doc`` is -1), numbered document by document: a few long documents (three books of a
    Bible) still give enough units for a bootstrap. A target that straddles a block boundary
    belongs to the block it starts in, so models with different units divide a boundary's
    bytes a little differently; the blocks themselves are the same."""
    doc = np.asarray(doc, np.int64)
    nbytes = np.asarray(nbytes, np.int64)
    blocks = -(-np.asarray(doc_bytes, np.int64) // unit_bytes)  # [D]
    first = np.concatenate([[0], np.cumsum(blocks)[:-1]])
    out = np.full(len(doc), -1, np.int64)
    real = doc >= 0
    d, b = doc[real], nbytes[real]
    # offset of each target within its document: bytes of the earlier targets of that document
    before = np.cumsum(b) - b
    start_of_doc = np.zeros(int(d.max()) + 1 if len(d) else 0, np.int64)
    new_doc = np.concatenate([[True], d[1:] != d[:-1]]) if len(d) else np.zeros(0, bool)
    start_of_doc[d[new_doc]] = before[new_doc]
    offset = before - start_of_doc[d]
    out[real] = first[d] + np.minimum(offset // unit_bytes, blocks[d] - 1)
    return out


# -- metrics of per-unit arrays ---------------------------------------------------------------
def ratio_of_sums(numerator: str, denominator: str) -> Metric:
    """sum(units[numerator]) / sum(units[denominator]): bits per byte from per-document bits
    and bytes, accuracy from per-class counts."""

    def metric(units: Units) -> float:
        return float(np.sum(units[numerator]) / np.sum(units[denominator]))

    metric.batched = (numerator, denominator)  # type: ignore[attr-defined]
    return metric


def mean(field: str) -> Metric:
    """The mean of one per-unit value (accuracy from 0/1 correctness)."""

    def metric(units: Units) -> float:
        return float(np.mean(units[field]))

    metric.batched = (field, None)  # type: ignore[attr-defined]
    return metric


def mean_of(metrics: Sequence[Metric]) -> Metric:
    """The unweighted mean of several metrics of the same units: a mean accuracy over tasks
    from per-row ``ratio_of_sums`` of each task's hits and answers."""
    parts = list(metrics)
    if not parts:
        raise ValueError("mean_of: no metrics")

    def metric(units: Units) -> float:
        return float(np.mean([m(units) for m in parts]))

    metric.parts = parts  # type: ignore[attr-defined]
    return metric


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (1-based), along the last axis."""
    order = np.argsort(x, axis=-1, kind="stable")
    ranks = np.empty_like(order, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(1, x.shape[-1] + 1, dtype=np.float64), axis=-1)
    # average the ranks of tied values
    if x.ndim == 1:
        values, inverse = np.unique(x, return_inverse=True)
        if len(values) < len(x):
            sums = np.bincount(inverse, weights=ranks)
            counts = np.bincount(inverse)
            ranks = (sums / counts)[inverse]
        return ranks
    return np.stack([_ranks(row) for row in x])


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's rank correlation (ties averaged), x 100 as the STS literature reports it."""
    rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(np.sum(rx * rx) * np.sum(ry * ry)))
    return 100.0 * float(np.sum(rx * ry) / denom) if denom > 0 else float("nan")


def spearman_of(pred: str, gold: str) -> Metric:
    """Spearman x 100 between two per-pair fields."""

    def metric(units: Units) -> float:
        return spearman(units[pred], units[gold])

    return metric


# -- seeds ------------------------------------------------------------------------------------
def seed_spread(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation, min and max of a metric over training seeds."""
    v = np.asarray([float(x) for x in values], np.float64)
    if v.size == 0:
        raise ValueError("seed_spread: no seeds")
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return {"n": int(v.size), "mean": float(v.mean()), "sd": sd,
            "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}  # fmt: skip


def mean_over_seeds(per_seed: Sequence[Units]) -> dict[str, np.ndarray]:
    """The per-unit arrays averaged over seeds (every seed scored on the same units)."""
    if not per_seed:
        raise ValueError("mean_over_seeds: no seeds")
    keys = per_seed[0].keys()
    shapes = {k: np.shape(per_seed[0][k]) for k in keys}
    for units in per_seed[1:]:
        if {k: np.shape(units[k]) for k in keys} != shapes:
            raise ValueError("mean_over_seeds: seeds were scored on different units")
    return {k: np.mean([np.asarray(u[k], np.float64) for u in per_seed], axis=0) for k in keys}


# -- the bootstrap ------------------------------------------------------------------------------
def _n_units(units: Units) -> int:
    sizes = {len(np.asarray(v)) for v in units.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-unit arrays of different lengths: {sorted(sizes)}")
    return sizes.pop()


def _resampled(metric: Metric, units: Units, draws: np.ndarray) -> np.ndarray:
    """The metric on each resample (rows of ``draws`` are unit indices)."""
    parts = getattr(metric, "parts", None)
    if parts is not None:
        return np.mean([_resampled(m, units, draws) for m in parts], axis=0)
    batched = getattr(metric, "batched", None)
    if batched is not None:
        num, den = batched
        top = np.asarray(units[num], np.float64)[draws].sum(axis=1)
        if den is None:
            return top / draws.shape[1]
        return top / np.asarray(units[den], np.float64)[draws].sum(axis=1)
    return np.array([metric({k: np.asarray(v)[row] for k, v in units.items()}) for row in draws])


def _draws(n_units: int, resamples: int, seed: int) -> np.ndarray:
    if n_units < 2:
        raise ValueError(f"a bootstrap needs at least 2 test units, got {n_units}")
    return np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))


def bootstrap_interval(
    metric: Metric, units: Units, *, resamples: int = RESAMPLES, level: float = LEVEL, seed=0
) -> dict:
    """{'value', 'lo', 'hi', 'level', 'units'}: the metric and its percentile bootstrap
    interval over test units."""
    n = _n_units(units)
    stats = _resampled(metric, units, _draws(n, resamples, seed))
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return {"value": metric(units), "lo": float(lo), "hi": float(hi), "level": level, "units": n}


def compare(
    metric: Metric,
    a: Units,
    b: Units,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict:
    """Paired bootstrap of metric(a) - metric(b) over the same test units.

    Returns {'a', 'b', 'diff', 'lo', 'hi', 'level', 'units', 'excludes_zero'}."""
    n = _n_units(a)
    if _n_units(b) != n:
        raise ValueError(f"paired comparison of {n} and {_n_units(b)} units")
    draws = _draws(n, resamples, seed)
    diffs = _resampled(metric, a, draws) - _resampled(metric, b, draws)
    lo, hi = (float(q) for q in np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]))
    va, vb = metric(a), metric(b)
    return {"a": va, "b": vb, "diff": va - vb, "lo": lo, "hi": hi, "level": level, "units": n,
            "excludes_zero": bool((lo > 0 or hi < 0) and n >= MIN_UNITS)}  # fmt: skip


def ordered(comparison: Mapping, lower_is_better: bool) -> str:
    """'a' or 'b' (the better one) when the interval of the difference excludes 0, else 'tied'
    (also with fewer than ``MIN_UNITS`` test units, where a bootstrap means little)."""
    if not (comparison["lo"] > 0 or comparison["hi"] < 0):
        return "tied"
    if comparison.get("units", MIN_UNITS) < MIN_UNITS:
        return "tied"
    a_lower = comparison["hi"] < 0
    return "a" if a_lower == lower_is_better else "b"


def fmt_interval(comparison: Mapping, digits: int = 3) -> str:
    """'-0.012 [-0.020, -0.004]': the difference and its interval."""
    d = digits
    return f"{comparison['diff']:+.{d}f} [{comparison['lo']:+.{d}f}, {comparison['hi']:+.{d}f}]"


def ordering_sentence(
    name_a: str, name_b: str, comparison: Mapping, *, lower_is_better: bool, digits: int = 3
) -> str:
    """One sentence: an ordering only when the paired interval of the difference excludes 0."""
    level = round(100 * comparison.get("level", LEVEL))
    what = f"difference {fmt_interval(comparison, digits)}, {level}% paired bootstrap interval"
    verdict = ordered(comparison, lower_is_better)
    if verdict == "tied":
        n = comparison.get("units", MIN_UNITS)
        why = f"only {n} test units" if n < MIN_UNITS else "includes 0"
        return f"{name_a} and {name_b} are tied at this budget ({what} {why})"
    better, worse = (name_a, name_b) if verdict == "a" else (name_b, name_a)
    return f"{better} is better than {worse} ({what})"


def plus_minus(value: float, lo: float, hi: float, digits: int = 3) -> str:
    """'3.456 ± 0.012' with the half-width of the interval [lo, hi]."""
    return f"{value:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"
