"""Checkpoint evaluation of ``classifier`` runs: accuracy on a split, with test scored only at
the step that validation chose.

``evaluate_run(run_dir, split, step)`` is what ``python -m lexlm.evaluate`` calls for a
``classifier`` run: it reads the run's ``config.json`` and ``vocab/``, the split its data block
names, and the parameters of ``step``. Results are saved in the run's ``evals/`` under the
evaluation's identity (``store.evaluation``).

Selection protocol: the training hook (``EvalHook``) scores every saved step on validation
only, and keeps the parameters of the best step so far (``selected/params-<step>.msgpack``,
earliest step on ties), so the chosen step stays evaluable when its checkpoint is no longer
kept. After training, ``selected_step`` picks the step from the validation records alone;
``evaluate_run(run_dir, 'test')`` then scores that one step on test, once. Test at another
step is refused (a one-line ``ConfigError``). The test record keeps each text's correctness
(``units = {'correct': [0/1 per test text]}``), the units of ``lexlm.eval.intervals``.

Seeds: a run trained with ``train.seeds`` = S > 1 holds S copies; every function takes
``seed`` (the copy, 0 .. S - 1; default 0). Each copy is validated at every saved step
(the settings name the copy: ``train_seed``), keeps its own best parameters
(``selected/seed<s>/params-<step>.msgpack``) and picks its own step; test is scored once per
copy, at that copy's step::

    evals = step_evaluations(run_dir, steps, seed=s)  # [{'step', 'validation'}]
    chosen = selected_step(run_dir, steps, seed=s)    # validation only
    test = evaluate_run(run_dir, "test", chosen, seed=s)  # {'accuracy', 'units', ...}
    params = selected_params(run_dir, chosen, seed=s)  # for attention figures and entropies
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
from lexlm.paths import TMP_MARK, as_path, write_bytes
from lexlm.proj.lama.run import VOCAB_DIR, encode_splits, run_inputs, run_model_config
from lexlm.proj.lm.run import latest_step

SELECT_SPLIT = "validation"  # what every saved step is scored on, and what chooses the step
TEST_SPLIT = "test"  # scored once, at the chosen step
SPLITS = ("train", SELECT_SPLIT, TEST_SPLIT)
SELECTED_DIR = "selected"
# What an evaluation's numbers depend on besides the run, split and step (the batch size
# only pads the last batch with weight-0 rows, so it is not here).
SETTINGS = {"metric": "accuracy"}
TEST_SETTINGS = {**SETTINGS, "units": "correct"}  # test keeps each text's 0/1 correctness


def run_seeds(run_dir) -> int:
    """S, the copies a run trained (``train.seeds``; 1 for a run trained before seeds)."""
    return int(store.load_run_config(run_dir).train.get("seeds", 1))


def settings(split: str, seed: int = 0, seeds: int = 1) -> dict:
    """The settings of an evaluation of copy ``seed`` of a run of ``seeds`` copies on
    ``split`` (the copy is named only when there are several, so a one-seed run keeps the
    records it always had)."""
    out = dict(TEST_SETTINGS if split == TEST_SPLIT else SETTINGS)
    if seeds > 1:
        out["train_seed"] = int(seed)
    return out


def check_seed(run_dir, seed: int, seeds: int) -> None:
    if not 0 <= int(seed) < seeds:
        raise ConfigError("seed", f"{run_dir} trained seeds 0..{seeds - 1}, got seed {seed}")


def correctness(predict: Callable, batches: Iterable[dict]) -> np.ndarray:
    """Each real text's 0/1 correctness under ``predict(tokens) -> class ids``, in order
    (weight-0 rows are filler and left out)."""
    out = []
    for batch in batches:
        pred = np.asarray(predict(batch["tokens"]))
        real = np.asarray(batch["weight"]) > 0
        out.append((pred == np.asarray(batch["label"]))[real].astype(np.int8))
    return np.concatenate(out) if out else np.zeros(0, np.int8)


def accuracy(predict: Callable, batches: Iterable[dict]) -> tuple[float, int]:
    """(accuracy, examples) of ``predict(tokens) -> class ids`` over weighted batches
    (weight-0 rows are filler and not counted)."""
    correct = correctness(predict, batches)
    return (float(np.mean(correct)) if correct.size else float("nan")), int(correct.size)


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


def metrics_of(model_cfg, params, enc, batch_size: int, split: str, step: int,
               units: bool = False) -> dict:  # fmt: skip
    """``{'split', 'step', 'accuracy', 'examples'}``, and with ``units`` each text's 0/1
    correctness as ``units = {'correct': [...]}``."""
    from lexlm.data.labelled import eval_batches

    predict = predict_function(model_cfg)
    correct = correctness(lambda t: predict(params, t), eval_batches(enc, batch_size))
    acc = float(np.mean(correct)) if correct.size else float("nan")
    out = {"split": split, "step": int(step), "accuracy": acc, "examples": int(correct.size)}
    if units:
        out["units"] = {"correct": correct.tolist()}
    return out


def has_evaluation(run_dir, split: str, step: int, seed: int = 0, seeds: int = 1) -> bool:
    """Whether ``run_dir/evals`` holds this run's evaluation of ``step`` on ``split`` (of
    copy ``seed`` of ``seeds``)."""
    want = ident.flatten(settings(split, seed, seeds))
    for record in store.saved_evaluations(run_dir, split):
        key = record["identity"]
        if key["step"] == int(step) and all(key.get(k) == v for k, v in want.items()):
            return True
    return False


def validation_records(
    run_dir, steps: Sequence[int] | None = None, seed: int = 0, seeds: int | None = None
) -> list[dict]:
    """``[{'step', 'validation'}]`` from the saved validation evaluations of ``run_dir`` (only
    ``steps`` if given; copy ``seed`` of a run of ``seeds``, default the run's), by step.
    Reads no test record."""
    seeds = run_seeds(run_dir) if seeds is None else seeds
    want = ident.flatten(settings(SELECT_SPLIT, seed, seeds))
    keep = None if steps is None else {int(s) for s in steps}
    out = {}
    for record in store.saved_evaluations(run_dir, SELECT_SPLIT):
        key = record["identity"]
        if all(key.get(k) == v for k, v in want.items()) and (keep is None or key["step"] in keep):
            out[int(key["step"])] = record["metrics"]["accuracy"]
    return [{"step": st, "validation": acc} for st, acc in sorted(out.items())]


def chosen_step(records: Sequence[dict]) -> int | None:
    """The step of ``records`` with the best validation accuracy (earliest on ties)."""
    from lexlm.proj.lama.findings import select_on_dev

    return select_on_dev(records)["step"] if records else None


def selected_folder(run_dir, seed: int = 0, seeds: int = 1):
    """Where the chosen parameters of copy ``seed`` are kept: ``selected/`` for a one-seed
    run, ``selected/seed<s>/`` for each copy of a seed-batched one."""
    folder = as_path(run_dir) / SELECTED_DIR
    return folder / f"seed{int(seed)}" if seeds > 1 else folder


def selected_path(run_dir, step: int, seed: int = 0, seeds: int = 1):
    return selected_folder(run_dir, seed, seeds) / f"params-{int(step)}.msgpack"


def selected_steps_on_disk(run_dir, seed: int = 0, seeds: int = 1) -> list[int]:
    folder = selected_folder(run_dir, seed, seeds)
    if not folder.is_dir():
        return []
    return sorted(int(p.name[len("params-") : -len(".msgpack")]) for p in folder.glob("params-*")
                  if TMP_MARK not in p.name and p.name.endswith(".msgpack"))  # fmt: skip


def save_selected(run_dir, step: int, params, seed: int = 0, seeds: int = 1) -> None:
    """Writes the parameters of ``step`` as copy ``seed``'s selected ones and removes its
    others."""
    from flax import serialization

    if not store.is_writer():
        return
    path = selected_path(run_dir, step, seed, seeds)
    write_bytes(path, serialization.to_bytes(jax.device_get(params)))
    for other in selected_steps_on_disk(run_dir, seed, seeds):
        if other != int(step):
            selected_path(run_dir, other, seed, seeds).unlink()


def selected_params(run_dir, step: int, seed: int = 0):
    """The parameters of copy ``seed`` at its chosen ``step``: those kept in ``selected/``,
    else its checkpoint if still kept (a run trained before parameters were kept); a
    ``CheckpointError`` if neither is there."""
    from flax import serialization

    seeds = run_seeds(run_dir)
    check_seed(run_dir, seed, seeds)
    path = selected_path(run_dir, step, seed, seeds)
    if path.exists():
        return serialization.msgpack_restore(path.read_bytes())
    from lexlm.train.checkpoint import Checkpointer

    ckpt = Checkpointer(as_path(run_dir) / "checkpoints")
    try:
        kept = int(step) in ckpt.all_steps()
    finally:
        ckpt.close()
    if not kept:
        raise CheckpointError(
            f"{run_dir} keeps neither the parameters nor the checkpoint of step {step}, the step "
            "chosen on validation (a run trained before chosen parameters were kept): train it "
            "into a fresh --workdir"
        )
    return restore(run_dir, step, seed)[2]


def selected_step(run_dir, steps: Sequence[int] | None = None, seed: int = 0) -> int:
    """The step copy ``seed`` chose on validation among ``steps`` (default: every validated
    step), from the validation records alone; a ``CheckpointError`` when no step was
    validated."""
    step = chosen_step(validation_records(run_dir, steps, seed))
    if step is None:
        raise CheckpointError(f"{run_dir} has no validation evaluation to choose a step by"
                              + (f" (seed {seed})" if seed else ""))  # fmt: skip
    return step


class EvalHook:
    """The training hook: at every saved step, each copy's accuracy on validation from the
    live parameters into ``store.evaluation``, and a copy's parameters kept when that step is
    its best so far. ``pending(step)`` tells the trainer that a step it resumes from still
    owes an evaluation or kept parameters (a kill between the save and this hook). Test is
    never scored here. ``seeds``: the copies the run trains (``train.seeds``)."""

    def __init__(self, run_dir, model_cfg, enc: dict, batch_size: int, seeds: int = 1):
        self.run_dir, self.model_cfg, self.enc = run_dir, model_cfg, enc
        self.batch_size, self.seeds = batch_size, int(seeds)

    def _best_so_far(self, step: int, seed: int) -> int | None:
        records = validation_records(self.run_dir, seed=seed, seeds=self.seeds)
        return chosen_step([r for r in records if r["step"] <= step])

    def _owes(self, step: int, seed: int) -> bool:
        if not has_evaluation(self.run_dir, SELECT_SPLIT, step, seed, self.seeds):
            return True
        kept = selected_path(self.run_dir, step, seed, self.seeds).exists()
        return self._best_so_far(step, seed) == step and not kept

    def pending(self, step: int) -> bool:
        return any(self._owes(step, s) for s in range(self.seeds))

    def __call__(self, step: int, state, saved: bool) -> None:
        from lexlm.train.seeds import seed_params

        if not saved:
            return
        params: list = []  # fetched from the devices once

        def fetch(seed: int):
            if not params:
                params.append(jax.device_get(state.params))
            return seed_params(params[0], seed if self.seeds > 1 else None, self.seeds)

        for s in range(self.seeds):

            def compute(s=s):
                return metrics_of(self.model_cfg, fetch(s), self.enc[SELECT_SPLIT],
                                  self.batch_size, SELECT_SPLIT, step)  # fmt: skip

            store.evaluation(self.run_dir, SELECT_SPLIT, step,
                             settings(SELECT_SPLIT, s, self.seeds), compute)  # fmt: skip
            path = selected_path(self.run_dir, step, s, self.seeds)
            if self._best_so_far(step, s) == step and not path.exists():
                save_selected(self.run_dir, step, fetch(s), s, self.seeds)


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


def restore(run_dir, step: int | None, seed: int = 0):
    """(config, model config, params, step) of copy ``seed`` of a classifier run at step
    ``step``: its kept selected parameters if it is the copy's chosen step, else its
    checkpoint."""
    from lexlm.eval import restore_params
    from lexlm.train.classifier_task import make_classifier_task

    cfg = store.load_run_config(run_dir)
    seeds = int(cfg.train.get("seeds", 1))
    check_seed(run_dir, seed, seeds)
    model_cfg = run_model_config(cfg)
    if step is not None and selected_path(run_dir, step, seed, seeds).exists():
        return cfg, model_cfg, selected_params(run_dir, step, seed), int(step)
    task = make_classifier_task(model_cfg)
    index = seed if seeds > 1 else None
    params, restored, _ = restore_params(task, cfg.train, run_dir, step, seed=index)
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


def evaluate_run(run_dir, split: str | None = None, step: int | None = None, seed: int = 0) -> dict:
    """Accuracy of copy ``seed`` (default 0) at ``step`` on ``split`` (default: the run's
    ``eval.split``, validation): ``{'split', 'step', 'accuracy', 'examples'}``, and on test
    each text's correctness (``units``). ``step`` defaults to the newest checkpoint, and for
    test to the step the copy chose on validation, the only step test is scored at."""
    run_dir = as_path(run_dir)
    cfg = store.load_run_config(run_dir)
    seeds = int(cfg.train.get("seeds", 1))
    check_seed(run_dir, seed, seeds)
    split = split or str(cfg.eval.split)
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    if split == TEST_SPLIT:
        chosen = selected_step(run_dir, seed=seed)
        if step is not None and int(step) != chosen:
            raise ConfigError("step", f"{run_dir}: test is scored only at the step chosen on "
                                      f"validation (step {chosen}), got step {step}")  # fmt: skip
        step = chosen
    step = step if step is not None else latest_step(run_dir)
    if step is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to evaluate")

    def compute():
        _, model_cfg, params, restored = restore(run_dir, step, seed)
        enc = encoded_split(cfg, run_dir, split)
        return metrics_of(model_cfg, params, enc, int(cfg.eval.batch_size), split, restored,
                          units=split == TEST_SPLIT)  # fmt: skip

    return store.evaluation(run_dir, split, step, settings(split, seed, seeds), compute)


def step_evaluations(run_dir, steps: Sequence[int], seed: int = 0) -> list[dict]:
    """``[{'step', 'validation'}]`` accuracies of copy ``seed`` at ``steps``, from the saved
    evaluations (a missing one is computed from its checkpoint, if that is still kept). Test
    is not read."""
    return [{"step": int(step),
             SELECT_SPLIT: evaluate_run(run_dir, SELECT_SPLIT, step, seed)["accuracy"]}
            for step in steps]  # fmt: skip
