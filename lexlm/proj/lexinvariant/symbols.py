r"""Lexinvariant LMs on in-context symbol tasks (Huang et al., NeurIPS 2023): findings 3 and 4.

* Finding 3, synthetic in-context reasoning: lookup, copy and reversal (a permutation) written
  with symbols the model never saw in training. The paper reports the lexinvariant LM well
  ahead of the standard LM on average.
* Finding 4, regularising toward lexinvariance: the semi-lexinvariant LM
  (``model.embedding='semi'``, a type's learned row replaced by a random one with probability p,
  per sequence and per type) for the p of ``symbols.semi_ps``, p = 0 being the standard LM:
  natural-text test perplexity against symbol-task accuracy.

The runs (``W/runs/standard``, ``lexinvariant``, ``semi_p<p>``) share data, model size and
steps. Each is an ``lm`` run trained on natural text in which a fraction ``symbols.mix_prob``
of the rows is replaced by task rows over the *training* half of the symbols, then evaluated
from its final checkpoint.

Tasks (``lexlm.data.symbol_tasks``): ``symbols.n_symbols`` ids are appended to the text
vocabulary; half are mixed into training, half are held out and never occur in a training
batch. A run's config records its model vocabulary (``vocab_override``: text vocabulary plus
symbols), so ``python -m lexlm.evaluate`` restores it like any ``lm`` run. Markers are
characters of the text vocabulary, one per role (the first available of a few candidates; the
report names those used), shown here with their first choices and ``_`` for the pair separator:

    lookup:  k1 v1 _ k2 v2 _ ... kn vn | kj  ->  vj
    copy:    s1 s2 ... sn =                  ->  s1 s2 ... sn
    reverse: s1 s2 ... sn <                  ->  sn ... s2 s1

The symbols of an instance are distinct, so its context determines every answer; a row is a
few-shot prompt of eos-separated instances of one task. Scoring: ``symbol_eval``.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from lexlm.data.symbol_tasks import TASKS, SymbolLayout, SymbolMix, as_lengths, make_layout
from lexlm.errors import ConfigError
from lexlm.experiment import checks, store
from lexlm.experiment import identity as ident
from lexlm.paths import as_path, read_json


def tasks(c) -> list[str]:
    return checks.names(c.symbols.tasks, TASKS, "symbols.tasks")


def run_specs(c) -> dict[str, tuple[str, float]]:
    """Run name -> (embedding, semi_p). The standard LM is the p = 0 point of the sweep."""
    specs = {"standard": ("learned", 0.0), "lexinvariant": ("lexinvariant", 0.0)}
    for p in c.symbols.semi_ps:
        specs[f"semi_p{float(p):g}"] = ("semi", float(p))
    return specs


def run_config(c, embedding: str, semi_p: float, text_vocab: int | None = None):
    """The ``lm`` run config of one run: the experiment's LM with its embedding, the symbol
    fields and, once the text vocabulary is known, the model vocabulary ``vocab_override``."""
    from lexlm.proj.lexinvariant.run import lm_run_config

    cfg = lm_run_config(c, c.data)
    cfg.model.embedding = embedding
    cfg.model.semi_p = semi_p
    # semi at evaluation (p_eval = 0) and the standard LM are deterministic: one draw
    cfg.eval.draws = int(c.eval.draws) if embedding == "lexinvariant" else 1
    cfg.symbols = ml_collections.ConfigDict(
        {
            "n_symbols": int(c.symbols.n_symbols),
            "mix_prob": float(c.symbols.mix_prob),
            "tasks": ",".join(tasks(c)),
            "lengths": {k: list(v) for k, v in as_lengths(c.symbols.lengths).items()},
        }
    )
    cfg.vocab_override = 0 if text_vocab is None else int(text_vocab) + int(c.symbols.n_symbols)
    return cfg


def validate_symbols(c) -> None:
    """Every field, checked before any data is read or anything trained."""
    from lexlm.data.symbol_tasks import symbols_needed
    from lexlm.proj.lexinvariant.run import validate_runs

    s = c.symbols
    n = checks.integer(s.n_symbols, "symbols.n_symbols", 4)
    if n % 2:
        raise ConfigError("symbols.n_symbols", f"must be even and >= 4, got {n}")
    checks.in_range(s.mix_prob, "symbols.mix_prob", 0.0, 1.0)
    for task in tasks(c):
        if task not in s.lengths:
            raise ConfigError("symbols.lengths", f"has no (lo, hi) for task {task!r}")
        try:
            lo, hi = (int(x) for x in s.lengths[task])
        except (TypeError, ValueError):
            raise ConfigError(
                f"symbols.lengths.{task}", f"must be (lo, hi), got {s.lengths[task]!r}"
            ) from None
        if not 1 <= lo <= hi:
            raise ConfigError(f"symbols.lengths.{task}", f"needs 1 <= lo <= hi, got ({lo}, {hi})")
        if symbols_needed(task, hi) > n // 2:
            raise ConfigError(
                f"symbols.lengths.{task}",
                f"an instance of size {hi} takes {symbols_needed(task, hi)} distinct symbols, "
                f"but n_symbols={n} gives {n // 2} per set",
            )
    ps = [checks.number(p, "symbols.semi_ps") for p in s.semi_ps]
    if any(not 0.0 < p <= 1.0 for p in ps) or len({f"{p:g}" for p in ps}) != len(ps):
        raise ConfigError("symbols.semi_ps", f"must be distinct values in (0, 1], got {tuple(ps)}")
    checks.integer(s.eval_rows, "symbols.eval_rows", 1)
    checks.integer(s.eval_draws, "symbols.eval_draws", 1)
    checks.integer(s.eval_seed, "symbols.eval_seed", 0)
    if str(c.model.embedding) != "learned" or float(c.model.semi_p) != 0.0:
        field = "embedding" if str(c.model.embedding) != "learned" else "semi_p"
        raise ConfigError(
            f"model.{field}",
            "is set per run (standard, lexinvariant, semi): leave embedding='learned' and "
            "semi_p=0, and choose the semi runs with symbols.semi_ps",
        )
    validate_runs(run_config(c, emb, p) for emb, p in run_specs(c).values())


# ----------------------------------------------------------------------------- train


def text_vocab_size(cfg, run_dirs) -> int:
    """The text tokenizer's vocabulary size, without writing anything: from a run's saved
    tokenizer built from the same data and units, else built in memory from the training
    split (the run builds its own copy after every identity check)."""
    from lexlm.proj.lm.run import tokenizer_fields
    from lexlm.text import build_tokenizer, load_tokenizer

    fields = ident.flatten(dict(tokenizer_fields(cfg)))
    for d in run_dirs:
        marker = as_path(d) / "tokenizer" / store.DIR_MARK
        if marker.exists() and read_json(marker)["fields"] == fields:
            return int(load_tokenizer(as_path(d) / "tokenizer").vocab_size)
    from lexlm.data import open_split, read_documents

    docs = read_documents(open_split(cfg.data, "train"))
    return int(build_tokenizer(cfg.data.unit, docs, int(cfg.data.vocab_size) or None).vocab_size)


def layout_of(cfg, tok) -> SymbolLayout:
    """The run's symbol layout: a function of its tokenizer and ``symbols.n_symbols``."""
    layout = make_layout(tok, int(cfg.symbols.n_symbols))
    if layout.vocab_size != int(cfg.vocab_override):
        raise ConfigError(
            "vocab_override",
            f"{layout.vocab_size} ids (text and symbols) but the run records {cfg.vocab_override}",
        )
    return layout


def train_symbol_run(wd, name: str, cfg, run_dir) -> None:
    """Trains (or resumes) one run on natural text mixed with training-symbol tasks."""
    from lexlm.proj.lexinvariant.run import train
    from lexlm.proj.lm.run import tokenizer_for

    def mix(batches):
        # train_run has built the run's tokenizer by now; this loads it
        layout = layout_of(cfg, tokenizer_for(cfg, run_dir))
        return SymbolMix(
            batches,
            layout,
            int(cfg.seq_len),
            float(cfg.symbols.mix_prob),
            # Hosts must draw different task rows, or every host replaces the same rows.
            seed=int(cfg.data.seed) * 1000 + jax.process_index(),
            tasks=tuple(cfg.symbols.tasks.split(",")),
            lengths=as_lengths(cfg.symbols.lengths),
        )

    train(wd, name, cfg, run_dir, vocab_size=int(cfg.vocab_override), wrap=mix)


# ----------------------------------------------------------------------------- the experiment


def text_result(run_dir, step: int) -> dict:
    """Natural-text test metrics of a run's every copy: their means, the seed-averaged
    per-block ``units`` and the bootstrap ``interval`` of bits per byte (``combine_seeds``)."""
    from lexlm.proj.lm.evaluate import evaluate_seeds

    combined = evaluate_seeds(run_dir, "test", step)
    per_seed = combined.pop("seeds")
    scalars = ("loss", "perplexity", "bits_per_byte", "bits_per_char")
    means = {k: float(np.mean([m[k] for m in per_seed])) for k in scalars if k in per_seed[0]}
    return {**means, **combined}


def symbol_comparisons(runs: dict, tasks) -> dict:
    """The findings' paired bootstrap comparisons over evaluation rows (symbol accuracy, the
    task mean) and over test blocks (bits per byte), each ``intervals.compare``'s dict:

    * ``lexinvariant_vs_standard``: held-out accuracy, lexinvariant minus standard;
    * ``vs_guess``: {run: {set: run minus the context guess}} on held-out and training symbols;
    * ``sweep``: {semi run: {'text_bpb', 'heldout_random_rows'}: semi minus the standard LM}.
    """
    from lexlm.eval import intervals as iv
    from lexlm.proj.lexinvariant.symbol_eval import task_mean_metric

    acc = task_mean_metric(tasks)
    bpb = iv.ratio_of_sums("bits", "bytes")
    std, lex = runs.get("standard"), runs.get("lexinvariant")
    out: dict = {"vs_guess": {}, "sweep": {}}
    if std and lex:
        out["lexinvariant_vs_standard"] = iv.compare(
            acc, lex["symbols"]["heldout"]["units"], std["symbols"]["heldout"]["units"]
        )
    for name, r in runs.items():
        guess = r["symbols"]["context_guess"]
        out["vs_guess"][name] = {
            s: iv.compare(acc, r["symbols"][s]["units"], guess[s]["units"])
            for s in ("heldout", "train")
        }
    for name, r in runs.items():
        if r["embedding"] != "semi" or not std:
            continue
        out["sweep"][name] = {
            "heldout_random_rows": iv.compare(
                acc,
                r["symbols"]["heldout_random_rows"]["units"],
                std["symbols"]["heldout_random_rows"]["units"],
            )
        }
        if len(std["test"]["units"]["bytes"]) > 1:  # a test split of one block has no interval
            out["sweep"][name]["text_bpb"] = iv.compare(
                bpb, r["test"]["units"], std["test"]["units"]
            )
    return out


def symbols_run(c, wd: store.Workdir) -> dict:
    """Trains every run (resuming any that exist), evaluates them from their final
    checkpoints and returns the findings that ``symbol_report`` writes up."""
    from lexlm.proj.lexinvariant.run import check_runs
    from lexlm.proj.lexinvariant.symbol_eval import evaluate_symbol_run

    specs_by_name = run_specs(c)
    names = list(specs_by_name)
    probe_cfg = run_config(c, "learned", 0.0)
    text_vocab = text_vocab_size(probe_cfg, [wd.run(n) for n in names])
    specs = [
        {"name": n, "cfg": run_config(c, *specs_by_name[n], text_vocab=text_vocab)} for n in names
    ]
    dirs = check_runs(wd, specs)
    runs = {}
    for s in specs:
        name, cfg = s["name"], s["cfg"]
        train_symbol_run(wd, name, cfg, dirs[name])
        step = int(cfg.train.steps)
        text = text_result(dirs[name], step)
        runs[name] = {**evaluate_symbol_run(c.symbols, dirs[name], cfg, step), "test": text}
    seeds = int(c.train.get("seeds", 1))
    return {
        "experiment": "symbols",
        "runs": runs,
        "comparisons": symbol_comparisons(runs, tasks(c)),
        "train_seeds": seeds,
        "one_seed_reason": str(c.symbols.get("one_seed_reason", "")) if seeds == 1 else "",
        "eval_rows": int(c.symbols.eval_rows),
        "tasks": tasks(c),
        "semi_ps": [0.0, *[float(p) for p in c.symbols.semi_ps]],
        "steps": int(c.train.steps),
        "mix_prob": float(c.symbols.mix_prob),
        "seq_len": int(c.seq_len),
        "model": {k: c.model[k] for k in ("depth", "width", "heads")},
        "unit": str(c.data.unit),
    }
