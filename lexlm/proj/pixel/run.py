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


def encoder_run_config(c, kind: str) -> ml_collections.ConfigDict:
    """The run config of one encoder: the experiment's fields that shape this model (the other
    model's own fields dropped, so changing them leaves this run valid) and its data files as
    absolute paths (the run is evaluated from its own config wherever it is moved)."""
    from lexlm.data.config import as_list

    r = ml_collections.ConfigDict(c.copy_and_resolve_references().to_dict())  # unlocked
    del r["models"]
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


def reference_row(c, data) -> dict:
    """Bag-of-words TF-IDF (idf from the training text; no training, no parameters): what the
    similarity judgements reward without any learning."""
    from lexlm.eval.sts import tfidf_embedder
    from lexlm.proj.pixel.evaluate import robustness, score, typo_rates

    texts = [" ".join(d) for d in data.docs] if data.docs else data.sentences
    embed = tfidf_embedder(texts)
    max_chars = int(c.sentences.max_chars)
    clean = score(embed, data.test, max_chars)
    rows = robustness(embed, data.test, typo_rates(c), int(c.eval.seed), max_chars,
                      clean=clean["spearman"])  # fmt: skip
    dev = score(embed, data.dev, max_chars)["spearman"]
    return {"model": "tfidf", "reference": True, "dev": dev, "test": clean["spearman"],
            "test_pearson": clean["pearson"], "robustness": rows, "params": 0}  # fmt: skip


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


def model_row(cfg, run_dir, chosen: dict, vocab_size: int) -> dict:
    from lexlm.proj.pixel.evaluate import evaluate_run
    from lexlm.proj.pixel.selection import read_records

    test = evaluate_run(run_dir, split="test", step=chosen["global_step"])
    kind = str(cfg.encoder)
    return {
        "model": kind,
        "stage": chosen["stage"],
        "step": chosen["step"],
        "global_step": chosen["global_step"],
        "dev": chosen["dev"],
        "test": test["spearman"],
        "test_pearson": test["pearson"],
        "test_no_head": test["spearman_no_head"],
        "robustness": test["robustness"],
        "params": stages.encoder_config(cfg, kind, vocab_size).param_count(),
        "vocab_size": vocab_size,
        "features": test["features"],
        "evals": read_records(run_dir),
        "unchanged_perturbations": unchanged_perturbations(cfg, run_dir, kind),
        "masked_duplicates": masked_duplicates(cfg, run_dir, kind),
    }


def run(c, wd: store.Workdir) -> dict:
    """Trains every model of ``c.models`` (resuming), scores each selected checkpoint on test
    next to the TF-IDF reference, and returns the findings."""
    from lexlm.proj.pixel.data import check_sizes, inputs, load
    from lexlm.proj.pixel.evaluate import target_size, tokenizer_of, typo_rates

    names = model_names(c)
    cfgs = {name: encoder_run_config(c, name) for name in names}
    for name in names:  # before anything is read or written: a changed config is one line
        store.check_run(wd.run(name), cfgs[name], inputs(cfgs[name]))
    data = load(cfgs[names[0]])  # the run configs' data fields: loaded once for all
    for name in names:
        check_sizes(c, data, name)
    built = None
    if "token" in names and not (tokenizer_dir(wd.run("token")) / store.DIR_MARK).exists():
        built = build_subword(cfgs["token"], data)
    rows = []
    for name in names:  # only now is anything written
        timings = wd.timings.setdefault(name, {})
        chosen = train_encoder(cfgs[name], wd.run(name), data, timings, built)
        vocab = tokenizer_of(wd.run(name)).vocab_size if name == "token" else 0
        rows.append(model_row(cfgs[name], wd.run(name), chosen, vocab))
        if not timings:
            del wd.timings[name]
    rows.append(reference_row(c, data))
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
        "examples": example_rows(c, data.sentences),
    }
