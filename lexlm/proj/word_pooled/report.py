"""The word-pooled experiment's findings: the paper-style table and the bucket plot.

``findings(results, train_counts)`` turns each model's evaluation (``word_pooled_runs``) into
one row: next-word accuracy overall, by training-frequency bucket and on numbers
(``lexlm.eval.next_word.accuracy_report``), bits per byte and per character, and training and
inference FLOPs per byte. ``section`` renders the rows as markdown.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from lexlm.eval.next_word import BUCKETS, accuracy_report
from lexlm.paths import as_path
from lexlm.text.words import word_body

NAMES = {
    "word_pooled": "word-pooled (eTok)",
    "char": "character LM",
    "byte": "byte LM",
    "subword": "subword LM",
    "word": "word LM (+ spelled OOV)",
    "byte_window": "byte LM, window attention",
    "megabyte4": "MegaByte, P = 4",
    "megabyte8": "MegaByte, P = 8",
    "spacebyte": "SpaceByte",
    "bigram": "count reference: most frequent next word after the previous word",
}


def train_counts(texts: Sequence[str], is_eos: Sequence[bool]) -> dict[str, int]:
    """How often each word body occurs in the training split (eos words left out)."""
    return dict(collections.Counter(word_body(t) for t, e in zip(texts, is_eos) if not e))


def findings(results: Mapping[str, dict], counts: Mapping[str, int]) -> dict:
    """One row per model: accuracy cells, bits, FLOPs; and the ratio word-pooled / char."""
    rows = {}
    for kind, r in results.items():
        acc = accuracy_report(r["predictions"], r["targets"], counts)
        rows[kind] = {
            "accuracy": acc,
            "bits_per_byte": r.get("bits_per_byte"),
            "bits_per_char": r.get("bits_per_char"),
            "n_chars": r.get("n_chars"),
            "n_bytes": r.get("n_bytes"),
            "steps": r.get("steps"),
            "train_flops": r.get("train_flops"),
            "train_flops_per_byte": r.get("train_flops_per_byte"),
            "infer_flops_per_byte": r.get("infer_flops_per_byte"),
            "train_s": r.get("train_s"),
            "params": r.get("params"),
        }
        if "oov_rate" in r:
            rows[kind]["oov_rate"] = r["oov_rate"]
    out = {"rows": rows}
    if "word_pooled" in rows and "char" in rows:
        wp, ch = rows["word_pooled"]["accuracy"], rows["char"]["accuracy"]
        rare = ("unseen", "1-10")

        def pooled(acc):
            n = sum(acc["buckets"][b]["n"] for b in rare)
            hits = sum(
                acc["buckets"][b]["accuracy"] * acc["buckets"][b]["n"]
                for b in rare
                if acc["buckets"][b]["n"]
            )
            return hits / n if n else float("nan")

        out["vs_char"] = {
            "overall": _ratio(wp["overall"]["accuracy"], ch["overall"]["accuracy"]),
            "rare_word_pooled": pooled(wp),
            "rare_char": pooled(ch),
            "rare": _ratio(pooled(wp), pooled(ch)),
        }
    return out


def _ratio(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return float("nan") if a == 0 or not math.isfinite(a) else float("inf")
    return a / b


def _pct(cell: dict) -> str:
    return "-" if not cell["n"] else f"{100 * cell['accuracy']:.1f}"


def _fix(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _sci(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def table(f: dict) -> str:
    head = [
        "model",
        "all",
        *BUCKETS,
        "numbers",
        "bits/byte",
        "bits/char",
        "train FLOPs/byte",
        "infer FLOPs/byte",
        "steps",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, r in f["rows"].items():
        a = r["accuracy"]
        cells = [
            NAMES.get(kind, kind),
            _pct(a["overall"]),
            *(_pct(a["buckets"][b]) for b in BUCKETS),
            _pct(a["numeracy"]),
            _fix(r["bits_per_byte"]),
            _fix(r["bits_per_char"]),
            _sci(r["train_flops_per_byte"]),
            _sci(r["infer_flops_per_byte"]),
            "-" if r["steps"] is None else str(r["steps"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    any_row = next(iter(f["rows"].values()))["accuracy"]
    counts = ", ".join(f"{b}: {any_row['buckets'][b]['n']}" for b in BUCKETS)
    lines += [
        "",
        f"Targets: {any_row['overall']['n']} words ({counts}; with digits: "
        f"{any_row['numeracy']['n']}).",
    ]
    return "\n".join(lines)


def section(f: dict, plot_path: str) -> str:
    rows = f["rows"]
    lines = [
        "## Word-pooled tokenization (Learn Your Tokens)",
        "",
        f"Every model trained for the same {f['budget']:.3g} training FLOPs (XLA's count of "
        f"one forward and backward pass, times steps) and evaluated from its checkpoint on "
        f"the {f['split']} split. Accuracy: greedy next-word exact match in %, after the "
        f"same context (at most {f['context_chars']} characters of whole words), by the "
        "target's count in the training split.",
        "",
        table(f),
        "",
    ]
    chars = {r["n_chars"] for r in rows.values() if r["n_chars"] is not None}
    lines.append(
        "Bits are over the whole split: "
        + (
            f"{chars.pop()} characters for every model."
            if len(chars) == 1
            else f"character counts differ between models: {sorted(chars)}."
        )
    )
    if "vs_char" in f:
        v = f["vs_char"]
        lines.append(
            f"Word-pooled against character LM: next-word accuracy x{v['overall']:.2f} overall; "
            f"on rare words (unseen or 1-10 training occurrences) "
            f"{100 * v['rare_word_pooled']:.1f}% against {100 * v['rare_char']:.1f}%."
        )
    lines += ["", f"![accuracy by frequency bucket]({plot_path})", ""]
    return "\n".join(lines)


def plot_buckets(f: dict, path: os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = f["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(BUCKETS) + 1)
    for i, (kind, r) in enumerate(rows.items()):
        a = r["accuracy"]
        ys = [a["buckets"][b]["accuracy"] for b in BUCKETS] + [a["overall"]["accuracy"]]
        ax.bar(x + i * width, np.nan_to_num(np.array(ys) * 100), width, label=NAMES.get(kind, kind))
    ax.set_xticks(x + 0.4 - width / 2, [*BUCKETS, "all"])
    ax.set_xlabel("target word's count in the training split")
    ax.set_ylabel("next-word exact match (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    with as_path(path).open("wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
    plt.close(fig)
