"""Lexinvariant language models (Huang et al., NeurIPS 2023): runs and findings 1-2.

The method is in ``lexlm.nn.lexinvariant``; the lexinvariant runs add the readout fixes of
``LEXINVARIANT_MODEL`` (a learned logit scale and ``lexlm.nn.copy_readout``). For each corpus
(prose, code) and unit (characters, subwords) this trains a standard LM and a lexinvariant
LM of the same size on the same data, vocabulary and steps, and evaluates both from their
checkpoints on held-out text:

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

Run (every field, the data sources included, is overridable with ``--config.a.b=value``):

    python -m experiments.lexinvariant --config experiments/lexinvariant.py:tiny --out results
    python -m experiments.lexinvariant --config experiments/lexinvariant.py:small \\
        --out results/lexinv_small --config.data.prose.source=files \\
        --config.data.prose.files=my_corpus.txt

Configs (``get_config(arg)``):

* ``tiny``: prose (the embedded Lee corpus), characters and 512 BPE subwords, 2 x 128, context
  128; part of the README's main job (a few minutes on 2 CPU cores).
* ``small``: prose and code (the Python standard library, ``data.source='python_stdlib'``),
  characters, context 512, 1200 steps of 8 x 512 per run (82 minutes for the four runs and
  their findings on a 2-core machine shared with other jobs; 48 for the two lexinvariant runs
  and the findings when the standard runs exist).
* ``paper``: 12 x 1024 (~150M parameters), context 512, characters and 32k subwords,
  wiki40b/en through TFDS: for TPU/GPU.
"""

from __future__ import annotations

import json

import ml_collections

from experiments import lm as lm_experiment
from experiments.lm_runs import (
    eval_windows,
    evaluate_run,
    latest_eval,
    load_run,
    train_run,
)
from lexlm.paths import as_path

EMBEDDINGS = ("learned", "lexinvariant")

# Model fields of the lexinvariant runs only: the readout fixes. A learned logit scale (which
# LMConfig's logit_scale='auto' already turns on for random rows, spelled out so that the
# run's config.json says what was used) and the copy readout (lexlm.nn.copy_readout). The
# README's ablation shows how they were chosen; the standard LM keeps the plain tied readout.
LEXINVARIANT_MODEL = dict(logit_scale="learned", copy_readout=True)


def paper_base() -> ml_collections.ConfigDict:
    """The paper-scale LM run: ~150M parameters, context 512, wiki40b/en, 250K steps."""
    base = lm_experiment.get_config("150m")
    base.seq_len = 512
    base.data.source = "tfds"
    base.data.tfds_name = "wiki40b/en"
    base.train.steps = 250_000
    return base


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg not in ("tiny", "small", "paper"):
        raise ValueError(
            f"experiments/lexinvariant.py: unknown config {arg!r}; use tiny|small|paper"
        )
    base = paper_base() if arg == "paper" else lm_experiment.get_config("tiny")
    code = base.data.copy_and_resolve_references()
    code.source = "python_stdlib"
    c = ml_collections.ConfigDict()
    c.experiment = "lexinvariant"
    c.corpora = ("prose",)  # which of c.data to run
    c.data = ml_collections.ConfigDict({"prose": base.data, "code": code})
    c.units = ("char", "subword")
    c.subword_vocab = 512
    c.subword_steps = 300
    c.lexinvariant_model = dict(LEXINVARIANT_MODEL)  # model fields of the lexinvariant runs
    c.position_buckets = (1, 4, 16, 32, 64)  # left edges; the last runs to seq_len
    c.readout_widths = ()  # widths of the random-row references; () = the model's width
    c.cipher_draws = 8
    c.mechanism = ml_collections.ConfigDict(dict(span=64, windows=64, draws=2))
    c.probe = ml_collections.ConfigDict(
        dict(
            train_split="validation",
            test_split="test",
            windows=48,
            train_ciphers=6,
            test_ciphers=2,
            steps=50,  # full-batch L-BFGS iterations per fit
            l2=(1e-4, 1e-3, 1e-2, 1e-1),  # chosen per layer on a held-out training cipher
        )
    )
    if arg in ("small", "paper"):
        c.position_buckets = (1, 4, 16, 32, 64, 128, 257)
    if arg == "small":
        c.corpora = ("prose", "code")
        c.units = ("char",)
        base.seq_len = 512
        base.model.update(width=128, depth=2, heads=4)
        base.train.update(steps=1200, batch_size=8, ckpt_every=400, log_every=50)
        base.eval.update(max_windows=128, batch_size=16)
        c.mechanism.update(span=256, windows=32)
        c.probe.update(windows=16)
    if arg == "paper":
        c.units = ("char", "subword")
        c.subword_vocab, c.subword_steps = 32000, 250_000
        c.mechanism.update(span=256, windows=256, draws=4)
        c.probe.update(windows=256, train_ciphers=16, test_ciphers=4, steps=100)
    del base.data  # each corpus has its own data block in c.data
    c.base = base
    return c


def run_config(c, unit: str, embedding: str, corpus: str = "prose") -> ml_collections.ConfigDict:
    """The LM config of one run: the base config with the corpus, unit and embedding."""
    if corpus not in c.data:
        raise ValueError(f"corpora: {corpus!r} is not one of data's {tuple(c.data)}")
    cfg = c.base.copy_and_resolve_references()
    cfg.unlock()  # config_flags locks the experiment config; a run's copy gains `data`
    cfg.data = c.data[corpus].copy_and_resolve_references()
    cfg.experiment = "lexinvariant"
    cfg.data.unit = unit
    cfg.model.embedding = embedding
    if embedding != "learned":
        cfg.model.update(dict(c.lexinvariant_model))
        cfg.eval.draws = max(int(cfg.eval.draws), 4)
    if unit == "subword":
        cfg.data.vocab_size = int(c.subword_vocab)
        cfg.train.steps = int(c.subword_steps)
        cfg.train.ckpt_every = int(c.subword_steps)
    return cfg


def run_name(corpus: str, unit: str, embedding: str) -> str:
    # The prose runs keep the names the main job has always used.
    return f"{embedding}_{unit}" if corpus == "prose" else f"{embedding}_{corpus}_{unit}"


def validate_experiment(c) -> None:
    """Every run's config, before anything trains."""
    from experiments.lm_runs import validate

    for corpus in c.corpora:
        for unit in c.units:
            for emb in EMBEDDINGS:
                validate(run_config(c, unit, emb, corpus))


def train_and_evaluate(cfg, wd) -> dict:
    """Trains (or resumes) a run and evaluates its final step on validation and test, once.

    Done means: both splits evaluated at step ``train.steps`` (an evaluation of an older step,
    from ``experiments.evaluate --step``, does not count)."""
    final = int(cfg.train.steps)
    if latest_eval(wd, "test", final) is None or latest_eval(wd, "validation", final) is None:
        result = train_run(cfg, wd)
        if result.stopped_by != "steps":
            raise RuntimeError(f"{wd}: training was interrupted ({result.stopped_by})")
        evaluate_run(wd, split="validation", step=final)
        evaluate_run(wd, split="test", step=final)
    return latest_eval(wd, "test", final)


def run(c, out, reuse: dict | None = None) -> dict:
    """Trains the runs (resuming any that exist), evaluates them and returns all findings.

    ``reuse`` maps a run name (``run_name``) to an existing run directory with the same config
    (the main job reuses its baseline character LM as the standard LM here).
    """
    from experiments import lexinvariant_findings as lf
    from experiments.lexinvariant_report import plot_curves

    out = as_path(out)
    reuse = reuse or {}
    validate_experiment(c)
    findings: dict = {
        "finding1": {},
        "mechanism": {},
        "attention": {},
        "finding2": {},
        "probe": {},
    }
    for corpus in c.corpora:
        for unit in c.units:
            key = f"{corpus}/{unit}"
            dirs, evals = {}, {}
            for emb in EMBEDDINGS:
                name = run_name(corpus, unit, emb)
                wd = reuse.get(name) or out / "runs" / name
                evals[emb] = train_and_evaluate(run_config(c, unit, emb, corpus), wd)
                dirs[emb] = wd
            cfg_std, tok = load_run(dirs["learned"])
            refs = lf.references(
                eval_windows(cfg_std, tok, "test", int(cfg_std.eval.max_windows)),
                eval_windows(cfg_std, tok, "validation", int(cfg_std.eval.max_windows)),
                tok.vocab_size,
                tuple(c.readout_widths) or (int(c.base.model.width),),
            )
            findings["finding1"][key] = {
                emb: {k: evals[emb][k] for k in ("loss", "perplexity", "bits_per_byte")}
                for emb in EMBEDDINGS
            }
            findings["finding1"][key]["table"] = lf.position_table(
                evals["learned"]["loss_by_position"],
                evals["lexinvariant"]["loss_by_position"],
                c.position_buckets,
                refs,
            )
            plot_curves(
                {
                    "standard": evals["learned"]["loss_by_position"],
                    "lexinvariant": evals["lexinvariant"]["loss_by_position"],
                    "in-context unigram": refs["in_context_unigram"],
                },
                out / f"lexinv_loss_by_position_{corpus}_{unit}.png",
                title=f"{corpus}, {unit}",
            )
            m = c.mechanism
            findings["mechanism"][key] = {
                emb: lf.mechanism_check(dirs[emb], int(m.span), int(m.windows), int(m.draws))
                for emb in EMBEDDINGS
            }
            findings["attention"][key] = {
                emb: lf.attention_patterns(dirs[emb]) for emb in EMBEDDINGS
            }
            findings["finding2"][key] = lf.cipher_table(
                {"standard": dirs["learned"], "lexinvariant": dirs["lexinvariant"]},
                int(c.cipher_draws),
            )
            if unit == c.units[0]:
                findings["probe"][key] = lf.decipher_probe(
                    dirs["lexinvariant"], c.probe, c.position_buckets
                )
    (out / "lexinvariant.json").write_text(json.dumps(findings, indent=1))
    return findings


def report_section(findings: dict) -> str:
    from experiments.lexinvariant_report import report_section as section

    return section(findings)


if __name__ == "__main__":
    from experiments.cli import launch

    launch(run, report_section, "lexinvariant.md", "experiments/lexinvariant.py:tiny")
