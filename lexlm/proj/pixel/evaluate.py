"""Checkpoint evaluation of ``encoder`` runs: Spearman x 100 of cosine similarity against the
human judgements of the validation or test split, with the pooling head and without it
(Pixel-Linguist's ``PIXELForRepresentation``), clean and with character typos at each of
``eval.typo_rates`` in every text (both sentences of a pair, each with its own seed).

``evaluate_run(run_dir, split, step)`` is what ``python -m lexlm.evaluate`` calls for an
``encoder`` run: by default the checkpoint the run selected on validation (``selection``), or
any saved global step (``--step``). It reads only the run's own ``config.json``, tokenizer and
checkpoints; the result is saved under the evaluation's identity (``store.evaluation``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np

from lexlm.data import sts as sts_data
from lexlm.errors import CheckpointError
from lexlm.eval import sts
from lexlm.experiment import store
from lexlm.paths import as_path


def embedder(enc_cfg, params, features, batch: int, head: bool = True) -> Callable:
    """texts -> [N, D] float32 unit vectors, in fixed-size batches (one compilation)."""
    from lexlm.nn.vit import jit_embed

    f = jit_embed(enc_cfg, head)

    def embed(texts):
        texts = list(texts)
        out = []
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            x, m = features(chunk)  # filler rows are added after, so no count includes them
            pad = batch - len(chunk)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            m = np.concatenate([m, np.zeros((pad, m.shape[1]), bool)])
            out.append(np.asarray(f(params, x, m))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, enc_cfg.width), np.float32)

    return embed


def target_size(target) -> int:
    return len(target.pairs) if isinstance(target, sts_data.DocSimilarity) else len(target)


def score(embed: Callable, target, max_chars: int) -> dict:
    """Spearman / Pearson x100 of cosine similarity against the human scores: sentence pairs
    (``sts.Pairs``) or documents embedded chunk by chunk (``sts.DocSimilarity``)."""
    if isinstance(target, sts_data.DocSimilarity):
        return sts.doc_similarity_scores(embed, target, max_chars)
    return sts.sts_scores(embed, target)


def with_typos(target, rate: float, seed: int):
    """A copy of ``target`` with character typos at ``rate`` in every text (documents, or both
    sides of every pair, each side with its own seed); rate 0 returns ``target`` itself."""
    from lexlm.text.perturb import perturb_many

    if rate == 0:
        return target
    if isinstance(target, sts_data.DocSimilarity):
        return dataclasses.replace(
            target, docs=tuple(perturb_many(target.docs, "typo", rate, seed))
        )
    left = perturb_many(target.left, "typo", rate, seed)
    right = perturb_many(target.right, "typo", rate, seed + 1)
    return dataclasses.replace(target, left=tuple(left), right=tuple(right))


def typo_seed(seed: int, rate_index: int, draw: int) -> int:
    """The seed of typo draw ``draw`` at the ``rate_index``-th rate (draw 0: the one draw
    evaluated before there were several). The right side of a pair uses it + 1."""
    return int(seed) + 2 * (int(rate_index) + 1) + 1000 * int(draw)


def robustness(embed: Callable, target, rates: Sequence[float], seed: int, max_chars: int,
               clean: dict | None = None, typo_seeds: int = 1) -> list[dict]:  # fmt: skip
    """Rows {rate, spearman, drop, draws, cos} for rate 0 (clean: ``clean``, a ``score``
    result, if given) and each of ``rates``, each rate scored on ``typo_seeds`` typo draws
    (``typo_seed``): ``draws`` the Spearman x 100 of each, ``spearman`` their mean, ``drop``
    the clean Spearman minus it (positive = worse under typos), ``cos`` the per-pair cosines
    ([N, draws] as lists: the test units of ``summarize``)."""
    if clean is None:
        clean = score(embed, target, max_chars)
    c = clean["spearman"]
    rows = [{"rate": 0.0, "spearman": c, "drop": 0.0, "draws": [c],
             "cos": _columns([clean["cos"]])}]  # fmt: skip
    for k, rate in enumerate(r for r in rates if r > 0):
        got = [score(embed, with_typos(target, float(rate), typo_seed(seed, k, j)), max_chars)
               for j in range(int(typo_seeds))]  # fmt: skip
        draws = [g["spearman"] for g in got]
        mean = float(np.mean(draws))
        rows.append({"rate": float(rate), "spearman": mean, "drop": c - mean, "draws": draws,
                     "cos": _columns([g["cos"] for g in got])})  # fmt: skip
    return rows


def _columns(cols: Sequence[np.ndarray]) -> list[list[float]]:
    return np.stack([np.asarray(x, np.float64) for x in cols], axis=1).tolist()


def gold_scores(target) -> list[float]:
    """The human score of each judged pair (the units' gold side)."""
    return np.asarray(target.scores, np.float64).tolist()


def summarize(evals: Sequence[Sequence[dict]], gold: Sequence[float]) -> list[dict]:
    """The robustness rows of S training seeds' evaluations (each a ``robustness`` list, on
    the same pairs), over test units = pairs: per rate, ``spearman`` = the mean over the
    seeds x typo draws of each draw's Spearman x 100 (``sts.mean_spearman_of``), ``lo``/``hi``
    its 95% bootstrap interval over pairs, ``drop`` = clean minus it with ``drop_lo``/
    ``drop_hi`` the paired interval (the same resampled pairs for both), ``seeds`` the spread
    over training seeds (each seed's mean over its typo draws), ``typo_seeds`` the spread over
    typo draws (each draw's mean over the seeds)."""
    from lexlm.eval import intervals
    from lexlm.eval.sts import mean_spearman_of

    metric = mean_spearman_of("cos", "gold")
    per_rate = rate_units(evals, gold)
    clean = per_rate[0]["units"]
    out = []
    for item in per_rate:
        units, rate = item["units"], item["rate"]
        band = intervals.bootstrap_interval(metric, units)
        drop = intervals.compare(metric, clean, units)
        draws = np.asarray(item["draws"], np.float64)  # [S, T]
        out.append({
            "rate": rate, "spearman": band["value"], "lo": band["lo"], "hi": band["hi"],
            "drop": drop["diff"], "drop_lo": drop["lo"], "drop_hi": drop["hi"],
            "seeds": intervals.seed_spread(draws.mean(axis=1).tolist()),
            "typo_seeds": intervals.seed_spread(draws.mean(axis=0).tolist()),
        })  # fmt: skip
    return out


def rate_units(evals: Sequence[Sequence[dict]], gold: Sequence[float]) -> list[dict]:
    """Per rate {rate, units: {"cos": [N, S x T] (seed-major), "gold": [N]}, draws: [S, T]
    Spearmans}, from S seeds' ``robustness`` lists; a ValueError when they disagree on the
    rates, the draws or the pairs."""
    if not evals:
        raise ValueError("summarize: no evaluations")
    rates = [r["rate"] for r in evals[0]]
    out = []
    for k, rate in enumerate(rates):
        rows = [e[k] for e in evals]
        if any(r["rate"] != rate or len(r["draws"]) != len(rows[0]["draws"]) for r in rows):
            raise ValueError("summarize: the seeds were scored at other rates or typo draws")
        cos = np.concatenate([np.asarray(r["cos"], np.float64) for r in rows], axis=1)
        if len(cos) != len(gold):
            raise ValueError(f"summarize: {len(cos)} scored pairs against {len(gold)} gold")
        out.append({"rate": rate, "units": {"cos": cos, "gold": np.asarray(gold, np.float64)},
                    "draws": [r["draws"] for r in rows]})  # fmt: skip
    return out


def comparisons(
    a: Sequence[Sequence[dict]], b: Sequence[Sequence[dict]], gold: Sequence[float]
) -> list[dict]:
    """Per rate, model a against model b on the same pairs (paired bootstrap, ``intervals.
    compare``): ``spearman`` compares the scores (a - b; higher is better), ``drop`` the
    losses under typos (a's clean-minus-typo minus b's; lower is better; absent at rate 0)."""
    from lexlm.eval import intervals
    from lexlm.eval.sts import mean_spearman_of

    metric = mean_spearman_of("cos", "gold")
    ua, ub = rate_units(a, gold), rate_units(b, gold)

    def drop(units):
        return metric({"cos": units["clean"], "gold": units["gold"]}) - metric(units)

    out = []
    for k, (ra, rb) in enumerate(zip(ua, ub)):
        row = {"rate": ra["rate"], "spearman": intervals.compare(metric, ra["units"], rb["units"])}
        if k:
            both = [
                {**r["units"], "clean": c["units"]["cos"]} for r, c in ((ra, ua[0]), (rb, ub[0]))
            ]
            row["drop"] = intervals.compare(drop, *both)
        out.append(row)
    return out


def typo_rates(cfg) -> tuple[float, ...]:
    rates = cfg.eval.typo_rates
    return tuple(float(r) for r in (rates if isinstance(rates, (list, tuple)) else (rates,)))


def tokenizer_of(run_dir):
    from lexlm.text import load_tokenizer

    return load_tokenizer(as_path(run_dir) / "tokenizer")


def selected_step(run_dir) -> int:
    """The global step the run selected on validation (so far, for a run still training)."""
    from lexlm.proj.pixel.selection import read_records, select_on_dev

    best = select_on_dev(read_records(run_dir))
    if best is None:
        raise CheckpointError(f"{run_dir} has selected no checkpoint yet (no validation record)")
    return int(best["global_step"])


def restore_encoder(run_dir, cfg, enc_cfg, global_step: int) -> tuple[dict, str]:
    """(parameters on the host, stage) of a run's global step: the best checkpoint when it is
    that step, else the stage's own checkpoint of it."""
    from lexlm.eval import restore_params
    from lexlm.proj.pixel import stages
    from lexlm.train.contrastive_task import make_contrastive_task, make_mae_task, unbox

    run_dir = as_path(run_dir)
    kind = str(cfg.encoder)
    train_cfg = stages.stage_train_config(cfg, 1)
    where = stages.locate(cfg, kind, int(global_step))
    best = run_dir / "best"
    if (best / "checkpoints" / str(int(global_step))).exists():
        folder, local, stage = best, int(global_step), where[0] if where else "best"
    elif where is not None:
        stage, local = where
        folder = run_dir / "stages" / stage
    else:
        raise CheckpointError(f"{run_dir}: no stage has global step {global_step}")
    task = (make_mae_task(enc_cfg) if stage == "mae"
            else make_contrastive_task(enc_cfg, float(cfg.temperature)))  # fmt: skip
    if not (folder / "checkpoints" / str(local)).exists():
        raise CheckpointError(
            f"{run_dir}: no checkpoint of global step {global_step} ({stage} step {local}); "
            f"kept: the selected one and each stage's last (train.keep = {cfg.train.keep})"
        )
    params, _, _ = restore_params(task, train_cfg, folder, local)
    params = unbox(jax.device_get(params))
    return {k: v for k, v in params.items() if k != "mae"}, stage


def settings(cfg) -> dict:
    """The evaluation settings that change its numbers (with the run, split and step)."""
    return {
        "typo_rates": list(typo_rates(cfg)),
        "seed": int(cfg.eval.seed),
        "batch": int(cfg.eval.batch),
        "typo_seeds": int(cfg.eval.get("typo_seeds", 1)),
    }


def evaluate_run(
    run_dir: str | os.PathLike, split: str | None = None, step: int | None = None
) -> dict:
    """Metrics of global step ``step`` (default: the selected one) on ``split`` (default: the
    run's ``eval.split``): Spearman and Pearson x 100, Spearman without the head, the typo
    rows, the input counts of the featurizer."""
    from lexlm.errors import ConfigError
    from lexlm.proj.pixel import stages
    from lexlm.proj.pixel.config import SPLITS
    from lexlm.proj.pixel.data import load

    run_dir = as_path(run_dir)
    cfg = store.load_run_config(run_dir)
    split = split or str(cfg.eval.split)
    if split not in SPLITS:
        raise ConfigError("split", f"unknown {split!r}; judged splits: {', '.join(SPLITS)}")
    step = selected_step(run_dir) if step is None else int(step)
    kind = str(cfg.encoder)

    def compute():
        tok = tokenizer_of(run_dir) if kind == "token" else None
        enc_cfg = stages.encoder_config(cfg, kind, tok.vocab_size if tok else 0)
        params, stage = restore_encoder(run_dir, cfg, enc_cfg, step)
        data = load(cfg)
        target = data.dev if split == "validation" else data.test
        features = stages.features_for(cfg, kind, tok)
        max_chars, batch = int(cfg.sentences.max_chars), int(cfg.eval.batch)
        embed = embedder(enc_cfg, params, features, batch)
        clean = score(embed, target, max_chars)
        rows = robustness(
            embed,
            target,
            typo_rates(cfg),
            int(cfg.eval.seed),
            max_chars,
            clean=clean,
            typo_seeds=int(cfg.eval.get("typo_seeds", 1)),
        )
        no_head = score(embedder(enc_cfg, params, features, batch, head=False), target,
                        max_chars)  # fmt: skip
        return {"split": split, "step": step, "stage": stage, "spearman": clean["spearman"],
                "pearson": clean["pearson"], "spearman_no_head": no_head["spearman"],
                "pairs": target_size(target), "robustness": rows, "gold": gold_scores(target),
                "features": features.stats()}  # fmt: skip

    return store.evaluation(run_dir, split, step, settings(cfg), compute)
