"""Findings of ``experiments/lama.py``: accuracy, model selection on dev, the table, the plots."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence

import numpy as np

NAMES = {
    "lama": "LAMA",
    "lama_ctx": "LAMA+CTX",
    "additive": "additive attention (HAN)",
    "structured": "structured self-attention (Lin et al.)",
    "self_attention": "multi-head self-attention pooling",
}


def accuracy(predict: Callable, batches: Iterable[dict]) -> tuple[float, int]:
    """(accuracy, examples) of ``predict(tokens) -> class ids`` over weighted batches
    (weight-0 rows are filler and not counted)."""
    correct = total = 0.0
    for batch in batches:
        pred = np.asarray(predict(batch["tokens"]))
        w = np.asarray(batch["weight"])
        correct += float(np.sum((pred == np.asarray(batch["label"])) * w))
        total += float(np.sum(w))
    return (correct / total if total else float("nan")), int(total)


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


def table(rows: Sequence[dict], standard_attention_params: int) -> list[str]:
    """Markdown rows: model, test / dev accuracy (selected step), attention parameters (and
    their ratio to multi-head self-attention's at the same width), total, step time."""
    lines = [
        "| model | test accuracy (%) | dev accuracy (%) | selected step | attention parameters "
        "| vs MHSA | total parameters | step time (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["attention_params"] / standard_attention_params
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {100 * r['test']:.1f} | "
            f"{100 * r['validation']:.1f} | {r['step']} | {r['attention_params']:,} | "
            f"{ratio:.3f} | {r['params']:,} | {1e3 * r['step_s']:.1f} |"
        )
    return lines


def lama_gap(rows: Sequence[dict]) -> tuple[float, str]:
    """LAMA's (best of LAMA and LAMA+CTX) test accuracy minus the best baseline's, in points,
    and the baseline's name."""
    lama = [r for r in rows if r["model"] in ("lama", "lama_ctx")]
    base = [r for r in rows if r["model"] not in ("lama", "lama_ctx")]
    if not lama or not base:
        return float("nan"), ""
    best = max(base, key=lambda r: r["test"])
    return 100 * (max(r["test"] for r in lama) - best["test"]), best["model"]


def plot_attention(tokens: Sequence[Sequence[str]], weights: Sequence[np.ndarray], title: str):
    """PNG bytes: one heat map per sentence, heads as rows, the sentence's tokens as columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tokens), 1, figsize=(10, 1.6 * len(tokens) + 0.6), squeeze=False)
    for ax, toks, w in zip(axes[:, 0], tokens, weights):
        ax.imshow(np.asarray(w)[:, : len(toks)], aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(toks)), toks, rotation=60, fontsize=7)
        ax.set_yticks(range(w.shape[0]), [f"h{j}" for j in range(w.shape[0])], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
