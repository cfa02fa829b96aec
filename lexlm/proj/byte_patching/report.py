"""The byte-patching experiment's findings and report: the bits-per-byte grid, SpaceByte's
ordering check, where each model sits between count models, and the plot of bits per byte
against training FLOPs.

``findings(grids, reference)`` takes the word-pooled grid findings of each budget
(``lexlm.proj.word_pooled.run.grid_findings``, ascending budgets) and the count reference
(``lexlm.eval.byte_ngram.select_and_score``). ``ordering`` checks SpaceByte's claim at one
budget: subword < SpaceByte < MegaByte (the better of P = 4 and 8) < byte Transformer in bits
per byte, on whichever of these models the grid has. Every number and ordering ``render``
writes comes from the findings.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence

from lexlm.proj.word_pooled.report import NAMES, bits_cell, finite, seeds_note

CLAIM = ("subword", "spacebyte", "megabyte", "byte")  # SpaceByte's Table 1, best first
CLAIM_NAMES = {"megabyte": "MegaByte", "spacebyte": "SpaceByte", "subword": "subword",
               "byte": "byte"}  # fmt: skip
FIELDS = (
    "bits_per_byte",
    "train_flops",
    "train_flops_per_byte",
    "infer_flops_per_byte",
    "train_bytes",
    "steps",
    "params",
    "n_bytes",
)

PAGE = {
    "title": "Byte-patching peers: MegaByte and SpaceByte (Yu et al., 2023; Slagle, 2024)",
    "intro": """
MegaByte (`lexlm.nn.megabyte`, with patches of four and eight bytes) and SpaceByte
(`lexlm.nn.spacebyte`) on the word-pooled experiment's grid, next to the byte Transformer (full
and sliding-window attention), the subword Transformer and the word-pooled LM: the same data and
splits, every model trained through the one trainer for the same training FLOPs (a forward and
backward pass counted as computed by `lexlm.eval.flops`, loop bodies times their trip counts and
window attention only over its band, times steps; findings saved before that counter charged a
scan body once, as XLA's raw count does) at each budget, warmed up over a fixed fraction of its
own steps, and evaluated from its final checkpoint in bits per byte over the whole test split.
Each budget's models are run directories `W/runs/budget_<FLOPs>/<model>`. The byte-level models
are sized to about the byte Transformer's training FLOPs per byte (SpaceByte's control: equal
FLOPs per byte means equal bytes seen), except MegaByte with eight-byte patches, whose longer
patches make it cheaper. The reference that needs no training is a byte n-gram count model
(Witten-Bell, order chosen on validation, `lexlm.eval.byte_ngram`); it scores the documents'
bytes, the models also score each end-of-text.

What lexlm does where the papers leave a choice:

- SpaceByte's global blocks run at input position t when byte t is spacelike (not an ASCII
  letter or digit, not a UTF-8 continuation byte) and byte t-1 is not, as in the official
  code, so the global output at a space predicts the next word's first byte; also at special
  ids (end-of-text) and at each window's first byte.
- The global context is capped at `cap` positions per window. SpaceByte drops the bytes of
  overflow patches from the loss; lexlm keeps them, predicted by the local blocks alone, and
  counts them (the lines under each table), so every byte is scored.
- Learned absolute positions instead of RoPE, and no qk-LayerNorm: the blocks are the
  library's pre-LN blocks, shared with the word-pooled LM.
- MegaByte: the global stack reads patch k - 1's P byte embeddings (with learned byte
  positions) concatenated, so the global output for patch k has seen bytes < kP; the local
  stack adds it, split into P chunks and projected, to the bytes of patch k.

One learning rate and schedule serve every model, and the sizes are not tuned per budget as
in SpaceByte's grid, whose smallest budget is orders of magnitude above these; the `paper`
variant is SpaceByte's own grid for an accelerator.

```bash
# the main job's section: the embedded Lee news corpus
python -m lexlm.run --config byte_patching:main --workdir results/bp_main
# Tiny Shakespeare (input.txt of karpathy's char-rnn, also TFDS tiny_shakespeare)
python -m lexlm.run --config byte_patching:shakespeare --workdir results/bp_shakespeare \\
    --config.data.files=path/to/tinyshakespeare/input.txt
# the Spanish Bible (Reina-Valera 1909), each book one document; other budgets are new entries
python -m lexlm.run --config byte_patching:spanish --workdir results/bp_spanish \\
    --config.data.files=path/to/reina_valera_1909.txt --config.budgets=1.5e12,4.5e12
```

MegaByte and SpaceByte over UTF-8 bytes, SpaceByte's patch starts, and cached byte-by-byte
generation (`tests/test_readme.py` runs this):

```python
import jax
import numpy as np
from lexlm.nn.byte_decode import generate
from lexlm.nn.megabyte import MegaByteConfig, MegaByteLM
from lexlm.nn.spacebyte import SpaceByteConfig, SpaceByteLM
from lexlm.text import ByteTokenizer, patching

tok = ByteTokenizer()
x = tok.encode("The cat sat on the mat; the dog sat on the log, and both slept.")[None, :49]
inputs, targets = x[:, :-1], x[:, 1:]  # [1, 48]: predict byte t + 1 from bytes 0..t
starts = np.flatnonzero(patching.spacebyte_global(inputs)[0])  # where global blocks run
sb = SpaceByteLM(SpaceByteConfig(vocab_size=tok.vocab_size, max_len=64, local_width=32, width=64))
mb = MegaByteLM(
    MegaByteConfig(vocab_size=tok.vocab_size, max_len=64, global_width=64, local_width=32)
)
for model in (sb, mb):
    params = jax.jit(model.init)(jax.random.key(0), inputs)["params"]
    apply = jax.jit(model.apply, static_argnames="method")
    nll = apply({"params": params}, inputs, targets, method="nll")  # [1, 48] nats
    out, logits = generate(model, params, inputs[:, :16], 16)  # [1, 32] bytes, cached
text = tok.decode(out[0])
```
""",
    "findings": [
        ("main", "Main job: the embedded Lee corpus"),
        ("shakespeare", "Tiny Shakespeare"),
        ("spanish", "Spanish Bible (Reina-Valera 1909)"),
    ],
}


# -- findings --------------------------------------------------------------------------------
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


def claim_pairs(models: Sequence[str]) -> list[tuple[str, str]]:
    """The claim's neighbouring pairs (better, worse) among the grid's models, each MegaByte
    variant on its own (choosing the better of the two would choose on test)."""
    mega = [m for m in ("megabyte4", "megabyte8") if m in models]
    pairs = []
    if "subword" in models and "spacebyte" in models:
        pairs.append(("subword", "spacebyte"))
    for m in mega:
        if "spacebyte" in models:
            pairs.append(("spacebyte", m))
        if "byte" in models:
            pairs.append((m, "byte"))
    if not mega and "spacebyte" in models and "byte" in models:
        pairs.append(("spacebyte", "byte"))
    return pairs


def ordering(bpb: Mapping[str, float], units: Mapping[str, Mapping] | None = None) -> dict:
    """Does subword < SpaceByte < MegaByte < byte hold? Pairs of neighbours in the claim (among
    the models present), each with ``holds``; ``holds`` for all (None with fewer than two);
    ``ranked``: every model best first; ``word_pooled_rank``: its 1-based place (or None).

    With ``units`` (model -> per-document bits and bytes) each pair carries the paired
    bootstrap of the difference (``lexlm.eval.intervals.compare``) and ``verdict``: 'holds'
    (the interval lies below 0), 'reversed' (above 0) or 'tied'; ``holds`` is then True only
    when every pair's interval says so. Without units (old findings) each MegaByte value is
    the better of P = 4 and 8 and ``holds`` compares the point values."""
    from lexlm.eval import intervals as iv

    ranked = sorted(bpb, key=lambda k: bpb[k])
    rank = ranked.index("word_pooled") + 1 if "word_pooled" in bpb else None
    if units is None:
        scores = claim_scores(bpb)
        chain = [n for n in CLAIM if n in scores]
        pairs = [
            {"better": a, "worse": b, "holds": bool(scores[a] < scores[b])}
            for a, b in itertools.pairwise(chain)
        ]
        return {"chain": chain, "pairs": pairs,
                "holds": all(p["holds"] for p in pairs) if pairs else None,
                "ranked": ranked, "word_pooled_rank": rank}  # fmt: skip
    metric = iv.ratio_of_sums("bits", "bytes")
    pairs = []
    for a, b in claim_pairs([m for m in bpb if m in units]):
        d = iv.compare(metric, units[a], units[b])
        verdict = {"a": "holds", "b": "reversed", "tied": "tied"}[iv.ordered(d, True)]
        pairs.append({"better": a, "worse": b, "holds": verdict == "holds", "verdict": verdict,
                      **d})  # fmt: skip
    from lexlm.proj.word_pooled.report import neighbour_comparisons

    return {
        "chain": [n for n in CLAIM if any(n in (p["better"], p["worse"]) for p in pairs)],
        "pairs": pairs,
        "holds": all(p["holds"] for p in pairs) if pairs else None,
        "ranked": ranked,
        "neighbours": neighbour_comparisons(bpb, units, metric, lower_better=True),
        "word_pooled_rank": rank,
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
    for i, g in enumerate(grids):
        bpb = {m: r[i]["bits_per_byte"] for m, r in rows.items()}
        units = g.get("units")
        orderings.append(ordering({m: v for m, v in bpb.items() if v is not None}, units))
        for m in rows:
            row = g["rows"].get(m, {})
            for key in ("interval", "seeds"):
                if key in row:
                    rows[m][i][key] = row[key]
    return finite(
        {"budgets": budgets, "rows": rows, "orderings": orderings, "reference": dict(reference)}
    )


# -- rendering -------------------------------------------------------------------------------
def _fix(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _sci(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def table(f: dict) -> list[str]:
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
            cells += ["-" if r["steps"] is None else str(r["steps"]), bits_cell(r)]
        lines.append("| " + " | ".join(cells) + " |")
    ref = f["reference"]
    cells = [f"count reference: byte {ref['order']}-gram (Witten-Bell)", "-", "0", "-"]
    cells += ["-", _fix(ref["bits_per_byte"])] * len(f["budgets"])
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdict(o: dict) -> str:
    """One sentence on SpaceByte's ordering at one budget."""
    if o["holds"] is None:
        return "cannot be checked (too few of the claim's models)"
    head = "reproduces" if o["holds"] else "does not reproduce"
    if o["pairs"] and "verdict" in o["pairs"][0]:
        from lexlm.eval.intervals import fmt_interval

        sign = {"holds": "<", "reversed": ">", "tied": "~"}
        parts = [
            f"{NAMES.get(p['better'], p['better'])} {sign[p['verdict']]} "
            f"{NAMES.get(p['worse'], p['worse'])} {fmt_interval(p)}"
            for p in o["pairs"]
        ]
        return f"{head} ({'; '.join(parts)}; '~': tied at this budget)"
    parts = [
        f"{CLAIM_NAMES[p['better']]} {'<' if p['holds'] else 'NOT <'} {CLAIM_NAMES[p['worse']]}"
        for p in o["pairs"]
    ]
    return f"{head} ({', '.join(parts)}; one seed, no interval recorded in this finding)"


def bracket(bits: float, by_order: Mapping[str, float]) -> str:
    """Where ``bits`` lies among the count models of every order: between the two closest
    (one worse, one better), or beyond them all."""
    known = {k: v for k, v in by_order.items() if v is not None}
    worse = [k for k in known if known[k] >= bits]
    better = [k for k in known if known[k] < bits]
    if not worse:
        k = max(known, key=known.get)
        return f"above every count model, even the {k}-gram ({_fix(known[k])})"
    if not better:
        k = min(known, key=known.get)
        return f"below every count model, even the {k}-gram ({_fix(known[k])})"
    lo, hi = min(worse, key=known.get), max(better, key=known.get)
    return f"between the {lo}-gram ({_fix(known[lo])}) and the {hi}-gram ({_fix(known[hi])})"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def setup_line(f: dict) -> str:
    """The data and the sizes of the models the grid has, from its findings."""
    s = f["setup"]
    if s["source"] == "files":
        where = ", ".join(f"`{x}`" for x in s["files"]) or "local files"
    elif s["source"] == "tfds":
        where = f"TFDS `{s['tfds_name']}`"
    else:
        where = f"the embedded `{s['source']}` corpus"
    val, test = s["holdout"]
    b, p, m = s["baseline"], s["patching"], f["rows"]
    mb, sb = p["megabyte"], p["spacebyte"]
    sizes = [f"{b['seq_len']['byte']} bytes of context for every byte-level model"]
    if {"byte", "byte_window", "subword"} & set(m):
        sizes.append(f"byte and subword Transformers {b['model']['depth']} x {b['model']['width']}")
    if "subword" in m:
        sizes.append(f"{b['seq_len']['subword']} subwords of a {b['subword_vocab']:,}-piece BPE")
    if "byte_window" in m:
        sizes.append(f"window attention over {p['window']} bytes")
    if {"megabyte4", "megabyte8"} & set(m):
        sizes.append(
            f"MegaByte D_G = {mb['global_width']} ({_n(mb['global_depth'], 'global block')}), "
            f"D_L = {mb['local_width']} ({_n(mb['local_depth'], 'local block')})"
        )
    if "spacebyte" in m:
        sizes.append(
            f"SpaceByte D = {sb['width']}, D_local = {sb['local_width']}, "
            f"{_n(sb['depth'], 'global block')} and {_n(sb['local_depth'], 'local block')}, "
            f"window {sb['window']}, cap {sb['cap']}"
        )
    return (
        f"Data: {where}; {s['doc_split']}s as documents, the last {100 * (val + test):.0f}% "
        f"held out ({100 * val:.0f}% validation, {100 * test:.0f}% test). "
        + "; ".join(sizes)
        + f". Batch {b['batch_size']}, AdamW at {s['lr']:g}, warm-up over "
        f"{100 * s['warmup_fraction']:g}% of each model's steps; evaluated from the final "
        f"checkpoint on the {f['split']} split."
    )


def budget_lines(f: dict) -> list[str]:
    lines = []
    ref = f["reference"]
    by_order = ref.get("test_bits_per_byte_by_order") or {}
    for i, (b, o) in enumerate(zip(f["budgets"], f["orderings"])):
        rows = {m: per[i] for m, per in f["rows"].items() if per[i]["bits_per_byte"] is not None}
        if "neighbours" in o:
            from lexlm.proj.word_pooled.report import ranked_line

            bits = {m: f"{r['bits_per_byte']:.3f}" for m, r in rows.items()}
            ranked = ranked_line(o["ranked"], bits.__getitem__, o["neighbours"])
        else:
            ranked = ", ".join(
                f"{NAMES.get(m, m)} ({rows[m]['bits_per_byte']:.3f})" for m in o["ranked"]
            )
        rank = o["word_pooled_rank"]
        where = f"; the word-pooled LM ranks {rank} of {len(o['ranked'])}" if rank else ""
        lines.append(
            f"- At {b:.2g} FLOPs, SpaceByte's ordering {verdict(o)}{where}. Best first: {ranked}."
        )
        below = [m for m in o["ranked"] if rows[m]["bits_per_byte"] < ref["bits_per_byte"]]
        lines.append(
            f"  Below the count reference ({_fix(ref['bits_per_byte'])}): "
            + (", ".join(NAMES.get(m, m) for m in below) if below else "no model")
            + "."
        )
    last = len(f["budgets"]) - 1
    rows = f["rows"]
    if "word_pooled" in rows and "byte" in rows:
        wp, byte = rows["word_pooled"][0], rows["byte"][0]
        if wp["train_flops_per_byte"] and byte["train_flops_per_byte"]:
            times = wp["train_flops_per_byte"] / byte["train_flops_per_byte"]
            lines.append(
                f"- The word-pooled LM spends {times:.1f}x the byte LM's training FLOPs per byte, "
                f"so at every budget it sees {1 / times:.2f}x the bytes."
            )
    split_bytes = f.get("train_split_bytes")
    seen = [r[last]["train_bytes"] for r in rows.values() if r[last]["train_bytes"]]
    if split_bytes and seen:
        lines.append(
            f"- At {f['budgets'][last]:.2g} FLOPs the models saw {min(seen) / split_bytes:.2f} to "
            f"{max(seen) / split_bytes:.2f} passes over the training split "
            f"({split_bytes:,} bytes)."
        )
    if "turned" in ref:
        dev = ref["validation_bits_per_byte_by_order"]
        cells = ", ".join(f"{k}-gram {_fix(v)}" for k, v in dev.items())
        how = (
            "validation turned after it"
            if ref["turned"]
            else f"the grid's largest: validation had not turned by order {max(map(int, dev))}"
        )
        lines.append(
            f"- The count reference's order, {ref['order']}, was selected on validation ({how}; "
            f"the grid is extended until it turns): {cells}."
        )
    if by_order:
        cells = ", ".join(f"{k}-gram {_fix(v)}" for k, v in by_order.items())
        lines.append(f"- Byte n-gram count models on the test split (diagnostic): {cells}.")
        for m, per in f["rows"].items():
            bits = per[last]["bits_per_byte"]
            if bits is not None:
                lines.append(
                    f"  At {f['budgets'][last]:.2g} FLOPs, {NAMES.get(m, m)} ({bits:.3f}) lies "
                    f"{bracket(bits, by_order)}."
                )
    for split, p in f.get("spacebyte_patching", {}).items():
        per_patch = "-" if p["bytes_per_patch"] is None else f"{p['bytes_per_patch']:.2f}"
        lines.append(
            f"- SpaceByte's patching of the {split} split's windows: {per_patch} bytes per patch; "
            f"{p['overflow']:,} of {p['bytes']:,} bytes ({100 * p['overflow_fraction']:.3f}%) "
            f"lie past the cap of {p['cap']} global positions (kept in the loss, predicted "
            "without a global update)."
        )
    return lines


def plot(f: dict) -> bytes:
    """PNG: test bits per byte against training FLOPs, one line per model."""
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
    if ref is not None:
        ax.axhline(ref, color="gray", ls="--", lw=1, label="byte n-gram count reference")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{f.get('split', 'test')} bits per byte")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render(findings: dict, provenance: dict, figures) -> str:
    f = findings
    lines = [
        setup_line(f),
        "",
        f"Bits per byte on the {f.get('split', 'test')} split (every byte) of each model trained "
        "for each budget; FLOPs per byte are per training (forward and backward) and inference "
        "(forward) byte.",
        "",
        *table(f),
        "",
        seeds_note([r for per in f["rows"].values() for r in per]),
        "",
        *budget_lines(f),
        "",
    ]
    png = plot(f)
    lines += [
        f"![bits per byte against training FLOPs]({figures.save('bits_per_byte.png', png)})",
        "",
    ]
    return "\n".join(lines)
