"""The lexinvariant section of the report: Markdown tables and PNG plots from the findings
dict of ``experiments.lexinvariant.run``."""

from __future__ import annotations

import numpy as np

from lexlm.paths import as_path

REFERENCES = ("in_context_unigram", "bag_of_tokens", "unigram_readout")


def plot_curves(curves: dict, path, title: str = "", smooth_width: int = 5) -> None:
    """Per-position loss curves (index 0 = position 1), smoothed, on one axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lexlm.eval import smooth

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        y = smooth(np.asarray(values), smooth_width)
        ax.plot(np.arange(len(y)) + smooth_width // 2 + 1, y, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("position in context")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with as_path(path).open("wb") as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)


def _finding1(f: dict) -> list[str]:
    lines = ["### Finding 1: the gap closes with context", ""]
    for key, r in f["finding1"].items():
        s, x = r["learned"], r["lexinvariant"]
        ref_cols = [k for k in r["table"][0] if k.startswith(REFERENCES)]
        lines += [
            f"**{key}**: standard {s['bits_per_byte']:.3f} bits/byte (ppl {s['perplexity']:.2f}),"
            f" lexinvariant {x['bits_per_byte']:.3f} bits/byte (ppl {x['perplexity']:.2f}).",
            "",
            "| positions | standard | lexinvariant | ppl ratio lex/std | "
            + " | ".join(ref_cols)
            + " |",
            "|---" * (4 + len(ref_cols)) + "|",
        ]
        for row in r["table"]:
            refs = " | ".join(f"{row[k]:.3f}" for k in ref_cols)
            lines.append(
                f"| {row['positions']} | {row['standard']:.3f} | {row['lexinvariant']:.3f} "
                f"| {row['ppl_ratio']:.2f} | {refs} |"
            )
        name = key.replace("/", "_")
        lines += ["", f"![loss by position, {key}](lexinv_loss_by_position_{name}.png)", ""]
    lines += [
        "Losses in nats per token, test split; references need no training. "
        "`in_context_unigram`: an add-0.1 count model over the tokens seen so far in the "
        "window. `bag_of_tokens`: uniform attention over the context read out through the "
        "tokens' rows, logits linear in the counts (scale chosen on validation); `_dN` with "
        "random rows of width N, as the model draws them. `unigram_readout_dN`: the count "
        "model's log-probabilities superposed on random rows of width N and read out through "
        "them (crosstalk).",
        "",
    ]
    return lines


def _mechanism(f: dict) -> list[str]:
    lines = [
        "### Mechanism check: repeated spans",
        "",
        "Real test-split spans shown twice in one window; loss (nats/token) on the first copy "
        "and on the same tokens in the second copy.",
        "",
        "| run | model | span | first copy | second copy | drop |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in f["mechanism"].items():
        for emb, m in r.items():
            name = "standard" if emb == "learned" else emb
            lines.append(
                f"| {key} | {name} | {m['span']} | {m['first_copy']:.3f} | "
                f"{m['second_copy']:.3f} | {m['drop']:.3f} |"
            )
    return [*lines, ""]


PATTERNS = ("self", "previous", "same_token_earlier", "induction")


def _attention(f: dict) -> list[str]:
    lines = [
        "### Where the heads look",
        "",
        "Attention mass per pattern on validation windows (queries from position 9 on), the "
        "largest over a layer's heads, and in brackets what uniform causal attention gives. "
        "An induction head puts its mass on the token after an earlier occurrence of the "
        "current one.",
        "",
        "| run | model | layer | " + " | ".join(PATTERNS) + " | entropy (mean) |",
        "|---" * (4 + len(PATTERNS)) + "|",
    ]
    for key, r in f.get("attention", {}).items():
        for emb, layers in r.items():
            name = "standard" if emb == "learned" else emb
            for layer, st in layers.items():
                cells = " | ".join(
                    f"{max(st[p]):.3f} ({st[p + '_uniform'][0]:.3f})" for p in PATTERNS
                )
                ent = float(np.mean(st["entropy"]))
                lines.append(
                    f"| {key} | {name} | {layer} | {cells} | "
                    f"{ent:.2f} ({st['entropy_uniform'][0]:.2f}) |"
                )
    return [*lines, ""]


def _finding2(f: dict) -> list[str]:
    lines = [
        "### Finding 2: substitution cipher",
        "",
        "| run | model | plain loss | cipher loss | difference (± s.e.) | draws |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in f["finding2"].items():
        for name, m in r.items():
            lines.append(
                f"| {key} | {name} | {m['plain_loss']:.3f} | {m['cipher_loss']:.3f} | "
                f"{m['diff']:+.3f} ± {m['diff_se']:.3f} | {m['draws']} |"
            )
    for key, p in f.get("probe", {}).items():
        best = p["layers"][p["best_layer"]]
        lines += [
            "",
            f"**Deciphering probe, {key}**: a softmax probe from the lexinvariant LM's hidden "
            "state at position t to the plaintext id of token t, trained on the validation "
            "split under some ciphers and tested on the test split under other ciphers "
            f"({p['train_tokens']} / {p['test_tokens']} tokens). Layer `{p['best_layer']}` "
            f"(L2 {best.get('l2', 'n/a')}) chosen on a held-out training cipher; overall test "
            "accuracy "
            f"{best['overall']:.3f}, majority {p['majority_baseline']:.3f}, "
            f"chance {p['chance']:.3f}.",
            "",
            "| positions | " + " | ".join(p["layers"]) + " | majority |",
            "|---" * (len(p["layers"]) + 2) + "|",
        ]
        for i, row in enumerate(best["by_position"]):
            accs = " | ".join(
                f"{layer['by_position'][i]['accuracy']:.3f}" for layer in p["layers"].values()
            )
            lines.append(f"| {row['positions']} | {accs} | {row['majority']:.3f} |")
    return [*lines, ""]


def report_section(f: dict) -> str:
    lines = [
        "## Lexinvariant language models (Huang et al., 2023)",
        "",
        "Standard LM (learned tied embedding) vs lexinvariant LM (per-sequence Gaussian "
        "embedding, tied random unembedding, learned logit scale, copy readout): same size, data, "
        "vocabulary and steps; evaluated from checkpoints; lexinvariant losses averaged over "
        "embedding draws.",
        "",
    ]
    lines += _finding1(f) + _mechanism(f) + _attention(f) + _finding2(f)
    return "\n".join(lines) + "\n"
