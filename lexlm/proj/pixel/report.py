"""The pixel project's report: the encoders' table, what the typos cost each, and the figures
(the robustness curve, rendered examples), all from the findings of ``lexlm.proj.pixel.run``."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

PAGE = {
    "title": "Pixel sentence encoders",
    "intro": """
Pixel-Linguist (Xiao et al., 2024) trains PIXEL (Rust et al., 2023), a ViT over text rendered
as an image, into a sentence encoder, and finds it more robust to typos than a subword encoder.
lexlm trains a ViT over rendered text (`lexlm.text.render`: square patches of DejaVu Sans cut
from one strip, Pixel-Linguist's patch count; PIXEL's 2-D sin-cos positions on its square grid,
truncated to the patches used) and a subword-token encoder of the same width, depth, heads and
length (a sentencepiece BPE trained on the training sentences; 1-D sin-cos positions), both
with the Linear-GELU-LayerNorm head, mean pooling and L2 normalisation, through the same
stages and budget (`lexlm.proj.pixel.stages`): one contrastive run per perturbation kind
(character typos, random word shuffle, conditional shuffle, both combined), all from one
initialisation, averaged into a soup, then the supervised pairs. Loss: symmetric in-batch
InfoNCE. Every checkpoint from the soup on is scored on the validation judgements; the best
one is kept, restored, and scored on test, clean and with character typos in every text (test
never chooses). The TF-IDF row is a reference that needs no training. These are small encoders
trained from scratch (no PIXEL pretraining, whose masked-patch objective is built and tested,
`--config.stages.mae_steps`), so their absolute numbers are far below the paper's pretrained
ViT-B.

Data: the Lee corpus (embedded: the background news documents' sentences train; its
document-similarity set, halved by documents, selects and reports), the STS Benchmark (one
file per split), or GLUE's stsb in TFDS (whose test scores are hidden: test a labelled split):

```bash
python -m lexlm.run --config pixel:tiny --workdir runs/pixel_tiny
python -m lexlm.run --config pixel:stsb --workdir runs/pixel_stsb \\
    --config.data.split_files.train=$DATA/stsb/sts-train.csv \\
    --config.data.split_files.validation=$DATA/stsb/sts-dev.csv \\
    --config.data.split_files.test=$DATA/stsb/sts-test.csv
python -m lexlm.run --config pixel:stsb --workdir runs/pixel_tfds \\
    --config.data.source=tfds --config.data.tfds_name=glue/stsb \\
    --config.data.text_key=sentence1,sentence2 \\
    --config.data.splits.train='train[:90%]' --config.data.splits.validation='train[90%:]' \\
    --config.data.splits.test=validation
python -m lexlm.evaluate --workdir runs/pixel_stsb --split validation
```

The tiny variant leaves the topical stage (neighbouring sentences of one document,
Pixel-Linguist's first stage, `--config.stages.topical_steps`) out; no committed findings
include it yet.

A pixel sentence encoder over rendered text, and a typo'd positive (`tests/test_readme.py`
runs this):

```python
import jax
import numpy as np
from lexlm.data.sentence_pairs import PixelFeatures
from lexlm.nn.vit import EncoderConfig, SentenceEncoder
from lexlm.text.perturb import perturb
from lexlm.text.render import RenderConfig

feats = PixelFeatures(RenderConfig(max_patches=64))  # Pixel-Linguist's 64 patches of 16 x 16
text = "The cat sat on the mat."
typo = perturb(text, "typo", np.random.default_rng(0), rate=0.1)
patches, mask = feats([text, typo])  # uint8 [2, 64, 256], bool [2, 64] (text + end patch)
enc = SentenceEncoder(EncoderConfig(kind="pixel", width=64, depth=2, heads=4, max_len=64))
params = enc.init(jax.random.key(0), patches, mask)["params"]
emb = enc.apply({"params": params}, patches, mask)  # [2, 64], unit vectors
cosine = float(emb[0] @ emb[1])
```
""",
    "findings": [
        ("tiny", "Tiny: the Lee corpus"),
        ("stsb", "STS Benchmark"),
    ],
}

NAMES = {
    "pixel": "pixel encoder (rendered text)",
    "token": "subword-token encoder",
    "tfidf": "reference: TF-IDF bag of words (no training)",
}
SHORT = {"pixel": "the pixel encoder", "token": "the subword encoder", "tfidf": "TF-IDF"}


def _target(f: dict) -> str:
    if f["source"] == "lee":
        docs = f["data"]["validation"]["documents"] + f["data"]["test"]["documents"]
        return (
            f"the Lee document-similarity set's human ratings ({docs} documents cut by a seeded "
            f"permutation into two halves: {f['dev_pairs']} dev pairs inside one, "
            f"{f['test_pairs']} test pairs inside the other; each document embedded as the mean "
            f"of its chunks of at most {f['max_chars']} characters)"
        )
    name = f"GLUE's {f['tfds_name']} (TFDS)" if f["source"] == "tfds" else "STS Benchmark"
    return f"{name} pairs, {f['dev_pairs']} dev and {f['test_pairs']} test"


def _training(f: dict) -> str:
    d, s = f["data"], f["steps"]
    parts = [f"{d['sentences']:,} training sentences"]
    if f["source"] != "lee":
        parts[0] += f" (the distinct sentences of {d['train_pairs']:,} train pairs, scores unused)"
    out = f"{s['unsup_steps']} steps per perturbation run on {parts[0]} at rate {f['rate']:g}"
    if s["sup_steps"]:
        out += (f", then {s['sup_steps']} supervised steps on the {d['sup_pairs']:,} train pairs "
                f"scored >= {f['sup_min_score']:g} of 5")  # fmt: skip
    if s["topical_steps"]:
        out += f", {s['topical_steps']} topical steps on {d['topical_pairs']:,} neighbour pairs"
    if s["mae_steps"]:
        out += f"; the pixel encoder first {s['mae_steps']} MAE steps"
    return out


def _input_sentences(f: dict) -> list[str]:
    models = {r["model"]: r for r in f["rows"]}
    m = f["model"]
    out = []
    if "pixel" in models and "token" in models:
        patch = int(f["render"].get("patch", 16))
        out.append(
            f"- The parameters differ only in the input layer: the patch projection is "
            f"{patch * patch} x {m['width']}, the subword embedding table "
            f"{models['token']['vocab_size']:,} x {m['width']}."
        )
    if "pixel" in models:
        px = models["pixel"]["features"]
        line = (
            f"- In the test evaluation {px['truncated_texts']:,} of {px['texts']:,} rendered "
            f"texts were cut at {m['max_len']} patches ({px['truncated_chars']:,} characters)"
        )
        if "token" in models:
            tk = models["token"]["features"]
            line += f" against {tk['truncated_texts']:,} of {tk['texts']:,} tokenized ones"
        line += f"; {px['missing_glyphs']:,} characters had no glyph."  # fmt: skip
        out.append(line)
    return out


def _timing_lines(provenance: dict) -> list[str]:
    timings = provenance.get("timings", {})
    parts = []
    for model, stages in timings.items():
        rates = [v["sentences_per_s"] for v in stages.values() if "sentences_per_s" in v]
        wall = sum(v.get("wall_s", 0.0) for v in stages.values())
        if rates:
            parts.append(f"{model} median {float(np.median(rates)):,.0f} sentences/s over "
                         f"{len(rates)} stages ({wall:,.0f} s)")  # fmt: skip
    if not parts:
        return []
    return [f"Training in this run: {'; '.join(parts)} ({provenance.get('machine', '?')}).", ""]


KIND_NAMES = {"typo": "typos", "word_shuffle": "word shuffle",
              "conditional_shuffle": "conditional shuffle", "combined": "combined"}  # fmt: skip


def _count_lines(rows: Sequence[dict]) -> list[str]:
    """What the positives' counts say, for findings that recorded them (older ones did not:
    nothing is added)."""
    parts, dups = [], []
    for r in rows:
        name = SHORT.get(r["model"], r["model"])
        counts = r.get("unchanged_perturbations")
        if counts:
            each = ", ".join(f"{KIND_NAMES.get(k, k)} {v['unchanged']:,} of {v['positives']:,}"
                             for k, v in counts.items())  # fmt: skip
            parts.append(f"{name}: {each}")
        if r.get("masked_duplicates"):
            total = sum(r["masked_duplicates"].values())
            dups.append(f"{name} {total:,}")
    out = []
    if parts:
        out.append("Perturbations that left the text unchanged (the positive equals its "
                   f"sentence): {'; '.join(parts)}.")  # fmt: skip
    if dups:
        out.append("In-batch candidates left out of InfoNCE as the same sentence as the anchor "
                   f"or its positive, over all stages: {'; '.join(dups)}.")  # fmt: skip
    return [*out, ""] if out else []


def _pm(value: float, lo: float, hi: float) -> str:
    from lexlm.eval.intervals import plus_minus

    return plus_minus(value, lo, hi, 1)


def _selected(row: dict) -> str:
    from collections import Counter

    picks = Counter(f"{r['stage']} step {r['step']}" for r in row["per_seed"])
    if len(row["per_seed"]) == 1:
        return next(iter(picks))
    return ", ".join(f"{k} ({n} of {len(row['per_seed'])})" for k, n in picks.items())


def interval_table(rows: Sequence[dict]) -> list[str]:
    """Value ± half the 95% bootstrap interval over test pairs; drops with their paired
    interval; dev counterparts of every test column."""
    rates = [r["rate"] for r in rows[0]["robustness"][1:]] if rows else []
    head = " | ".join(f"test at {100 * r:g}% typos (drop)" for r in rates)
    lines = [
        "| model | test Spearman | test, no head | dev Spearman | dev, no head | selected on dev "
        f"| {head} | parameters |",
        "|---|---|---|---|---|---|" + "---|" * len(rates) + "---|",
    ]
    for r in rows:
        cells = " | ".join(
            f"{_pm(x['spearman'], x['lo'], x['hi'])} "
            f"({x['drop']:+.1f} ± {(x['drop_hi'] - x['drop_lo']) / 2:.1f})"
            for x in r["robustness"][1:]
        )
        ref = r.get("reference", False)
        no_head = "-" if ref else f"{r['test_no_head']:.1f}"
        dev_no_head = "-" if ref else f"{r['dev_no_head']:.1f}"
        chosen = "-" if ref else _selected(r)
        lines.append(
            f"| {NAMES.get(r['model'], r['model'])} | {_pm(r['test'], r['test_lo'], r['test_hi'])}"
            f" | {no_head} | {r['dev']:.1f} | {dev_no_head} | {chosen} | {cells} | "
            f"{r['params']:,} |"
        )
    return lines


def _stages_prefix(r: dict, finals: dict, soup: dict | None, label: str) -> str:
    """'- Model<label>: dev after each perturbation run ...; soup ...; ' of a selection line."""
    parts = [f"{e['stage'][len('unsup_') :]} {e['dev']:.1f}" for e in finals.values()]
    line = f"- {SHORT[r['model']][0].upper()}{SHORT[r['model']][1:]}{label}: dev "
    if parts:
        line += f"after each perturbation run {', '.join(parts)}; "
    if soup is not None:
        line += f"soup {soup['dev']:.1f}; "
    return line


def _spread(s: dict, one: str) -> str:
    if s["n"] < 2:
        return one
    return f"sd {s['sd']:.1f} ({s['min']:.1f} to {s['max']:.1f}, {s['n']})"


def spread_table(rows: Sequence[dict]) -> list[str]:
    """The spread of each score over training seeds and over typo draws."""
    lines = ["| model | typos | over training seeds | over typo draws |", "|---|---|---|---|"]
    for r in rows:
        for x in r["robustness"]:
            typo = "-" if x["rate"] == 0 else _spread(x["typo_seeds"], "one draw")
            seeds = "- (no training)" if r.get("reference") else _spread(x["seeds"], "one seed")
            lines.append(f"| {SHORT.get(r['model'], r['model'])} | {100 * x['rate']:g}% | "
                         f"{seeds} | {typo} |")  # fmt: skip
    return lines


def _protocol(f: dict) -> str:
    seeds, draws = f["seeds"], f["typo_seeds"]
    if seeds == 1:
        who = "One training seed per encoder"
        if f.get("one_seed_reason"):
            who += f" ({f['one_seed_reason']})"
    else:
        who = f"{seeds} training seeds per encoder"
    return (
        f"{who}, each choosing its checkpoint on dev; {draws} typo draws per rate, every draw "
        "scored for every seed. Each score is the mean over seeds x draws of each draw's "
        "Spearman x 100, ± half its 95% bootstrap interval over the test pairs (1,000 "
        "resamples of the pairs; a drop's interval is paired: clean and typo'd on the same "
        "resampled pairs). An ordering is stated only where the paired interval of the "
        "difference excludes 0."
    )


def _verdict(cmp: dict, lower_is_better: bool, better: str, worse: str, tie: str) -> str:
    from lexlm.eval.intervals import fmt_interval, ordered

    what = f"difference {fmt_interval(cmp, 1)}, 95% paired bootstrap interval"
    side = ordered(cmp, lower_is_better)
    if side == "tied":
        return f"{tie} are tied at this budget ({what} includes 0)"
    return f"{better if side == 'a' else worse} ({what})"


def comparison_sentences(f: dict) -> list[str]:
    """Pixel against subword (clean, and the drop at each rate), each encoder's clean against
    typo'd scores, and each encoder against TF-IDF: orderings only outside the interval."""
    cmp = f.get("comparisons", {})
    out = []
    pvt = cmp.get("pixel_vs_token")
    if pvt:
        clean = pvt[0]["spearman"]
        out.append("- Clean: " + _verdict(
            clean, False, "the pixel encoder scores above the subword encoder",
            "the pixel encoder scores below the subword encoder",
            "the pixel and the subword encoder") + ".")  # fmt: skip
        for row in pvt[1:]:
            rate = f"{100 * row['rate']:g}%"
            out.append(f"- Loss under {rate} typos: " + _verdict(
                row["drop"], True, "the pixel encoder loses less than the subword encoder "
                "(the paper's direction)", "the pixel encoder loses more than the subword "
                "encoder", "the two encoders' losses") + ".")  # fmt: skip
    for r in f["rows"]:
        name = SHORT.get(r["model"], r["model"])
        parts = []
        for x in r["robustness"][1:]:
            d = {"diff": x["drop"], "lo": x["drop_lo"], "hi": x["drop_hi"]}
            word = ("lower typo'd" if d["lo"] > 0 else "higher typo'd" if d["hi"] < 0
                    else "tied at this budget")  # fmt: skip
            parts.append(f"{100 * x['rate']:g}% {x['drop']:+.1f} [{x['drop_lo']:+.1f}, "
                         f"{x['drop_hi']:+.1f}] ({word})")  # fmt: skip
        if parts:
            out.append(f"- {name[0].upper()}{name[1:]}: clean minus typo'd, by rate: "
                       f"{'; '.join(parts)}.")  # fmt: skip
    for key, value in cmp.items():
        if key.endswith("_vs_tfidf"):
            name = SHORT[key.split("_vs_")[0]]
            out.append("- Clean against TF-IDF: " + _verdict(
                value[0]["spearman"], False, f"{name} scores above TF-IDF",
                f"{name} scores below TF-IDF", f"{name} and TF-IDF") + ".")  # fmt: skip
    return out


def _encoder_lines(rows: Sequence[dict]) -> list[str]:
    """Each encoder's validation path (copy 0's selection records) and the no-head scores."""
    out = []
    for r in rows:
        if r.get("reference"):
            continue
        finals = {e["stage"]: e for e in r["evals"] if e["stage"].startswith("unsup_")}
        soup = next((e for e in r["evals"] if e["stage"] == "soup"), None)
        line = _stages_prefix(r, finals, soup, " (seed 0)")
        line += (f"selected {r['stage']} step {r['step']}. Without the pooling head "
                 "(Pixel-Linguist's `PIXELForRepresentation`), over the seeds: "
                 f"{r['dev_no_head']:.1f} on dev, {r['test_no_head']:.1f} on test (the head "
                 f"is kept either way: selection used the head's dev score).")  # fmt: skip
        out.append(line)
    return out


def _body(f: dict) -> list[str]:
    return [_protocol(f), "", *interval_table(f["rows"]), "", *spread_table(f["rows"]), "",
            *comparison_sentences(f), *_encoder_lines(f["rows"])]  # fmt: skip


def render(findings: dict, provenance: dict, figures) -> str:
    f = findings
    m = f["model"]
    plans = "; ".join(f"{k}: {' -> '.join(v)}" for k, v in f["stages"].items())
    lines = [
        f"Width {m['width']}, depth {m['depth']}, {m['heads']} heads, {m['max_len']} patches or "
        f"tokens, batch {f['batch']} pairs, InfoNCE at temperature {f['temperature']:g}; "
        f"{_training(f)}. Stages: {plans}. Scored on {_target(f)}: Spearman x 100 of cosine "
        "similarity; each model's checkpoint is chosen on dev, test reported.",
        "",
        *_body(f),
        *_input_sentences(f),
        "",
        *_count_lines(f["rows"]),
        *_timing_lines(provenance),
    ]
    curve = plot_robustness({r["model"]: r["robustness"] for r in f["rows"]})
    lines += [f"![robustness curve]({figures.save('robustness.png', curve)})", ""]
    if f.get("examples"):
        png = plot_rendered(f["render"], f["examples"])
        lines += [f"![rendered examples]({figures.save('rendered_examples.png', png)})", ""]
    return "\n".join(lines)


def changed_patches(a: np.ndarray, b: np.ndarray, patch: int) -> np.ndarray:
    """Indices of the patches where two [H, W] strips differ."""
    diff = (a != b).reshape(a.shape[0], -1, patch).any(axis=(0, 2))
    return np.flatnonzero(diff)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def plot_rendered(render_cfg: dict, rows: Sequence[dict]) -> bytes:
    """PNG: the example texts (each clean, with typos, word-shuffled) rendered again (the
    renderer is deterministic), the patch grid drawn and the patches a typo changed shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lexlm.text.render import RenderConfig, Renderer

    renderer = Renderer(RenderConfig(**render_cfg))
    imgs = renderer.render([r["text"] for r in rows]).images
    patch = renderer.cfg.patch
    last = int(max(np.flatnonzero((imgs < 255).any(axis=(0, 1)))[-1] // patch + 2, 8))
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 0.55 * len(rows) + 0.4))
    for i, (ax, row) in enumerate(zip(np.atleast_1d(axes), rows)):
        img = imgs[i][:, : last * patch]
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, aspect="equal", interpolation="nearest")
        if "typos" in row["label"] and i > 0:
            for p in changed_patches(imgs[i - 1][:, : last * patch], img, patch):
                ax.axvspan(p * patch - 0.5, (p + 1) * patch - 0.5, color="tab:red", alpha=0.25)
        for x in range(patch, last * patch, patch):
            ax.axvline(x - 0.5, color="tab:blue", lw=0.3)
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(row["label"], rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(
        f"Rendered inputs ({patch} x {patch} patches; red: patches the typos changed)", fontsize=9
    )
    fig.tight_layout()
    return _png(fig)


def plot_robustness(curves: dict[str, list[dict]]) -> bytes:
    """PNG: test Spearman against the character-typo rate, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, rows in curves.items():
        x, y = [100 * r["rate"] for r in rows], [r["spearman"] for r in rows]
        if all("lo" in r for r in rows):  # the 95% bootstrap interval over test pairs
            err = [[r["spearman"] - r["lo"] for r in rows], [r["hi"] - r["spearman"] for r in rows]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=NAMES.get(name, name))
        else:
            ax.plot(x, y, marker="o", label=NAMES.get(name, name))
    ax.set_xlabel("character typos (% of letters)")
    ax.set_ylabel("test Spearman x100")
    ax.set_title("Similarity under typos", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
