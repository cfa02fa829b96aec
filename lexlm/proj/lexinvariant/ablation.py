"""Ablation of the lexinvariant readout fix and the position / attention options.

Trains the tiny character lexinvariant LM once per variant (same data, steps and seed), then
tabulates, on the *validation* split (variants are chosen there; findings report test):

* the first logged training loss (steps 1..log_every), where the init trap shows as a loss far
  above ln V;
* the loss per position bucket, next to the in-context count model (no training).

    python -m experiments.lexinv_ablation --config experiments/lexinv_ablation.py:tiny \\
        --out results/lexinv_ablation

A variant is a name and model / train overrides of the base run; add one in ``VARIANTS`` or
override ``--config.base.*`` for all. Finished variants are reused when rerun.
"""

from __future__ import annotations

import json
import math

import ml_collections

from experiments import lm as lm_experiment
from lexlm.paths import as_path

# name -> (description, model overrides, train overrides). The first row is the model before
# the fix; the others add one option each to the chosen fix (a learned logit scale).
VARIANTS = {
    "no_fix": ("tied random readout, no logit scale", {"logit_scale": "none"}, {}),
    "logit_scale": ("learned logit scale, init 1/sqrt(D) (chosen)", {"logit_scale": "learned"}, {}),
    "no_ln_bias": ("+ no final-LayerNorm bias", {"final_ln_bias": False}, {}),
    "no_pos_decay": ("+ no weight decay on positions", {}, {"no_decay": ("positions",)}),
    "rope": ("+ rotary positions instead of a table", {"positions": "rope"}, {}),
    "smear_keys": ("+ smeared keys (one-layer induction)", {"smear_keys": True}, {}),
    "copy_readout": ("+ copy readout (pointer over the context)", {"copy_readout": True}, {}),
}


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg != "tiny":
        raise ValueError(f"experiments/lexinv_ablation.py: unknown config {arg!r}; use tiny")
    c = ml_collections.ConfigDict()
    c.experiment = "lexinv_ablation"
    c.base = lm_experiment.get_config("tiny")
    c.base.model.embedding = "lexinvariant"
    c.base.eval.draws = 4
    c.variants = tuple(VARIANTS)
    c.position_buckets = (1, 4, 16, 32, 64)
    return c


def variant_config(c, name: str) -> ml_collections.ConfigDict:
    if name not in VARIANTS:
        raise ValueError(f"variants: {name!r} is not one of {tuple(VARIANTS)}")
    _, model, train = VARIANTS[name]
    cfg = c.base.copy_and_resolve_references()
    cfg.unlock()
    cfg.experiment = f"lexinv_ablation/{name}"
    if name != "no_fix":
        cfg.model.logit_scale = "learned"
    cfg.model.update(model)
    cfg.train.update(train)
    return cfg


def ablation_rows(results: dict, reference, buckets) -> list[dict]:
    """One row per variant: the first logged loss and the mean loss per position bucket.

    ``results``: name -> {'first_loss', 'loss_by_position'}; ``reference``: the count model's
    per-position loss, tabulated as the last row."""
    from lexlm.eval import in_context as ic

    t = len(reference)
    ranges = ic.bucket_ranges(buckets, t)
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "variant": name,
                "first_loss": r["first_loss"],
                "buckets": ic.bucket_means(r["loss_by_position"], ranges),
            }
        )
    rows.append(
        {
            "variant": "in-context count model",
            "first_loss": None,
            "buckets": ic.bucket_means(reference, ranges),
        }
    )
    return [{**row, "positions": [f"{lo}-{hi}" for lo, hi in ranges]} for row in rows]


def run(c, out) -> dict:
    from experiments.lexinvariant import train_and_evaluate
    from experiments.lm_runs import eval_windows, load_run
    from lexlm.eval import in_context as ic

    out = as_path(out)
    results = {}
    for name in c.variants:
        wd = out / "runs" / name
        cfg = variant_config(c, name)
        train_and_evaluate(cfg, wd)
        val = json.loads((wd / "eval_validation.json").read_text())
        history = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
        results[name] = {
            "first_loss": history[0]["loss"],
            "loss_by_position": val["loss_by_position"],
        }
    cfg, tok = load_run(out / "runs" / c.variants[0])
    ref = ic.in_context_unigram_nll(eval_windows(cfg, tok, "validation"), tok.vocab_size)
    findings = {
        "rows": ablation_rows(results, ref, c.position_buckets),
        "ln_v": math.log(tok.vocab_size),
        "steps": int(c.base.train.steps),
    }
    (out / "lexinv_ablation.json").write_text(json.dumps(findings, indent=1))
    return findings


def report_section(f: dict) -> str:
    positions = f["rows"][0]["positions"]
    lines = [
        "## Lexinvariant readout ablation (tiny character LM, validation split)",
        "",
        f"{f['steps']} steps each; ln V = {f['ln_v']:.3f}. Loss in nats per character.",
        "",
        "| variant | what | first logged loss | " + " | ".join(positions) + " |",
        "|---" * (3 + len(positions)) + "|",
    ]
    for row in f["rows"]:
        what = VARIANTS[row["variant"]][0] if row["variant"] in VARIANTS else "no training"
        first = "" if row["first_loss"] is None else f"{row['first_loss']:.2f}"
        cells = " | ".join(f"{v:.3f}" for v in row["buckets"])
        lines.append(f"| {row['variant']} | {what} | {first} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from experiments.cli import launch

    launch(run, report_section, "lexinv_ablation.md", "experiments/lexinv_ablation.py:tiny")
