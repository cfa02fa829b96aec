"""The numbers the lama findings report, from evaluation records: each model's step chosen on
validation, the majority-class baseline, LAMA's margin over the best baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LAMA_MODELS = ("lama", "lama_ctx")


def select_on_dev(evals: Sequence[dict]) -> dict:
    """The evaluation with the best validation accuracy (earliest step on ties). Test never
    takes part in the choice."""
    if not evals:
        raise ValueError("no evaluations to select from")
    return max(evals, key=lambda e: (e["validation"], -e["step"]))


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent training label."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float(np.mean(np.asarray(test_labels) == values[np.argmax(counts)]))


def lama_gap(rows: Sequence[dict]) -> tuple[float | None, str | None]:
    """The better LAMA model's (LAMA or LAMA+CTX) test accuracy minus the best baseline's, in
    points, and that baseline's name. Both are chosen by validation accuracy (each row at the
    step validation chose); test is only read for the chosen two. (None, None) without a LAMA
    model or a baseline."""
    lama = [r for r in rows if r["model"] in LAMA_MODELS]
    base = [r for r in rows if r["model"] not in LAMA_MODELS]
    if not lama or not base:
        return None, None
    best_lama = max(lama, key=lambda r: r["validation"])
    best = max(base, key=lambda r: r["validation"])
    return 100 * (best_lama["test"] - best["test"]), best["model"]
