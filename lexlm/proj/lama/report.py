"""The lama project's report: the classification table (each model at its validation-chosen
step), the attention figures and the low-rank LM table, from the findings of
``lexlm.proj.lama.run`` alone."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from lexlm.proj.lama import findings as fnd

NOT_RECORDED = "not recorded in this finding"
NAMES = {
    "lama": "LAMA",
    "lama_ctx": "LAMA+CTX",
    "additive": "additive attention (HAN)",
    "structured": "structured self-attention (Lin et al.)",
    "self_attention": "multi-head self-attention pooling",
    "mean": "mean pooling (no attention)",
}

PAGE = {
    "title": "LAMA: low-rank factorised multi-head attention (Mehta et al., 2019)",
    "intro": """
The same text classifier (word embeddings -> BiGRU -> attention pooling -> MLP,
`lexlm.nn.classifier`) is trained with LAMA and LAMA+CTX pooling, three attention baselines
and one control under one budget (the same data, sizes, steps, AdamW schedule and dropout):
HAN's single-head additive attention, Lin et al.'s structured self-attention with its
||AA^T - I||_F^2 penalty, a standard multi-head self-attention layer followed by a masked
mean, and the plain masked mean of the BiGRU states (no attention). Every saved step of each
run is scored on validation only; test is scored once per run, at the step with the best
validation accuracy, and the better LAMA model and the best baseline are chosen by validation
accuracy too (test never chooses). With several training seeds (`train.seeds`, trained in
one program) each seed picks its own step; test accuracy is the mean over the seeds ± the 95%
bootstrap interval over test texts, and a LAMA gap states an ordering only when the paired
bootstrap interval of the difference excludes 0 (else the two are tied at this budget).
Attention parameters are the pooling layer's; "vs MHSA"
divides them by those of the multi-head self-attention layer at the same width
(4 D^2 + 4 D); total parameters are the whole classifier's. The entropy column is the mean
entropy (nats) of each head's pooling weights over the test texts, against the mean log T of
their lengths (uniform weights; for self-attention pooling, each head's attention rows
averaged over the queries). How the paper was read (only its Fig. 1 is recoverable) and the
decisions taken where it is unclear are in the docstring of `lexlm/nn/lama.py`: a learned
context for LAMA, the masked mean of the states for LAMA+CTX, a tanh key MLP, an epsilon in the
L2 norm across heads, no diversity penalty. The models are trained from scratch (no pretrained
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


def step_time_line(rows: Sequence[dict], provenance: dict) -> str:
    """What the step-time column is, and whether it may be compared: a model that trained while
    the machine's median 1-minute load average exceeded its cores + 1 (another job competing)
    is named, its step time inflated."""
    head = f"Step times are median wall times per training step ({provenance.get('machine')})"
    timings = provenance.get("timings", {})
    loads = {r["model"]: timings.get(f"cls_{r['model']}", {}).get("load") for r in rows}
    if any(v is None for v in loads.values()):
        return f"{head}; the machine's load while they trained was not recorded in this finding."
    cores = int(provenance.get("cpu_cores") or 1)
    busy = [NAMES.get(m, m) for m, v in loads.items() if v > cores + 1]
    each = ", ".join(f"{NAMES.get(m, m)} {v:.1f}" for m, v in loads.items())
    head += f"; median 1-minute load average while each trained, on {cores} cores: {each}"
    if busy:
        return (
            f"{head}. Another job competed while {', '.join(busy)} trained (load above "
            f"{cores + 1}): those step times are inflated; compare only the others."
        )
    return f"{head}. Compare them within the table."


def entropy_cell(r: dict) -> str:
    e = r.get("entropy")
    if not e or e.get("entropy") is None:
        return "-"
    return f"{e['entropy']:.2f} / {e['log_t']:.2f}"


def test_cell(r: dict) -> str:
    """Test accuracy in %: the mean over seeds ± the half-width of its 95% bootstrap interval
    over test texts when recorded, else the bare value."""
    from lexlm.eval.intervals import plus_minus

    i = r.get("interval")
    if not i:
        return f"{100 * r['test']:.1f}"
    return plus_minus(100 * r["test"], 100 * i["lo"], 100 * i["hi"], 1)


def sd_cell(r: dict) -> str:
    s = r.get("test_spread")
    return f"{100 * s['sd']:.1f}" if s and s["n"] > 1 else "- (one seed)"


def steps_cell(r: dict) -> str:
    return ", ".join(str(s) for s in r.get("steps", [r["step"]]))


def table(rows: Sequence[dict], standard_attention_params: int, provenance: dict) -> list[str]:
    """Markdown rows: model, test accuracy (mean over seeds ± its 95% bootstrap interval over
    test texts, and the seeds' sd, where recorded), validation accuracy and the step each seed
    chose, attention parameters (and their ratio to multi-head self-attention's at the same
    width), total parameters, attention entropy against log T ('-' where not recorded), step
    time."""
    seeded = all("interval" in r for r in rows)
    head = (["test accuracy (%, mean over seeds ± 95% bootstrap over texts)", "seed sd"]
            if seeded else ["test accuracy (%)"])  # fmt: skip
    head += ["validation accuracy (%)", "selected step", "attention parameters", "vs MHSA",
             "total parameters", "entropy / log T (nats)", "step time (ms)"]  # fmt: skip
    lines = ["| model | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 1)]
    for r in rows:
        ratio = r["attention_params"] / standard_attention_params
        t = step_time(provenance, r["model"])
        test = f"{test_cell(r)} | {sd_cell(r)}" if seeded else test_cell(r)
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {test} | "
            f"{100 * r['validation']:.1f} | {steps_cell(r)} | {r['attention_params']:,} | "
            f"{ratio:.3f} | {r['params']:,} | {entropy_cell(r)} | "
            f"{'-' if t is None else f'{1e3 * t:.1f}'} |"
        )
    return lines


def seeds_line(f: dict) -> str:
    """How many seeds the table averages and what its ± is; an old finding says it has one
    seed and no interval."""
    rows = f["rows"]
    if not all("interval" in r for r in rows):
        return "One seed; no interval recorded in this finding."
    n, seeds = rows[0]["interval"]["units"], int(f.get("seeds", 1))
    over = f"the 95% bootstrap interval over the {n:,} test texts"
    if seeds == 1:
        return (f"One training seed (3 seeds of this config are too large for the main job's "
                f"budget); ± is {over}.")  # fmt: skip
    return (
        f"Each model trains {seeds} seeds in one program (`train.seeds`), each seed taking its "
        f"own validation-chosen step (listed per seed); test accuracy is the mean over the "
        f"seeds ± {over} of the seed-averaged correctness, and seed sd the seeds' standard "
        "deviation in points."
    )


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
        seeds_line(f),
    ]
    lines += summary_lines(f)
    if any(step_time(provenance, r["model"]) is not None for r in rows):
        lines.append(step_time_line(rows, provenance))
    lines.append("")
    path = figures.save("validation_accuracy.png", plot_validation(rows))
    lines += [f"![validation accuracy by step]({path})", ""]
    when = "the step validation chose" if f.get("selection") == "validation" else "the final step"
    if int(f.get("seeds", 1)) > 1:
        when = f"seed 0, {when}"
    for model, ex in f["attention"].items():
        png = plot_attention(ex["tokens"], ex["weights"], f"{name(model)}: attention of each head")
        path = figures.save(f"attention_{model}.png", png)
        lines += [f"![{name(model)} attention over {len(ex['tokens'])} test texts, at {when}]"
                  f"({path})", ""]  # fmt: skip
    return "\n".join(lines)


def name(model: str | None) -> str:
    return NAMES.get(model, str(model))


def summary_lines(f: dict) -> list[str]:
    """The sentences under a classification table: the ranking (by validation), the LAMA
    margins (both sides chosen on validation), total parameters, the like-for-like scoring
    costs, the bound on LAMA's weights and the entropies; a control this finding lacks is
    said to be not recorded."""
    rows, sizes = f["rows"], f["sizes"]
    by = {r["model"]: r for r in rows}
    out = []
    if f.get("selection") != "validation":
        out.append(
            "This finding was made when test was scored at every saved step; the table reads "
            "test only at the step validation chose."
        )
    ranked = sorted(rows, key=lambda r: -r["validation"])  # stable: table order on ties
    tests = [r["test"] for r in rows]
    out.append(
        "By validation accuracy (test in brackets): "
        + ", ".join(
            f"{name(r['model'])} {100 * r['validation']:.1f} ({100 * r['test']:.1f})"
            for r in ranked
        )
        + f". Their test accuracies span {100 * (max(tests) - min(tests)):.1f} points; one "
        f"point is {sizes['test'] / 100:.0f} of the {sizes['test']:,} test texts."
    )
    cmps = f.get("comparisons") or {}
    gap, baseline = fnd.lama_gap(rows)
    if cmps.get("baseline"):
        c = cmps["baseline"]
        out.append(
            f"The better LAMA model ({name(c['a'])}) against the best baseline "
            f"({name(c['b'])}), both chosen by validation accuracy, in test accuracy points: "
            f"{gap_sentence(c)}."
        )
    elif gap is not None:
        out.append(
            f"The better LAMA model minus the best baseline ({name(baseline)}): {gap:+.1f} test "
            "accuracy points (each model at its validation-chosen step; the better LAMA model "
            "and the best baseline are chosen by validation accuracy too)."
        )
    mean_gap = fnd.control_gap(rows, "mean")
    if cmps.get("mean"):
        c = cmps["mean"]
        out.append(
            f"The better LAMA model ({name(c['a'])}) against mean pooling (no attention), in "
            f"test accuracy points: {gap_sentence(c)}."
        )
    elif mean_gap is not None:
        out.append(
            f"The better LAMA model minus mean pooling (no attention): {mean_gap:+.1f} test "
            "accuracy points."
        )
    else:
        out.append(f"Mean pooling (no attention): {NOT_RECORDED}.")
    lama = by.get("lama")
    if lama is not None:
        out += lama_cost_lines(f, rows, lama)
    if any(r.get("entropy") for r in rows):
        seed0 = ", seed 0" if int(f.get("seeds", 1)) > 1 else ""
        out.append(
            f"Attention entropy against log T (mean over the test texts, nats{seed0}): "
            + ", ".join(f"{name(r['model'])} {entropy_cell(r)}" for r in rows if r.get("entropy"))
            + "; entropy equal to log T is uniform weighting."
        )
    else:
        out.append(f"Attention entropy against log T: {NOT_RECORDED}.")
    return out


def gap_sentence(c: dict) -> str:
    """A comparison of two models' test accuracy (``findings.compare_rows``) in points: an
    ordering only where its paired interval excludes 0, else tied at this budget."""
    from lexlm.eval.intervals import ordering_sentence

    points = {**c, **{k: 100 * c[k] for k in ("diff", "lo", "hi")}}
    return ordering_sentence(name(c["a"]), name(c["b"]), points, lower_is_better=False, digits=1)


def lama_cost_lines(f: dict, rows: Sequence[dict], lama: dict) -> list[str]:
    """Total parameters, the like-for-like scoring ratio and the weight bound, for LAMA."""
    out = []
    mhsa = next((r for r in rows if r["model"] == "self_attention"), None)
    totals = ", ".join(f"{name(r['model'])} {r['params']:,}" for r in rows)
    line = f"Total parameters of each classifier: {totals}."
    extra = fnd.mlp_extra_params(rows, "lama", "self_attention")
    if mhsa is not None and extra is not None:
        diff = lama["params"] - mhsa["params"]
        pool = "smaller" if lama["attention_params"] < mhsa["attention_params"] else "larger"
        line += (
            f" At model level LAMA has {abs(diff):,} {'more' if diff > 0 else 'fewer'} "
            f"parameters than multi-head self-attention pooling, though its pooling layer is "
            f"{pool}: its MLP reads {f['heads']} head vectors instead of one, which adds "
            f"{extra:,} parameters."
        )
    out.append(line)
    d = int(f["width"])
    qk = 2 * d * d + 2 * d
    line = (
        f"Like for like, LAMA's scoring (its whole pooling layer: key MLP, P, Q and context, "
        f"{lama['attention_params']:,} parameters; LAMA has no value or output projection) "
        f"against self-attention's query and key projections (2 D^2 + 2 D = {qk:,}): "
        f"{lama['attention_params'] / qk:.2f}x the parameters"
    )
    costs = f.get("scoring")
    if costs:
        line += (
            f" and {costs['lama_flops_per_token'] / costs['mhsa_qk_flops_per_token']:.2f}x the "
            f"FLOPs per token ({costs['lama_flops_per_token']:,} against "
            f"{costs['mhsa_qk_flops_per_token']:,}; self-attention's T x T scores come on top)."
        )
    else:
        line += f"; the FLOPs per token are {NOT_RECORDED}."
    out.append(line)
    t = 20
    out.append(
        f"LAMA's scores are L2-normalised across the {f['heads']} heads, so every logit lies in "
        f"[-1, 1]: in a text of T = {t} tokens no token can get more than "
        f"{fnd.max_weight(t):.3f} of a head's weight (e / (e + (T - 1) / e))."
    )
    return out


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
