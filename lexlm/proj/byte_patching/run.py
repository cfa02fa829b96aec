"""The byte-patching project's run: the word-pooled grid (``lexlm.proj.word_pooled.run``) at
every budget of ``budgets``, the count reference and SpaceByte's patching counts.

Every budget's models are planned (FLOPs counted, steps set: a budget below one step of a
model is a one-line ``ConfigError``) and every run directory checked before anything is
written; then each budget's runs ``W/runs/<budget name>/<model>`` are trained (or resumed)
and evaluated from their final checkpoints, smallest budget first.
"""

from __future__ import annotations

from lexlm.experiment import store
from lexlm.experiment.checks import flops_name
from lexlm.proj.byte_patching import evaluate
from lexlm.proj.byte_patching import report as rep
from lexlm.proj.byte_patching.config import budgets
from lexlm.proj.word_pooled import run as grid
from lexlm.proj.word_pooled.config import model_list


def run(c, wd: store.Workdir) -> dict:
    values = budgets(c)
    plans = {b: grid.plan(c, wd, b, prefix=flops_name(b), field="budgets") for b in values}
    every = [p for b in values for p in plans[b]]
    grid.check(wd, every)  # nothing was written before this
    grid.save_counts(wd, every)
    grids = [grid.grid_findings(c, grid.execute(wd, plans[b]), b) for b in values]
    findings = rep.findings(grids, evaluate.count_reference(c, wd))
    if "spacebyte" in model_list(c):
        findings["spacebyte_patching"] = evaluate.spacebyte_patching(c, wd)
    findings.update(split=str(c.eval.split), setup=grid.setup(c))
    findings["train_split_bytes"] = grids[0]["train_split_bytes"]
    return findings
