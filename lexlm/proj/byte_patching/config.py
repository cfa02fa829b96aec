"""Byte-patching peers of the word-pooled LM: MegaByte and SpaceByte against byte, subword and
word-pooled LMs, at two matched training-FLOP budgets, on one bits-per-byte scale.

    python -m experiments.byte_patching --config experiments/byte_patching.py:tiny --out results
    python -m experiments.byte_patching --config experiments/byte_patching.py:shakespeare \\
        --config.data.files=../shared/data/tinyshakespeare/input.txt --out results/bp_shakespeare
    python -m experiments.byte_patching --config experiments/byte_patching.py:spanish \\
        --config.data.files=../shared/data/spanish_bible/reina_valera_1909.txt \\
        --out results/bp_spanish

The protocol is the word-pooled experiment's (``experiments/word_pooled.py``), run once per
budget: the same data and splits (Tiny Shakespeare with its last 10% held out; the Spanish
Bible with whole books held out), each model's steps set so that its training FLOPs (XLA's count
of one forward and backward pass, times steps) equal the budget, and every model evaluated
from its checkpoint on the test split: bits per byte over the whole split, training and
inference FLOPs per byte, parameters. Models (``models``, any subset of):

* ``byte``: the byte Transformer (``lexlm.nn.TransformerLM`` on UTF-8 bytes);
* ``byte_window``: the same with sliding-window attention (``patching.window`` bytes);
* ``megabyte4`` / ``megabyte8``: MegaByte (``lexlm.nn.megabyte``), P = 4 / 8;
* ``spacebyte``: SpaceByte (``lexlm.nn.spacebyte``);
* ``word_pooled``: the word-pooled LM (eTok); ``subword``: a BPE Transformer; also ``char``
  and ``word`` from the word-pooled grid.

Besides the models, the findings hold a byte n-gram count model's test bits per byte (order
selected on validation; ``lexlm.eval.byte_ngram``), a reference that needs no training, and
SpaceByte's patching on the test windows (bytes per patch, bytes past the global cap).

Configs (``get_config(arg)``; ``--config.a.b=value`` reaches every field, the data too):

* ``tiny``: the embedded Lee corpus, every model, two tiny budgets.
* ``main``: ``tiny`` with MegaByte P = 4 and SpaceByte at budgets 3e10 and 9e10, the main
  job's section (sized for its 15-minute budget: a check of the pipeline, not a finding).
* ``shakespeare`` / ``spanish``: the word-pooled configs of the same names (sizes, splits),
  every model, budgets 3e12 and 9e12 FLOPs.
* ``paper``: SpaceByte's own grid, 1e18 and 1e19 FLOPs on PG-19 (``paper_sizes``), for a GPU
  or TPU pod.

``budgets`` is a comma-separated list of training FLOPs, one grid each
(``runs/byte_patching/budget_<i>/<model>``); the word-pooled experiment's own knobs
(``patching.*``, ``baseline.*``, ``model.*``, ``train.*``, ``eval.*``) apply unchanged.
"""

from __future__ import annotations

import json

import ml_collections

from experiments import byte_patching_report as report
from experiments import word_pooled
from experiments import word_pooled_runs as runs
from lexlm.errors import ConfigError
from lexlm.paths import as_path

ALL_MODELS = "byte,byte_window,megabyte4,megabyte8,spacebyte,word_pooled,subword"


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg not in ("tiny", "main", "shakespeare", "spanish", "paper"):
        raise ValueError(
            f"experiments/byte_patching.py: unknown config {arg!r}; "
            "use 'tiny', 'main', 'shakespeare', 'spanish' or 'paper'"
        )
    c = word_pooled.get_config("tiny" if arg == "main" else arg)
    c.experiment = "byte_patching"
    c.models = ALL_MODELS
    c.ngram_order = 5  # the count reference: orders 1..ngram_order, selected on validation
    c.warmup_fraction = 0.05  # each model warms up over 5% of its own steps
    c.eval.targets = 0  # bits per byte only: no next-word predictions (word_pooled.py has them)
    if arg in ("tiny", "main"):
        c.budgets = "1.5e11,4.5e11"
        if arg == "main":
            c.models = "megabyte4,spacebyte"
            c.budgets = "3e10,9e10"
    elif arg == "paper":
        paper_sizes(c)
    else:
        c.budgets = "3e12,9e12"
    return c


def paper_sizes(c) -> None:
    """SpaceByte's 1e18 / 1e19-FLOP grid (Table 1, sizes from its Table 3) on PG-19 (TFDS
    ``pg19``): every byte model sees 6144 bytes of context. SpaceByte: D / D_local = 1024 /
    512, 16 global and 16 local blocks, T_global = 1024 (6144 / 6 bytes per patch);
    MegaByte: D_G = 1024 (P x e), 16 global blocks, D_L = 512, 16 local blocks (201M + 50M
    parameters, like the paper's); the byte Transformers: 16 x 1024; the subword Transformer
    1536 tokens of an 8192-piece BPE. Batch 64, AdamW at 6.25e-4, 1% warm-up, bfloat16
    compute. For a GPU or TPU pod: point ``train.mesh`` at the devices."""
    c.data.source = "tfds"
    c.data.tfds_name = "pg19"
    c.baseline.model.update(width=1024, depth=16, heads=16, dtype="bfloat16")
    c.baseline.seq_len.update(byte=6144, char=6144, subword=1536)
    c.patching.window = 512
    mega = dict(global_width=1024, global_depth=16, global_heads=16)
    c.patching.megabyte.update(**mega, local_width=512, local_depth=16, local_heads=8)
    c.patching.megabyte.dtype = "bfloat16"
    space = dict(local_width=512, local_depth=16, local_heads=8, window=512)
    c.patching.spacebyte.update(**space, width=1024, depth=16, heads=16, cap=1024)
    c.patching.spacebyte.dtype = "bfloat16"
    c.model.dtype = "bfloat16"
    c.train.update(batch_size=64, lr=6.25e-4)
    c.baseline.batch_size = 64
    c.warmup_fraction = 0.01
    c.budgets = "1e18,1e19"


def budgets(c) -> list[float]:
    try:
        values = [float(b) for b in str(c.budgets).split(",") if b.strip()]
    except ValueError as e:
        raise ConfigError("budgets", f"not a comma-separated list of FLOPs: {c.budgets!r}") from e
    if not values or any(v <= 0 for v in values):
        raise ConfigError("budgets", f"needs one or more positive FLOP budgets, got {c.budgets!r}")
    return values


def validate(c) -> None:
    word_pooled.validate(c)
    budgets(c)
    if int(c.ngram_order) < 1:
        raise ConfigError("ngram_order", f"must be >= 1, got {c.ngram_order}")


def grid_config(c, budget: float) -> ml_collections.ConfigDict:
    g = ml_collections.ConfigDict(c.to_dict())
    g.budget.train_flops = float(budget)
    return g


def count_reference(c) -> dict:
    from lexlm.eval.byte_ngram import select_and_score

    docs = {s: runs.split_docs(c, s) for s in ("train", "validation", str(c.eval.split))}
    return select_and_score(
        docs["train"], docs["validation"], docs[str(c.eval.split)], int(c.ngram_order)
    )


def spacebyte_patching(c) -> dict:
    """SpaceByte's patching of back-to-back windows of the training and evaluation splits:
    bytes per patch and the bytes past the global cap (``lexlm.text.patching.window_stats``;
    training windows are drawn at random offsets, so the training split's figure is the
    expected rate, not a count of the bytes trained on)."""
    from experiments import lm_runs
    from lexlm.text.patching import window_stats
    from lexlm.text.tokenizers import ByteTokenizer

    cfg = runs.kind_config(c, "spacebyte")
    out = {}
    for split in ("train", str(c.eval.split)):
        w = lm_runs.eval_windows(cfg, ByteTokenizer(), split)
        out[split] = window_stats(w["inputs"], w["mask"], int(c.patching.spacebyte.cap))
    return out


def run(c, out) -> dict:
    """Every budget's grid (trained or resumed, evaluated from checkpoints), the count
    reference and the findings; writes ``runs/byte_patching/findings.json`` and the plot."""
    validate(c)
    out = as_path(out)
    root = out / "runs" / "byte_patching"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(c.to_json_best_effort(indent=2))
    grids = []
    for i, budget in enumerate(budgets(c)):
        grids.append(word_pooled.run(grid_config(c, budget), out, f"byte_patching/budget_{i}"))
    findings = report.findings(grids, count_reference(c))
    if "spacebyte" in word_pooled.model_list(c):
        findings["spacebyte_patching"] = spacebyte_patching(c)
    findings["split"] = str(c.eval.split)
    (root / "findings.json").write_text(json.dumps(findings, indent=1))
    report.plot(findings, root / "bits_per_byte.png")
    return findings


def report_section(findings: dict, plot_path: str = "runs/byte_patching/bits_per_byte.png") -> str:
    return report.section(findings, plot_path)


if __name__ == "__main__":
    from experiments.cli import launch

    launch(run, report_section, "byte_patching_report.md", "experiments/byte_patching.py:tiny")
