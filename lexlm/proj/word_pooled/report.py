"""The word-pooled experiment's findings and report: the paper-style table, the orderings
computed from it, and the accuracy-by-frequency plot.

``findings(results, train_counts)`` turns each model's evaluation (``evaluate.model_result``
plus its counts) into one row: next-word accuracy overall, by training-frequency bucket and
on numbers (``lexlm.eval.next_word.accuracy_report``), bits per byte and per character, and
training and inference FLOPs per byte. ``render`` writes them as Markdown; every number and
every ordering in its text comes from the findings.
"""

from __future__ import annotations

import collections
import io
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lexlm.eval.intervals import UNIT_BYTES
from lexlm.eval.next_word import BUCKETS, accuracy_report
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
ROW_FIELDS = (
    "bits_per_byte",
    "bits_per_char",
    "n_chars",
    "n_bytes",
    "steps",
    "train_flops",
    "train_flops_per_byte",
    "infer_flops_per_byte",
    "train_bytes",
    "params",
    "oov_rate",
)
RARE = ("unseen", "1-10")

PAGE = {
    "title": 'Word-pooled tokenization (Thawani et al., 2023, "Learn Your Tokens")',
    "intro": """
A word-pooled LM (eTok, `lexlm.nn.word_pooled`: a word encoder with learned prefix tokens, a
causal word LM over the prefix outputs of every word, and a per-word decoder over
[LM outputs ; the next word's units] that predicts the units and an explicit end-of-word)
against four baselines, all trained through the one trainer for the same training FLOPs (a
forward and backward pass counted as computed by `lexlm.eval.flops`, the chunked vocabulary
loss's scan times its chunks, times steps; findings saved before that counter charged a scan
body once, as XLA's raw count does, which gave the word LM about twice its budget): a character
LM, a byte LM, a BPE subword LM and a closed-vocabulary word LM whose unknown words are spelled
by a character unigram model. Each model is a run directory `W/runs/<model>`, evaluated from its
final checkpoint on held-out text:

- bits per character and per UTF-8 byte over the whole test split, end-of-word included for
  the word-pooled LM and the spelled cost of unknown words for the word LM; the report checks
  that every model's bits divide by the same character count;
- greedy next-word exact match on the same targets after the same context (the longest run
  of whole words within `eval.context_chars` characters), by the target's count in the
  training split, and on words with digits; plus a count reference that needs no training
  (the most frequent training word after the previous word).

What lexlm does differently from the paper's code: held-out text never overlaps training
(contiguous splits; the paper samples validation windows from the whole file); prefix ids lie
outside the unit vocabulary; the encoder masks padding keys; the decoder loss covers real
units plus end-of-word only; context is matched in characters; decoding is greedy, and
cached. The paper trains far longer and scores next words on windows that overlap its
training text, so its accuracies are not comparable with these.

```bash
# the main job's section: the embedded Lee news corpus
python -m lexlm.run --config word_pooled:main --workdir results/wp_main
# Tiny Shakespeare (input.txt of karpathy's char-rnn, also TFDS tiny_shakespeare)
python -m lexlm.run --config word_pooled:shakespeare --workdir results/wp_shakespeare \\
    --config.data.files=path/to/tinyshakespeare/input.txt
# the Spanish Bible (Reina-Valera 1909), each book one document
python -m lexlm.run --config word_pooled:spanish --workdir results/wp_spanish \\
    --config.data.files=path/to/reina_valera_1909.txt \\
    --config.models=word_pooled,char,subword,word --config.train.steps=250 \\
    --config.eval.targets=400
python -m lexlm.evaluate --workdir results/wp_shakespeare/runs/word_pooled
```

A word-pooled LM over text you segment yourself (`tests/test_readme.py` runs this):

```python
import jax
import numpy as np
from lexlm.nn.word_pooled import WordPooledConfig, WordPooledLM, generate_fn
from lexlm.text import ByteTokenizer, pad_words, segment_words

tok = ByteTokenizer()
words = segment_words("To be, or not to be: that is the question.")  # "".join(words) is the text
units, continued, stats = pad_words(words, max_len=12, encode=tok.encode)  # [W, 12] byte ids
cfg = WordPooledConfig(unit_vocab=tok.vocab_size, max_units=12, max_words=32, prefix=4)
model = WordPooledLM(cfg)
window = units[None]  # [1, W, L]: predict words 1..W-1 from the words before each
params = model.init(jax.random.key(0), window, method="nll")["params"]
nll, targets = model.apply({"params": params}, window, method="nll")  # [1, W-1, L+1] nats
new = generate_fn(model, n_words=3)(params, window, jax.random.key(1))  # [1, 3, L], cached
text = "".join(tok.decode(np.asarray(w)) for w in new[0])
```
""",
    "findings": [
        ("main", "Main job: the embedded Lee corpus"),
        ("shakespeare", "Tiny Shakespeare"),
        ("spanish", "Spanish Bible (Reina-Valera 1909)"),
    ],
}


# -- findings --------------------------------------------------------------------------------
def train_counts(texts: Sequence[str], is_eos: Sequence[bool] | np.ndarray) -> dict[str, int]:
    """How often each word body occurs in the training split (eos words left out)."""
    return dict(collections.Counter(word_body(t) for t, e in zip(texts, is_eos) if not e))


def finite(value):
    """``value`` with every NaN or infinity replaced by None (findings are compared as JSON,
    and NaN is not equal to itself)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pooled_rare(acc: dict) -> float | None:
    """Accuracy on the rare buckets together (unseen or 1-10 training occurrences)."""
    cells = [acc["buckets"][b] for b in RARE]
    n = sum(c["n"] for c in cells)
    return sum(c["accuracy"] * c["n"] for c in cells if c["n"]) / n if n else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def bits_units(results: Mapping[str, dict]) -> dict[str, dict]:
    """model -> its per-document bits and bytes (seed-averaged), for the models that have them."""
    return {k: r["units"] for k, r in results.items() if "units" in r}


def correct_units(results: Mapping[str, dict]) -> dict[str, dict]:
    """model -> {'correct': 0/1 per next-word target} (the same targets for every model)."""
    return {
        k: {"correct": [float(p == t) for p, t in zip(r["predictions"], r["targets"])]}
        for k, r in results.items()
        if r.get("predictions")
    }


def neighbour_comparisons(
    values: Mapping[str, float], units: Mapping[str, dict], metric, lower_better: bool
) -> list[dict]:
    """The models ranked best first, and the paired bootstrap (``lexlm.eval.intervals``) of
    each neighbouring pair: [{'a', 'b', ...compare..., 'verdict': 'a' | 'b' | 'tied'}]."""

    order = ranking(dict(values), lower_better)
    return [
        paired(a, b, units, metric, lower_better)
        for a, b in itertools.pairwise(order)
        if a in units and b in units
    ]


def paired(a: str, b: str, units: Mapping[str, dict], metric, lower_better: bool) -> dict:
    """The paired bootstrap (``lexlm.eval.intervals.compare``) of model ``a`` against ``b``:
    {'a', 'b', 'a_value', 'b_value', ...compare..., 'verdict': 'a' | 'b' | 'tied'}."""
    from lexlm.eval import intervals as iv

    d = iv.compare(metric, units[a], units[b])
    values = {"a_value": d.pop("a"), "b_value": d.pop("b")}
    return {"a": a, "b": b, **values, **d, "verdict": iv.ordered(d, lower_better)}


def reference_comparisons(units: Mapping[str, dict], reference: str, metric) -> list[dict]:
    """Each model (every key of ``units`` but ``reference``) against the reference: the paired
    bootstrap of model - reference, 'verdict' 'a' (the model higher), 'b' or 'tied'."""
    return [
        paired(k, reference, units, metric, lower_better=False) for k in units if k != reference
    ]


def ranked_line(order: Sequence[str], value_of, comparisons: Sequence[dict]) -> str:
    """'A (v) < B (v) ~ C (v)': '<' where the neighbours' interval excludes 0, '~' (tied at
    this budget) where it holds 0; ', ' where no interval was recorded."""
    sign = {(c["a"], c["b"]): ("<" if c["verdict"] != "tied" else "~") for c in comparisons}
    parts = [f"{name(order[0])} ({value_of(order[0])})"]
    for a, b in itertools.pairwise(order):
        sep = f" {sign[(a, b)]} " if (a, b) in sign else ", "
        parts.append(f"{sep}{name(b)} ({value_of(b)})")
    return "".join(parts)


def prediction_diff(results: Mapping[str, dict], examples: int = 5) -> dict[str, dict]:
    """Each model's next-word predictions against the bigram count reference's, target by
    target: how many are the same word, how many of those are right, and the first differing
    targets (a model whose list equals the reference's would point at a plumbing error)."""
    ref = results["bigram"]["predictions"]
    out = {}
    for k, r in results.items():
        if k == "bigram" or not r.get("predictions"):
            continue
        pred, truth = r["predictions"], r["targets"]
        same = [p == q for p, q in zip(pred, ref)]
        differ = [
            {"target": t, "model": p, "bigram": q} for p, q, t in zip(pred, ref, truth) if p != q
        ]
        out[k] = {
            "n": len(same),
            "same": int(sum(same)),
            "same_and_right": int(sum(s and p == t for s, p, t in zip(same, pred, truth))),
            "examples": differ[:examples],
        }
    return out


def findings(results: Mapping[str, dict], counts: Mapping[str, int] | None) -> dict:
    """One row per model (``counts``: training counts of word bodies, None without next-word
    targets); with both, the word-pooled against the character LM. ``units`` keeps each
    model's per-document bits and bytes, ``comparisons`` the paired bootstrap of neighbouring
    models in bits per byte and in next-word accuracy."""
    from lexlm.eval import intervals as iv

    rows = {}
    for kind, r in results.items():
        row = {f: r.get(f) for f in ROW_FIELDS if f in r or f != "oov_rate"}
        if "seeds" in r:
            row["seeds"] = r["seeds"]
        if "units" in r:
            row["interval"] = iv.bootstrap_interval(iv.ratio_of_sums("bits", "bytes"), r["units"])
        if counts is not None:
            row["accuracy"] = finite(accuracy_report(r["predictions"], r["targets"], counts))
        rows[kind] = finite(row)
    out = {"models": [k for k in results if k != "bigram"], "rows": rows}
    if "bigram" in results and results["bigram"].get("predictions"):
        out["vs_bigram"] = prediction_diff(results)
    units = bits_units(results)
    if units:
        out["units"] = units
        bits = {k: rows[k]["bits_per_byte"] for k in units if rows[k]["bits_per_byte"] is not None}
        out["comparisons"] = {
            "bits_per_byte": neighbour_comparisons(
                bits, units, iv.ratio_of_sums("bits", "bytes"), lower_better=True
            )
        }
        if counts is not None:
            acc = {k: rows[k]["accuracy"]["overall"]["accuracy"] for k in rows}
            correct = correct_units(results)
            for k, u in correct.items():  # '±' of the 'all' column: over the targets
                if k in rows:
                    i = iv.bootstrap_interval(iv.mean("correct"), u)
                    rows[k]["accuracy"]["overall"]["interval"] = {"lo": i["lo"], "hi": i["hi"]}
            out["comparisons"]["accuracy"] = neighbour_comparisons(
                acc, correct, iv.mean("correct"), lower_better=False
            )
            if "bigram" in correct:
                out["comparisons"]["vs_reference"] = reference_comparisons(
                    correct, "bigram", iv.mean("correct")
                )
    if counts is not None and "word_pooled" in rows and "char" in rows:
        wp, ch = rows["word_pooled"]["accuracy"], rows["char"]["accuracy"]
        out["vs_char"] = {
            "overall": ratio(wp["overall"]["accuracy"], ch["overall"]["accuracy"]),
            "rare_word_pooled": pooled_rare(wp),
            "rare_char": pooled_rare(ch),
            "rare_n": sum(wp["buckets"][b]["n"] for b in RARE),
        }
    return out


# -- rendering -------------------------------------------------------------------------------
def _pct(cell: dict) -> str:
    """Accuracy in %, '± h' (the 95% bootstrap half-width over the targets) when recorded."""
    if not cell["n"] or cell["accuracy"] is None:
        return "-"
    i = cell.get("interval")
    if not i:
        return f"{100 * cell['accuracy']:.1f}"
    from lexlm.eval.intervals import plus_minus

    return plus_minus(100 * cell["accuracy"], 100 * i["lo"], 100 * i["hi"], digits=1)


def _fix(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _sci(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def name(kind: str) -> str:
    return NAMES.get(kind, kind)


def seeds_note(rows: Sequence[Mapping]) -> str:
    """What '±' means in a table of bits per byte, and how many training seeds stand behind it
    ('' for findings that recorded no interval)."""
    with_interval = [r for r in rows if r.get("interval")]
    if not with_interval:
        return "One training seed per model; no interval was recorded in this finding."
    seeds = {int((r.get("seeds") or {}).get("n", 1)) for r in with_interval}
    docs = with_interval[0]["interval"]["units"]
    head = (
        f"{min(seeds)} training seeds per model (trained in one program), seed-averaged"
        if min(seeds) > 1
        else "One training seed per model (this grid is too large for 3 seeds on this machine)"
    )
    return (
        f"{head}; ± is the 95% bootstrap interval over the {docs} test units (blocks of "
        f"{UNIT_BYTES} bytes within the test documents)."
    )


def bits_cell(r: Mapping) -> str:
    """Bits per byte, '± h' (the 95% bootstrap half-width over test units) when recorded,
    and the seeds' standard deviation when there were several."""
    if r.get("bits_per_byte") is None:
        return "-"
    i = r.get("interval")
    if not i:
        return _fix(r["bits_per_byte"])
    from lexlm.eval.intervals import plus_minus

    cell = plus_minus(r["bits_per_byte"], i["lo"], i["hi"])
    s = (r.get("seeds") or {}).get("bits_per_byte")
    if s and s["n"] > 1:
        cell += f" (sd {s['sd']:.3f} over {s['n']} seeds)"
    return cell


def table(f: dict) -> list[str]:
    with_acc = all("accuracy" in r for r in f["rows"].values())
    head = ["model", *(["all", *BUCKETS, "numbers"] if with_acc else [])]
    head += ["bits/byte", "bits/char", "train FLOPs/byte", "infer FLOPs/byte", "steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, r in f["rows"].items():
        cells = [name(kind)]
        if with_acc:
            a = r["accuracy"]
            cells += [_pct(a["overall"]), *(_pct(a["buckets"][b]) for b in BUCKETS)]
            cells.append(_pct(a["numeracy"]))
        cells += [bits_cell(r), _fix(r["bits_per_char"])]
        cells += [_sci(r["train_flops_per_byte"]), _sci(r["infer_flops_per_byte"])]
        cells.append("-" if r["steps"] is None else str(r["steps"]))
        lines.append("| " + " | ".join(cells) + " |")
    if with_acc:
        a = next(iter(f["rows"].values()))["accuracy"]
        counts = ", ".join(f"{b}: {a['buckets'][b]['n']}" for b in BUCKETS)
        lines += [
            "",
            f"Targets: {a['overall']['n']} words ({counts}; with digits: {a['numeracy']['n']}).",
        ]
    return lines


def setup_line(f: dict) -> str:
    """The data and sizes of the grid, from its findings."""
    s = f["setup"]
    if s["source"] == "files":
        where = ", ".join(f"`{x}`" for x in s["files"]) or "local files"
    elif s["source"] == "tfds":
        where = f"TFDS `{s['tfds_name']}`"
    else:
        where = f"the embedded `{s['source']}` corpus"
    val, test = s["holdout"]
    split = (
        f"{s['doc_split']}s as documents, the last {100 * (val + test):.0f}% held out "
        f"({100 * val:.0f}% validation, {100 * test:.0f}% test)"
    )
    m, b = s["model"], s["baseline"]
    return (
        f"Data: {where}; {split}. Word-pooled LM: width {m['width']}, encoder "
        f"{_n(m['enc_depth'], 'layer')}, word LM {_n(m['lm_depth'], 'layer')}, decoder "
        f"{_n(m['dec_depth'], 'layer')}, p = {m['prefix']}, "
        f"{s['words']} words of context, at most {s['max_units']} {s['unit']}s per piece. "
        f"Token LMs: {_n(b['model']['depth'], 'layer')} x {b['model']['width']}; context "
        + ", ".join(f"{k} {v}" for k, v in b["seq_len"].items())
        + f" tokens; {b['subword_vocab']:,} BPE subwords; word LM context {b['word_seq_len']} "
        f"words, vocabulary of training words seen at least {b['word_min_count']} times. "
        f"AdamW at {s['lr']:g}; every model trained for {f['budget']:.3g} FLOPs and evaluated "
        f"from its final checkpoint on the {f['split']} split."
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def ranking(values: Mapping[str, float | None], lower_better: bool) -> list[str]:
    present = [k for k, v in values.items() if v is not None]
    return sorted(present, key=lambda k: values[k] if lower_better else -values[k])


def orderings(f: dict) -> list[str]:
    """Sentences that order the models by the numbers (computed, never typed)."""
    rows = {k: r for k, r in f["rows"].items() if k != "bigram"}
    bits = {k: r["bits_per_byte"] for k, r in rows.items()}
    order = ranking(bits, lower_better=True)
    if "comparisons" in f:
        lines = [
            "- **Bits per byte**, best first ('<': the paired bootstrap interval of the "
            "difference over test units excludes 0; '~': tied at this budget): "
            + ranked_line(order, lambda k: f"{bits[k]:.3f}", f["comparisons"]["bits_per_byte"])
            + "."
        ]
    else:
        lines = [
            "- **Bits per byte**, best first (one seed; no interval was recorded in this "
            "finding, so neighbours are not ordered): "
            + ", ".join(f"{name(k)} ({bits[k]:.3f})" for k in order)
            + "."
        ]
    if "word_pooled" in rows and "char" in rows:
        wp, ch = rows["word_pooled"], rows["char"]
        per_byte = ratio(wp["train_flops_per_byte"], ch["train_flops_per_byte"])
        if per_byte is not None:
            lines.append(
                f"- The word-pooled LM spends {per_byte:.1f}x the character LM's training FLOPs "
                f"per byte, so it trained {wp['steps']} steps where the character LM trained "
                f"{ch['steps']}."
            )
    passes = {k: ratio(r.get("train_bytes"), f.get("train_split_bytes")) for k, r in rows.items()}
    if passes and all(v is not None for v in passes.values()):
        lines.append(
            f"- At this budget the models saw {min(passes.values()):.2f} to "
            f"{max(passes.values()):.2f} passes over the training split "
            f"({f['train_split_bytes']:,} bytes)."
        )
    if "bigram" in f["rows"] and "accuracy" in f["rows"]["bigram"]:
        acc = {k: r["accuracy"]["overall"]["accuracy"] for k, r in f["rows"].items()}
        best = ranking({k: v for k, v in acc.items() if k != "bigram"}, lower_better=False)
        ref = acc["bigram"]
        if "accuracy" in f.get("comparisons", {}):
            lines.append(
                "- **Next-word accuracy**, best first ('<' / '~' as above, over the targets): "
                + ranked_line(best, lambda k: f"{100 * acc[k]:.1f}%", f["comparisons"]["accuracy"])
                + "."
            )
        else:
            lines.append(
                "- **Next-word accuracy**, best first (no interval recorded): "
                + ", ".join(f"{name(k)} ({100 * acc[k]:.1f}%)" for k in best)
                + "."
            )
        vs_ref = f.get("comparisons", {}).get("vs_reference")
        if ref is not None and vs_ref:
            verdict = {"a": "above", "b": "below", "tied": "tied"}
            lines.append(
                f"- The count reference gets {100 * ref:.1f}%; each model against it (the "
                "paired bootstrap interval over the targets, in points): "
                + "; ".join(
                    f"{name(c['a'])} {verdict[c['verdict']]} "
                    f"({100 * c['diff']:+.1f} [{100 * c['lo']:+.1f}, {100 * c['hi']:+.1f}])"
                    for c in vs_ref
                )
                + "."
            )
        elif ref is not None:
            lines.append(
                f"- The count reference gets {100 * ref:.1f}% (this finding recorded no "
                "interval against it, so no model is ordered against it)."
            )
    for k, d in f.get("vs_bigram", {}).items():
        first = d["examples"][0] if d["examples"] else None
        example = (
            f" (first difference: target {first['target']!r}, {name(k)} {first['model']!r}, "
            f"reference {first['bigram']!r})"
            if first
            else " (every prediction is the reference's)"
        )
        lines.append(
            f"- {name(k)} predicts the count reference's word on {d['same']} of {d['n']} targets "
            f"({d['same_and_right']} of them right){example}."
        )
    if "vs_char" in f:
        v = f["vs_char"]
        acc = {k: f["rows"][k]["accuracy"]["overall"]["accuracy"] for k in ("word_pooled", "char")}
        times = "" if v["overall"] is None else f" (x{v['overall']:.2f})"
        overall = f"{_pctv(acc['word_pooled'])} against {_pctv(acc['char'])}{times}"
        rare = (
            f"{_pctv(v['rare_word_pooled'])} against {_pctv(v['rare_char'])}"
            if v["rare_n"]
            else "no rare targets"
        )
        lines.append(
            f"- Word-pooled against character LM: next-word accuracy {overall} overall; on "
            f"rare words (unseen or 1-10 training occurrences, {v['rare_n']} targets) {rare}."
        )
    return lines


def _pctv(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def text_size_line(f: dict) -> str:
    chars = sorted({r["n_chars"] for r in f["rows"].values() if r.get("n_chars") is not None})
    if len(chars) == 1:
        return f"Bits are over the whole split: {chars[0]:,} characters for every model."
    return f"Bits are over the whole split; character counts differ between models: {chars}."


def plot_buckets(f: dict) -> bytes:
    """PNG: next-word accuracy by the target's training-count bucket, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = f["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(BUCKETS) + 1)
    for i, (kind, r) in enumerate(rows.items()):
        a = r["accuracy"]
        cells = [a["buckets"][b]["accuracy"] for b in BUCKETS] + [a["overall"]["accuracy"]]
        ys = np.array([0.0 if v is None else 100 * v for v in cells])
        ax.bar(x + i * width, ys, width, label=name(kind))
    ax.set_xticks(x + 0.4 - width / 2, [*BUCKETS, "all"])
    ax.set_xlabel("target word's count in the training split")
    ax.set_ylabel("next-word exact match (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render(findings: dict, provenance: dict, figures) -> str:
    f = findings
    lines = [setup_line(f), ""]
    with_acc = all("accuracy" in r for r in f["rows"].values())
    if with_acc:
        lines += [
            "Accuracy: greedy next-word exact match in %, after the same context (at most "
            f"{f['setup']['context_chars']} characters of whole words), by the target's count "
            "in the training split"
            + (
                "; 'all' ± the 95% bootstrap interval over the targets."
                if any("interval" in r["accuracy"]["overall"] for r in f["rows"].values())
                else "."
            ),
            "",
        ]
    models = [r for k, r in f["rows"].items() if k != "bigram"]
    lines += [*table(f), "", seeds_note(models), text_size_line(f), "", *orderings(f), ""]
    timings = provenance.get("timings", {})
    trained = [t["train_s"] for t in timings.values() if isinstance(t, dict) and t.get("train_s")]
    if trained:
        lines += [f"Training took {sum(trained):,.0f} s in all ({provenance.get('machine')}).", ""]
    if with_acc:
        png = plot_buckets(f)
        lines += [
            f"![accuracy by frequency bucket]({figures.save('accuracy_by_frequency.png', png)})",
            "",
        ]
    return "\n".join(lines)
