"""The byte-patching experiment's findings: the bits-per-byte grid, SpaceByte's ordering check,
the markdown section and the plot of bits per byte against training FLOPs.

``findings(grids, reference)`` takes the word-pooled findings of each budget's grid
(``experiments.word_pooled.run``, in budget order) and the count reference
(``lexlm.eval.byte_ngram.select_and_score``). ``ordering`` checks SpaceByte's claim at one
budget: subword < SpaceByte < MegaByte (the better of P = 4 and 8) < byte Transformer in bits
per byte, on whichever of these models the grid has.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence

from experiments.word_pooled_report import NAMES
from lexlm.paths import as_path

CLAIM = ("subword", "spacebyte", "megabyte", "byte")  # SpaceByte's Table 1, best first
FIELDS = (
    "bits_per_byte",
    "train_flops",
    "train_flops_per_byte",
    "infer_flops_per_byte",
    "steps",
    "params",
    "n_bytes",
)


def claim_scores(bpb: Mapping[str, float]) -> dict[str, float]:
    """The claim's models present in ``bpb`` (model -> bits per byte); 'megabyte' is the better
    of megabyte4 and megabyte8."""
    out = {}
    for name in CLAIM:
        if name == "megabyte":
            values = [bpb[k] for k in ("megabyte4", "megabyte8") if k in bpb]
            if values:
                out[name] = min(values)
        elif name in bpb:
            out[name] = bpb[name]
    return out


def ordering(bpb: Mapping[str, float]) -> dict:
    """Does subword < SpaceByte < MegaByte < byte hold? Pairs of neighbours in the claim (among
    the models present), each with ``holds``; ``holds`` for all (None with fewer than two);
    ``ranked``: every model best first; ``word_pooled_rank``: its 1-based place (or None)."""
    scores = claim_scores(bpb)
    chain = [n for n in CLAIM if n in scores]
    pairs = [
        {"better": a, "worse": b, "holds": bool(scores[a] < scores[b])}
        for a, b in itertools.pairwise(chain)
    ]
    ranked = sorted(bpb, key=lambda k: bpb[k])
    return {
        "chain": chain,
        "pairs": pairs,
        "holds": all(p["holds"] for p in pairs) if pairs else None,
        "ranked": ranked,
        "word_pooled_rank": ranked.index("word_pooled") + 1 if "word_pooled" in bpb else None,
    }


def findings(grids: Sequence[Mapping], reference: Mapping) -> dict:
    """rows: model -> one dict per budget (``FIELDS``); budgets; orderings per budget; the
    count reference."""
    budgets = [float(g["budget"]) for g in grids]
    models: list[str] = []
    for g in grids:
        models += [k for k in g["rows"] if k != "bigram" and k not in models]
    rows = {m: [{f: g["rows"].get(m, {}).get(f) for f in FIELDS} for g in grids] for m in models}
    orderings = []
    for i in range(len(grids)):
        bpb = {m: r[i]["bits_per_byte"] for m, r in rows.items()}
        orderings.append(ordering({m: v for m, v in bpb.items() if v is not None}))
    return {
        "budgets": budgets,
        "rows": rows,
        "orderings": orderings,
        "reference": dict(reference),
    }


def _fix(x) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _sci(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def table(f: dict) -> str:
    head = ["model", "params", "train FLOPs/byte", "infer FLOPs/byte"]
    for b in f["budgets"]:
        head += [f"steps @ {b:.2g}", f"bits/byte @ {b:.2g}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, per in f["rows"].items():
        first = per[0]
        cells = [
            NAMES.get(m, m),
            _sci(first["params"]),
            _sci(first["train_flops_per_byte"]),
            _sci(first["infer_flops_per_byte"]),
        ]
        for r in per:
            cells += ["-" if r["steps"] is None else str(r["steps"]), _fix(r["bits_per_byte"])]
        lines.append("| " + " | ".join(cells) + " |")
    ref = f["reference"]
    cells = [f"count reference: byte {ref['order']}-gram (Witten-Bell)", "-", "0", "-"]
    cells += ["-", _fix(ref["bits_per_byte"])] * len(f["budgets"])
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(o: dict) -> str:
    """One sentence on SpaceByte's ordering at one budget."""
    if o["holds"] is None:
        return "too few of the claim's models to check the ordering"
    names = {"megabyte": "MegaByte", "spacebyte": "SpaceByte", "subword": "subword", "byte": "byte"}
    parts = [
        f"{names[p['better']]} {'<' if p['holds'] else 'NOT <'} {names[p['worse']]}"
        for p in o["pairs"]
    ]
    head = "reproduces" if o["holds"] else "does not reproduce"
    return f"{head} ({', '.join(parts)})"


def section(f: dict, plot_path: str) -> str:
    lines = [
        "## Byte-patching peers (MegaByte, SpaceByte) at matched training FLOPs",
        "",
        f"Test bits per byte ({f.get('split', 'test')} split, every byte) of each model trained "
        "for each budget (training FLOPs: XLA's count of a forward and backward pass, times "
        "steps), evaluated from its checkpoint. FLOPs per byte are per training (forward and "
        "backward) and inference (forward) byte.",
        "",
        table(f),
        "",
    ]
    for b, o in zip(f["budgets"], f["orderings"]):
        rank = o["word_pooled_rank"]
        where = f"; the word-pooled LM ranks {rank} of {len(o['ranked'])}" if rank else ""
        lines.append(f"- At {b:.2g} FLOPs, SpaceByte's ordering {verdict(o)}{where}.")
    by_order = f["reference"].get("test_bits_per_byte_by_order")
    if by_order:
        cells = ", ".join(f"{k}-gram {_fix(v)}" for k, v in by_order.items())
        lines.append(f"- Byte n-gram count models on the test split (diagnostic): {cells}.")
    for split, p in f.get("spacebyte_patching", {}).items():
        lines.append(
            f"- SpaceByte's patching of the {split} split's windows: {p['bytes_per_patch']:.2f} "
            f"bytes per patch; {p['overflow']} of {p['bytes']} bytes "
            f"({100 * p['overflow_fraction']:.2f}%) lie past the cap of {p['cap']} global "
            "positions (kept in the loss, predicted without a global update)."
        )
    lines += ["", f"![bits per byte against training FLOPs]({plot_path})", ""]
    return "\n".join(lines)


def plot(f: dict, path: os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, per in f["rows"].items():
        pts = [(r["train_flops"], r["bits_per_byte"]) for r in per if r["bits_per_byte"]]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=NAMES.get(m, m))
    ref = f["reference"]["bits_per_byte"]
    ax.axhline(ref, color="gray", ls="--", lw=1, label="byte n-gram count reference")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("test bits per byte")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with as_path(path).open("wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
    plt.close(fig)
