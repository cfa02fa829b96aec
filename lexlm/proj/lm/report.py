"""The lm project's report: the baseline LM's validation and test metrics and its loss by
position, from the findings of ``lexlm.proj.lm.run``."""

from __future__ import annotations

import io

import numpy as np

PAGE = {
    "title": "Baseline Transformer LM",
    "intro": """
The standard decoder-only LM every lexical experiment compares to: pre-LayerNorm blocks, a
tied learned embedding, learned positions (`lexlm.nn.TransformerLM`). It is trained through the
one trainer and evaluated from its final checkpoint on the validation and test splits, on
every byte of each split. Run it with

```bash
python -m lexlm.run --config lm:tiny --workdir runs/lm_tiny
python -m lexlm.evaluate --workdir runs/lm_tiny --split test
```
""",
    "findings": [("tiny", "Tiny: the embedded Lee corpus, characters")],
}


def plot_loss_by_position(curves: dict[str, list], smooth_width: int = 5, log_x=False) -> bytes:
    """PNG of per-position loss curves (index 0 = position 1), smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lexlm.eval import smooth

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        y = smooth(np.asarray(values, np.float64), smooth_width)
        ax.plot(np.arange(len(y)) + smooth_width // 2 + 1, y, label=name)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("position in context")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def metrics_table(rows: dict[str, dict]) -> list[str]:
    lines = [
        "| split | loss (nats/token) | bits/char | bits/byte | perplexity |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['loss']:.4f} | {m['bits_per_char']:.4f} | {m['bits_per_byte']:.4f} "
            f"| {m['perplexity']:.3f} |"
        )
    return lines


def seeds_table(rows: dict[str, dict]) -> list[str]:
    """Bits per byte over training seeds: the seed-averaged model ± its 95% bootstrap interval
    over test units (blocks of 1 KB within documents), and the seeds' mean, standard deviation
    and range."""
    from lexlm.eval.intervals import plus_minus

    lines = [
        "| split | seeds | bits/byte (seed-averaged, ± 95% bootstrap over test units) | "
        "seed mean | seed sd | seed range | units (1 KB blocks) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        s, i = m["spread"], m.get("interval")
        avg = plus_minus(i["value"], i["lo"], i["hi"]) if i else "-"
        sd = f"{s['sd']:.4f}" if s["n"] > 1 else "- (one seed)"
        lines.append(
            f"| {name} | {s['n']} | {avg} | {s['mean']:.4f} | {sd} | "
            f"{s['min']:.4f} to {s['max']:.4f} | {i['units'] if i else '-'} |"
        )
    return lines


def render(findings: dict, provenance: dict, figures) -> str:
    f = findings
    m = f["model"]
    timing = provenance.get("timings", {}).get("lm", {})
    rate = timing.get("tokens_per_s")
    lines = [
        f"{m['depth']} layers x {m['width']} wide, {m['heads']} heads, context {f['seq_len']}, "
        f"{f['unit']} units ({f['vocab_size']} types), {f['params']:,} parameters; "
        f"{f['steps']} steps of {f['batch_size']} windows on the `{f['source']}` training split, "
        "evaluated from the final checkpoint.",
        "",
        *metrics_table({"validation": f["validation"], "test": f["test"]}),
        "",
    ]
    if "test_seeds" in f:
        lines += [
            f"The table above is seed 0 of {f.get('seeds', 1)}. Over the training seeds "
            "(`train.seeds`, trained in one program):",
            "",
            *seeds_table({"validation": f["validation_seeds"], "test": f["test_seeds"]}),
            "",
        ]
    else:
        lines += ["One training seed; no interval was recorded in this finding.", ""]
    if rate:
        lines += [f"Training: median {rate:,.0f} tokens/s ({provenance['machine']}).", ""]
    png = plot_loss_by_position({"test": f["test"]["loss_by_position"]})
    lines += [f"![loss by position]({figures.save('loss_by_position.png', png)})", ""]
    return "\n".join(lines)
