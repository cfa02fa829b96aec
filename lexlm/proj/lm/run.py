"""The ``lm`` run kind (one token LM trained from a config) and the lm project's run.

A run directory holds ``identity.json`` and ``config.json`` (``lexlm.experiment.store``),
``tokenizer/`` (built on the training split), ``checkpoints/``, ``metrics.jsonl``,
``tensorboard/``, ``evals/``, and for the code corpus ``corpus_manifest.json``. Every LM of
every project (the baseline, lexinvariant and semi-lexinvariant LMs, the byte, character and
subword LMs of the word-pooled grid, MegaByte and SpaceByte) trains through ``train_run``
and is restored through ``restore_lm``; ``cfg.arch`` picks the module.
"""

from __future__ import annotations

import os

import jax

from lexlm.errors import ConfigError, TrainingError
from lexlm.experiment import identity as ident
from lexlm.experiment import store
from lexlm.nn import LMConfig
from lexlm.paths import as_path, write_json
from lexlm.train import make_lm_task, train, validate_train_config
from lexlm.train.loop import maybe_initialize_distributed

ARCHS = ("transformer", "megabyte", "spacebyte")
TOKENIZER_FIELDS = ("unit", "vocab_size")


def lm_config(cfg, vocab_size: int):
    """The model config of a run: ``cfg.arch`` picks ``LMConfig``, ``MegaByteConfig`` or
    ``SpaceByteConfig``, filled from ``cfg.model``."""
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


def validate_run(cfg) -> None:
    """Every field of an LM run config that can be checked before data is read or anything
    compiled (after ``jax.distributed`` is initialised, when ``train.distributed``: devices are
    counted here)."""
    from lexlm.data.config import validate_data_config

    maybe_initialize_distributed(cfg.train)
    validate_data_config(cfg.data)
    validate_train_config(cfg.train)
    if int(cfg.seq_len) <= 0:
        raise ConfigError("seq_len", f"must be positive, got {cfg.seq_len}")
    lm_config(cfg, vocab_size=max(2, int(cfg.data.get("vocab_size", 0)) or 2))
    for name in ("batch_size", "max_windows", "draws", "seed"):
        if int(cfg.eval[name]) < (1 if name in ("batch_size", "draws") else 0):
            raise ConfigError(f"eval.{name}", f"must be >= 1, got {cfg.eval[name]}")
    if int(cfg.eval.batch_size) % jax.device_count():
        raise ConfigError(
            "eval.batch_size", f"{cfg.eval.batch_size} is not divisible by {jax.device_count()}"
        )


def tokenizer_fields(cfg) -> dict:
    """What a run's tokenizer is built from: the data fields and the unit / vocabulary size."""
    return ident.fields(cfg.data)


def tokenizer_for(cfg, workdir):
    """The run's tokenizer (``workdir/tokenizer``): built from the training split once, then
    loaded; a tokenizer built from other data or units is a ``StaleResultError``."""
    from lexlm.data import open_split, read_documents
    from lexlm.text import build_tokenizer, load_tokenizer

    def build(folder):
        docs = read_documents(open_split(cfg.data, "train"))
        tok = build_tokenizer(cfg.data.unit, docs, int(cfg.data.vocab_size) or None, folder)
        tok.save(folder)

    path = store.artifact_dir(as_path(workdir) / "tokenizer", tokenizer_fields(cfg), build)
    return load_tokenizer(path)


def open_lm_run(cfg, workdir) -> None:
    """Checks and records the run's identity (``store.open_run``) and, for the code corpus,
    the files it trains on."""
    from lexlm.data.config import input_fingerprints

    store.open_run(workdir, cfg, input_fingerprints(cfg.data))
    if cfg.data.source == "python_stdlib" and store.is_writer():
        from lexlm.data import python_stdlib_manifest

        manifest = as_path(workdir) / "corpus_manifest.json"
        if not manifest.exists():
            write_json(manifest, python_stdlib_manifest(cfg.data))


def check_lm_run(cfg, workdir) -> bool:
    """Whether ``workdir`` holds this run already (a ``StaleResultError`` if another)."""
    from lexlm.data.config import input_fingerprints

    return store.check_run(workdir, cfg, input_fingerprints(cfg.data))


def train_run(
    cfg, workdir: str | os.PathLike, hooks=(), *, vocab_size: int | None = None, wrap=None
):
    """Trains (or resumes) one LM run. Returns the TrainResult.

    ``vocab_size`` overrides the tokenizer's (runs that add ids, like the symbol tasks);
    ``wrap(batches) -> batches`` mixes something into the training batches (it must keep
    ``get_state``/``set_state`` for exact resumption)."""
    from lexlm.data import lm_train_dataset, open_split

    workdir = as_path(workdir)
    validate_run(cfg)
    open_lm_run(cfg, workdir)
    tok = tokenizer_for(cfg, workdir)
    model_cfg = lm_config(cfg, vocab_size or tok.vocab_size)
    from lexlm.train.seeds import seed_batches

    per_host_batch = int(cfg.train.batch_size) // jax.process_count()
    train_split = open_split(cfg.data, "train")

    def batches_for(seed: int):
        dataset = lm_train_dataset(
            train_split,
            tok,
            seq_len=int(cfg.seq_len),
            batch_size=per_host_batch,
            seed=seed,
            worker_count=int(cfg.data.get("worker_count", 0)),
            read_threads=int(cfg.data.get("read_threads", 0)),
        )
        return iter(dataset) if wrap is None else wrap(iter(dataset))

    # train.seeds = S > 1: copy s reads the data order of data.seed + s
    batches = seed_batches(batches_for, int(cfg.train.get("seeds", 1)), int(cfg.data.seed))
    task = make_lm_task(model_cfg, int(cfg.seq_len), name=workdir.name)
    return train(cfg.train, task, batches, workdir, hooks=hooks)


def train_to_end(cfg, workdir, **kwargs):
    """``train_run``, and a one-line ``TrainingError`` if it stopped early (SIGTERM)."""
    result = train_run(cfg, workdir, **kwargs)
    if result.stopped_by != "steps":
        raise TrainingError(
            f"{workdir}: training stopped at step {result.final_step} ({result.stopped_by}); "
            "rerun the same command to resume"
        )
    return result


def load_run(workdir: str | os.PathLike):
    """(config, tokenizer) of a run directory, without touching its checkpoints."""
    from lexlm.text import load_tokenizer

    workdir = as_path(workdir)
    return store.load_run_config(workdir), load_tokenizer(workdir / "tokenizer")


def restore_lm(
    workdir: str | os.PathLike,
    step: int | None = None,
    vocab_size: int | None = None,
    seed: int | None = None,
):
    """(model, params, tokenizer, cfg, step) of a finished or interrupted run.

    ``vocab_size`` overrides the tokenizer's, for runs trained with extra ids (``train_run``);
    ``seed`` picks one copy of a run trained with ``train.seeds`` > 1 (default: copy 0)."""
    from lexlm.eval import restore_params
    from lexlm.train.lm_task import lm_model

    workdir = as_path(workdir)
    cfg, tok = load_run(workdir)
    maybe_initialize_distributed(cfg.train)
    model_cfg = lm_config(cfg, vocab_size or int(cfg.get("vocab_override", 0)) or tok.vocab_size)
    task = make_lm_task(model_cfg, int(cfg.seq_len))
    seeds = int(cfg.train.get("seeds", 1))
    index = (seed or 0) if seeds > 1 else seed
    params, restored_step, _ = restore_params(task, cfg.train, workdir, step, seed=index)
    return lm_model(model_cfg), params, tok, cfg, restored_step


def latest_step(workdir) -> int | None:
    """The newest checkpoint step of a run (None without one), from the folder names."""
    ckpts = as_path(workdir) / "checkpoints"
    if not ckpts.is_dir():
        return None
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()]
    return max(steps) if steps else None


# -- the lm project ------------------------------------------------------------------------
def run(c, wd: store.Workdir) -> dict:
    """Trains ``W/runs/lm`` (resuming), evaluates its final step on validation and test."""
    import time

    from lexlm.proj.lm.evaluate import evaluate_run, evaluate_seeds

    run_dir = wd.run("lm")
    check_lm_run(c, run_dir)  # before anything is written
    t0 = time.perf_counter()
    result = train_to_end(c, run_dir)
    if result.history:
        rates = sorted(h["tokens_per_s"] for h in result.history[1:]) or [float("nan")]
        wd.timings["lm"] = {"train_s": round(time.perf_counter() - t0, 1),
                            "tokens_per_s": rates[len(rates) // 2]}  # fmt: skip
    final = int(c.train.steps)
    tok_size = load_run(run_dir)[1].vocab_size
    model_cfg = lm_config(c, tok_size)
    findings = {
        "unit": str(c.data.unit),
        "source": str(c.data.source),
        "vocab_size": tok_size,
        "params": int(model_cfg.param_count()) if hasattr(model_cfg, "param_count") else None,
        "steps": final,
        "model": c.model.to_dict(),
        "seq_len": int(c.seq_len),
        "batch_size": int(c.train.batch_size),
        "seeds": int(c.train.get("seeds", 1)),
    }
    for split in ("validation", "test"):
        findings[split] = evaluate_run(run_dir, split=split, step=final)  # seed 0
        # every trained seed, their spread and the documents' bootstrap interval
        findings[f"{split}_seeds"] = evaluate_seeds(run_dir, split=split, step=final)
    return findings
