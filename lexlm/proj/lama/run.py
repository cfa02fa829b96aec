"""The ``classifier`` run kind (one text classifier trained from a config) and the lama
project's run.

A classifier run directory holds ``identity.json`` and ``config.json``
(``lexlm.experiment.store``; the config records the data block with absolute paths, the
resolved class count and the vocabulary's size and SHA-256), ``vocab/`` (the word vocabulary,
an identity-checked artifact built from the training split), ``checkpoints/``,
``metrics.jsonl``, ``evals/`` (accuracy on validation at every saved step, and on test once,
at the step validation chose) and ``selected/`` (the parameters of the best validation step so
far: ``lexlm.proj.lama.evaluate``). So a run is evaluable from its own folder
(``python -m lexlm.evaluate --workdir <run dir>``), and a changed data file, class count or
vocabulary is refused by name, never loaded into old checkpoints.

``run(c, wd)``: for the classification variants one run per pooling, ``W/runs/cls_<pooling>``;
for ``lm`` the three LMs of ``lexlm.proj.lama.low_rank_lm``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from lexlm.errors import ConfigError, DataError, StaleResultError, TrainingError
from lexlm.experiment import checks, store
from lexlm.experiment import identity as ident
from lexlm.paths import as_path
from lexlm.proj.lama.config import POOLINGS, TASKS

# Data fields that a word-level classifier does not read: set, they would be silently ignored.
UNUSED_DATA_FIELDS = ("unit", "vocab_size", "chunk_chars", "doc_split", "heading_pattern")
ATTENTION_MODELS = ("lama", "lama_ctx", "structured")  # poolings whose heads the figures show
VOCAB_DIR = "vocab"


# -- validation ---------------------------------------------------------------------------------
def validate_experiment(c) -> None:
    task = c.get("task")
    if task not in TASKS:
        raise ConfigError("task", f"unknown {task!r}; tasks: {', '.join(TASKS)}")
    if task == "lm":
        from lexlm.proj.lama.low_rank_lm import validate_lm

        validate_lm(c)
    else:
        validate_classify(c)


def model_config(model, pooling: str, vocab_size: int, classes: int):
    """The ``ClassifierConfig`` of a ``model`` block; a bad field is a one-line ConfigError."""
    from lexlm.nn.classifier import ClassifierConfig

    fields = {k: v for k, v in dict(model).items() if k != "pooling"}
    try:
        return ClassifierConfig(vocab_size=vocab_size, classes=classes, pooling=pooling, **fields)
    except TypeError as e:
        raise ConfigError("model", str(e)) from None
    except ValueError as e:
        name, _, message = str(e).partition(": ")
        raise ConfigError(name if name.startswith("model.") else "model", message) from None


def validate_text(text) -> None:
    checks.integer(text.max_len, "text.max_len", 1)
    checks.integer(text.min_count, "text.min_count", 1)
    cap = checks.integer(text.max_vocab, "text.max_vocab", 0)
    if 0 < cap < 3:
        raise ConfigError("text.max_vocab", f"must be 0 (no cap) or >= 3 (padding, unknown and a "
                                            f"word), got {cap}")  # fmt: skip


def validate_classify(c) -> None:
    from lexlm.data import labelled
    from lexlm.data.config import default_data_config, field, validate_data_config
    from lexlm.train import validate_train_config

    names = checks.names(c.models, POOLINGS, "models")
    validate_data_config(
        c.data, sources=("vader_movies", "files", "tfds"), formats=("sst2", "ag_news"), units=None
    )
    defaults = default_data_config()
    for name in UNUSED_DATA_FIELDS:
        if field(c.data, name) != defaults[name]:
            raise ConfigError(
                f"data.{name}", "is not read by lama: its words come from text.max_len, "
                "text.min_count and text.max_vocab"
            )  # fmt: skip
    validate_text(c.text)
    classes = checks.integer(c.classes, "classes", 0)
    fixed = labelled.format_classes(c.data)
    if classes == 1:
        raise ConfigError("classes", "needs at least 2 classes (or 0: from the data)")
    if classes and fixed is not None and classes != fixed:
        raise ConfigError("classes", f"the data fixes {fixed} classes; leave it 0, got {classes}")
    if checks.number(c.model.penalty, "model.penalty") < 0:
        raise ConfigError("model.penalty", f"must be >= 0, got {c.model.penalty}")
    for pooling in names:
        model_config(c.model, pooling, max(3, int(c.text.max_vocab)), max(2, classes or 2))
    validate_train_config(c.train)
    checks.integer(c.eval.batch_size, "eval.batch_size", 1)
    checks.integer(c.examples, "examples", 0)


# -- the classifier run kind ----------------------------------------------------------------------
def absolute_data(data) -> ml_collections.ConfigDict:
    """The data block with its local file names made absolute, so a run's config names the
    files it read whatever the directory it is evaluated from."""
    from lexlm.data.config import as_list

    d = ml_collections.ConfigDict(data.to_dict())
    if d.source == "files":
        d.files = tuple(os.path.abspath(os.path.expanduser(f)) for f in as_list(d.files))
        for split, name in dict(d.split_files).items():
            if name:
                d.split_files[split] = os.path.abspath(os.path.expanduser(name))
    return d


def classifier_run_config(c, pooling: str, classes: int, vocab) -> ml_collections.ConfigDict:
    """One classifier run: the experiment's data, text, model, train and eval fields, the
    pooling, the resolved class count and the vocabulary's identity."""
    r = ml_collections.ConfigDict()
    r.project = "lama"
    r.kind = "classifier"
    r.data = absolute_data(c.data)
    r.text = ml_collections.ConfigDict(c.text.to_dict())
    r.classes = int(classes)
    r.model = ml_collections.ConfigDict(c.model.to_dict())
    r.model.pooling = pooling
    r.vocab = ml_collections.ConfigDict(dict(size=int(vocab.size), sha256=vocab.sha256))
    r.train = ml_collections.ConfigDict(c.train.to_dict())
    r.eval = ml_collections.ConfigDict(dict(batch_size=int(c.eval.batch_size), split="validation"))
    return r


def run_model_config(cfg):
    """The ``ClassifierConfig`` of a classifier run config."""
    return model_config(cfg.model, str(cfg.model.pooling), int(cfg.vocab.size), int(cfg.classes))


def run_inputs(cfg) -> dict:
    from lexlm.data.config import input_fingerprints

    return input_fingerprints(cfg.data)


def vocab_fields(cfg) -> dict:
    """What a run's vocabulary is built from: the data block, the vocabulary knobs and the
    fingerprints of the files read."""
    knobs = {"min_count": cfg.text.min_count, "max_vocab": cfg.text.max_vocab}
    out = ident.fields({"data": cfg.data.to_dict(), "text": knobs})
    out.update({f"inputs.{k}": v for k, v in run_inputs(cfg).items()})
    return out


def build_vocab(cfg, train_texts):
    from lexlm.data.labelled import ClassVocab

    return ClassVocab.build(train_texts, int(cfg.text.min_count), int(cfg.text.max_vocab))


def vocab_for(cfg, run_dir, vocab):
    """The run's vocabulary folder (``run_dir/vocab``): written once from ``vocab``, then
    read; one built from other data is a ``StaleResultError``. Returns the loaded vocabulary,
    checked against the run config's SHA-256."""
    from lexlm.data.labelled import ClassVocab

    path = store.artifact_dir(as_path(run_dir) / VOCAB_DIR, vocab_fields(cfg), vocab.save)
    loaded = ClassVocab.load(path)
    if loaded.sha256 != str(cfg.vocab.sha256):
        raise StaleResultError(
            f"{path} holds another vocabulary (SHA-256 {loaded.sha256[:12]}, the run's config "
            f"says {str(cfg.vocab.sha256)[:12]}); nothing was changed: choose another --workdir"
        )
    return loaded


def check_classifier_run(cfg, run_dir) -> bool:
    """Whether ``run_dir`` holds this run already (a ``StaleResultError`` if another).
    Writes nothing."""
    return store.check_run(run_dir, cfg, run_inputs(cfg))


def encode_splits(cfg, splits, vocab) -> dict:
    from lexlm.data.labelled import encode_texts

    return {s: encode_texts(d, vocab, int(cfg.text.max_len)) for s, d in splits.items()}


def train_classifier(cfg, run_dir, enc: dict, vocab):
    """Trains (or resumes) one classifier run of ``train.seeds`` copies (copy s: init seed
    ``train.seed + s``, data order ``data.seed + s``); every saved step is evaluated on
    validation for each copy (``EvalHook``, also for the step it resumes from if that
    evaluation is missing) and each copy's best step's parameters kept. Test is not scored
    here.
    ``enc``: the encoded splits; ``vocab``: the vocabulary they were encoded with."""
    from lexlm.data.labelled import ClassBatches
    from lexlm.proj.lama.evaluate import EvalHook
    from lexlm.train import train
    from lexlm.train.classifier_task import make_classifier_task
    from lexlm.train.seeds import seed_batches

    run_dir = as_path(run_dir)
    store.open_run(run_dir, cfg, run_inputs(cfg))
    vocab_for(cfg, run_dir, vocab)
    model_cfg = run_model_config(cfg)
    hosts = (jax.process_index(), jax.process_count())
    seeds = int(cfg.train.get("seeds", 1))

    def make(seed: int):  # copy s draws its data order from data.seed + s
        return ClassBatches(enc["train"], int(cfg.train.batch_size), seed, hosts)

    batches = seed_batches(make, seeds, int(cfg.data.seed))
    hook = EvalHook(run_dir, model_cfg, enc, int(cfg.eval.batch_size), seeds)
    task = make_classifier_task(model_cfg, run_dir.name)
    result = train(cfg.train, task, batches, run_dir, hooks=[hook])
    if result.stopped_by != "steps":
        raise TrainingError(
            f"{run_dir}: training stopped at step {result.final_step} ({result.stopped_by}); "
            "rerun the same command to resume"
        )
    return result


def saved_steps(train_cfg) -> list[int]:
    """The steps every run saves (and evaluates): each ``ckpt_every`` and the last."""
    total, every = int(train_cfg.steps), int(train_cfg.ckpt_every)
    return sorted({*range(every, total + 1, every), total})


# -- the lama project -------------------------------------------------------------------------
def attention_weights(model_cfg, params, enc, batch_size: int) -> tuple[list, list]:
    """Every text's attention weights [m, T] of ``enc`` under ``params`` and its token count:
    ``(weights, lengths)``."""
    from lexlm.data.labelled import eval_batches
    from lexlm.nn.classifier import TextClassifier

    apply = jax.jit(TextClassifier(model_cfg).apply)
    weights, lengths = [], []
    for batch in eval_batches(enc, batch_size):
        _, w = apply({"params": params}, batch["tokens"])
        n = np.sum(np.asarray(batch["tokens"]) != 0, axis=1)
        for wi, ni, real in zip(np.asarray(w), n, np.asarray(batch["weight"])):
            if real:
                weights.append(wi)
                lengths.append(int(ni))
    return weights, lengths


def attention_examples(model_cfg, params, texts, vocab, max_len: int) -> dict:
    """Tokens and per-head attention weights of ``texts`` (rounded to 4 decimals), the
    weights cut to each text's tokens."""
    from lexlm.data.labelled import Labelled, encode_texts, word_tokens
    from lexlm.nn.classifier import TextClassifier

    texts = list(texts)
    enc = encode_texts(Labelled(tuple(texts), np.zeros(len(texts), np.int32)), vocab, max_len)
    _, weights = jax.jit(TextClassifier(model_cfg).apply)({"params": params}, enc.tokens)
    out = {"tokens": [], "weights": []}
    for text, w in zip(texts, np.asarray(weights)):
        tokens = word_tokens(text)[:max_len] or ["<unk>"]
        out["tokens"].append(tokens)
        out["weights"].append(np.round(w[:, : len(tokens)].astype(np.float64), 4).tolist())
    return out


def model_row(run_dir, name: str, steps: Sequence[int], seeds: int) -> tuple[dict, object]:
    """One model's findings row from its run, and copy 0's parameters at its chosen step.

    Each copy picks its step on validation alone; test is then scored once per copy, at that
    step. The row: ``step`` (copy 0's), ``steps`` (each copy's), ``validation`` and ``test``
    (means over the copies of each one's accuracy at its step), ``evaluations`` (validation at
    every saved step, averaged over the copies: the figure), ``seeds`` (per copy: step,
    validation, test, its evaluations and each test text's 0/1 ``correct``), ``test_spread``
    (``intervals.seed_spread`` of the copies' test accuracies) and ``interval`` (the 95%
    bootstrap interval over test texts of the seed-averaged correctness)."""
    from lexlm.eval import intervals as iv
    from lexlm.proj.lama import evaluate as lama_eval
    from lexlm.proj.lama import findings as fnd

    per_seed = []
    for s in range(seeds):
        evals = lama_eval.step_evaluations(run_dir, steps, seed=s)
        chosen = fnd.select_on_dev(evals)
        test = lama_eval.evaluate_run(run_dir, lama_eval.TEST_SPLIT, chosen["step"], seed=s)
        per_seed.append({"step": chosen["step"], "validation": chosen["validation"],
                         "test": test["accuracy"], "evaluations": evals,
                         "correct": [int(x) for x in test["units"]["correct"]]})  # fmt: skip
    units = fnd.seed_units(per_seed)
    curve = [{"step": e["step"],
              "validation": float(np.mean([p["evaluations"][i]["validation"] for p in per_seed]))}
             for i, e in enumerate(per_seed[0]["evaluations"])]  # fmt: skip
    row = {
        "model": name,
        "step": per_seed[0]["step"],
        "steps": [p["step"] for p in per_seed],
        "validation": float(np.mean([p["validation"] for p in per_seed])),
        "test": float(np.mean([p["test"] for p in per_seed])),
        "evaluations": curve,
        "seeds": per_seed,
        "test_spread": iv.seed_spread([p["test"] for p in per_seed]),
        "interval": iv.bootstrap_interval(iv.mean("correct"), units),
    }
    params = lama_eval.selected_params(run_dir, per_seed[0]["step"], seed=0)
    return row, params


def run_classify(c, wd: store.Workdir) -> dict:
    from lexlm.data import labelled
    from lexlm.nn.pooling import self_attention_param_count
    from lexlm.proj.lama import findings as fnd

    names = checks.names(c.models, POOLINGS, "models")
    data = labelled.read_splits(c.data, classes=int(c.classes))
    train_texts = data.splits["train"].texts
    if len(train_texts) < int(c.train.batch_size):
        raise DataError(
            f"the training split has {len(train_texts)} texts, fewer than train.batch_size = "
            f"{c.train.batch_size}"
        )
    vocab = build_vocab(c, train_texts)
    configs = {name: classifier_run_config(c, name, data.classes, vocab) for name in names}
    for name, cfg in configs.items():  # every run checked before anything is written
        check_classifier_run(cfg, wd.run(f"cls_{name}"))
    enc = encode_splits(c, data.splits, vocab)
    rows, attention = [], {}
    for name, cfg in configs.items():
        run_dir = wd.run(f"cls_{name}")
        t0 = time.perf_counter()
        result = train_classifier(cfg, run_dir, enc, vocab)
        if result.history:  # trained in this call: its step time goes to the provenance
            timed = result.history[1:] or result.history
            rates = [h["steps_per_s"] for h in timed]
            wd.timings[f"cls_{name}"] = {"train_s": round(time.perf_counter() - t0, 1),
                                         "step_s": 1.0 / float(np.median(rates))}  # fmt: skip
            loads = [h["load_1min"] for h in timed if "load_1min" in h]
            if loads:  # the machine's 1-minute load average while it trained (median)
                wd.timings[f"cls_{name}"]["load"] = round(float(np.median(loads)), 2)
        # each copy's step is chosen on validation alone; only then is test scored, once, at it
        row, params = model_row(run_dir, name, saved_steps(c.train), int(c.train.get("seeds", 1)))
        model_cfg = run_model_config(cfg)
        weights, lengths = attention_weights(model_cfg, params, enc["test"],
                                             int(c.eval.batch_size))  # fmt: skip
        row.update({
            "attention_params": int(model_cfg.attention_param_count()),
            "params": int(model_cfg.param_count()),
            "entropy": fnd.attention_entropy(weights, lengths),  # copy 0, at its chosen step
        })  # fmt: skip
        rows.append(row)
        if name in ATTENTION_MODELS and int(c.examples):
            texts = data.splits["test"].texts[: int(c.examples)]
            attention[name] = attention_examples(model_cfg, params, texts, vocab,
                                                 int(c.text.max_len))  # fmt: skip
    gap, baseline = fnd.lama_gap(rows)
    comparisons = fnd.gap_comparisons(rows)
    width = 2 * int(c.model.hidden)
    costs = fnd.scoring_costs(width, int(c.model.heads), bool(c.model.key_mlp))
    return {
        "task": "classify",
        "source": str(c.data.source),
        "format": str(c.data.format) if c.data.source == "files" else None,
        "tfds_name": str(c.data.tfds_name) if c.data.source == "tfds" else None,
        "sizes": {s: len(d) for s, d in data.splits.items()},
        "classes": data.classes,
        "vocab": vocab.size,
        "read": {k: dataclasses.asdict(v) for k, v in data.stats.items()},
        "encoded": {
            s: {"truncated": e.truncated, "unknown": e.unknown, "empty": e.empty}
            for s, e in enc.items()
        },
        "majority": fnd.majority_accuracy(data.splits["train"].labels, data.splits["test"].labels),
        "rows": rows,
        "width": width,
        "heads": int(c.model.heads),
        "mhsa_params": self_attention_param_count(width),
        # LAMA's factorised scoring alone: P and Q, 2 D m
        "lama_scoring_params": 2 * width * int(c.model.heads),
        "scoring": costs,  # like for like: LAMA's scoring against self-attention's q and k
        "selection": "validation",  # test scored once per run, at the step validation chose
        "lama_gap": gap,
        "best_baseline": baseline,
        "mean_gap": fnd.control_gap(rows, "mean"),
        # paired bootstrap over test texts of the seed-averaged correctness (None: no pair)
        "comparisons": comparisons,
        "seeds": int(c.train.get("seeds", 1)),
        "attention": attention,
        "steps": int(c.train.steps),
        "batch_size": int(c.train.batch_size),
        "max_len": int(c.text.max_len),
    }


def run(c, wd: store.Workdir) -> dict:
    """The classification variants' runs, or the ``lm`` variant's three LMs; the findings."""
    if c.task == "lm":
        from lexlm.proj.lama.low_rank_lm import run_lm

        return run_lm(c, wd)
    return run_classify(c, wd)
