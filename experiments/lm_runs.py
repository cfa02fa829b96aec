"""Glue from data to model to loss for language-model runs, and their checkpoint evaluation.

A *run* is one workdir: ``config.json`` (the resolved config), ``tokenizer/`` (built on the
training split), ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/``,
``eval_<split>_<step>.json`` per evaluated step and ``eval_<split>.json`` (the newest step's).
Every LM experiment (the baseline, lexinvariant, semi-lexinvariant) trains through ``train_run``
and is evaluated from its checkpoint through ``evaluate_run``.
"""

from __future__ import annotations

import functools
import json
import logging
import os

import jax
import ml_collections
import numpy as np
from etils import epath

from lexlm.errors import ConfigError
from lexlm.eval import accumulate_nll, params_mesh, restore_params
from lexlm.nn import LMConfig
from lexlm.paths import as_path
from lexlm.train import make_lm_task, train, validate_train_config
from lexlm.train.lm_task import lm_model, lm_nll
from lexlm.train.loop import maybe_initialize_distributed

log = logging.getLogger(__name__)


ARCHS = ("transformer", "megabyte", "spacebyte")


def lm_config(cfg, vocab_size: int):
    """The model config of a run: ``cfg.arch`` (default 'transformer') picks ``LMConfig``,
    ``MegaByteConfig`` or ``SpaceByteConfig``, filled from ``cfg.model``."""
    from lexlm.nn.megabyte import MegaByteConfig
    from lexlm.nn.spacebyte import SpaceByteConfig

    arch = str(cfg.get("arch", "transformer"))
    if arch not in ARCHS:
        raise ConfigError("arch", f"unknown architecture {arch!r}; use one of {ARCHS}")
    kind = {"transformer": LMConfig, "megabyte": MegaByteConfig, "spacebyte": SpaceByteConfig}
    try:
        return kind[arch](vocab_size=vocab_size, max_len=int(cfg.seq_len), **cfg.model.to_dict())
    except (TypeError, ValueError) as e:
        field, _, message = str(e).partition(": ")
        if field.startswith("model.") and message:  # LMConfig already names the field
            raise ConfigError(field, message) from e
        raise ConfigError("model", str(e)) from e


def validate(cfg) -> None:
    """Every field that can be checked before data is read or anything compiled (after
    ``jax.distributed`` is initialised, when ``train.distributed``: devices are counted here)."""
    from lexlm.data import validate_data_config

    maybe_initialize_distributed(cfg.train)
    validate_data_config(cfg.data)
    validate_train_config(cfg.train)
    if int(cfg.seq_len) <= 0:
        raise ConfigError("seq_len", f"must be positive, got {cfg.seq_len}")
    lm_config(cfg, vocab_size=max(2, int(cfg.data.get("vocab_size", 0)) or 2))
    if int(cfg.eval.batch_size) % jax.device_count():
        raise ConfigError(
            "eval.batch_size", f"{cfg.eval.batch_size} is not divisible by {jax.device_count()}"
        )


def save_config(cfg, workdir: epath.Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2))


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    path = as_path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError("workdir", f"{workdir} has no config.json (not a lexlm run directory)")
    cfg = ml_collections.ConfigDict(json.loads(path.read_text()))
    cfg.train.mesh = tuple(cfg.train.mesh)
    return cfg


def tokenizer_for(cfg, workdir: epath.Path):
    """The run's tokenizer: loaded if the run has one, else built from the training split."""
    from lexlm.data import open_split, read_documents
    from lexlm.text import build_tokenizer, load_tokenizer

    tok_dir = workdir / "tokenizer"
    if tok_dir.exists():
        return load_tokenizer(tok_dir)
    train_docs = read_documents(open_split(cfg.data, "train"))
    tok = build_tokenizer(cfg.data.unit, train_docs, int(cfg.data.vocab_size) or None, tok_dir)
    tok.save(tok_dir)
    return tok


def train_run(
    cfg, workdir: str | os.PathLike, hooks=(), *, vocab_size: int | None = None, wrap=None
):
    """Trains (or resumes) one LM run. Returns the TrainResult.

    ``vocab_size`` overrides the tokenizer's (runs that add ids, like the symbol tasks);
    ``wrap(batches) -> batches`` mixes something into the training batches (it must keep
    ``get_state``/``set_state`` for exact resumption)."""
    from lexlm.data import lm_train_dataset, open_split

    workdir = as_path(workdir)
    validate(cfg)
    save_config(cfg, workdir)
    if cfg.data.source == "python_stdlib":  # record the interpreter and files trained on
        from lexlm.data import python_stdlib_manifest

        manifest = json.dumps(python_stdlib_manifest(cfg.data), indent=1)
        (workdir / "corpus_manifest.json").write_text(manifest)
    tok = tokenizer_for(cfg, workdir)
    model_cfg = lm_config(cfg, vocab_size or tok.vocab_size)
    per_host_batch = int(cfg.train.batch_size) // jax.process_count()
    dataset = lm_train_dataset(
        open_split(cfg.data, "train"),
        tok,
        seq_len=int(cfg.seq_len),
        batch_size=per_host_batch,
        seed=int(cfg.data.seed),
        worker_count=int(cfg.data.get("worker_count", 0)),
        read_threads=int(cfg.data.get("read_threads", 0)),
    )
    batches = iter(dataset) if wrap is None else wrap(iter(dataset))
    task = make_lm_task(model_cfg, int(cfg.seq_len), name=workdir.name)
    return train(cfg.train, task, batches, workdir, hooks=hooks)


def load_run(workdir: str | os.PathLike):
    """(config, tokenizer) of a run directory, without touching its checkpoints."""
    from lexlm.text import load_tokenizer

    workdir = as_path(workdir)
    return load_config(workdir), load_tokenizer(workdir / "tokenizer")


def restore_lm(workdir: str | os.PathLike, step: int | None = None, vocab_size: int | None = None):
    """(model, params, tokenizer, cfg, step) of a finished or interrupted run.

    ``vocab_size`` overrides the tokenizer's, for runs trained with extra ids (``train_run``)."""
    workdir = as_path(workdir)
    cfg, tok = load_run(workdir)
    maybe_initialize_distributed(cfg.train)
    model_cfg = lm_config(cfg, vocab_size or tok.vocab_size)
    task = make_lm_task(model_cfg, int(cfg.seq_len))
    params, restored_step, _ = restore_params(task, cfg.train, workdir, step)
    return lm_model(model_cfg), params, tok, cfg, restored_step


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
    from lexlm.data import lm_eval_windows, open_split

    return lm_eval_windows(
        open_split(cfg.data, split), tok, int(cfg.seq_len), max_windows=max_windows or None
    )


def eval_path(workdir, split: str, step: int | None = None) -> epath.Path:
    """``eval_<split>_<step>.json`` (one per evaluated step, never overwritten), or with
    ``step=None`` ``eval_<split>.json``: the evaluation of the newest step evaluated so far."""
    name = f"eval_{split}.json" if step is None else f"eval_{split}_{step}.json"
    return as_path(workdir) / name


def evaluated_steps(workdir, split: str) -> list[int]:
    """Steps with an ``eval_<split>_<step>.json`` in the run directory, ascending."""
    prefix = f"eval_{split}_"
    steps = []
    for p in as_path(workdir).glob(f"{prefix}*.json"):
        tail = p.name[len(prefix) : -len(".json")]
        if tail.isdigit():
            steps.append(int(tail))
    return sorted(steps)


def latest_eval(workdir, split: str, step: int | None = None) -> dict | None:
    """The run's evaluation of ``step`` (default: its newest evaluated step) on ``split``."""
    steps = evaluated_steps(workdir, split)
    if not steps or (step is not None and step not in steps):
        return None
    return json.loads(
        eval_path(workdir, split, step if step is not None else steps[-1]).read_text()
    )


def evaluate_run(
    workdir: str | os.PathLike,
    split: str | None = None,
    step: int | None = None,
    draws: int | None = None,
    windows=None,
) -> dict:
    """Restores a checkpoint (default: the newest readable) and evaluates it on ``split``.

    Writes ``eval_<split>_<step>.json`` (loss, bits/byte and /char, perplexity, loss by
    position), never overwriting another step's. When the step is the newest evaluated one it
    also refreshes ``eval_<split>.json`` and ``loss_by_position_<split>.png``, so evaluating an
    older step (``--step``) never replaces the latest results. Returns the metrics.

    Data parallel: the batch is split over the mesh the parameters were restored onto (all
    devices of all processes); only process 0 writes files.
    """
    workdir = as_path(workdir)
    model, params, tok, cfg, restored = restore_lm(workdir, step)
    split = split or cfg.eval.split
    draws = draws or (int(cfg.eval.draws) if model.cfg.embedding != "learned" else 1)
    if windows is None:
        windows = eval_windows(cfg, tok, split, int(cfg.eval.max_windows))
    sums = accumulate_nll(
        nll_function(model, params),
        windows,
        int(cfg.eval.batch_size),
        jax.random.key(int(cfg.eval.seed)),
        draws=draws,
    )
    metrics = {"split": split, "step": restored, "draws": draws, "unit": cfg.data.unit}
    metrics.update(sums.summary())
    if jax.process_index() == 0:
        text = json.dumps(metrics, indent=1)
        eval_path(workdir, split, restored).write_text(text)
        if restored >= max(evaluated_steps(workdir, split)):
            eval_path(workdir, split).write_text(text)
            plot_loss_by_position(
                {workdir.name: metrics}, workdir / f"loss_by_position_{split}.png"
            )
    return metrics


def plot_loss_by_position(
    curves: dict[str, dict], path: os.PathLike, smooth_width: int = 5
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lexlm.eval import smooth

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, m in curves.items():
        y = smooth(np.asarray(m["loss_by_position"]), smooth_width)
        ax.plot(np.arange(len(y)) + smooth_width // 2 + 1, y, label=name)
    ax.set_xlabel("position in context")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with as_path(path).open("wb") as f:
        fig.savefig(f, dpi=120, format="png")
    plt.close(fig)
