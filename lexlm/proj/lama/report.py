"""The lama project's report: the classification table (each model at its validation-chosen
step), the attention figures and the low-rank LM table, from the findings of
``lexlm.proj.lama.run`` alone."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

NAMES = {
    "lama": "LAMA",
    "lama_ctx": "LAMA+CTX",
    "additive": "additive attention (HAN)",
    "structured": "structured self-attention (Lin et al.)",
    "self_attention": "multi-head self-attention pooling",
}

PAGE = {
    "title": "LAMA: low-rank factorised multi-head attention (Mehta et al., 2019)",
    "intro": """
The same text classifier (word embeddings -> BiGRU -> attention pooling -> MLP,
`lexlm.nn.classifier`) is trained with LAMA and LAMA+CTX pooling and three baselines under one
budget (the same data, sizes, steps, AdamW schedule and dropout): HAN's single-head additive
attention, Lin et al.'s structured self-attention with its ||AA^T - I||_F^2 penalty, and a
standard multi-head self-attention layer followed by a masked mean. Every saved step of each
run is scored on validation and test; the tables give the test accuracy of the step with the
best validation accuracy (test never chooses a step). Attention parameters are the pooling
layer's; "vs MHSA" divides them by those of the multi-head self-attention layer at the same
width (4 D^2 + 4 D). How the paper was read (only its Fig. 1 is recoverable) and the decisions
taken where it is unclear are in the docstring of `lexlm/nn/lama.py`: a learned context for
LAMA, the masked mean of the states for LAMA+CTX, a tanh key MLP, an epsilon in the L2 norm
across heads, no diversity penalty. The models are trained from scratch (no pretrained
embeddings), so their accuracies sit below the paper-era figures obtained with pretrained
vectors.

Data: the vaderSentiment movie-review ratings (Hutto & Gilbert, ICWSM 2014: movie-review
snippets, each with the mean of several human sentiment ratings; label = the sign of the
mean, the snippets rated exactly zero dropped and counted), shipped in the `vaderSentiment`
source archive that the setup commands fetch, cut into train / validation / test by a fixed
seed; SST-2 from GLUE, its given train / dev / test files; AG News, its official test split
cut into train / validation / test by a fixed seed. Every split's counts of dropped,
truncated and unknown-word texts are in the findings.

```bash
python -m lexlm.run --config lama:tiny --workdir results/lama_tiny
python -m lexlm.run --config lama:sst2 --workdir results/lama_sst2 \\
    --config.data.split_files.train=sst2/train.tsv \\
    --config.data.split_files.validation=sst2/dev.tsv \\
    --config.data.split_files.test=sst2/test.tsv
python -m lexlm.run --config lama:ag_news --workdir results/lama_ag_news \\
    --config.data.files=ag_news/test.csv
# a TFDS classification set instead of files (test labels must not be hidden)
python -m lexlm.run --config lama:ag_news --workdir results/lama_tfds \\
    --config.data.source=tfds --config.data.format=text --config.data.tfds_name=ag_news_subset \\
    --config.data.text_key=title,description --config.data.splits.train='train[:95%]' \\
    --config.data.splits.validation='train[95%:]'
python -m lexlm.run --config lama:lm --workdir results/lama_lm
python -m lexlm.evaluate --workdir results/lama_sst2 --split test
```

Low-rank attention in the Transformer LM (`attention_kind='low_rank'`,
`lexlm/nn/low_rank_attention.py`) moves LAMA's shared factors into self-attention: head h
scores query t against key s by sum_i g_hi a_ti b_si, with a = P_q^T x and b = P_k^T x from two
D x r factor matrices that all heads share and a per-head gain vector g_h (rank r); values and
the output projection are standard. At r = D with block gains it is standard attention exactly
(`tests/test_lama.py` checks that the outputs are equal). The `lm` variant trains the lm
project's tiny character LM three times: standard attention, low-rank attention at the same
width and steps, and low-rank attention widened to the standard model's parameter count. The
saving is in the query and key projections and the parameters, not in the T x T part: with
r = D / H the score FLOPs per query-key pair equal standard attention's, so it is no faster at
long contexts; LAMA pooling, which has no T x T matrix, is the layer whose cost is linear in T
(`python -m bench.lama`).

LAMA pooling over any sequence of hidden states, and low-rank attention inside the
TransformerLM (`tests/test_readme.py` runs this):

```python
import jax
import jax.numpy as jnp
from lexlm.nn import LMConfig, TransformerLM
from lexlm.nn.lama import LAMA

states = jax.random.normal(jax.random.key(0), (2, 7, 64))  # [B, T, D], e.g. BiGRU outputs
mask = jnp.arange(7)[None, :] < jnp.array([[7], [4]])  # row 1 has 3 padding slots
lama = LAMA(heads=8, context="learned")  # context="mean" is LAMA+CTX
variables = lama.init(jax.random.key(1), states, mask)
pooled, weights = lama.apply(variables, states, mask)  # [2, 8, 64] head vectors, [2, 8, 7]

cfg = LMConfig(vocab_size=100, width=128, heads=4, attention_kind="low_rank", qk_rank=8)
lm = TransformerLM(cfg)
tokens = jnp.zeros((1, 16), jnp.int32)
hidden = lm.apply(lm.init(jax.random.key(2), tokens), tokens)  # [1, 16, 128]
```
""",
    "findings": [
        ("tiny", "Tiny: the vaderSentiment movie-review ratings"),
        ("sst2", "SST-2"),
        ("ag_news", "AG News"),
        ("lm", "Low-rank attention in the Transformer LM"),
    ],
}


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def plot_attention(tokens: Sequence[Sequence[str]], weights: Sequence, title: str) -> bytes:
    """PNG bytes: one heat map per sentence, heads as rows, the sentence's tokens as columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tokens), 1, figsize=(10, 1.6 * len(tokens) + 0.6), squeeze=False)
    for ax, toks, w in zip(axes[:, 0], tokens, weights):
        w = np.asarray(w, np.float64)
        ax.imshow(w[:, : len(toks)], aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(toks)), toks, rotation=60, fontsize=7)
        ax.set_yticks(range(w.shape[0]), [f"h{j}" for j in range(w.shape[0])], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def plot_validation(rows: Sequence[dict]) -> bytes:
    """PNG bytes: each model's validation accuracy at its saved steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in rows:
        steps = [e["step"] for e in r["evaluations"]]
        ax.plot(steps, [100 * e["validation"] for e in r["evaluations"]], marker="o",
                label=NAMES.get(r["model"], r["model"]))  # fmt: skip
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def step_time(provenance: dict, model: str) -> float | None:
    return provenance.get("timings", {}).get(f"cls_{model}", {}).get("step_s")


def table(rows: Sequence[dict], standard_attention_params: int, provenance: dict) -> list[str]:
    """Markdown rows: model, test / validation accuracy (selected step), attention parameters
    (and their ratio to multi-head self-attention's at the same width), total, step time."""
    lines = [
        "| model | test accuracy (%) | validation accuracy (%) | selected step | attention "
        "parameters | vs MHSA | total parameters | step time (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["attention_params"] / standard_attention_params
        t = step_time(provenance, r["model"])
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {100 * r['test']:.1f} | "
            f"{100 * r['validation']:.1f} | {r['step']} | {r['attention_params']:,} | "
            f"{ratio:.3f} | {r['params']:,} | {'-' if t is None else f'{1e3 * t:.1f}'} |"
        )
    return lines


def dataset_name(f: dict) -> str:
    if f["source"] == "vader_movies":
        return "The vaderSentiment movie-review ratings"
    if f["source"] == "tfds":
        return f"TFDS `{f['tfds_name']}`"
    return {"sst2": "SST-2", "ag_news": "AG News"}.get(f["format"], str(f["format"]))


def read_line(f: dict) -> str:
    """What reading dropped or replaced, summed over the files (nothing if nothing)."""
    total: dict[str, int] = {}
    for stats in f["read"].values():
        for k, v in stats.items():
            total[k] = total.get(k, 0) + int(v)
    parts = [
        f"{total[k]:,} {what}"
        for k, what in (("empty", "empty texts"), ("unparsable", "unparsable lines"),
                        ("neutral", "texts rated exactly 0"))
        if total.get(k)
    ]  # fmt: skip
    line = f"Reading dropped {', '.join(parts)}. " if parts else ""
    if total.get("replaced_bytes"):
        line += f"Invalid UTF-8 was replaced in {total['replaced_bytes']:,} lines. "
    return line


def render_classify(f: dict, provenance: dict, figures) -> str:
    rows, sizes = f["rows"], f["sizes"]
    enc = f["encoded"]
    lines = [
        f"{dataset_name(f)}: {sizes['train']:,} / {sizes['validation']:,} / {sizes['test']:,} "
        f"train / validation / test texts, {f['classes']} classes, a vocabulary of "
        f"{f['vocab']:,} words from the training split; texts are cut at {f['max_len']} tokens "
        f"({enc['train']['truncated']:,} training texts were cut). {read_line(f)}Each model "
        f"trains {f['steps']} steps of {f['batch_size']} and is taken at its best validation "
        f"step. Always predicting the majority training class scores "
        f"{100 * f['majority']:.1f}% on test.",
        "",
        *table(rows, f["mhsa_params"], provenance),
        "",
    ]
    ranked = sorted(rows, key=lambda r: -r["test"])
    lines.append(
        "By test accuracy: "
        + ", ".join(f"{NAMES.get(r['model'], r['model'])} {100 * r['test']:.1f}" for r in ranked)
        + f". The models span {100 * (ranked[0]['test'] - ranked[-1]['test']):.1f} points; one "
        f"point is {sizes['test'] / 100:.0f} of the {sizes['test']:,} test texts."
    )
    if f["lama_gap"] is not None:
        lines.append(
            f"The better LAMA model minus the best baseline "
            f"({NAMES.get(f['best_baseline'], f['best_baseline'])}): {f['lama_gap']:+.1f} test "
            "accuracy points (each model at its validation-chosen step; the better LAMA model "
            "and the best baseline are chosen by validation accuracy too)."
        )
    lama = next((r for r in rows if r["model"] == "lama"), None)
    if lama is not None:
        lines.append(
            f"LAMA's pooling has {lama['attention_params'] / f['mhsa_params']:.3f}x the "
            f"parameters of multi-head self-attention at the same width "
            f"({lama['attention_params']:,} against {f['mhsa_params']:,}, most of it the "
            f"D x D key MLP); its factorised scoring alone (P and Q, 2 D m = "
            f"{f['lama_scoring_params']:,}) is {f['mhsa_params'] / f['lama_scoring_params']:.1f}x "
            "smaller than self-attention's query, key, value and output projections."
        )
    if any(step_time(provenance, r["model"]) is not None for r in rows):
        lines.append(
            f"Step times are median wall times per training step ({provenance.get('machine')}); "
            "compare them within the table."
        )
    lines.append("")
    path = figures.save("validation_accuracy.png", plot_validation(rows))
    lines += [f"![validation accuracy by step]({path})", ""]
    for name, ex in f["attention"].items():
        png = plot_attention(ex["tokens"], ex["weights"], f"{NAMES[name]}: attention of each head")
        path = figures.save(f"attention_{name}.png", png)
        lines += [f"![{NAMES[name]} attention over {len(ex['tokens'])} test texts]({path})", ""]
    return "\n".join(lines)


def lm_table(rows: Sequence[dict]) -> list[str]:
    lines = [
        "| attention | width | rank | test bits/char | attention parameters | total parameters "
        "| forward FLOPs/token | steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['width']} | {r['rank'] or '-'} | {r['bits_per_char']:.4f} | "
            f"{r['attention_params']:,} | {r['params']:,} | {r['flops_per_token']:.3g} | "
            f"{r['step']} |"
        )
    return lines


def render_lm(f: dict, provenance: dict) -> str:
    by = {r["model"]: r for r in f["rows"]}
    lines = [
        f"{f['unit'].capitalize()} LMs on the `{f['source']}` corpus ({f['vocab_size']} types): "
        f"{f['depth']} layers, {f['heads']} heads, context {f['seq_len']}, {f['steps']} steps "
        f"of {f['batch_size']} windows; test split, from each final checkpoint.",
        "",
        *lm_table(f["rows"]),
        "",
    ]
    std, low, eq = by.get("standard"), by.get("low_rank"), by.get("low_rank_equal_params")
    if std and low:
        diff = low["bits_per_char"] - std["bits_per_char"]
        ratio = low["attention_params"] / std["attention_params"]
        lines.append(
            f"At equal steps and width, rank {low['rank']} {'costs' if diff > 0 else 'saves'} "
            f"{abs(diff):.3f} bits/char ({low['bits_per_char']:.3f} against "
            f"{std['bits_per_char']:.3f}) with {ratio:.2f}x "
            f"the attention parameters ({low['attention_params']:,} against "
            f"{std['attention_params']:,} over {f['depth']} layers) and "
            f"{low['flops_per_token'] / std['flops_per_token']:.2f}x the forward FLOPs per token."
        )
    if std and eq:
        diff = eq["bits_per_char"] - std["bits_per_char"]
        lines.append(
            f"At equal parameters (width {eq['width']}, rank {eq['rank']}: {eq['params']:,} "
            f"against {std['params']:,}) it is {abs(diff):.3f} bits/char "
            f"{'above' if diff > 0 else 'below'} standard attention ({eq['bits_per_char']:.3f} "
            f"against {std['bits_per_char']:.3f}) with "
            f"{eq['flops_per_token'] / std['flops_per_token']:.2f}x its forward FLOPs per token."
        )
    return "\n".join([*lines, ""])


def render(findings: dict, provenance: dict, figures) -> str:
    if findings["task"] == "lm":
        return render_lm(findings, provenance)
    return render_classify(findings, provenance, figures)
