"""The models of the word-pooled grid as run configs, tasks and FLOP counts, and the training
of the ``word_pooled`` and ``word`` run kinds.

Models and their run kinds (``lexlm.experiment.registry.RUN_KINDS``):

* ``word_pooled`` (run kind ``word_pooled``): ``lexlm.nn.word_pooled`` over word pieces of
  ``data.unit`` (characters or bytes);
* ``word`` (run kind ``word``): a closed-vocabulary word-level Transformer LM whose unknown
  words are spelled by ``SpellingModel`` (``lexlm.data.word_windows``);
* ``byte``, ``char``, ``subword`` and the byte-patching peers ``byte_window`` (the byte LM
  with sliding-window attention), ``megabyte4`` / ``megabyte8`` (``lexlm.nn.megabyte``) and
  ``spacebyte`` (``lexlm.nn.spacebyte``): ``lm`` runs (``lexlm.proj.lm.run``, whose ``arch``
  picks the module), sized by the experiment config's ``baseline`` and ``patching`` fields.

``run_config(c, model, steps)`` is a model's whole run config: its data, sizes, training
(steps included) and the evaluation settings its run directory needs to be evaluated alone
(``eval.split``, ``eval.batch_size``, ``eval.targets``, ``eval.context_chars``,
``eval.max_units``, and for token LMs ``eval.gen_units``).
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np

from lexlm.errors import ConfigError, DataError, TrainingError

TOKEN_KINDS = ("byte", "char", "subword")
# byte-level runs of another architecture: name -> (lm arch, patch size or None)
PATCH_KINDS = {
    "byte_window": ("transformer", None),
    "megabyte4": ("megabyte", 4),
    "megabyte8": ("megabyte", 8),
    "spacebyte": ("spacebyte", None),
}
LM_KINDS = (*TOKEN_KINDS, *PATCH_KINDS)  # trained and evaluated as `lm` runs
KINDS = ("word_pooled", "word", *LM_KINDS)


def unit_of(model: str, c) -> str:
    """The units a model reads: the word-pooled model's ``data.unit``, the word LM's whole
    words (tokenised by ``WordVocab``; its data block keeps ``char``), bytes for the
    byte-patching peers."""
    if model == "word_pooled":
        return str(c.data.unit)
    if model in PATCH_KINDS:
        return "byte"
    return "char" if model == "word" else model


def _eval_settings(c, model: str) -> dict:
    out = dict(
        split=str(c.eval.split),
        batch_size=int(c.eval.batch_size),
        targets=int(c.eval.targets),
        context_chars=int(c.eval.context_chars),
        max_units=int(c.max_units),
    )
    if model in LM_KINDS:
        out.update(
            max_windows=0, draws=1, seed=0, gen_units=int(c.eval.gen_units[unit_of(model, c)])
        )
    return out


def _train_section(c, steps: int, batch_size: int) -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict(c.train.to_dict())
    t.steps = int(steps)
    t.batch_size = int(batch_size)
    if float(c.warmup_fraction) > 0:
        t.warmup_steps = max(1, round(float(c.warmup_fraction) * int(steps)))
    return t


def run_config(c, model: str, steps: int) -> ml_collections.ConfigDict:
    """The run config of ``model`` of experiment config ``c``, trained for ``steps`` steps."""
    if model not in KINDS:
        raise ConfigError("models", f"unknown model {model!r}; allowed: {', '.join(KINDS)}")
    data = ml_collections.ConfigDict(c.data.to_dict())
    if model == "word_pooled":
        r = ml_collections.ConfigDict()
        r.project = str(c.project)
        r.kind = "word_pooled"
        r.name = model
        r.data = data
        r.max_units = int(c.max_units)
        r.words = int(c.words)
        r.model = ml_collections.ConfigDict(c.model.to_dict())
        r.train = _train_section(c, steps, int(c.train.batch_size))
        r.eval = ml_collections.ConfigDict(_eval_settings(c, model))
        return r
    from lexlm.proj.lm.config import base_config

    r = base_config()
    r.project = str(c.project)
    r.name = model
    unit = unit_of(model, c)
    data.unit = unit
    data.vocab_size = int(c.baseline.subword_vocab) if model == "subword" else 0
    r.data = data
    r.model.update(c.baseline.model.to_dict())
    if model == "word":
        r.kind = "word"
        r.seq_len = int(c.baseline.word_seq_len)
        r.vocab = ml_collections.ConfigDict(
            dict(min_count=int(c.baseline.word_min_count), max_size=int(c.baseline.word_max_vocab))
        )
    else:
        r.seq_len = int(c.baseline.seq_len[unit])
    if model in PATCH_KINDS:
        arch, patch = PATCH_KINDS[model]
        r.arch = arch
        if model == "byte_window":
            r.model.window = int(c.patching.window)
        else:
            sizes = c.patching[arch].to_dict()
            if patch is not None:
                sizes["patch"] = patch
            r.model = ml_collections.ConfigDict(sizes)
    r.train = _train_section(c, steps, int(c.baseline.batch_size))
    r.eval = ml_collections.ConfigDict(_eval_settings(c, model))
    return r


def word_pooled_config(cfg, unit_vocab: int):
    """The ``WordPooledConfig`` of a ``word_pooled`` run (its bad sizes: a ``ConfigError``)."""
    from lexlm.nn.word_pooled import WordPooledConfig

    try:
        return WordPooledConfig(
            unit_vocab=int(unit_vocab),
            max_units=int(cfg.max_units),
            max_words=int(cfg.words),
            **cfg.model.to_dict(),
        )
    except (TypeError, ValueError) as e:
        field, _, message = str(e).partition(": ")
        if field.startswith("model.") and message:
            raise ConfigError(field, message) from e
        raise ConfigError("model", str(e)) from e


def model_config(cfg, vocab_size: int):
    """The module config of a run: ``WordPooledConfig``, or ``lexlm.proj.lm.run.lm_config``
    (the word LM is a Transformer LM over word ids)."""
    if str(cfg.kind) == "word_pooled":
        return word_pooled_config(cfg, vocab_size)
    from lexlm.proj.lm.run import lm_config

    return lm_config(cfg, vocab_size)


def validate_run(cfg) -> None:
    """Every check of one run config that needs no data (placeholder vocabulary sizes)."""
    from lexlm.proj.lm.run import lm_config
    from lexlm.proj.lm.run import validate_run as validate_lm_run
    from lexlm.train import validate_train_config

    if str(cfg.kind) == "lm":
        validate_lm_run(cfg)
        return
    validate_train_config(cfg.train)
    if str(cfg.kind) == "word_pooled":
        word_pooled_config(cfg, 259)
    else:
        lm_config(cfg, 259)


# -- tasks and FLOP counts -----------------------------------------------------------------
def make_task(cfg, vocab_size: int, name: str = "task"):
    if str(cfg.kind) == "word_pooled":
        from lexlm.train.word_pooled_task import make_word_pooled_task

        return make_word_pooled_task(word_pooled_config(cfg, vocab_size), name=name)
    from lexlm.train import make_lm_task

    return make_lm_task(model_config(cfg, vocab_size), int(cfg.seq_len), name=name)


def batch_spec(cfg) -> dict:
    """The shapes of one global training batch (``lexlm.data.lm_train_dataset``'s for token
    LMs and the word LM, ``WordWindowBatches``' for the word-pooled LM)."""
    b = int(cfg.train.batch_size)
    i32, f32 = np.int32, np.float32
    if str(cfg.kind) == "word_pooled":
        w, length = int(cfg.words), int(cfg.max_units)
        return {
            "units": jax.ShapeDtypeStruct((b, w + 1, length), i32),
            "word_mask": jax.ShapeDtypeStruct((b, w), f32),
        }
    t = int(cfg.seq_len)
    return {
        "inputs": jax.ShapeDtypeStruct((b, t), i32),
        "targets": jax.ShapeDtypeStruct((b, t), i32),
        "mask": jax.ShapeDtypeStruct((b, t), f32),
    }


def abstract_params(task):
    """The parameter shapes of a task (no values computed)."""
    params = jax.eval_shape(task.init, jax.random.key(0))
    return jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )


@dataclasses.dataclass(frozen=True)
class Counts:
    """What the grid counts of one model: training FLOPs of a step (forward + backward),
    inference FLOPs of a batch (forward), UTF-8 bytes a step trains on, parameters."""

    step_flops: float
    forward_flops: float
    bytes_per_step: float
    params: int


def count(cfg, units) -> Counts:
    """``Counts`` of a run config with its tokenizer or vocabulary ``units``: the counted FLOPs
    of the lowered programs (``lexlm.eval.flops``: loop bodies times their trip counts; nothing
    compiled) and the training split's mean bytes per unit."""
    from lexlm.eval.flops import counted_flops, train_step_flops

    task = make_task(cfg, units.vocab_size)
    params, spec = abstract_params(task), batch_spec(cfg)
    key = jax.random.key(0)
    step = train_step_flops(task.loss, params, spec, key)
    forward = counted_flops(lambda p, b: task.loss(p, b, key)[0], params, spec)
    units_per_step = int(cfg.train.batch_size) * (
        int(cfg.words) if str(cfg.kind) == "word_pooled" else int(cfg.seq_len)
    )
    n_params = int(sum(x.size for x in jax.tree.leaves(params)))
    return Counts(step, forward, units_per_step * bytes_per_unit(cfg, units), n_params)


def bytes_per_unit(cfg, units) -> float:
    """Mean UTF-8 bytes per predicted unit on the training split (eos counts as its text)."""
    from lexlm.proj.word_pooled import data

    kind = str(cfg.kind)
    if kind == "word_pooled":
        return float(data.word_stream(cfg, units, "train").n_bytes.mean())
    if kind == "word":
        words, _, _ = data.split_words(cfg, "train")
        return sum(len(w.encode("utf-8")) for w in words) / max(len(words), 1)
    ids = np.concatenate([units.encode(d) for d in data.split_docs(cfg, "train")])
    return float(units.token_bytes[ids].mean())


# -- training of the word_pooled and word kinds ----------------------------------------------
class TokenWindows:
    """Word-id windows as ``{'inputs', 'targets', 'mask'}`` LM batches (resumable)."""

    def __init__(self, windows):
        self.windows = windows

    def __iter__(self):
        return self

    def __next__(self):
        b = next(self.windows)
        ids = b["ids"]
        return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "mask": b["word_mask"]}

    def get_state(self):
        return self.windows.get_state()

    def set_state(self, state):
        self.windows.set_state(state)


def training_batches(cfg, units):
    """This host's resumable training batches of a ``word_pooled`` or ``word`` run."""
    from lexlm.data.word_windows import WordWindowBatches
    from lexlm.proj.word_pooled import data
    from lexlm.train.seeds import seed_batches

    host_batch = int(cfg.train.batch_size) // jax.process_count()

    def make(seed: int):
        if str(cfg.kind) == "word_pooled":
            stream = data.word_stream(cfg, units, "train")
            return WordWindowBatches(
                stream.units, int(cfg.words), host_batch, seed, jax.process_index()
            )
        words, is_eos, _ = data.split_words(cfg, "train")
        ids = units.encode(words, is_eos)
        windows = WordWindowBatches(
            ids, int(cfg.seq_len), host_batch, seed, jax.process_index(), key="ids"
        )
        return TokenWindows(windows)

    try:  # train.seeds = S > 1: copy s reads the data order of data.seed + s
        return seed_batches(make, int(cfg.train.get("seeds", 1)), int(cfg.data.seed))
    except ValueError as e:  # a training split shorter than one window
        raise DataError(f"{cfg.name}: {e}") from None


def check_data(cfg, units) -> None:
    """Data-dependent checks before anything is written: one window must fit the split."""
    if str(cfg.kind) in ("word_pooled", "word"):
        training_batches(cfg, units)


def train_run(cfg, run_dir) -> bool:
    """Opens one run of the grid (``store.open_run``: identity and ``config.json``), copies
    its tokenizer or vocabulary in from the scratch build, and trains (or resumes) it to
    ``train.steps`` unless its final checkpoint is there. ``lm`` runs train through
    ``lexlm.proj.lm.run``. Returns whether it trained."""
    from lexlm.data.config import input_fingerprints
    from lexlm.experiment import store
    from lexlm.proj.lm.run import latest_step, open_lm_run, train_to_end
    from lexlm.proj.word_pooled import artifacts

    if str(cfg.kind) == "lm":
        open_lm_run(cfg, run_dir)
    else:
        store.open_run(run_dir, cfg, input_fingerprints(cfg.data))
    folder = artifacts.persist(cfg, run_dir)
    if latest_step(run_dir) == int(cfg.train.steps):
        from lexlm.train.loop import STEP_COUNTS

        STEP_COUNTS["resumed"] += int(cfg.train.steps)  # trained by an earlier invocation
        return False
    if str(cfg.kind) == "lm":
        train_to_end(cfg, run_dir)
        return True
    from lexlm.train import train

    units = artifacts.load(cfg, folder)
    task = make_task(cfg, units.vocab_size, name=str(cfg.name))
    result = train(cfg.train, task, training_batches(cfg, units), run_dir)
    if result.stopped_by != "steps":
        raise TrainingError(
            f"{run_dir}: training stopped at step {result.final_step} ({result.stopped_by}); "
            "rerun the same command to resume"
        )
    return True
