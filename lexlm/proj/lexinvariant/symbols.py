r"""Lexinvariant LMs on in-context symbol tasks (Huang et al., NeurIPS 2023): findings 3 and 4.

Paper 1 of ``/work/shared/papers/lexinvariant_and_word_pooled.md``:

* Finding 3, synthetic in-context reasoning: lookup, copy and reversal (a permutation) written
  with symbols the model never saw in training. The paper reports the lexinvariant LM about 4x
  more accurate than the standard LM on average.
* Finding 4, regularising toward lexinvariance: the semi-lexinvariant LM
  (``model.embedding='semi'``, a type's learned row replaced by a random one with probability p,
  per sequence and per type) for p in {0, 0.1, 0.2, 0.5}, p = 0 being the standard LM:
  natural-text test perplexity against symbol-task accuracy.

Five runs (standard, lexinvariant, semi p = 0.1 / 0.2 / 0.5) share data, model size and steps.
Each trains on natural text in which a fraction ``mix_prob`` of the rows is replaced by task
rows over the *training* half of the symbols, and is then evaluated from its checkpoint.

Tasks (``lexlm.data.symbol_tasks``): ``n_symbols`` ids are appended to the text vocabulary; half
are mixed into training, half are held out and never occur in a training batch. Markers are
characters of the text vocabulary, one per role (the first available of a few candidates; the
report names those used), shown here with their first choices and ``_`` for the pair separator:

    lookup:  k1 v1 _ k2 v2 _ ... kn vn | kj  ->  vj
    copy:    s1 s2 ... sn =                  ->  s1 s2 ... sn
    reverse: s1 s2 ... sn <                  ->  sn ... s2 s1

The symbols of an instance are distinct, so its context determines every answer; a row is a
few-shot prompt of eos-separated instances of one task.

Scoring (``experiments.lexinv_symbols_eval``): teacher-forced argmax exact match at answer
positions, the argmax over the full vocabulary; per task over all answer tokens, the mean
unweighted over tasks; on held-out symbols (the finding) and on training symbols (did the model
learn the tasks at all). Lexinvariant models are averaged over ``eval_draws`` random tables and
every model sees the same rows. Reference: ``context_guess``, a uniform guess among the symbols
already in the row. Learned-table models are also scored with the held-out symbols given fresh
random rows ("random rows"). Natural text: test-split loss and perplexity.

Configs (``get_config(arg)``). ``base`` is the LM run config of ``experiments/lm.py`` that every
run shares (``base.data`` the text source, ``base.model``, ``base.train``, ``base.eval``;
``base.model.embedding`` and ``semi_p`` are set per run). The symbol fields are ``n_symbols``,
``mix_prob``, ``lengths`` (instance sizes ``(lo, hi)`` per task), ``tasks``, ``semi_ps``,
``eval_rows`` (rows per task and symbol set), ``eval_draws`` and ``eval_seed``.

* ``tiny``: the embedded corpus, character units, the 2 x 128 model and context 128 of
  ``experiments/lm.py:tiny``, 10% task rows, 800 steps; the five runs and their evaluation take
  10 to 25 minutes on two CPU cores, depending on their load::

      python -m experiments.lexinv_symbols --config experiments/lexinv_symbols.py:tiny \
          --out results [--config.base.train.steps=2000 --config.mix_prob=0.3 \
          --config.base.data.source=files --config.base.data.files=/path/text.txt]

  At this scale no model learns the tasks: every model's accuracy, even on *training* symbols,
  is at or below the context-guess reference (the README lists the measured figures), and
  neither more task rows (up to 50%) nor 1500 steps changed that on CPU. So the tiny run checks
  the pipeline and the structural part of finding 3 (the standard LM cannot emit a symbol it
  never saw; the lexinvariant LM scores alike on held-out and training symbols), and shows the
  perplexity cost of p in finding 4; not the paper's 4x.
* ``paper``: 12 x 1024 (~150M parameters), character units (~130 symbols), context 512,
  wiki40b/en through TFDS, 5% task rows, 250k steps: for TPU/GPU.

Writes ``<out>/runs/symbols_<run>/`` (each a run directory of ``experiments.lm_runs`` plus
``symbols.json`` and ``eval_symbols.json``), ``<out>/lexinv_symbols.json`` (the findings),
``lexinv_symbols.md`` (the report section) and ``lexinv_symbols_sweep.png``. Re-running the same
command resumes: finished runs are evaluated again, not retrained.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import ml_collections

from experiments import lexinvariant
from experiments import lm as lm_experiment
from experiments.lexinv_symbols_eval import LAYOUT_FILE, evaluate_symbol_run
from experiments.lexinv_symbols_report import plot_sweep, report_section
from experiments.lm_runs import tokenizer_for, train_run, validate
from lexlm.data.symbol_tasks import (
    DEFAULT_LENGTHS,
    TASKS,
    SymbolLayout,
    SymbolMix,
    as_lengths,
    make_layout,
    symbols_needed,
)
from lexlm.errors import CheckpointError, ConfigError, TrainingError
from lexlm.paths import as_path

__all__ = [
    "get_config",
    "main",
    "report_section",
    "run",
    "run_config",
    "run_specs",
    "validate_config",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- configs


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = ml_collections.ConfigDict()
    if arg == "tiny":
        base = lm_experiment.get_config("tiny")
        base.train.steps = 800  # five runs + evaluation in about ten minutes on 2 CPU cores
        base.train.ckpt_every = 400
        base.train.progress = False
        base.eval.draws = 4
        c.n_symbols = 64
        c.mix_prob = 0.1
        c.lengths = dict(DEFAULT_LENGTHS)
        c.eval_rows = 64
        c.eval_draws = 4
    elif arg == "paper":
        base = lexinvariant.paper_base()
        base.data.unit = "char"
        base.data.vocab_size = 130
        base.eval.draws = 8
        c.n_symbols = 128
        c.mix_prob = 0.05
        c.lengths = {"lookup": (4, 16), "copy": (4, 24), "reverse": (4, 24)}
        c.eval_rows = 512
        c.eval_draws = 8
    else:
        raise ValueError(f"experiments/lexinv_symbols.py: unknown config {arg!r}; use tiny|paper")
    c.semi_ps = (0.1, 0.2, 0.5)
    c.tasks = TASKS
    c.eval_seed = 1234
    c.base = base
    return c


def run_specs(c) -> dict[str, tuple[str, float]]:
    """Run name -> (embedding, semi_p). The standard LM is the p = 0 point of the sweep."""
    specs = {"standard": ("learned", 0.0), "lexinvariant": ("lexinvariant", 0.0)}
    for p in c.semi_ps:
        specs[f"semi_p{p:g}"] = ("semi", float(p))
    return specs


def run_config(c, embedding: str, semi_p: float) -> ml_collections.ConfigDict:
    """The LM run config of one run: ``c.base`` with its embedding and the symbol fields."""
    cfg = c.base.copy_and_resolve_references()
    cfg.unlock()  # the copy keeps the lock config_flags puts on c
    cfg.experiment = "lexinv_symbols"
    cfg.model.embedding = embedding
    cfg.model.semi_p = semi_p
    cfg.symbols = ml_collections.ConfigDict(
        {"n_symbols": int(c.n_symbols), "mix_prob": float(c.mix_prob), "tasks": tuple(c.tasks)}
    )
    cfg.symbols.lengths = as_lengths(c.lengths)
    return cfg


def validate_config(c) -> None:
    """Every field, checked before any data is read or anything trained; a bad value raises a
    ConfigError naming it as ``--config.<field>`` would."""
    n = int(c.n_symbols)
    if n < 4 or n % 2:
        raise ConfigError("n_symbols", f"must be even and >= 4, got {n}")
    if not 0.0 <= float(c.mix_prob) <= 1.0:
        raise ConfigError("mix_prob", f"must be in [0, 1], got {c.mix_prob}")
    tasks = tuple(c.tasks)
    if not tasks or not set(tasks) <= set(TASKS):
        raise ConfigError("tasks", f"must be a non-empty subset of {TASKS}, got {tasks}")
    for task in tasks:
        if task not in c.lengths:
            raise ConfigError("lengths", f"has no (lo, hi) for task {task!r}")
        try:
            lo, hi = (int(x) for x in c.lengths[task])
        except (TypeError, ValueError):
            raise ConfigError(
                f"lengths.{task}", f"must be (lo, hi), got {c.lengths[task]!r}"
            ) from None
        if not 1 <= lo <= hi:
            raise ConfigError(f"lengths.{task}", f"needs 1 <= lo <= hi, got ({lo}, {hi})")
        if symbols_needed(task, hi) > n // 2:
            raise ConfigError(
                f"lengths.{task}",
                f"an instance of size {hi} takes {symbols_needed(task, hi)} distinct symbols, "
                f"but n_symbols={n} gives {n // 2} per set",
            )
    ps = [float(p) for p in c.semi_ps]
    if any(not 0.0 < p <= 1.0 for p in ps) or len({f"{p:g}" for p in ps}) != len(ps):
        raise ConfigError("semi_ps", f"must be distinct values in (0, 1], got {tuple(ps)}")
    for field in ("eval_rows", "eval_draws"):
        if int(c[field]) < 1:
            raise ConfigError(field, f"must be >= 1, got {c[field]}")
    if c.base.model.embedding != "learned" or float(c.base.model.semi_p) != 0.0:
        field = "embedding" if c.base.model.embedding != "learned" else "semi_p"
        raise ConfigError(
            f"base.model.{field}",
            "is set per run (standard, lexinvariant, semi): leave embedding='learned' and "
            "semi_p=0, and choose the semi runs with semi_ps",
        )
    for embedding, p in run_specs(c).values():
        try:
            validate(run_config(c, embedding, p))
        except ConfigError as e:
            message = str(e).removeprefix(f"{e.field}: ")
            raise ConfigError(f"base.{e.field}", message) from e


# ----------------------------------------------------------------------------- train


def layout_for(cfg, tok, workdir) -> SymbolLayout:
    """The run's symbol layout: loaded if saved (so evaluation rebuilds the same tasks)."""
    path = workdir / LAYOUT_FILE
    layout = make_layout(tok, int(cfg.symbols.n_symbols))
    if path.exists():
        saved = SymbolLayout.from_json(json.loads(path.read_text()))
        if saved.n_symbols != layout.n_symbols:
            raise ConfigError(
                "n_symbols",
                f"{workdir} was trained with {saved.n_symbols}, got {layout.n_symbols}: "
                "resume with that value or use another --out",
            )
        if saved != layout:
            raise CheckpointError(f"{path} does not match the run's tokenizer")
        return saved
    path.write_text(json.dumps(layout.to_json(), indent=1))
    return layout


def train_symbol_run(cfg, workdir: str | os.PathLike):
    """Trains (or resumes) one run on natural text mixed with training-symbol tasks."""
    workdir = as_path(workdir)
    validate(cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    # Before train_run writes config.json: a resumed run must not get a config it was not
    # trained with.
    layout = layout_for(cfg, tokenizer_for(cfg, workdir), workdir)

    def mix(batches):
        return SymbolMix(
            batches,
            layout,
            int(cfg.seq_len),
            float(cfg.symbols.mix_prob),
            # Hosts must draw different task rows, or every host replaces the same rows.
            seed=int(cfg.data.seed) * 1000 + jax.process_index(),
            tasks=tuple(cfg.symbols.tasks),
            lengths=as_lengths(cfg.symbols.lengths),
        )

    return train_run(cfg, workdir, vocab_size=layout.vocab_size, wrap=mix)


# ----------------------------------------------------------------------------- orchestration


def run(c, out: str | os.PathLike) -> dict:
    """Trains every run (resuming any that exist), evaluates them, writes lexinv_symbols.json
    and the sweep plot. Returns the findings that ``report_section`` writes up."""
    validate_config(c)
    out = as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    findings: dict = {"runs": {}, "timing_s": {}}
    started = time.perf_counter()
    for name, (embedding, p) in run_specs(c).items():
        wd = out / "runs" / f"symbols_{name}"
        t0 = time.perf_counter()
        result = train_symbol_run(run_config(c, embedding, p), wd)
        if result.stopped_by != "steps":
            raise TrainingError(
                f"{wd}: training stopped by {result.stopped_by} at step {result.final_step}; "
                "run the same command again to resume"
            )
        t1 = time.perf_counter()
        findings["runs"][name] = evaluate_symbol_run(c, wd)
        t2 = time.perf_counter()
        findings["timing_s"][name] = {"train": t1 - t0, "eval": t2 - t1}
        log.warning("%s: trained in %.0f s, evaluated in %.0f s", name, t1 - t0, t2 - t1)
    findings["timing_s"]["total"] = time.perf_counter() - started
    findings["tasks"] = list(c.tasks)
    findings["semi_ps"] = [0.0, *[float(p) for p in c.semi_ps]]
    findings["config"] = json.loads(c.to_json_best_effort())
    (out / "lexinv_symbols.json").write_text(json.dumps(findings, indent=1))
    plot_sweep(findings, out / "lexinv_symbols_sweep.png")
    return findings


# ----------------------------------------------------------------------------- command line


def main() -> None:
    """The command line of the module docstring (``experiments.cli``: flags, errors, report)."""
    from experiments.cli import launch

    launch(run, report_section, "lexinv_symbols.md", "experiments/lexinv_symbols.py:tiny")


if __name__ == "__main__":
    main()
