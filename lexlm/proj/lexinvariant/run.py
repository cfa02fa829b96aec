"""The lexinvariant project's run: ``c.experiment`` picks findings 1-2 (here), the readout
ablation (``ablation``) or the symbol tasks (``symbols``).

Findings 1-2. For each corpus (prose, code) and unit (characters, subwords) this trains a
standard LM and a lexinvariant LM of the same size on the same data, vocabulary and steps
(each an ``lm`` run, ``W/runs/<name>``), and evaluates both from their final checkpoints on
held-out text:

* Finding 1 (paper section 4.1, Fig. 2): loss by position in the context; the lexinvariant /
  standard perplexity ratio falls with position, in the paper faster on code. Reference
  columns need no training: the in-context count model, the bag-of-tokens readout (uniform
  attention, logits linear in the counts) and the crosstalk of random rows at the model's
  width (``lexlm.eval.in_context``).
* Attention patterns: mass per head on the previous token, earlier occurrences of the current
  token and the induction target (``lexlm.eval.attention_stats``).
* Mechanism check: real spans repeated twice in a window; a model that uses its context has a
  far lower loss on the second copy than on the first.
* Finding 2 (section 4.3): a substitution cipher leaves the lexinvariant LM's loss unchanged
  within sampling noise while the standard LM's explodes; a softmax probe from hidden states
  to the plaintext token, trained under some ciphers and tested under disjoint ones on another
  split, measures how much of each token's identity the model infers from context.

Every run's identity is checked before any run is written or trained, so a changed config is
refused with the workdir unchanged. ``reuse`` maps a run name to an existing run directory
(the main job hands over its baseline LM as ``learned_char``); it must hold a finished run
of exactly the config built here (``check_lm_run``), else a ``StaleResultError``.
"""

from __future__ import annotations

import math
import time

import ml_collections
import numpy as np

from lexlm.errors import ConfigError, StaleResultError
from lexlm.experiment import checks, store
from lexlm.experiment import identity as ident
from lexlm.paths import as_path
from lexlm.proj.lexinvariant.config import CORPORA, UNITS
from lexlm.proj.lm.run import check_lm_run, latest_step, lm_config, train_to_end, validate_run

# The runs of each (corpus, unit): the standard LM, the standard LM with the copy readout
# (``standard_copy_model``: the control, since the lexinvariant runs have it) and the
# lexinvariant LM (``lexinvariant_model``).
EMBEDDINGS = ("learned", "learned_copy", "lexinvariant")
MODEL_NAMES = {"learned": "standard", "learned_copy": "standard + copy readout",
               "lexinvariant": "lexinvariant"}  # fmt: skip


# ----------------------------------------------------------------------------- configs


def lm_run_config(c, data) -> ml_collections.ConfigDict:
    """An ``lm`` run config (``lexlm.proj.lm.config.base_config``) with the experiment's
    data block ``data`` and its ``seq_len``, ``model``, ``train`` and ``eval`` blocks."""
    from lexlm.proj.lm.config import base_config

    cfg = base_config()
    cfg.data = data.copy_and_resolve_references()
    cfg.seq_len = int(c.seq_len)
    cfg.model = c.model.copy_and_resolve_references()
    cfg.train = c.train.copy_and_resolve_references()
    cfg.eval = c.eval.copy_and_resolve_references()
    for block in ("data", "model", "train", "eval"):
        cfg[block].unlock()  # config_flags locks the experiment config; a run adds fields
    return cfg


def corpora(c) -> list[str]:
    return checks.names(c.corpora, tuple(CORPORA), "corpora")


def units(c) -> list[str]:
    return checks.names(c.units, UNITS, "units")


def run_config(c, corpus: str, unit: str, embedding: str) -> ml_collections.ConfigDict:
    """The LM config of one findings run: the corpus's data block, the unit, the embedding
    (and the readout fixes of ``lexinvariant_model`` for lexinvariant runs)."""
    if corpus not in CORPORA:
        raise ConfigError("corpora", f"unknown {corpus!r}; choose from {', '.join(CORPORA)}")
    cfg = lm_run_config(c, c[CORPORA[corpus]])
    cfg.data.unit = unit
    if embedding not in EMBEDDINGS:
        raise ConfigError("embedding", f"unknown {embedding!r}; choose from {EMBEDDINGS}")
    cfg.model.embedding = "learned" if embedding == "learned_copy" else embedding
    if embedding == "lexinvariant":
        cfg.model.update(dict(c.lexinvariant_model))
    elif embedding == "learned_copy":
        cfg.model.update(dict(c.standard_copy_model))
    if unit == "subword":
        cfg.data.vocab_size = int(c.subword_vocab)
        cfg.train.steps = int(c.subword_steps)
        cfg.train.ckpt_every = int(c.subword_steps)
    return cfg


def run_name(corpus: str, unit: str, embedding: str) -> str:
    # The prose runs keep the names the main job has always used.
    return f"{embedding}_{unit}" if corpus == "prose" else f"{embedding}_{corpus}_{unit}"


def run_specs(c) -> list[dict]:
    """Every findings run: {'key' (corpus/unit), 'corpus', 'unit', 'embedding', 'name', 'cfg'}."""
    out = []
    for corpus in corpora(c):
        for unit in units(c):
            for emb in EMBEDDINGS:
                out.append(
                    dict(
                        key=f"{corpus}/{unit}",
                        corpus=corpus,
                        unit=unit,
                        embedding=emb,
                        name=run_name(corpus, unit, emb),
                        cfg=run_config(c, corpus, unit, emb),
                    )
                )
    return out


def validate_runs(configs) -> None:
    """``validate_run`` on every run config (its fields are named as the experiment's)."""
    for cfg in configs:
        validate_run(cfg)


def validate_data_blocks(c, names) -> None:
    """Each data block as its own field (``code_data.files``, not the run's ``data.files``)."""
    from lexlm.data.config import validate_data_config

    for name in names:
        try:
            validate_data_config(c[name])
        except ConfigError as e:
            raise ConfigError(
                f"{name}.{e.field.removeprefix('data.')}", str(e).partition(": ")[2]
            ) from None


def validate_findings(c) -> None:
    """The findings' own fields, then every run's LM config."""
    corpora(c)
    units(c)
    validate_data_blocks(c, CORPORA.values())
    for name in CORPORA.values():
        if str(c[name].unit) != "char":
            raise ConfigError(
                f"{name}.unit", f"is set per run by units ({c.units!r}): leave it 'char'"
            )
    checks.integer(c.subword_vocab, "subword_vocab", 260)
    checks.integer(c.subword_steps, "subword_steps", 1)
    model_fields = set(c.model.keys())
    for block in ("lexinvariant_model", "standard_copy_model"):
        for key in c[block].keys():
            if key not in model_fields:
                raise ConfigError(f"{block}.{key}", "is not a model field")
    edges = [checks.integer(e, "position_buckets", 1) for e in c.position_buckets]
    if not edges or edges != sorted(set(edges)):
        raise ConfigError("position_buckets", f"must be ascending positions, got {edges}")
    for w in c.readout_widths:
        checks.integer(w, "readout_widths", 1)
    checks.integer(c.cipher_draws, "cipher_draws", 1)
    span = checks.integer(c.mechanism.span, "mechanism.span", 2)
    if 2 * span > int(c.seq_len):
        raise ConfigError(
            "mechanism.span", f"two copies of {span} tokens exceed seq_len={c.seq_len}"
        )
    checks.integer(c.mechanism.windows, "mechanism.windows", 1)
    checks.integer(c.mechanism.draws, "mechanism.draws", 1)
    checks.integer(c.attention_windows, "attention_windows", 1)
    validate_probe(c.probe)
    validate_runs(s["cfg"] for s in run_specs(c))


def validate_probe(pc) -> None:
    from lexlm.data.config import SPLITS
    from lexlm.proj.lexinvariant.evaluate import probe_l2_grid

    for name in ("train_split", "test_split"):
        if pc[name] not in SPLITS:
            raise ConfigError(f"probe.{name}", f"unknown {pc[name]!r}; splits: {SPLITS}")
    if pc.train_split == pc.test_split:
        raise ConfigError("probe.test_split", "must differ from probe.train_split")
    checks.integer(pc.windows, "probe.windows", 1)
    # the last training cipher is held out to choose the layer and the L2 strength
    checks.integer(pc.train_ciphers, "probe.train_ciphers", 2)
    checks.integer(pc.test_ciphers, "probe.test_ciphers", 1)
    checks.integer(pc.steps, "probe.steps", 1)
    probe_l2_grid(pc.l2)


# ----------------------------------------------------------------------------- runs


def check_runs(wd: store.Workdir, specs, reuse: dict | None = None) -> dict:
    """Run name -> run directory, every one checked (read-only) before anything is written:
    a run of another config is a ``StaleResultError``; a reused one must be finished."""
    reuse = dict(reuse or {})
    unknown = sorted(set(reuse) - {s["name"] for s in specs})
    if unknown:
        raise ConfigError("reuse", f"no run named {', '.join(unknown)} in this experiment")
    dirs = {}
    for s in specs:
        name, cfg = s["name"], s["cfg"]
        if name in reuse:
            run_dir = as_path(reuse[name])
            if not check_lm_run(cfg, run_dir):
                raise StaleResultError(f"{run_dir} holds no run to reuse as {name}")
            if (latest_step(run_dir) or 0) < int(cfg.train.steps):
                raise StaleResultError(
                    f"{run_dir} is not trained to step {cfg.train.steps}: cannot reuse it as {name}"
                )
        else:
            run_dir = wd.run(name)
            check_lm_run(cfg, run_dir)
        dirs[name] = run_dir
    return dirs


def train(wd: store.Workdir, name: str, cfg, run_dir, reused: bool = False, **kwargs) -> None:
    """Trains (or resumes) one run to its end; wall time and rate go to ``wd.timings``."""
    if reused:
        return
    t0 = time.perf_counter()
    result = train_to_end(cfg, run_dir, **kwargs)
    if result.history:
        rates = sorted(h["tokens_per_s"] for h in result.history[1:]) or [float("nan")]
        wd.timings[name] = {"train_s": round(time.perf_counter() - t0, 1),
                            "tokens_per_s": rates[len(rates) // 2]}  # fmt: skip


def evaluation(run_dir, split: str, step: int, settings: dict, compute):
    """A findings computation of a run's checkpoint, saved in its ``evals/``."""
    return store.evaluation(run_dir, split, step, settings, compute)


def run_facts(cfg, run_dir) -> dict:
    """Size facts of one run for the report: vocabulary, parameters, steps."""
    from lexlm.proj.lm.run import load_run

    vocab = load_run(run_dir)[1].vocab_size
    model_cfg = lm_config(cfg, vocab)
    return {
        "vocab_size": int(vocab),
        "params": int(model_cfg.param_count()),
        "steps": int(cfg.train.steps),
    }


# ----------------------------------------------------------------------------- findings 1-2


def checkpoint_findings(c, cfg, run_dir, step: int) -> dict:
    """Mechanism check, attention patterns and cipher losses of one run's checkpoint, each
    saved in the run's ``evals/`` under its settings."""
    from functools import partial

    from lexlm.proj.lexinvariant import evaluate as ev

    m, bs = c.mechanism, int(cfg.eval.batch_size)
    span, n_win, draws = int(m.span), int(m.windows), int(m.draws)
    n_att, n_ciph = int(c.attention_windows), int(c.cipher_draws)
    return {
        "mechanism": evaluation(
            run_dir, "test", step,
            {"kind": "mechanism", "span": span, "windows": n_win, "draws": draws,
             "batch_size": bs},
            partial(ev.mechanism_check, run_dir, cfg, step, span, n_win, draws),
        ),
        "attention": evaluation(
            run_dir, "validation", step, {"kind": "attention", "windows": n_att},
            partial(ev.attention_patterns, run_dir, cfg, step, n_att),
        ),
        "cipher": evaluation(
            run_dir, "test", step,
            {"kind": "cipher", "draws": n_ciph, "max_windows": int(cfg.eval.max_windows),
             "batch_size": bs},
            partial(ev.cipher_losses, run_dir, cfg, step, n_ciph),
        ),
    }  # fmt: skip


def probe_findings(c, cfg, run_dir, step: int) -> dict:
    """The deciphering probe of one lexinvariant run's checkpoint (saved in its ``evals/``)."""
    from functools import partial

    from lexlm.proj.lexinvariant import evaluate as ev

    pc = c.probe
    buckets = [int(b) for b in c.position_buckets]
    settings = {"kind": "probe", **pc.to_dict(), "buckets": buckets,
                "batch_size": int(cfg.eval.batch_size)}  # fmt: skip
    compute = partial(ev.decipher_probe, run_dir, cfg, step, pc, buckets)
    return evaluation(run_dir, str(pc.test_split), step, settings, compute)


def reference_curves(c, wd: store.Workdir, cfg, tok) -> dict:
    """The no-training references of finding 1 on the run's data, computed once per data,
    tokenizer and window settings (``W/cache``)."""
    from lexlm.proj.lexinvariant import evaluate as ev
    from lexlm.proj.lm.evaluate import eval_windows

    widths = tuple(int(w) for w in c.readout_widths) or (int(c.model.width),)
    n = int(cfg.eval.max_windows)

    def compute():
        test = eval_windows(cfg, tok, "test", n)
        return ev.references(test, eval_windows(cfg, tok, "validation", n), tok.vocab_size, widths)

    fields = {
        "tokenizer": ident.fields(cfg.data),
        "seq_len": int(cfg.seq_len),
        "max_windows": n,
        "widths": list(widths),
    }
    return wd.cached("references", fields, compute)


def bucket_evaluation(c, cfg, run_dir, step: int) -> dict:
    """The seed-averaged ``bucket_units`` of one run (each seed's saved in its ``evals/``):
    {'nats', 'tokens': [D, B] means over the run's ``train.seeds`` copies, 'positions'}."""
    from functools import partial

    from lexlm.eval import intervals as iv
    from lexlm.proj.lexinvariant import evaluate as ev
    from lexlm.proj.lm.evaluate import settings

    buckets = [int(b) for b in c.position_buckets]
    per_seed = [
        evaluation(
            run_dir, "test", step,
            {"kind": "bucket_units", "buckets": buckets, "with_evaluation": True,
             **settings(cfg, ev.eval_draws(cfg), s)},
            partial(ev.bucket_units, run_dir, cfg, step, buckets, s),
        )
        for s in range(int(cfg.train.get("seeds", 1)))
    ]  # fmt: skip
    if len(per_seed[0]["nats"]) < 2:
        raise ConfigError(
            "eval.max_windows",
            f"the test windows cover {len(per_seed[0]['nats'])} document: the bootstrap over "
            "documents needs at least 2 (raise eval.max_windows; 0 = the whole split)",
        )
    units = iv.mean_over_seeds([{k: u[k] for k in ("nats", "tokens")} for u in per_seed])
    return {**{k: v.tolist() for k, v in units.items()}, "positions": per_seed[0]["positions"],
            "evaluations": [u["evaluation"] for u in per_seed]}  # fmt: skip


def model_summary(seeds: dict, buckets: dict) -> dict:
    """One model's headline numbers from ``evaluate_seeds`` and ``bucket_evaluation``: loss
    (nats per token) and perplexity of the seed-averaged model over the whole test split with
    its bootstrap interval over documents, bits per byte likewise, and the seed spread."""
    from lexlm.eval import intervals as iv
    from lexlm.proj.lexinvariant import evaluate as ev

    loss = iv.bootstrap_interval(iv.ratio_of_sums("nats", "tokens"), ev.bucket_loss(buckets, None))
    bpb = seeds["interval"]
    return {
        "loss": loss["value"], "loss_interval": [loss["lo"], loss["hi"]],
        "perplexity": math.exp(loss["value"]),
        "bits_per_byte": bpb["value"], "bits_per_byte_interval": [bpb["lo"], bpb["hi"]],
        "seeds": seeds["spread"]["n"], "spread": seeds["spread"], "documents": bpb["units"],
    }  # fmt: skip


def comparisons(doc_units: dict, buckets: dict) -> dict:
    """Every comparison of finding 1 over the same test documents (paired bootstrap): bits per
    byte differences ('<a> - <b>', ``intervals.compare``) and whole-split perplexity ratios
    ('<a> / <b>', ``evaluate.perplexity_ratio``) of lexinvariant against each standard LM, and
    of the standard LM with the copy readout against the plain one."""
    from lexlm.eval import intervals as iv
    from lexlm.proj.lexinvariant import evaluate as ev

    pairs = [("lexinvariant", "learned"), ("lexinvariant", "learned_copy"),
             ("learned_copy", "learned")]  # fmt: skip
    out = {}
    for a, b in pairs:
        if a in doc_units and b in doc_units:
            out[f"{a} - {b}"] = iv.compare(
                iv.ratio_of_sums("bits", "bytes"), doc_units[a], doc_units[b]
            )
            out[f"{a} / {b}"] = ev.perplexity_ratio(
                ev.bucket_loss(buckets[a], None), ev.bucket_loss(buckets[b], None)
            )
    return out


def finding1(c, seeds: dict, buckets: dict, refs: dict, vocab_size: int) -> dict:
    """Finding 1 of one (corpus, unit): per model (``EMBEDDINGS``) its ``model_summary``, the
    position table with intervals (``evaluate.interval_table``), the comparisons and the
    seed-averaged loss-by-position curves of the figure."""
    from lexlm.proj.lexinvariant import evaluate as ev

    def curve(emb):
        return np.mean([m["loss_by_position"] for m in seeds[emb]["seeds"]], axis=0).tolist()

    return {
        **{emb: model_summary(seeds[emb], buckets[emb]) for emb in EMBEDDINGS},
        "ln_v": math.log(vocab_size),
        "table": ev.interval_table(buckets, refs),
        "comparisons": comparisons({e: seeds[e]["units"] for e in EMBEDDINGS}, buckets),
        "curves": {
            "standard": curve("learned"),
            "standard + copy readout": curve("learned_copy"),
            "lexinvariant": curve("lexinvariant"),
            "in-context unigram": refs["in_context_unigram"],
        },
    }


def findings_run(c, wd: store.Workdir, reuse: dict | None = None) -> dict:
    from lexlm.proj.lm.evaluate import combine_seeds
    from lexlm.proj.lm.run import load_run

    specs = run_specs(c)
    dirs = check_runs(wd, specs, reuse)
    reuse = reuse or {}
    for s in specs:
        train(wd, s["name"], s["cfg"], dirs[s["name"]], reused=s["name"] in reuse)
    findings: dict = {
        "experiment": "findings",
        "corpora": corpora(c),
        "units": units(c),
        "seq_len": int(c.seq_len),
        "model": c.model.to_dict(),
        "lexinvariant_model": dict(c.lexinvariant_model),
        "standard_copy_model": dict(c.standard_copy_model),
        "batch_size": int(c.train.batch_size),
        "train_seeds": int(c.train.get("seeds", 1)),
        "eval_draws": int(c.eval.draws),
        "runs": {},
        "finding1": {},
        "mechanism": {},
        "attention": {},
        "finding2": {},
        "probe": {},
    }
    for key in dict.fromkeys(s["key"] for s in specs):
        pair = {s["embedding"]: s for s in specs if s["key"] == key}
        cfgs = {emb: pair[emb]["cfg"] for emb in EMBEDDINGS}
        rdirs = {emb: dirs[pair[emb]["name"]] for emb in EMBEDDINGS}
        step = {emb: int(cfgs[emb].train.steps) for emb in EMBEDDINGS}
        findings["runs"][key] = {
            emb: {"name": pair[emb]["name"], **run_facts(cfgs[emb], rdirs[emb])}
            for emb in EMBEDDINGS
        }
        # every trained seed of every run on the test units, in one pass per seed: the
        # position buckets and the test evaluation (lexlm.proj.lm.evaluate.combine_seeds)
        buckets = {
            emb: bucket_evaluation(c, cfgs[emb], rdirs[emb], step[emb]) for emb in EMBEDDINGS
        }
        seeds = {emb: combine_seeds(buckets[emb].pop("evaluations")) for emb in EMBEDDINGS}
        tok = load_run(rdirs["learned"])[1]
        refs = reference_curves(c, wd, cfgs["learned"], tok)
        findings["finding1"][key] = finding1(c, seeds, buckets, refs, tok.vocab_size)
        # the checkpoint findings read seed 0 of each run
        per_run = {
            emb: checkpoint_findings(c, cfgs[emb], rdirs[emb], step[emb]) for emb in EMBEDDINGS
        }
        findings["mechanism"][key] = {emb: per_run[emb]["mechanism"] for emb in EMBEDDINGS}
        findings["attention"][key] = {emb: per_run[emb]["attention"] for emb in EMBEDDINGS}
        findings["finding2"][key] = {MODEL_NAMES[emb]: per_run[emb]["cipher"] for emb in EMBEDDINGS}
        if pair["lexinvariant"]["unit"] == units(c)[0]:
            findings["probe"][key] = probe_findings(
                c, cfgs["lexinvariant"], rdirs["lexinvariant"], step["lexinvariant"]
            )
    return findings


# ----------------------------------------------------------------------------- dispatch


def run(c, wd: store.Workdir, reuse: dict | None = None) -> dict:
    """Runs the experiment ``c.experiment`` names into ``wd``; returns its findings."""
    experiment = str(c.experiment)
    if experiment == "ablation":
        from lexlm.proj.lexinvariant.ablation import ablation_run

        if reuse:
            raise ConfigError("reuse", "the ablation reuses no runs")
        return ablation_run(c, wd)
    if experiment == "symbols":
        from lexlm.proj.lexinvariant.symbols import symbols_run

        if reuse:
            raise ConfigError("reuse", "the symbol tasks reuse no runs")
        return symbols_run(c, wd)
    return findings_run(c, wd, reuse)
