"""The lexinvariant project's report: Markdown tables and PNG figures from the findings of
``lexlm.proj.lexinvariant.run`` (findings 1-2), ``ablation`` and ``symbols``
(``symbol_report``), and the results page's fixed text (``PAGE``)."""

from __future__ import annotations

import itertools

import numpy as np

from lexlm.proj.lm.report import plot_loss_by_position

PAGE = {
    "title": "Lexinvariant language models (Huang et al., 2023)",
    "intro": """
A lexinvariant LM (Huang et al., "Lexinvariant Language Models", NeurIPS 2023) has no fixed
token embedding: every sequence draws its own Gaussian table G, token x is embedded as G[x],
and the logits read the final hidden state out through the same rows (a tied random
unembedding, `lexlm.nn.lexinvariant`). It can only learn what a token is from its context, so
its loss is judged by how it falls with position and against predictors that need no
training. Every experiment here trains a standard LM (learned tied embedding) and a
lexinvariant LM of the same size on the same data, vocabulary and steps, each as an `lm` run
through the one trainer, and evaluates them from their final checkpoints; lexinvariant losses
are averaged over embedding draws.

**The readout fix.** Read out through random rows as it is, a lexinvariant LM starts far above
ln V (the init trap): the tied random readout scores the *current* token about sqrt(D) above
the rest, so at initialisation the model predicts "next = current". A learned logit scale,
initialised to one over the square root of the width (`LMConfig.logit_scale='auto'`, on for
the `lexinvariant` and `semi` embeddings), removes it.
With the scale alone the LM learns the bag-of-tokens readout: logits linear in the context's
counts, plus the crosstalk of random rows. The copy readout (`lexlm.nn.copy_readout`, lexlm's
addition, not in the paper) removes that limit: it mixes the vocabulary softmax with a gated
pointer over earlier positions, p = g softmax(h . G) + (1 - g) sum_j a_tj [x_j = v], whose
score adds a learned multiple of [x_t = x_{j-1}] (an induction match) and a recency slope. It
names positions, not types, so it has no crosstalk and keeps the LM exactly lexinvariant
(tested). The findings' lexinvariant runs use both (`lexinvariant_model` in the config); the
standard LM keeps the plain tied readout, and a second standard LM with the copy readout
(`standard_copy_model`, runs `learned_copy_<unit>`) is the control: every table has both
standard columns. The `ablation` variant trains one run per option.

**Seeds and intervals.** Every run trains `train.seeds` copies in one program (3 in `small`
and `paper`; 1 in `tiny`, the main job's section, for its time) and is scored on every test
document. Values are the seed-averaged model's, ± the half-width of a 95% bootstrap interval
over test documents; a difference or a perplexity ratio resamples the same documents for both
models (paired), and a sentence states an ordering only when that interval excludes 0 (a
ratio: 1), else says the two are tied at this budget. The mechanism check, attention patterns,
cipher and probe read seed 0.

**Finding 1** (paper section 4.1): loss by position bucket on the test split, the
lexinvariant / standard perplexity ratio, and reference columns that need no training
(`lexlm.eval.in_context`): `in_context_unigram` is an add-alpha count model over the tokens
seen so far in the window; `bag_of_tokens` is what uniform attention over the context read
out through the tokens' own rows gives (logits linear in the counts, scale chosen on
validation), `_dN` the same with random rows of width N, as the model draws them;
`unigram_readout_dN` superposes the count model's log-probabilities on random rows and reads
them back (crosstalk). **Mechanism check**: real test spans shown twice in one window; a model
that copies has a far lower loss on the second copy. **Where the heads look**: attention mass
per pattern (self, previous token, earlier occurrences of the current token, the induction
target), the largest over a layer's heads, next to uniform causal attention's.

**Finding 2** (section 4.3): a substitution cipher (a random bijection of the vocabulary that
keeps the special ids) over the test text, paired with the same embedding draw; in the paper
the standard LM's loss explodes and the lexinvariant LM's does not move. The **deciphering
probe** maps the lexinvariant LM's hidden state at t, per layer, to the plaintext id of token
t: trained on validation text under some ciphers and tested on test text under others, each
layer's L2 strength and the reported layer chosen on a training cipher held out of a first
fit.

**Findings 3-4** (the `symbols` variants): symbol ids are appended to the text vocabulary,
half mixed into training as in-context task rows (lookup, copy, reverse), half never seen in
training; teacher-forced argmax accuracy at answer positions on held-out and training symbols,
next to the semi-lexinvariant LMs (a type's learned row replaced by a random one with
probability p) and their natural-text perplexity.

```bash
python -m lexlm.run --config lexinvariant:tiny --workdir results/lexinv_tiny
python -m lexlm.run --config lexinvariant:small --workdir results/lexinv_small
python -m lexlm.run --config lexinvariant:ablation --workdir results/lexinv_ablation
python -m lexlm.run --config lexinvariant:symbols --workdir results/lexinv_symbols
python -m lexlm.evaluate --workdir results/lexinv_tiny --split test
```

Every field is overridable, the data included (`--config.data.source=files
--config.data.files=my.txt` for prose, `--config.code_data...` for code,
`--config.corpora=prose,code`).
""",
    "findings": [
        ("tiny", "Findings 1-2, tiny (the main job's section): prose, characters and subwords"),
        ("small", "Findings 1-2, small: long context, prose and code"),
        ("ablation", "The readout-fix ablation (tiny character LM, validation split)"),
        ("symbols", "Findings 3-4: in-context symbol tasks (tiny character LM)"),
    ],
}

REFERENCES = ("in_context_unigram", "bag_of_tokens", "unigram_readout")
PATTERNS = ("self", "previous", "same_token_earlier", "induction")
MODEL_NAME = {"learned": "standard", "learned_copy": "standard + copy readout",
              "lexinvariant": "lexinvariant"}  # fmt: skip


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------- findings 1-2


NOT_RECORDED = "standard + copy readout: not recorded in this finding"
OLD_FINDING = "one seed; no interval recorded in this finding"


def _setup(f: dict) -> list[str]:
    m = f["model"]
    fixes = " ".join(f"`model.{k}={v}`" for k, v in f["lexinvariant_model"].items())
    copy = f.get("standard_copy_model")
    control = (
        "the standard + copy readout runs add "
        + " ".join(f"`model.{k}={v}`" for k, v in copy.items())
        + "; "
        if copy
        else ""
    )
    seeds = f.get("train_seeds")
    if seeds is None:
        seed_text = f"Training seeds: {OLD_FINDING}."
    elif seeds == 1:
        seed_text = (
            "One training seed per run (`train.seeds=1`: three would not fit this 2-core "
            "machine's time for the run); intervals are 95% bootstrap intervals over test "
            "units (1 KB blocks of the test documents)."
        )
    else:
        seed_text = (
            f"{seeds} training seeds per run (`train.seeds={seeds}`, trained in one program); "
            "the tables give the seed-averaged model, with 95% bootstrap intervals over test "
            "documents."
        )
    lines = [
        f"{m['depth']} layers x {m['width']} wide, {m['heads']} heads, context {f['seq_len']}, "
        f"batches of {f['batch_size']} windows; the lexinvariant runs add {fixes}; {control}"
        f"lexinvariant losses are averaged over {f['eval_draws']} embedding draws. {seed_text}",
        "",
        "| run | model | unit | vocabulary | parameters | steps |",
        "|---|---|---|---|---|---|",
    ]
    for key, pair in f["runs"].items():
        for emb, r in pair.items():
            lines.append(
                f"| `{r['name']}` | {MODEL_NAME[emb]} | {key.split('/')[1]} | {r['vocab_size']} "
                f"| {r['params']:,} | {r['steps']} |"
            )
    if copy is None:
        lines += ["", f"{NOT_RECORDED[0].upper()}{NOT_RECORDED[1:]}."]
    return [*lines, ""]


def ratio_cell(row: dict, name: str) -> str:
    """'1.42 [1.30, 1.55]': a perplexity ratio and its paired bootstrap interval."""
    if name not in row:
        return "not recorded"
    if f"{name}_interval" not in row:
        return f"{row[name]:.2f}"
    lo, hi = row[f"{name}_interval"]
    return f"{row[name]:.2f} [{lo:.2f}, {hi:.2f}]"


def loss_cell(row: dict, name: str) -> str:
    from lexlm.eval.intervals import plus_minus

    if name not in row:
        return "not recorded"
    if f"{name}_interval" not in row:
        return f"{row[name]:.3f}"
    return plus_minus(row[name], *row[f"{name}_interval"])


def ratio_sentence(table: list[dict]) -> str:
    """How the perplexity ratio moves with position, from the numbers; with intervals, a fall
    is stated only when the last bucket's interval lies below the first's (else tied)."""
    if "ppl_ratio_interval" in table[0]:
        first, last = table[0], table[-1]
        head = (
            f"The lexinvariant / standard perplexity ratio is {ratio_cell(first, 'ppl_ratio')} "
            f"at positions {first['positions']} and {ratio_cell(last, 'ppl_ratio')} at "
            f"positions {last['positions']}"
        )
        if last["ppl_ratio_interval"][1] < first["ppl_ratio_interval"][0]:
            return head + ": it falls with position (the intervals do not overlap)."
        if last["ppl_ratio_interval"][0] > first["ppl_ratio_interval"][1]:
            return head + ": it rises with position (the intervals do not overlap)."
        return head + ": the intervals overlap, so the two are tied at this budget."
    ratios = [row["ppl_ratio"] for row in table]
    top = int(np.argmax(ratios))
    tail = ratios[top:]
    falls = all(b < a for a, b in itertools.pairwise(tail))
    first, last = table[top], table[-1]
    if len(tail) > 1 and falls:
        how = (
            f"falls in every bucket from positions {first['positions']} on "
            f"({', '.join(f'{r:.2f}' for r in tail)})"
        )
    else:
        how = (
            f"is {first['ppl_ratio']:.2f} at its largest (positions {first['positions']}) and "
            f"{last['ppl_ratio']:.2f} at positions {last['positions']}"
        )
    return f"The lexinvariant / standard perplexity ratio {how}."


def count_model_sentence(table: list[dict]) -> str:
    """Where the lexinvariant LM is below the in-context count model; with intervals, below
    (above) only where its whole interval is below (above) the count model's loss."""
    if "lexinvariant_interval" in table[0]:
        ref = "in_context_unigram"
        below = [r["positions"] for r in table if r["lexinvariant_interval"][1] < r[ref]]
        above = [r["positions"] for r in table if r["lexinvariant_interval"][0] > r[ref]]
        tied = [r["positions"] for r in table if r["positions"] not in below + above]
        parts = [
            f"{what} at positions {join(where)}"
            for what, where in (("below", below), ("above", above), ("tied with it", tied))
            if where
        ]
        return f"Against the in-context count model, the lexinvariant LM is {join(parts)}."
    below = [row["positions"] for row in table if row["lexinvariant"] < row["in_context_unigram"]]
    if not below:
        return "The lexinvariant LM is above the in-context count model in every bucket."
    if len(below) == len(table):
        return "The lexinvariant LM is below the in-context count model in every bucket."
    return f"The lexinvariant LM is below the in-context count model at positions {join(below)}."


def comparison_sentences(r: dict) -> list[str]:
    """The orderings of finding 1 over the whole test split, each stated only where the paired
    interval excludes 0 (``intervals.ordering_sentence``), and the perplexity ratios."""
    from lexlm.eval.intervals import ordering_sentence

    cmps = r.get("comparisons")
    if cmps is None:
        return [f"Comparisons: {OLD_FINDING}; {NOT_RECORDED}."]
    names = {"learned": "the standard LM", "learned_copy": "the standard LM + copy readout",
             "lexinvariant": "the lexinvariant LM"}  # fmt: skip
    out = []
    for key, cmp in cmps.items():
        if " - " in key:
            a, b = key.split(" - ")
            text = ordering_sentence(names[a], names[b], cmp, lower_is_better=True)
            out.append(f"In bits per byte, {text}.")
    ratios = [
        f"{names[k.split(' / ')[0]].removeprefix('the ')} / "
        f"{names[k.split(' / ')[1]].removeprefix('the ')} "
        f"{v['value']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
        for k, v in cmps.items()
        if " / " in k
    ]
    out.append(f"Whole-split perplexity ratios (95% paired bootstrap): {'; '.join(ratios)}.")
    return out


def _headline(r: dict) -> str:
    from lexlm.eval.intervals import plus_minus

    parts = []
    for emb in ("learned", "learned_copy", "lexinvariant"):
        m = r.get(emb)
        if m is None:
            parts.append(NOT_RECORDED)
        elif "bits_per_byte_interval" in m:
            parts.append(
                f"{MODEL_NAME[emb]} {plus_minus(m['bits_per_byte'], *m['bits_per_byte_interval'])}"
                f" bits/byte (perplexity {m['perplexity']:.2f})"
            )
        else:
            parts.append(
                f"{MODEL_NAME[emb]} {m['bits_per_byte']:.3f} bits/byte "
                f"(perplexity {m['perplexity']:.2f}; {OLD_FINDING})"
            )
    return ", ".join(parts)


def _finding1(f: dict, figures) -> list[str]:
    lines = ["### Finding 1: the gap closes with context", ""]
    for key, r in f["finding1"].items():
        table = r["table"]
        ref_cols = [k for k in table[0] if k.startswith(REFERENCES) and "_interval" not in k]
        cols = [("standard", "standard"), ("standard + copy readout", "standard_copy"),
                ("lexinvariant", "lexinvariant")]  # fmt: skip
        ratios = [("ppl ratio lex/std", "ppl_ratio"),
                  ("ppl ratio lex/(std + copy)", "ppl_ratio_copy")]  # fmt: skip
        bounds = (
            " (± 95% bootstrap over test units; ratios with their 95% paired bootstrap intervals)"
            if "lexinvariant_interval" in table[0]
            else ""
        )
        lines += [
            f"**{key}**: {_headline(r)}; ln V = {r['ln_v']:.3f}. Loss in nats per token{bounds}.",
            "",
            "| positions | "
            + " | ".join(name for name, _ in cols + ratios)
            + "".join(f" | {k}" for k in ref_cols)
            + " |",
            "|---" * (1 + len(cols) + len(ratios) + len(ref_cols)) + "|",
        ]
        for row in table:
            cells = [loss_cell(row, k) for _, k in cols] + [ratio_cell(row, k) for _, k in ratios]
            refs = "".join(f" | {row[k]:.3f}" for k in ref_cols)
            lines.append(f"| {row['positions']} | {' | '.join(cells)}{refs} |")
        png = plot_loss_by_position(r["curves"], log_x=True)
        path = figures.save(f"loss_by_position_{key.replace('/', '_')}.png", png)
        lines += ["", ratio_sentence(table) + " " + count_model_sentence(table), ""]
        lines += [" ".join(comparison_sentences(r)), ""]
        lines += [f"![loss by position, {key}]({path})", ""]
    lines += _code_vs_prose(f)
    return lines


def _code_vs_prose(f: dict) -> list[str]:
    out = []
    for unit in f["units"]:
        prose, code = f["finding1"].get(f"prose/{unit}"), f["finding1"].get(f"code/{unit}")
        if not (prose and code):
            continue
        pairs = list(zip(prose["table"], code["table"]))
        last_p, last_c = pairs[-1]
        if "ppl_ratio_interval" in last_p:
            # different documents: lower only where the two intervals do not overlap
            lower = [p["positions"] for p, c in pairs
                     if c["ppl_ratio_interval"][1] < p["ppl_ratio_interval"][0]]  # fmt: skip
            higher = [p["positions"] for p, c in pairs
                      if c["ppl_ratio_interval"][0] > p["ppl_ratio_interval"][1]]  # fmt: skip
            out += [
                f"Code against prose ({unit}): the ratio is lower on code in {len(lower)} and "
                f"higher in {len(higher)} of {len(pairs)} buckets (intervals apart; the rest "
                f"are tied at this budget); at positions {last_p['positions']} it is "
                f"{ratio_cell(last_c, 'ppl_ratio')} on code and "
                f"{ratio_cell(last_p, 'ppl_ratio')} on prose.",
                "",
            ]
            continue
        faster = [p["positions"] for p, c in pairs if c["ppl_ratio"] < p["ppl_ratio"]]
        out += [
            f"Code against prose ({unit}): the ratio is lower on code in {len(faster)} of "
            f"{len(pairs)} buckets; at positions {last_p['positions']} it is "
            f"{last_c['ppl_ratio']:.2f} on code and {last_p['ppl_ratio']:.2f} on prose.",
            "",
        ]
    return out


def _mechanism(f: dict) -> list[str]:
    lines = [
        "### Mechanism check: repeated spans",
        "",
        "| run | model | span | first copy | second copy | drop |",
        "|---|---|---|---|---|---|",
    ]
    drops: dict[str, list] = {"learned": [], "lexinvariant": []}
    for key, r in f["mechanism"].items():
        for emb, m in r.items():
            drops.setdefault(emb, []).append(m["drop"])
            lines.append(
                f"| {key} | {MODEL_NAME[emb]} | {m['span']} | {m['first_copy']:.3f} | "
                f"{m['second_copy']:.3f} | {m['drop']:.3f} |"
            )
    lex, std = drops["lexinvariant"], drops["learned"]
    lines += [
        "",
        f"On the second copy the lexinvariant LM's loss drops by {min(lex):.2f} to "
        f"{max(lex):.2f} nats, the standard LM's by {min(std):.2f} to {max(std):.2f}"
        + (
            f", the standard LM + copy readout's by {min(drops['learned_copy']):.2f} to "
            f"{max(drops['learned_copy']):.2f}."
            if drops.get("learned_copy")
            else "."
        ),
    ]
    return [*lines, ""]


def _attention(f: dict) -> list[str]:
    lines = [
        "### Where the heads look",
        "",
        "Attention mass per pattern on validation windows, the largest over a layer's heads, "
        "and in brackets what uniform causal attention gives.",
        "",
        "| run | model | layer | " + " | ".join(PATTERNS) + " | entropy (mean) |",
        "|---" * (4 + len(PATTERNS)) + "|",
    ]
    for key, r in f["attention"].items():
        for emb, layers in r.items():
            for layer, st in layers.items():
                cells = " | ".join(
                    f"{max(st[p]):.3f} ({st[p + '_uniform'][0]:.3f})" for p in PATTERNS
                )
                ent = float(np.mean(st["entropy"]))
                lines.append(
                    f"| {key} | {MODEL_NAME[emb]} | {layer} | {cells} | "
                    f"{ent:.2f} ({st['entropy_uniform'][0]:.2f}) |"
                )
    parts = []
    for key, r in f["attention"].items():
        st = r["lexinvariant"]["block_0"]
        parts.append(
            f"{float(np.mean(st['entropy'])):.2f} against {st['entropy_uniform'][0]:.2f} ({key})"
        )
    lines += [
        "",
        "Mean attention entropy of the lexinvariant LM's first block, against uniform causal "
        f"attention's: {join(parts)}.",
    ]
    return [*lines, ""]


def _finding2(f: dict) -> list[str]:
    lines = [
        "### Finding 2: substitution cipher",
        "",
        "| run | model | plain loss | cipher loss | difference (± s.e.) | draws |",
        "|---|---|---|---|---|---|",
    ]
    diffs: dict[str, list] = {"standard": [], "lexinvariant": []}
    for key, r in f["finding2"].items():
        for name, m in r.items():
            diffs.setdefault(name, []).append(m["diff"])
            lines.append(
                f"| {key} | {name} | {m['plain_loss']:.3f} | {m['cipher_loss']:.3f} | "
                f"{m['diff']:+.3f} ± {m['diff_se']:.3f} | {m['draws']} |"
            )
    std, lex = diffs["standard"], diffs["lexinvariant"]
    lines += [
        "",
        f"Under a cipher the standard LM's loss rises by {min(std):.2f} to {max(std):.2f} "
        f"nats; the lexinvariant LM's changes by at most {max(abs(d) for d in lex):.4f}.",
    ]
    for key, p in f["probe"].items():
        best = p["layers"][p["best_layer"]]
        verdict = (
            "above the majority baseline"
            if best["overall"] > p["majority_baseline"]
            else "not above the majority baseline: the hidden states carry no identity of the "
            "current token that transfers across ciphers"
        )
        lines += [
            "",
            f"**Deciphering probe, {key}** ({p['train_tokens']} training / {p['test_tokens']} "
            f"test tokens): layer `{p['best_layer']}` (L2 {best['l2']:g}), chosen on the "
            f"held-out training cipher, reaches test accuracy {best['overall']:.3f}, "
            f"{verdict} ({p['majority_baseline']:.3f}; chance {p['chance']:.3f}).",
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


def timing_lines(provenance: dict) -> list[str]:
    timings = provenance.get("timings", {}) if provenance else {}
    runs = {k: v for k, v in timings.items() if isinstance(v, dict) and "train_s" in v}
    if not runs:
        return []
    parts = [f"`{k}` {v['train_s']:.0f} s" for k, v in runs.items()]
    return [f"Training wall time in this invocation ({provenance['machine']}): "
            f"{', '.join(parts)}.", ""]  # fmt: skip


def render_findings(f: dict, provenance: dict, figures) -> str:
    lines = _setup(f) + _finding1(f, figures) + _mechanism(f) + _attention(f) + _finding2(f)
    return "\n".join(lines + timing_lines(provenance))


# ----------------------------------------------------------------------------- ablation


def ablation_sentences(f: dict) -> list[str]:
    loss = {r["variant"]: r["loss"] for r in f["rows"] if r["loss"] is not None}
    first = {r["variant"]: r["first_loss"] for r in f["rows"] if r["first_loss"] is not None}
    out = []
    if "no_fix" in loss and "logit_scale" in loss:
        out.append(
            f"The learned logit scale moves the first logged loss from {first['no_fix']:.2f} "
            f"to {first['logit_scale']:.2f} (ln V = {f['ln_v']:.3f}) and the validation loss "
            f"from {loss['no_fix']:.4f} to {loss['logit_scale']:.4f}."
        )
    options = [n for n in ("no_ln_bias_no_pos_decay", "rope", "rope_qkv_std", "smear_keys")
               if n in loss]  # fmt: skip
    if "logit_scale" in loss and options:
        moves = {n: loss[n] - loss["logit_scale"] for n in options}
        biggest = max(moves, key=lambda n: abs(moves[n]))
        out.append(
            f"Against the scale alone, the position and key options move the validation loss "
            f"by at most {abs(moves[biggest]):.4f} nats (`{biggest}`: {moves[biggest]:+.4f})."
        )
    if "logit_scale" in loss and "copy_readout" in loss:
        gain = loss["logit_scale"] - loss["copy_readout"]
        out.append(
            f"The copy readout {'gains' if gain > 0 else 'loses'} {abs(gain):.4f} nats over "
            f"the scale alone ({loss['copy_readout']:.4f})."
        )
    if "standard" in loss and "standard_copy_readout" in loss:
        a, b = loss["standard_copy_readout"], loss["standard"]
        verdict = "does not help" if a >= b else "helps"
        out.append(
            f"The copy readout {verdict} the standard LM at this budget ({a:.4f} with it, "
            f"{b:.4f} without), so the findings' standard LM keeps the plain tied readout."
        )
    return out


def render_ablation(f: dict, provenance: dict) -> str:
    positions = f["rows"][0]["positions"]
    m = f["model"]
    lines = [
        f"{m['depth']} layers x {m['width']} wide, context {f['seq_len']}, {f['steps']} steps "
        f"of {f['batch_size']} windows, train seed {f['seed']}, {f['vocab_size']} characters. "
        "Each variant is one `lm` run of `--config lm:tiny` with the overrides shown "
        "(lexinvariant variants add `model.embedding=lexinvariant`). First logged loss: the "
        "mean over the first logging window (to step "
        f"{min(f['first_logged_step'].values())}). Validation loss in nats per character, "
        "overall and per position bucket.",
        "",
        "| variant | overrides | what | first logged loss | validation loss | "
        + " | ".join(positions)
        + " |",
        "|---" * (5 + len(positions)) + "|",
    ]
    for row in f["rows"]:
        name = row["variant"]
        what = f["what"].get(name, "no training")
        over = " ".join(f"`{o}`" for o in f["overrides"].get(name, []) if "embedding=" not in o)
        first = "" if row["first_loss"] is None else f"{row['first_loss']:.3f}"
        loss = "" if row["loss"] is None else f"{row['loss']:.4f}"
        cells = " | ".join(f"{v:.3f}" for v in row["buckets"])
        lines.append(f"| {name} | {over} | {what} | {first} | {loss} | {cells} |")
    lines += ["", " ".join(ablation_sentences(f)), ""]
    return "\n".join(lines + timing_lines(provenance))


# ----------------------------------------------------------------------------- dispatch


def render(findings: dict, provenance: dict, figures) -> str:
    experiment = findings.get("experiment", "findings")
    if experiment == "ablation":
        return render_ablation(findings, provenance)
    if experiment == "symbols":
        from lexlm.proj.lexinvariant.symbol_report import render_symbols

        return render_symbols(findings, provenance, figures)
    return render_findings(findings, provenance, figures)
