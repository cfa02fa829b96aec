"""The ``encoder`` run kind (one sentence encoder through every stage of ``stages``) and the
pixel project's run: each model in ``models`` trained into ``W/runs/<model>``, the one
selected on validation scored on test, next to a TF-IDF reference that needs no training.

A run directory holds ``identity.json`` and ``config.json`` (the run's config: the
experiment's, for this one model, kind ``encoder``), ``tokenizer/`` (token runs: built on the
training sentences, with its identity record), ``stages/<stage>/`` (each stage's trainer
folder), ``selection/`` and ``best/`` (``selection``), and ``evals/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from lexlm.errors import ConfigError, TrainingError
from lexlm.experiment import store
from lexlm.paths import as_path
from lexlm.proj.pixel import stages
from lexlm.proj.pixel.config import model_names

PIXEL_ONLY = ("render", "stages.mae_steps", "stages.mae_ratio")
TOKEN_ONLY = ("tokenizer",)


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path)) if path else path


def n_seeds(c) -> int:
    """``train.seeds``: how many copies of each encoder are trained (1 when absent)."""
    return int(c.train.get("seeds", 1))


def seed_run_name(kind: str, seed_index: int) -> str:
    """The run directory name of copy ``seed_index`` of an encoder: ``pixel``, ``pixel_seed1``."""
    return kind if int(seed_index) == 0 else f"{kind}_seed{int(seed_index)}"


def encoder_run_config(c, kind: str, seed_index: int = 0) -> ml_collections.ConfigDict:
    """The run config of copy ``seed_index`` of one encoder: the experiment's fields that shape
    this model (the other model's own fields dropped, so changing them leaves this run valid),
    ``train.seed`` + ``seed_index`` as its seed and one seed per run (copy 0's config is the
    one-seed experiment's, so its run stays valid when ``train.seeds`` grows), and its data
    files as absolute paths (the run is evaluated from its own config wherever it is moved)."""
    from lexlm.data.config import as_list

    r = ml_collections.ConfigDict(c.copy_and_resolve_references().to_dict())  # unlocked
    del r["models"]
    r.train.seed = int(c.train.seed) + int(seed_index)
    r.train.seeds = 1
    r.kind = "encoder"
    r.encoder = kind
    for name in TOKEN_ONLY if kind == "pixel" else PIXEL_ONLY:
        parent, _, leaf = name.rpartition(".")
        del (r[parent] if parent else r)[leaf]
    for split in ("train", "validation", "test"):
        r.data.split_files[split] = _absolute(str(r.data.split_files[split]))
    if as_list(r.data.files):
        r.data.files = tuple(_absolute(p) for p in as_list(r.data.files))
    if as_list(r.sentences.unlabelled):
        r.sentences.unlabelled = ",".join(_absolute(p) for p in as_list(r.sentences.unlabelled))
    return r


def build_subword(cfg, data):
    """The token encoder's BPE on the training sentences (in memory: a size sentencepiece
    refuses is a one-line error before anything is written)."""
    from lexlm.text.tokenizers import build_tokenizer

    try:
        return build_tokenizer("subword", data.sentences, int(cfg.tokenizer.vocab_size))
    except ConfigError as e:  # the tokenizer names an LM config's field
        raise ConfigError("tokenizer.vocab_size", str(e).split(": ", 1)[-1]) from None


def tokenizer_dir(run_dir):
    return as_path(run_dir) / "tokenizer"


def tokenizer_for(cfg, run_dir, data, built=None):
    """The token run's subword tokenizer (``<run>/tokenizer``): built once from the training
    sentences (or saved from ``built``), with an identity record of the fields it came from;
    one built from other data or another size is a ``StaleResultError``."""
    from lexlm.proj.pixel.data import data_fields
    from lexlm.text import load_tokenizer

    def build(folder):
        (built or build_subword(cfg, data)).save(folder)

    fields = {**data_fields(cfg), "tokenizer.vocab_size": int(cfg.tokenizer.vocab_size)}
    return load_tokenizer(store.artifact_dir(tokenizer_dir(run_dir), fields, build))


def _final_params(result):
    from lexlm.train.contrastive_task import unbox

    return jax.device_get(unbox(result.state.params))


def _restore_state(task, train_cfg, folder):
    """The full train state of ``folder``'s newest checkpoint (the soup's seed)."""
    from lexlm.train import sharding as shd
    from lexlm.train.checkpoint import Checkpointer
    from lexlm.train.loop import build_state

    mesh = shd.make_mesh(shd.resolve_mesh_shape(train_cfg.mesh, jax.device_count()))
    fns = build_state(task, train_cfg, mesh)
    ckpt = Checkpointer(folder / "checkpoints", keep=int(train_cfg.keep),
                        identity_fields=task.identity)  # fmt: skip
    try:
        state, _, _ = ckpt.restore(fns.abstract)
    finally:
        ckpt.close()
    return state


def _batches(cfg, stage: str, data, features):
    from lexlm.data.sentence_pairs import MAEBatches, PairBatches, adjacent_pairs

    batch, seed = int(cfg.train.batch_size), int(cfg.train.seed)
    if stage == "mae":
        return MAEBatches(features, data.sentences, batch, seed, float(cfg.stages.mae_ratio))
    if stage.startswith("unsup_"):
        left, right, kind = data.sentences, None, stage[len("unsup_") :]
    elif stage.startswith("topical_"):
        (left, right), kind = adjacent_pairs(data.docs), "typo"
    else:
        (left, right), kind = data.sup, "typo"
    return PairBatches(features, left, right, batch, seed, kind, float(cfg.stages.rate))


def train_encoder(cfg, run_dir, data, timings: dict | None = None, tokenizer=None) -> dict:
    """Runs (or resumes) every stage of one encoder run; returns its selected record.

    ``cfg`` is the run's config (``encoder_run_config``); ``timings`` gets each stage trained
    in this process (sentences/s, wall seconds); ``tokenizer``: a token run's tokenizer built
    already (``build_subword``), saved as the run's if it has none."""
    from lexlm.proj.pixel.data import inputs
    from lexlm.proj.pixel.evaluate import embedder, score
    from lexlm.proj.pixel.selection import Selection
    from lexlm.train import train
    from lexlm.train.contrastive_task import (
        make_contrastive_task,
        make_mae_task,
        seed_checkpoint,
        soup,
    )

    run_dir = as_path(run_dir)
    kind = str(cfg.encoder)
    store.open_run(run_dir, cfg, inputs(cfg))
    tok = tokenizer_for(cfg, run_dir, data, tokenizer) if kind == "token" else None
    enc = stages.encoder_config(cfg, kind, tok.vocab_size if tok else 0)
    features = stages.features_for(cfg, kind, tok)
    base = make_contrastive_task(enc, float(cfg.temperature), name=kind)
    max_chars, eval_batch = int(cfg.sentences.max_chars), int(cfg.eval.batch)

    def dev_score(params) -> float:
        return score(embedder(enc, params, features, eval_batch), data.dev, max_chars)["spearman"]

    select = Selection(run_dir, base.identity, dev_score)
    start, unsup_params = None, []
    try:
        for stage, steps, offset in stages.offsets(cfg, kind):
            folder = run_dir / "stages" / stage
            if stage == stages.SOUP:
                start = soup(unsup_params)
                seed_checkpoint(base, stages.stage_train_config(cfg, 1), folder, start)
                if not select.has(offset + 1):
                    state = _restore_state(base, stages.stage_train_config(cfg, 1), folder)
                    select.consider(stage, 0, offset + 1, True, state)
                continue
            t_cfg = stages.stage_train_config(cfg, steps)
            if stage == "mae":
                task, hooks = make_mae_task(enc), []
            else:
                task = make_contrastive_task(enc, float(cfg.temperature), name=stage)
                if start is not None:
                    seed_checkpoint(task, t_cfg, folder, start)
                hooks = [select.hook(stage, offset, stages.is_candidate(stage))]
            t0 = time.perf_counter()
            result = train(t_cfg, task, _batches(cfg, stage, data, features), folder,
                           hooks=hooks)  # fmt: skip
            if result.stopped_by != "steps":
                raise TrainingError(
                    f"{run_dir.name}/{stage}: training stopped at step {result.final_step} "
                    f"({result.stopped_by}); rerun the same command to resume"
                )
            if result.history and timings is not None:
                rates = [h["tokens_per_s"] for h in result.history[1:] or result.history]
                timings[stage] = {"sentences_per_s": round(float(np.median(rates)), 1),
                                  "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
            params = _final_params(result)
            if stage == "mae":
                start = {k: v for k, v in params.items() if k != "mae"}
            elif stage.startswith("unsup_"):
                unsup_params.append(params)
            else:
                start = params
        return select.selected()
    finally:
        select.close()


def reference_row(c, data) -> tuple[dict, list]:
    """Bag-of-words TF-IDF (idf from the training text; no training, no parameters): what the
    similarity judgements reward without any learning, under the same typo draws. Returns
    (its findings row, its ``robustness`` list with the per-pair cosines)."""
    from lexlm.eval.sts import tfidf_embedder
    from lexlm.proj.pixel.evaluate import gold_scores, robustness, score, summarize, typo_rates

    texts = [" ".join(d) for d in data.docs] if data.docs else data.sentences
    embed = tfidf_embedder(texts)
    max_chars = int(c.sentences.max_chars)
    clean = score(embed, data.test, max_chars)
    rows = robustness(embed, data.test, typo_rates(c), int(c.eval.seed), max_chars,
                      clean=clean, typo_seeds=int(c.eval.typo_seeds))  # fmt: skip
    dev = score(embed, data.dev, max_chars)["spearman"]
    summary = summarize([rows], gold_scores(data.test))
    return {"model": "tfidf", "reference": True, "dev": dev, "test": clean["spearman"],
            "test_lo": summary[0]["lo"], "test_hi": summary[0]["hi"],
            "test_pearson": clean["pearson"], "robustness": summary, "params": 0,
            "seeds": 1, "typo_seeds": int(c.eval.typo_seeds)}, rows  # fmt: skip


def example_rows(c, sentences) -> list[dict]:
    """What the rendered-examples figure shows: ``eval.examples`` training sentences of 40-100
    characters (any, if too few), each clean, with 10% typos and word-shuffled (its positives);
    seeded, so the figure is drawn again from the findings alone."""
    from lexlm.text.perturb import perturb

    k, seed = int(c.eval.examples), int(c.eval.seed)
    fits = [s for s in sentences if 40 <= len(s) <= 100] or list(sentences)
    idx = np.random.default_rng(seed).choice(len(fits), size=min(k, len(fits)), replace=False)
    rng = np.random.default_rng(seed)
    rows = []
    for t in (fits[i] for i in sorted(idx)):
        rows += [{"label": "clean", "text": t},
                 {"label": "10% typos", "text": perturb(t, "typo", rng, 0.1)},
                 {"label": "word shuffle", "text": perturb(t, "word_shuffle", rng)}]  # fmt: skip
    return rows


def summed_metric(stage_dir, name: str) -> int | None:
    """A per-step count summed over a stage's training (its ``metrics.jsonl``: each line the
    mean over the steps since the line before), or None when the stage did not log it."""
    import json

    path = as_path(stage_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    total, last = 0.0, 0
    for line in sorted(lines, key=lambda x: int(x["step"])):
        if name not in line:
            return None
        total += float(line[name]) * (int(line["step"]) - last)
        last = int(line["step"])
    return round(total)


def unchanged_perturbations(cfg, run_dir, kind: str) -> dict:
    """Per perturbation kind of the unsup stages: {"unchanged": positives whose text the
    perturbation left as it was, "positives": all of them}; kinds whose stage logged no count
    (trained before it was counted) are left out."""
    out = {}
    for stage, steps in stages.plan(cfg, kind):
        if stage.startswith("unsup_"):
            n = summed_metric(as_path(run_dir) / "stages" / stage, "unchanged_positives")
            if n is not None:
                positives = steps * int(cfg.train.batch_size)
                out[stage[len("unsup_") :]] = {"unchanged": n, "positives": positives}
    return out


def masked_duplicates(cfg, run_dir, kind: str) -> dict:
    """Per contrastive stage: in-batch candidates left out of InfoNCE as repeats of the
    anchor's or its positive's text, summed over the stage's steps."""
    out = {}
    for stage, _ in stages.plan(cfg, kind):
        n = summed_metric(as_path(run_dir) / "stages" / stage, "duplicate_negatives")
        if n is not None:
            out[stage] = n
    return out


def seed_row(cfg, run_dir, chosen: dict) -> tuple[dict, dict]:
    """(copy's record, its test evaluation) of one trained copy: the checkpoint it chose on
    validation, scored on validation (with and without the head) and on test."""
    from lexlm.proj.pixel.evaluate import evaluate_run

    dev = evaluate_run(run_dir, split="validation", step=chosen["global_step"])
    test = evaluate_run(run_dir, split="test", step=chosen["global_step"])
    record = {"seed": int(cfg.train.seed), "stage": chosen["stage"], "step": chosen["step"],
              "global_step": chosen["global_step"], "dev": chosen["dev"],
              "dev_no_head": dev["spearman_no_head"], "test": test["spearman"],
              "test_no_head": test["spearman_no_head"],
              "test_pearson": test["pearson"]}  # fmt: skip
    return record, test


def model_row(cfgs, run_dirs, chosen: Sequence[dict], vocab_size: int) -> tuple[dict, list]:
    """(findings row, the copies' test robustness lists) of one encoder's S copies: means over
    the copies, each score's interval over the test pairs (``evaluate.summarize``); the
    counts, features and selection records are copy 0's."""
    from lexlm.proj.pixel.evaluate import summarize
    from lexlm.proj.pixel.selection import read_records

    seeds = [seed_row(cfg, d, ch) for cfg, d, ch in zip(cfgs, run_dirs, chosen)]
    records, tests = [r for r, _ in seeds], [t for _, t in seeds]
    cfg, run_dir, first = cfgs[0], run_dirs[0], records[0]
    kind = str(cfg.encoder)
    rows = summarize([t["robustness"] for t in tests], tests[0]["gold"])

    def avg(key):
        return float(np.mean([r[key] for r in records]))

    return {
        "model": kind,
        "stage": first["stage"],
        "step": first["step"],
        "global_step": first["global_step"],
        "seeds": len(records),
        "typo_seeds": int(cfg.eval.typo_seeds),
        "per_seed": records,
        "dev": avg("dev"),
        "dev_no_head": avg("dev_no_head"),
        "test": rows[0]["spearman"],
        "test_lo": rows[0]["lo"],
        "test_hi": rows[0]["hi"],
        "test_pearson": avg("test_pearson"),
        "test_no_head": avg("test_no_head"),
        "robustness": rows,
        "params": stages.encoder_config(cfg, kind, vocab_size).param_count(),
        "vocab_size": vocab_size,
        "features": tests[0]["features"],
        "evals": read_records(run_dir),
        "unchanged_perturbations": unchanged_perturbations(cfg, run_dir, kind),
        "masked_duplicates": masked_duplicates(cfg, run_dir, kind),
    }, [t["robustness"] for t in tests]


def run(c, wd: store.Workdir) -> dict:
    """Trains every model of ``c.models`` (resuming), scores each selected checkpoint on test
    next to the TF-IDF reference, and returns the findings."""
    from lexlm.proj.pixel.data import check_sizes, inputs, load
    from lexlm.proj.pixel.evaluate import (
        comparisons,
        gold_scores,
        target_size,
        tokenizer_of,
        typo_rates,
    )

    names = model_names(c)
    seeds = range(n_seeds(c))
    runs = [(name, s) for name in names for s in seeds]
    cfgs = {key: encoder_run_config(c, *key) for key in runs}
    dirs = {key: wd.run(seed_run_name(*key)) for key in runs}
    for key in runs:  # before anything is read or written: a changed config is one line
        store.check_run(dirs[key], cfgs[key], inputs(cfgs[key]))
    data = load(cfgs[runs[0]])  # the run configs' data fields: loaded once for all
    for name in names:
        check_sizes(c, data, name)
    built = None
    if "token" in names and not all(
        (tokenizer_dir(dirs["token", s]) / store.DIR_MARK).exists() for s in seeds
    ):
        built = build_subword(cfgs["token", 0], data)
    rows, evals = [], {}
    for name in names:  # only now is anything written
        chosen = []
        for s in seeds:
            label = seed_run_name(name, s)
            timings = wd.timings.setdefault(label, {})
            chosen.append(train_encoder(cfgs[name, s], dirs[name, s], data, timings, built))
            if not timings:
                del wd.timings[label]
        vocab = tokenizer_of(dirs[name, 0]).vocab_size if name == "token" else 0
        row, evals[name] = model_row([cfgs[name, s] for s in seeds],
                                     [dirs[name, s] for s in seeds], chosen, vocab)  # fmt: skip
        rows.append(row)
    ref, tfidf = reference_row(c, data)
    evals["tfidf"] = [tfidf]  # one "seed": it has no training
    rows.append(ref)
    gold = gold_scores(data.test)
    compared = {}
    if "pixel" in evals and "token" in evals:
        compared["pixel_vs_token"] = comparisons(evals["pixel"], evals["token"], gold)
    for name in names:
        compared[f"{name}_vs_tfidf"] = comparisons(evals[name], evals["tfidf"], gold)[:1]
    reason = str(c.eval.get("one_seed_reason", "")) if n_seeds(c) == 1 else ""
    return {
        "source": str(c.data.source),
        "tfds_name": str(c.data.tfds_name) if c.data.source == "tfds" else "",
        "data": data.stats,
        "dev_pairs": target_size(data.dev),
        "test_pairs": target_size(data.test),
        "rows": rows,
        "stages": {name: [s for s, _ in stages.plan(c, name)] for name in names},
        "steps": {
            k: int(c.stages[k])
            for k in ("mae_steps", "unsup_steps", "topical_steps", "sup_steps", "rounds")
        },
        "rate": float(c.stages.rate),
        "temperature": float(c.temperature),
        "sup_min_score": float(c.sentences.sup_min_score),
        "max_chars": int(c.sentences.max_chars),
        "model": c.model.to_dict(),
        "render": {
            "max_patches": int(c.model.max_len),
            "font_px": float(c.render.font_px),
            "font_path": str(c.render.font_path),
        },
        "batch": int(c.train.batch_size),
        "typo_rates": list(typo_rates(c)),
        "seeds": n_seeds(c),
        "typo_seeds": int(c.eval.typo_seeds),
        "one_seed_reason": reason,
        "comparisons": compared,
        "examples": example_rows(c, data.sentences),
    }
