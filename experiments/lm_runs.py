"""Glue from data to model to loss for language-model runs, and their checkpoint evaluation.

A *run* is one workdir: ``config.json`` (the resolved config), ``tokenizer/`` (built on the
training split), ``checkpoints/``, ``metrics.jsonl``, ``tensorboard/`` and ``eval_<split>.json``.
Every LM experiment (the baseline, lexinvariant, semi-lexinvariant) trains through ``train_run``
and is evaluated from its checkpoint through ``evaluate_run``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax
import ml_collections
import numpy as np

from lexlm.errors import ConfigError
from lexlm.eval import accumulate_nll, restore_params
from lexlm.nn import LMConfig, TransformerLM
from lexlm.train import make_lm_task, train, validate_train_config
from lexlm.train.lm_task import lm_nll

log = logging.getLogger(__name__)


def lm_config(cfg, vocab_size: int) -> LMConfig:
    try:
        return LMConfig(vocab_size=vocab_size, max_len=int(cfg.seq_len), **cfg.model.to_dict())
    except (TypeError, ValueError) as e:
        field, _, message = str(e).partition(": ")
        if field.startswith("model.") and message:  # LMConfig already names the field
            raise ConfigError(field, message) from e
        raise ConfigError("model", str(e)) from e


def validate(cfg) -> None:
    """Every field that can be checked before data is read or anything compiled."""
    from lexlm.data import validate_data_config

    validate_data_config(cfg.data)
    validate_train_config(cfg.train)
    if int(cfg.seq_len) <= 0:
        raise ConfigError("seq_len", f"must be positive, got {cfg.seq_len}")
    lm_config(cfg, vocab_size=max(2, int(cfg.data.get("vocab_size", 0)) or 2))
    if int(cfg.eval.batch_size) % jax.device_count():
        raise ConfigError(
            "eval.batch_size", f"{cfg.eval.batch_size} is not divisible by {jax.device_count()}"
        )


def save_config(cfg, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2))


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise ConfigError("workdir", f"{workdir} has no config.json (not a lexlm run directory)")
    cfg = ml_collections.ConfigDict(json.loads(path.read_text()))
    cfg.train.mesh = tuple(cfg.train.mesh)
    return cfg


def tokenizer_for(cfg, workdir: Path):
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


def train_run(cfg, workdir: str | Path, hooks=(), *, vocab_size: int | None = None, wrap=None):
    """Trains (or resumes) one LM run. Returns the TrainResult.

    ``vocab_size`` overrides the tokenizer's (runs that add ids, like the symbol tasks);
    ``wrap(batches) -> batches`` mixes something into the training batches (it must keep
    ``get_state``/``set_state`` for exact resumption)."""
    from lexlm.data import lm_train_dataset, open_split

    workdir = Path(workdir)
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
    )
    batches = iter(dataset) if wrap is None else wrap(iter(dataset))
    task = make_lm_task(model_cfg, int(cfg.seq_len), name=workdir.name)
    return train(cfg.train, task, batches, workdir, hooks=hooks)


def load_run(workdir: str | Path):
    """(config, tokenizer) of a run directory, without touching its checkpoints."""
    from lexlm.text import load_tokenizer

    workdir = Path(workdir)
    return load_config(workdir), load_tokenizer(workdir / "tokenizer")


def restore_lm(workdir: str | Path, step: int | None = None, vocab_size: int | None = None):
    """(model, params, tokenizer, cfg, step) of a finished or interrupted run.

    ``vocab_size`` overrides the tokenizer's, for runs trained with extra ids (``train_run``)."""
    workdir = Path(workdir)
    cfg, tok = load_run(workdir)
    model_cfg = lm_config(cfg, vocab_size or tok.vocab_size)
    task = make_lm_task(model_cfg, int(cfg.seq_len))
    params, restored_step, _ = restore_params(task, cfg.train, workdir, step)
    return TransformerLM(model_cfg), params, tok, cfg, restored_step


def nll_function(model: TransformerLM, params):
    """Jitted per-token NLL at evaluation (fresh random tables per key for lexinvariant)."""

    @jax.jit
    def fn(batch, key):
        return lm_nll(model, params, batch, key, train=False)

    return fn


def eval_windows(cfg, tok, split: str, max_windows: int | None = None):
    from lexlm.data import lm_eval_windows, open_split

    return lm_eval_windows(
        open_split(cfg.data, split), tok, int(cfg.seq_len), max_windows=max_windows or None
    )


def evaluate_run(
    workdir: str | Path,
    split: str | None = None,
    step: int | None = None,
    draws: int | None = None,
    windows=None,
) -> dict:
    """Restores a checkpoint and writes ``eval_<split>.json`` (loss, bits/byte and /char,
    perplexity, loss by position) and ``loss_by_position_<split>.png``. Returns the metrics."""
    workdir = Path(workdir)
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
    (workdir / f"eval_{split}.json").write_text(json.dumps(metrics, indent=1))
    plot_loss_by_position({workdir.name: metrics}, workdir / f"loss_by_position_{split}.png")
    return metrics


def plot_loss_by_position(curves: dict[str, dict], path: Path, smooth_width: int = 5) -> None:
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
