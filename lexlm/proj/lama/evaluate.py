"""Checkpoint evaluation of ``classifier`` runs: accuracy on a split.

``evaluate_run(run_dir, split, step)`` is what ``python -m lexlm.evaluate`` calls for a
``classifier`` run: it reads the run's ``config.json`` and ``vocab/``, the split its data block
names, and the checkpoint. Results are saved in the run's ``evals/`` under the evaluation's
identity (``store.evaluation``); the training hook (``EvalHook``) writes the same records at
every saved step from the live parameters, so the selection of a model's step reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lexlm.errors import CheckpointError, ConfigError, DataError
from lexlm.experiment import identity as ident
from lexlm.experiment import store
from lexlm.paths import as_path
from lexlm.proj.lama.run import VOCAB_DIR, encode_splits, run_inputs, run_model_config
from lexlm.proj.lm.run import latest_step

EVAL_SPLITS = ("validation", "test")  # what every saved step is scored on
SPLITS = ("train", *EVAL_SPLITS)
# What an evaluation's numbers depend on besides the run, split and step (the batch size
# only pads the last batch with weight-0 rows, so it is not here).
SETTINGS = {"metric": "accuracy"}


def accuracy(predict: Callable, batches: Iterable[dict]) -> tuple[float, int]:
    """(accuracy, examples) of ``predict(tokens) -> class ids`` over weighted batches
    (weight-0 rows are filler and not counted)."""
    correct = total = 0.0
    for batch in batches:
        pred = np.asarray(predict(batch["tokens"]))
        w = np.asarray(batch["weight"])
        correct += float(np.sum((pred == np.asarray(batch["label"])) * w))
        total += float(np.sum(w))
    return (correct / total if total else float("nan")), int(total)


@functools.lru_cache(maxsize=16)
def predict_function(model_cfg):
    """A jitted ``(params, tokens) -> class ids`` per model config (one compile each)."""
    from lexlm.nn.classifier import TextClassifier

    model = TextClassifier(model_cfg)

    @jax.jit
    def predict(params, tokens):
        logits, _ = model.apply({"params": params}, tokens)
        return jnp.argmax(logits, axis=-1)

    return predict


def metrics_of(model_cfg, params, enc, batch_size: int, split: str, step: int) -> dict:
    from lexlm.data.labelled import eval_batches

    predict = predict_function(model_cfg)
    acc, n = accuracy(lambda t: predict(params, t), eval_batches(enc, batch_size))
    return {"split": split, "step": int(step), "accuracy": acc, "examples": n}


def has_evaluation(run_dir, split: str, step: int) -> bool:
    """Whether ``run_dir/evals`` holds this run's evaluation of ``step`` on ``split``."""
    want = ident.flatten(SETTINGS)
    for record in store.saved_evaluations(run_dir, split):
        key = record["identity"]
        if key["step"] == int(step) and all(key.get(k) == v for k, v in want.items()):
            return True
    return False


class EvalHook:
    """The training hook: at every saved step, accuracy on validation and test from the live
    parameters into ``store.evaluation``. ``pending(step)`` tells the trainer that a step it
    resumes from still owes its evaluation (a kill between the save and this hook)."""

    def __init__(self, run_dir, model_cfg, enc: dict, batch_size: int):
        self.run_dir, self.model_cfg, self.enc, self.batch_size = (
            run_dir,
            model_cfg,
            enc,
            batch_size,
        )

    def pending(self, step: int) -> bool:
        return not all(has_evaluation(self.run_dir, s, step) for s in EVAL_SPLITS)

    def __call__(self, step: int, state, saved: bool) -> None:
        if not saved:
            return
        params: list = []  # fetched from the devices once, only if an evaluation is computed

        def compute(split):
            if not params:
                params.append(jax.device_get(state.params))
            return metrics_of(self.model_cfg, params[0], self.enc[split], self.batch_size,
                              split, step)  # fmt: skip

        for split in EVAL_SPLITS:
            store.evaluation(self.run_dir, split, step, SETTINGS, lambda s=split: compute(s))


def check_inputs(cfg, run_dir) -> None:
    """The run's data files are still the ones it was trained on (a one-line DataError)."""
    run_dir = as_path(run_dir)
    saved = {k: v for k, v in (store.saved_identity(run_dir) or {}).items()
             if k.startswith("inputs.")}  # fmt: skip
    current = {f"inputs.{k}": v for k, v in run_inputs(cfg).items()}
    if saved != current:
        raise DataError(
            f"{run_dir}: its data files changed since it was trained "
            f"({ident.differences(saved, current)}); evaluate it on the files it was trained on"
        )


def restore(run_dir, step: int | None):
    """(config, model config, params, step) of a classifier run's checkpoint ``step``."""
    from lexlm.eval import restore_params
    from lexlm.train.classifier_task import make_classifier_task

    cfg = store.load_run_config(run_dir)
    model_cfg = run_model_config(cfg)
    task = make_classifier_task(model_cfg)
    params, restored, _ = restore_params(task, cfg.train, run_dir, step)
    return cfg, model_cfg, jax.device_get(params), restored


def encoded_split(cfg, run_dir, split: str):
    """``split`` of the run's data, encoded with the run's own vocabulary."""
    from lexlm.data import labelled

    check_inputs(cfg, run_dir)
    vocab = labelled.ClassVocab.load(as_path(run_dir) / VOCAB_DIR)
    if vocab.sha256 != str(cfg.vocab.sha256):
        raise CheckpointError(f"{run_dir}/{VOCAB_DIR} is not the vocabulary the run trained with")
    data = labelled.read_splits(cfg.data, classes=int(cfg.classes))
    return encode_splits(cfg, {split: data.splits[split]}, vocab)[split]


def evaluate_run(run_dir, split: str | None = None, step: int | None = None) -> dict:
    """Accuracy of checkpoint ``step`` (default: the newest) on ``split`` (default: the run's
    ``eval.split``, validation): ``{'split', 'step', 'accuracy', 'examples'}``."""
    run_dir = as_path(run_dir)
    cfg = store.load_run_config(run_dir)
    split = split or str(cfg.eval.split)
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    step = step if step is not None else latest_step(run_dir)
    if step is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to evaluate")

    def compute():
        _, model_cfg, params, restored = restore(run_dir, step)
        enc = encoded_split(cfg, run_dir, split)
        return metrics_of(model_cfg, params, enc, int(cfg.eval.batch_size), split, restored)

    return store.evaluation(run_dir, split, step, SETTINGS, compute)


def step_evaluations(run_dir, steps: Sequence[int]) -> list[dict]:
    """``[{'step', 'validation', 'test'}]`` accuracies of ``steps``, from the saved
    evaluations (a missing one is computed from its checkpoint, if that is still kept)."""
    out = []
    for step in steps:
        record = {"step": int(step)}
        for split in EVAL_SPLITS:
            record[split] = evaluate_run(run_dir, split, step)["accuracy"]
        out.append(record)
    return out
