"""Checkpoint evaluation of ``lm`` runs: loss, bits per byte and per character, perplexity
and loss by position on a split, data parallel over every device of every process.

``evaluate_run(run_dir, split, step)`` is what ``python -m lexlm.evaluate`` calls for an
``lm`` run; the result is saved in the run's ``evals/`` under the evaluation's identity, so
asking again is free and a changed setting is a new evaluation.
"""

from __future__ import annotations

import functools
import os

import jax

from lexlm.errors import CheckpointError
from lexlm.eval import accumulate_nll, params_mesh
from lexlm.eval.intervals import UNIT_BYTES
from lexlm.experiment import store
from lexlm.paths import as_path
from lexlm.proj.lm.run import latest_step, load_run, restore_lm
from lexlm.train.lm_task import lm_nll


@functools.lru_cache(maxsize=64)
def _jitted_nll(model):
    """One jitted evaluation NLL per model config (equal configs are equal modules), so the
    many evaluations of one run shape in a process compile once."""
    return jax.jit(lambda p, batch, key: lm_nll(model, p, batch, key, train=False))


def nll_function(model, params):
    """Per-token NLL at evaluation (fresh random tables per key for lexinvariant), jitted with
    the parameters as an argument, so with sharded parameters (``restore_lm``) the batch is split
    over their mesh rather than recomputed on every device. ``fn.mesh`` is that mesh (or None);
    ``accumulate_nll`` places each batch on it."""
    from flax import linen as nn

    from lexlm.train import sharding as shd

    mesh = params_mesh(params)
    jitted = _jitted_nll(model)

    def fn(batch, key):
        if mesh is None:
            return jitted(params, batch, key)
        with jax.set_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
            return jitted(params, batch, key)

    fn.mesh = mesh
    return fn


def eval_windows(cfg, tok, split: str, max_windows: int | None = None):
    """Back-to-back windows over a whole split (``lexlm.data.lm_eval_windows``)."""
    from lexlm.data import lm_eval_windows, open_split

    return lm_eval_windows(
        open_split(cfg.data, split), tok, int(cfg.seq_len), max_windows=max_windows or None
    )


def settings(cfg, draws: int, train_seed: int = 0) -> dict:
    """The evaluation settings that change its numbers (with the run and the step)."""
    out = {
        "draws": int(draws),
        "max_windows": int(cfg.eval.max_windows),
        "batch_size": int(cfg.eval.batch_size),
        "seed": int(cfg.eval.seed),
        "units": f"blocks of {UNIT_BYTES} bytes",  # what result['units'] holds
    }
    if int(cfg.train.get("seeds", 1)) > 1:
        out["train_seed"] = int(train_seed)  # which copy of a seed-batched run
    return out


def metrics_of(model, params, windows, cfg, draws: int, step: int, split: str) -> dict:
    sums = accumulate_nll(
        nll_function(model, params),
        windows,
        int(cfg.eval.batch_size),
        jax.random.key(int(cfg.eval.seed)),
        draws=draws,
    )
    out = {"split": split, "step": int(step), "draws": int(draws), "unit": str(cfg.data.unit)}
    out.update(sums.summary())
    return out


def evaluate_run(
    workdir: str | os.PathLike,
    split: str | None = None,
    step: int | None = None,
    draws: int | None = None,
    seed: int = 0,
) -> dict:
    """Metrics of checkpoint ``step`` (default: the newest) on ``split`` (default: the run's
    ``eval.split``): loss, bits per byte and per character, perplexity, loss by position, and
    the per-document bits and bytes (``units``) that intervals resample.
    Lexinvariant runs average ``draws`` random-table draws (default ``eval.draws``); ``seed``
    is the copy (0 .. S - 1) of a run trained with ``train.seeds`` = S."""
    workdir = as_path(workdir)
    cfg, _ = load_run(workdir)
    split = split or str(cfg.eval.split)
    step = step if step is not None else latest_step(workdir)
    if step is None:
        raise CheckpointError(f"{workdir} has no checkpoint to evaluate")
    learned = str(cfg.model.get("embedding", "learned")) == "learned"
    draws = 1 if learned else int(draws or cfg.eval.draws)

    def compute():
        model, params, tok, _, restored = restore_lm(workdir, step, seed=seed)
        windows = eval_windows(cfg, tok, split, int(cfg.eval.max_windows))
        return metrics_of(model, params, windows, cfg, draws, restored, split)

    return store.evaluation(workdir, split, step, settings(cfg, draws, seed), compute)


def evaluate_seeds(
    workdir: str | os.PathLike, split: str | None = None, step: int | None = None, **kwargs
) -> dict:
    """``evaluate_run`` of every trained copy of a run, and the combination the findings
    report: {'seeds': [per-seed metrics], 'spread': seed spread of bits per byte (or loss),
    'units': per-document bits averaged over seeds, 'interval': the bootstrap interval of the
    seed-averaged bits per byte over documents}."""
    cfg, _ = load_run(as_path(workdir))
    per_seed = [
        evaluate_run(workdir, split, step, seed=s, **kwargs)
        for s in range(int(cfg.train.get("seeds", 1)))
    ]
    return combine_seeds(per_seed)


def combine_seeds(per_seed: list[dict]) -> dict:
    """The seed spread and the documents' bootstrap interval of per-seed LM evaluations."""
    from lexlm.eval import intervals as iv

    metric = "bits_per_byte" if "bits_per_byte" in per_seed[0] else "loss"
    out = {"seeds": per_seed, "metric": metric,
           "spread": iv.seed_spread([m[metric] for m in per_seed])}  # fmt: skip
    if all("units" in m for m in per_seed):
        units = iv.mean_over_seeds([m["units"] for m in per_seed])
        out["units"] = {k: v.tolist() for k, v in units.items()}
        if len(units["bytes"]) > 1:
            out["interval"] = iv.bootstrap_interval(iv.ratio_of_sums("bits", "bytes"), units)
    return out
