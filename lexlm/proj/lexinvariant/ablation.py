"""The readout-fix ablation: the character lexinvariant LM once per readout, position and key
option, and the standard LM with and without the copy readout.

Every variant trains the same LM (``c.data``, ``c.model``, ``c.train``: the tiny character
LM, same data, steps and seed) as its own ``lm`` run, ``W/runs/<variant>``, with the model and
train overrides of ``VARIANTS``; ``ablation.variants`` (comma-separated) picks which. The
findings tabulate, on the *validation* split (options are chosen there; the findings runs
report test):

* the first logged training loss (the mean over the first logging window), where the init
  trap of the tied random readout shows as a loss far above ln V;
* the validation loss, overall and per position bucket, next to the in-context count model
  (no training).
"""

from __future__ import annotations

import math

from lexlm.errors import ConfigError
from lexlm.experiment import checks, store
from lexlm.experiment import identity as ident
from lexlm.paths import as_path

LEXINVARIANT = {"embedding": "lexinvariant"}
FIX = {**LEXINVARIANT, "logit_scale": "learned"}
# name -> (what it is, model overrides, train overrides). The first row is the lexinvariant
# LM before the fix; the rows after the second add options to the chosen fix (the learned
# logit scale); the last two are the standard LM, whose readout the findings keep plain.
VARIANTS = {
    "no_fix": (
        "before the fix: the tied random readout as is",
        {**LEXINVARIANT, "logit_scale": "none"},
        {},
    ),
    "logit_scale": ("learned logit scale, init 1/sqrt(D) (chosen, the default)", FIX, {}),
    "no_ln_bias_no_pos_decay": (
        "+ no final-LayerNorm bias, no weight decay on positions",
        {**FIX, "final_ln_bias": False},
        {"no_decay": ("positions",)},
    ),
    "rope": (
        "+ no final-LayerNorm bias, rotary positions instead of the table",
        {**FIX, "final_ln_bias": False, "positions": "rope"},
        {},
    ),
    "rope_qkv_std": (
        "+ rotary positions with a larger q/k/v init",
        {**FIX, "final_ln_bias": False, "positions": "rope", "qkv_std": 0.09},
        {},
    ),
    "smear_keys": ("+ smeared keys (one-layer induction heads)", {**FIX, "smear_keys": True}, {}),
    "copy_readout": (
        "+ copy readout: a gated pointer over the context with an induction match (chosen "
        "for the lexinvariant runs)",
        {**FIX, "copy_readout": True},
        {},
    ),
    "standard": ("standard LM: learned tied embedding, plain readout", {}, {}),
    "standard_copy_readout": (
        "standard LM with the copy readout",
        {"copy_readout": True},
        {},
    ),
}


def variants(c) -> list[str]:
    return checks.names(c.ablation.variants, tuple(VARIANTS), "ablation.variants")


def variant_config(c, name: str):
    """The ``lm`` run config of one variant: the experiment's LM with its overrides."""
    from lexlm.proj.lexinvariant.run import lm_run_config

    if name not in VARIANTS:
        raise ConfigError("ablation.variants", f"unknown {name!r}; choose from {tuple(VARIANTS)}")
    _, model, train = VARIANTS[name]
    cfg = lm_run_config(c, c.data)
    cfg.model.update(model)
    cfg.train.update(train)
    return cfg


def overrides(name: str) -> list[str]:
    """A variant's overrides as ``--config`` flags of an ``lm`` run."""
    _, model, train = VARIANTS[name]
    out = [f"model.{k}={v}" for k, v in model.items()]
    return out + [f"train.{k}={tuple(v) if isinstance(v, list) else v}" for k, v in train.items()]


def validate_ablation(c) -> None:
    from lexlm.proj.lexinvariant.run import validate_runs

    names = variants(c)
    if str(c.model.embedding) != "learned":
        raise ConfigError("model.embedding", "is set per variant: leave it 'learned'")
    edges = [checks.integer(e, "ablation.position_buckets", 1) for e in c.ablation.position_buckets]
    if not edges or edges != sorted(set(edges)):
        raise ConfigError("ablation.position_buckets", f"must be ascending, got {edges}")
    validate_runs(variant_config(c, n) for n in names)


def ablation_rows(results: dict, reference, buckets) -> list[dict]:
    """One row per variant: the first logged loss, the validation loss and its mean per
    position bucket; the in-context count model's per-position loss is the last row.

    ``results``: name -> {'first_loss', 'loss', 'loss_by_position'}."""
    from lexlm.eval import in_context as ic

    ranges = ic.bucket_ranges(buckets, len(reference))
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "variant": name,
                "first_loss": r["first_loss"],
                "loss": r["loss"],
                "buckets": ic.bucket_means(r["loss_by_position"], ranges),
            }
        )
    ref = ic.bucket_means(reference, ranges)
    rows.append(
        {
            "variant": "in-context count model",
            "first_loss": None,
            "loss": None,
            "buckets": ref,
        }
    )
    return [{**row, "positions": [f"{lo}-{hi}" for lo, hi in ranges]} for row in rows]


def first_logged(run_dir) -> dict:
    """The run's first logged window (``metrics.jsonl``): its last step and mean loss."""
    import json

    path = as_path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        return {"step": int(record["step"]), "loss": float(record["loss"])}
    raise ConfigError("train.log_every", f"{run_dir} logged no training loss")


def ablation_run(c, wd: store.Workdir) -> dict:
    from lexlm.eval import in_context as ic
    from lexlm.proj.lexinvariant.run import check_runs, train
    from lexlm.proj.lm.evaluate import eval_windows, evaluate_run
    from lexlm.proj.lm.run import load_run

    names = variants(c)
    specs = [{"name": n, "cfg": variant_config(c, n)} for n in names]
    dirs = check_runs(wd, specs)
    results, first = {}, {}
    for s in specs:
        name, cfg = s["name"], s["cfg"]
        train(wd, name, cfg, dirs[name])
        val = evaluate_run(dirs[name], "validation", int(cfg.train.steps))
        first[name] = first_logged(dirs[name])
        results[name] = {
            "first_loss": first[name]["loss"],
            "loss": val["loss"],
            "loss_by_position": val["loss_by_position"],
        }
    cfg, tok = specs[0]["cfg"], load_run(dirs[names[0]])[1]

    def reference():
        windows = eval_windows(cfg, tok, "validation", int(cfg.eval.max_windows))
        return ic.in_context_unigram_nll(windows, tok.vocab_size).tolist()

    fields = {
        "tokenizer": ident.fields(cfg.data),
        "seq_len": int(cfg.seq_len),
        "max_windows": int(cfg.eval.max_windows),
    }
    ref = wd.cached("count_model_validation", fields, reference)
    return {
        "experiment": "ablation",
        "rows": ablation_rows(results, ref, c.ablation.position_buckets),
        "what": {n: VARIANTS[n][0] for n in names},
        "overrides": {n: overrides(n) for n in names},
        "first_logged_step": {n: first[n]["step"] for n in names},
        "vocab_size": int(tok.vocab_size),
        "ln_v": math.log(tok.vocab_size),
        "steps": int(c.train.steps),
        "batch_size": int(c.train.batch_size),
        "seq_len": int(c.seq_len),
        "model": {k: c.model[k] for k in ("depth", "width", "heads")},
        "seed": int(c.train.seed),
    }
