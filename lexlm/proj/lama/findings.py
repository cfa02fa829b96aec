"""The numbers the lama findings report, from evaluation records and model sizes: each
model's step chosen on validation, the majority-class baseline, LAMA's margin over the best
baseline and over mean pooling (both sides chosen on validation, test read only for the
chosen rows), the like-for-like scoring costs, the bound that LAMA's L2-normalised scores put
on one token's weight, and the entropy of attention weights against log T.

    chosen = select_on_dev(evals)                     # reads only 'validation' and 'step'
    gap, baseline = lama_gap(rows)                    # test read for the two chosen rows
    units = seed_units(row["seeds"])                  # {'correct': seed-averaged per text}
    cmp = gap_comparisons(rows)                       # {'baseline': ..., 'mean': ...}
    costs = scoring_costs(width=128, heads=8)         # parameters and FLOPs per token
    max_weight(20)                                    # one token's largest LAMA weight
    attention_entropy(weights, lengths)               # {'entropy', 'log_t', 'texts'}
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LAMA_MODELS = ("lama", "lama_ctx")
CONTROLS = ("mean",)  # no attention: not a baseline the LAMA line picks, a control of its own


def select_on_dev(evals: Sequence[dict]) -> dict:
    """The evaluation with the best validation accuracy (earliest step on ties). Test never
    takes part in the choice (only ``'validation'`` and ``'step'`` are read)."""
    if not evals:
        raise ValueError("no evaluations to select from")
    return max(evals, key=lambda e: (e["validation"], -e["step"]))


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Test accuracy of always predicting the most frequent training label."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    return float(np.mean(np.asarray(test_labels) == values[np.argmax(counts)]))


def best_on_dev(rows: Sequence[dict]) -> dict | None:
    """The row with the best validation accuracy (the first on ties); None for no rows."""
    best = None
    for r in rows:
        if best is None or r["validation"] > best["validation"]:
            best = r
    return best


def lama_gap(rows: Sequence[dict]) -> tuple[float | None, str | None]:
    """The better LAMA model's (LAMA or LAMA+CTX) test accuracy minus the best attention
    baseline's, in points, and that baseline's name. Both are chosen by validation accuracy
    (each row at the step validation chose); test is only read for the chosen two. Mean
    pooling is a control, not a candidate baseline. (None, None) without a LAMA model or a
    baseline."""
    best_lama = best_on_dev([r for r in rows if r["model"] in LAMA_MODELS])
    best = best_on_dev([r for r in rows if r["model"] not in LAMA_MODELS + CONTROLS])
    if best_lama is None or best is None:
        return None, None
    return 100 * (best_lama["test"] - best["test"]), best["model"]


def seed_units(per_seed: Sequence[dict]) -> dict[str, np.ndarray]:
    """The test texts' correctness averaged over the copies: ``{'correct': [n]}`` from each
    copy's 0/1 ``correct`` list (``intervals.mean_over_seeds``)."""
    from lexlm.eval import intervals as iv

    return iv.mean_over_seeds([{"correct": p["correct"]} for p in per_seed])


def compare_rows(a: dict, b: dict) -> dict | None:
    """The paired bootstrap over test texts of row ``a``'s accuracy minus row ``b``'s, from
    their seed-averaged correctness (``intervals.compare`` with ``mean('correct')``), with the
    models' names: ``{'a', 'b', 'a_value', 'b_value', 'diff', 'lo', 'hi', ..., 'verdict'}``
    (verdict 'a' | 'b' | 'tied'); None when either row keeps no per-text correctness."""
    from lexlm.eval import intervals as iv

    if "seeds" not in a or "seeds" not in b:
        return None
    d = iv.compare(iv.mean("correct"), seed_units(a["seeds"]), seed_units(b["seeds"]))
    values = {"a_value": d.pop("a"), "b_value": d.pop("b")}
    return {"a": a["model"], "b": b["model"], **values, **d,
            "verdict": iv.ordered(d, lower_is_better=False)}  # fmt: skip


def gap_comparisons(rows: Sequence[dict]) -> dict:
    """The better LAMA model (chosen on validation) against the best attention baseline
    (chosen on validation) and against mean pooling, each a ``compare_rows`` (None where a
    side is missing or keeps no per-text correctness): ``{'baseline': ..., 'mean': ...}``.
    Test is read for the chosen rows only."""
    best_lama = best_on_dev([r for r in rows if r["model"] in LAMA_MODELS])
    best = best_on_dev([r for r in rows if r["model"] not in LAMA_MODELS + CONTROLS])
    mean = next((r for r in rows if r["model"] == "mean"), None)
    out = {}
    for key, other in (("baseline", best), ("mean", mean)):
        out[key] = None if best_lama is None or other is None else compare_rows(best_lama, other)
    return out


def control_gap(rows: Sequence[dict], control: str = "mean") -> float | None:
    """The better LAMA model's (chosen on validation) test accuracy minus ``control``'s, in
    points; None without either. Test is read for those two rows only."""
    best_lama = best_on_dev([r for r in rows if r["model"] in LAMA_MODELS])
    other = next((r for r in rows if r["model"] == control), None)
    if best_lama is None or other is None:
        return None
    return 100 * (best_lama["test"] - other["test"])


def scoring_costs(width: int, heads: int, key_mlp: bool = True, context: str = "learned") -> dict:
    """What scores the tokens, like for like: LAMA's whole pooling layer (the key MLP
    D^2 + D, P and Q 2 D m, a learned context D: LAMA has no value or output projection)
    against self-attention's query and key projections (2 D^2 + 2 D). FLOPs per token count a
    multiply-add as 2 and leave out bias adds, LAMA's once-per-text context projection P^T c
    (2 D m) and self-attention's T x T scores: LAMA 2 D^2 (key MLP) + 2 D m (Q^T u), self-
    attention 2 x 2 D^2."""
    d, m = int(width), int(heads)
    lama_params = 2 * d * m + (d if context == "learned" else 0) + (d * d + d if key_mlp else 0)
    return {
        "lama_params": lama_params,
        "mhsa_qk_params": 2 * d * d + 2 * d,
        "lama_flops_per_token": (2 * d * d if key_mlp else 0) + 2 * d * m,
        "mhsa_qk_flops_per_token": 4 * d * d,
    }


def max_weight(tokens: int, bound: float = 1.0) -> float:
    """The largest softmax weight one of ``tokens`` tokens can get when every logit lies in
    [-bound, bound] (LAMA's L2-normalised scores: bound 1): e^b / (e^b + (T - 1) e^-b)."""
    if int(tokens) < 1:
        raise ValueError(f"tokens: must be >= 1, got {tokens}")
    return 1.0 / (1.0 + (int(tokens) - 1) * math.exp(-2.0 * bound))


def attention_entropy(weights: Sequence, lengths: Sequence[int]) -> dict:
    """Mean entropy (nats) of the attention weights over the texts and their heads, against
    the mean log of the texts' lengths (the entropy of uniform weights). ``weights``: per text
    an [m, >= T] array of weights (rows sum to 1 over the first T entries), ``lengths``: each
    text's token count T. Texts of no token are left out; both means are rounded to 5
    decimals."""
    ent, logs = [], []
    for w, t in zip(weights, lengths):
        t = int(t)
        if t < 1:
            continue
        w = np.asarray(w, np.float64)[:, :t]
        safe = np.where(w > 0, w, 1.0)
        ent.append(float(np.mean(-np.sum(w * np.log(safe), axis=-1))))
        logs.append(math.log(t))
    if not ent:
        return {"entropy": None, "log_t": None, "texts": 0}
    # rounded: float32 weights computed in another process differ in the last bits
    return {"entropy": round(float(np.mean(ent)), 5), "log_t": round(float(np.mean(logs)), 5),
            "texts": len(ent)}  # fmt: skip


def mlp_extra_params(rows: Sequence[dict], model: str, reference: str) -> int | None:
    """How many more parameters ``model``'s classifier has than ``reference``'s outside the
    pooling layer (the MLP reading m head vectors instead of one): the total difference less
    the pooling layers' difference; None without either row."""
    by = {r["model"]: r for r in rows}
    if model not in by or reference not in by:
        return None
    a, b = by[model], by[reference]
    return (a["params"] - b["params"]) - (a["attention_params"] - b["attention_params"])
