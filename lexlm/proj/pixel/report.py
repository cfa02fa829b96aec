"""Findings of ``experiments/pixel_sentence.py``: scoring a similarity target (sentence pairs or
documents), typo robustness, dev selection, the table and the figures."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Sequence

import numpy as np

from lexlm.data import sts as sts_data
from lexlm.eval import sts

NAMES = {
    "pixel": "pixel encoder (rendered text)",
    "token": "subword-token encoder",
    "tfidf": "reference: TF-IDF bag of words (no training)",
}


def target_size(target) -> int:
    return len(target.pairs) if isinstance(target, sts_data.DocSimilarity) else len(target)


def score(embed: Callable, target, max_chars: int) -> dict:
    """Spearman / Pearson x100 of cosine similarity against the human scores: sentence pairs
    (``sts.Pairs``) or documents embedded chunk by chunk (``sts.DocSimilarity``)."""
    if isinstance(target, sts_data.DocSimilarity):
        return sts.doc_similarity_scores(embed, target, max_chars)
    return sts.sts_scores(embed, target)


def with_typos(target, rate: float, seed: int):
    """A copy of ``target`` with character typos at ``rate`` in every text (documents, or both
    sides of every pair, each side with its own seed); rate 0 returns ``target`` itself."""
    from lexlm.text.perturb import perturb_many

    if rate == 0:
        return target
    if isinstance(target, sts_data.DocSimilarity):
        return dataclasses.replace(
            target, docs=tuple(perturb_many(target.docs, "typo", rate, seed))
        )
    left = perturb_many(target.left, "typo", rate, seed)
    right = perturb_many(target.right, "typo", rate, seed + 1)
    return dataclasses.replace(target, left=tuple(left), right=tuple(right))


def robustness(embed: Callable, target, rates: Sequence[float], seed: int, max_chars: int):
    """Rows {rate, spearman, drop} for rate 0 (clean) and each of ``rates``; drop = clean
    Spearman minus the perturbed one (positive = worse under typos)."""
    clean = score(embed, target, max_chars)["spearman"]
    rows = [{"rate": 0.0, "spearman": clean, "drop": 0.0}]
    for k, rate in enumerate(r for r in rates if r > 0):
        s = score(embed, with_typos(target, float(rate), seed + 2 * (k + 1)), max_chars)
        rows.append({"rate": float(rate), "spearman": s["spearman"], "drop": clean - s["spearman"]})
    return rows


def select_on_dev(records: Sequence[dict]) -> dict:
    """The candidate checkpoint with the best dev score (earliest global step on ties); test
    never takes part."""
    cands = [r for r in records if r["candidate"] and math.isfinite(r["dev"])]
    if not cands:
        raise ValueError("no candidate checkpoint with a finite dev score")
    return max(cands, key=lambda r: (r["dev"], -r["global_step"]))


def drop_at(row: dict, rate: float) -> float:
    for r in row["robustness"]:
        if math.isclose(r["rate"], rate):
            return r["drop"]
    return math.nan


def typo_gap(rows: Sequence[dict], rate: float) -> dict | None:
    """{'pixel': drop, 'token': drop} at ``rate`` when both models ran, else None."""
    by = {r["model"]: drop_at(r, rate) for r in rows}
    if "pixel" not in by or "token" not in by:
        return None
    return {"pixel": by["pixel"], "token": by["token"]}


def table(rows: Sequence[dict]) -> list[str]:
    rates = [r["rate"] for r in rows[0]["robustness"][1:]] if rows else []
    head = " | ".join(f"test at {100 * r:g}% typos (drop)" for r in rates)
    lines = [
        f"| model | test Spearman | test, no head | dev Spearman | selected | {head} | "
        "parameters |",
        "|---|---|---|---|---|" + "---|" * len(rates) + "---|",
    ]
    for r in rows:
        cells = " | ".join(f"{x['spearman']:.1f} ({x['drop']:+.1f})" for x in r["robustness"][1:])
        ref = r.get("reference", False)
        no_head = "-" if ref else f"{r['test_no_head']:.1f}"
        chosen = "-" if ref else f"{r['stage']} step {r['step']}"
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {r['test']:.1f} | {no_head} | "
            f"{r['dev']:.1f} | {chosen} | {cells} | {r['params']:,} |"
        )
    return lines


def example_texts(sentences: Sequence[str], k: int, seed: int) -> list[str]:
    """``k`` training sentences of 40-100 characters (or any, if too few), by a fixed seed."""
    fits = [s for s in sentences if 40 <= len(s) <= 100] or list(sentences)
    idx = np.random.default_rng(seed).choice(len(fits), size=min(k, len(fits)), replace=False)
    return [fits[i] for i in sorted(idx)]


def changed_patches(a: np.ndarray, b: np.ndarray, patch: int) -> np.ndarray:
    """Indices of the patches where two [H, W] strips differ."""
    diff = (a != b).reshape(a.shape[0], -1, patch).any(axis=(0, 2))
    return np.flatnonzero(diff)


def plot_rendered(renderer, texts: Sequence[str], seed: int) -> bytes:
    """PNG: each text rendered clean, with 10% typos and word-shuffled (its positives), the
    patch grid drawn and the patches a typo changed shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lexlm.text.perturb import perturb

    rng = np.random.default_rng(seed)
    rows = []
    for t in texts:
        rows += [("clean", t), ("10% typos", perturb(t, "typo", rng, 0.1)),
                 ("word shuffle", perturb(t, "word_shuffle", rng))]  # fmt: skip
    imgs = renderer.render([t for _, t in rows]).images
    patch = renderer.cfg.patch
    last = int(max(np.flatnonzero((imgs < 255).any(axis=(0, 1)))[-1] // patch + 2, 8))
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 0.55 * len(rows) + 0.4))
    for i, (ax, (label, _)) in enumerate(zip(np.atleast_1d(axes), rows)):
        img = imgs[i][:, : last * patch]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, aspect="equal", interpolation="nearest")
        if label == "10% typos":
            for p in changed_patches(imgs[i - 1][:, : last * patch], img, patch):
                ax.axvspan(p * patch - 0.5, (p + 1) * patch - 0.5, color="tab:red", alpha=0.25)
        for x in range(patch, last * patch, patch):
            ax.axvline(x - 0.5, color="tab:blue", lw=0.3)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle("Rendered inputs (16 x 16 patches; red: patches the typos changed)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_robustness(curves: dict[str, list[dict]]) -> bytes:
    """PNG: test Spearman against the character-typo rate, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, rows in curves.items():
        ax.plot([100 * r["rate"] for r in rows], [r["spearman"] for r in rows], marker="o",
                label=NAMES.get(name, name))  # fmt: skip
    ax.set_xlabel("character typos (% of letters)")
    ax.set_ylabel("test Spearman x100")
    ax.set_title("Similarity under typos", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
