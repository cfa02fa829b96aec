"""The word-pooled grid: every model trained for the same training FLOPs and evaluated from
its final checkpoint; shared with the ``byte_patching`` project, which runs it per budget.

A grid runs in three phases, so that a changed config is refused before anything is written:

1. ``plan``: every model's run config, steps included. The steps come from the counted FLOPs
   (``lexlm.eval.flops``) of one training step, which needs the model's vocabulary size, so the
   tokenizers and word vocabularies are built in a scratch folder outside the workdir
   (``artifacts``). A budget below one step of a model is a one-line ``ConfigError`` here.
2. ``check``: ``store.check_run`` on every run directory (read-only).
3. ``execute``: each run opened, trained (or resumed) and evaluated
   (``evaluate.model_result``, saved under the run's ``evals/``).

The runs are ``W/runs/<model>`` (``W/runs/<budget name>/<model>`` in ``byte_patching``).
"""

from __future__ import annotations

import dataclasses
import os
import time

import ml_collections

from lexlm.data.config import as_list, input_fingerprints
from lexlm.errors import ConfigError
from lexlm.experiment import identity as ident
from lexlm.experiment import store
from lexlm.paths import read_json, write_json
from lexlm.proj.word_pooled import artifacts, data, kinds
from lexlm.proj.word_pooled import report as rep
from lexlm.proj.word_pooled.config import model_list


@dataclasses.dataclass(frozen=True)
class Planned:
    """One model of a grid: its run name under ``W/runs``, run config and counts."""

    model: str
    name: str
    cfg: ml_collections.ConfigDict
    counts: kinds.Counts


_COUNTS: dict[str, kinds.Counts] = {}


def count_fields(cfg) -> dict:
    """What a model's counts depend on: its run config but the training length and the
    evaluation, the batch size, and the data files (the bytes per step come from them)."""
    fields = {k: v for k, v in ident.fields(cfg).items() if not k.startswith(("train.", "eval."))}
    fields["train.batch_size"] = int(cfg.train.batch_size)
    fields.update({f"inputs.{k}": v for k, v in input_fingerprints(cfg.data).items()})
    return fields


def counts_path(wd: store.Workdir, cfg):
    return wd.root / "cache" / f"counts-{cfg.name}-{ident.digest(count_fields(cfg))[:12]}.json"


def counts_of(c, model: str, wd: store.Workdir | None = None) -> kinds.Counts:
    """A model's FLOP, byte and parameter counts: counted once per process (the budgets of a
    byte-patching grid share them), and read from ``W/cache`` when an earlier run of the
    command saved them there (reading writes nothing; ``save_counts`` writes them once the
    runs are checked)."""
    cfg = kinds.run_config(c, model, steps=1)
    key = ident.digest(count_fields(cfg))
    if key not in _COUNTS:
        path = counts_path(wd, cfg) if wd is not None else None
        if path is not None and path.exists():
            _COUNTS[key] = kinds.Counts(**read_json(path)["value"])
        else:
            units = artifacts.units(cfg)
            kinds.check_data(cfg, units)
            _COUNTS[key] = kinds.count(cfg, units)
    return _COUNTS[key]


def save_counts(wd: store.Workdir, planned: list[Planned]) -> None:
    for p in planned:
        path = counts_path(wd, p.cfg)
        if store.is_writer() and not path.exists():
            fields = count_fields(p.cfg)
            write_json(path, {"fields": fields, "value": dataclasses.asdict(p.counts)})


def reference_budget(c, counts: dict[str, kinds.Counts]) -> float:
    """The default budget: the word-pooled model's (or the first model's) training FLOPs
    at ``train.steps``."""
    ref = "word_pooled" if "word_pooled" in counts else next(iter(counts))
    return counts[ref].step_flops * int(c.train.steps)


def plan(
    c, wd: store.Workdir, budget: float, prefix: str = "", field: str = "budget.train_flops"
) -> list[Planned]:
    """Every model's run at ``budget`` training FLOPs (> 0), run names under ``prefix``."""
    names = model_list(c)
    counts = {m: counts_of(c, m, wd) for m in names}
    out = []
    for m in names:
        steps = round(budget / counts[m].step_flops)
        if steps < 1:
            raise ConfigError(
                field,
                f"a budget of {budget:.3g} FLOPs is less than one training step of {m} "
                f"({counts[m].step_flops:.3g} FLOPs); raise the budget",
            )
        name = f"{prefix}/{m}" if prefix else m
        out.append(Planned(m, name, kinds.run_config(c, m, steps), counts[m]))
    return out


def check(wd: store.Workdir, planned: list[Planned]) -> None:
    """Refuses (``StaleResultError``) any run directory that holds a run of another config;
    writes nothing."""
    for p in planned:
        store.check_run(wd.run(p.name), p.cfg, input_fingerprints(p.cfg.data))


def execute(wd: store.Workdir, planned: list[Planned]) -> dict[str, dict]:
    """Trains (or resumes) and evaluates every planned run: model -> its result."""
    from lexlm.proj.word_pooled.evaluate import model_result

    results = {}
    for p in planned:
        run_dir = wd.run(p.name)
        t0 = time.perf_counter()
        trained = kinds.train_run(p.cfg, run_dir)
        t1 = time.perf_counter()
        steps = int(p.cfg.train.steps)
        result = model_result(run_dir, str(p.cfg.eval.split), steps)
        wd.timings[p.name] = {
            "train_s": round(t1 - t0, 1) if trained else None,
            "eval_s": round(time.perf_counter() - t1, 1),
        }
        n = p.counts
        result.update(
            steps=steps,
            flops_per_step=n.step_flops,
            train_flops=n.step_flops * steps,
            train_flops_per_byte=n.step_flops / n.bytes_per_step,
            infer_flops_per_byte=n.forward_flops / n.bytes_per_step,
            train_bytes=steps * n.bytes_per_step,
            params=n.params,
        )
        results[p.model] = result
    return results


def bigram_reference(c, like: dict) -> dict:
    """Next-word predictions of the count reference (``next_word.bigram_predictions``) for the
    same targets as the models (``like``: any model's result)."""
    from lexlm.eval import next_word as nw
    from lexlm.text.words import word_body

    train_texts, train_eos, _ = data.split_words(c, "train")
    texts, is_eos, _ = data.split_words(c, str(c.eval.split))
    targets = data.eval_targets(texts, is_eos, int(c.max_units), int(c.eval.targets))
    bodies = ["" if e else word_body(t) for t, e in zip(train_texts, train_eos)]
    previous = ["" if is_eos[i - 1] else word_body(texts[i - 1]) for i in targets]
    truth = [word_body(texts[i]) for i in targets]
    if truth != list(like["targets"]):
        raise AssertionError("the reference and the models must share their targets")
    return {"kind": "bigram", "predictions": nw.bigram_predictions(bodies, previous),
            "targets": truth}  # fmt: skip


def setup(c) -> dict:
    """The grid's fixed settings, for the report (data named by file name, never by path)."""
    d = c.data
    return {
        "source": str(d.source),
        "files": [os.path.basename(f) for f in as_list(d.files)],
        "tfds_name": str(d.tfds_name),
        "doc_split": str(d.doc_split),
        "holdout": [float(x) for x in d.holdout],
        "unit": str(d.unit),
        "max_units": int(c.max_units),
        "words": int(c.words),
        "model": c.model.to_dict(),
        "baseline": c.baseline.to_dict(),
        "patching": c.patching.to_dict(),
        "batch_size": int(c.train.batch_size),
        "lr": float(c.train.lr),
        "warmup_fraction": float(c.warmup_fraction),
        "targets": int(c.eval.targets),
        "context_chars": int(c.eval.context_chars),
    }


def grid_findings(c, results: dict[str, dict], budget: float) -> dict:
    """The findings of one grid: a row per model (and the count reference's)."""
    counts = None
    if int(c.eval.targets) > 0:
        texts, is_eos, _ = data.split_words(c, "train")
        counts = rep.train_counts(texts, is_eos)
        results = {**results, "bigram": bigram_reference(c, next(iter(results.values())))}
    findings = rep.findings(results, counts)
    findings.update(budget=budget, split=str(c.eval.split), setup=setup(c))
    findings["train_split_bytes"] = sum(len(d.encode("utf-8")) for d in data.split_docs(c, "train"))
    return findings


def run(c, wd: store.Workdir) -> dict:
    """Plans every model (counting FLOPs), checks every run directory, then trains and
    evaluates each; returns the findings."""
    names = model_list(c)
    budget = float(c.budget.train_flops)
    if budget <= 0:
        budget = reference_budget(c, {m: counts_of(c, m, wd) for m in names})
    planned = plan(c, wd, budget)
    check(wd, planned)  # nothing was written before this
    save_counts(wd, planned)
    return grid_findings(c, execute(wd, planned), budget)
