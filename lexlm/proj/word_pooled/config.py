"""Word-pooled tokenization ("Learn Your Tokens", Thawani et al., 2023) against byte,
character, subword and word-level LMs, at equal training FLOPs, on one bits-per-byte scale.

    python -m experiments.word_pooled --config experiments/word_pooled.py:tiny --out results
    python -m experiments.word_pooled --config experiments/word_pooled.py:shakespeare \\
        --config.data.files=../shared/data/tinyshakespeare/input.txt --out results
    python -m experiments.word_pooled --config experiments/word_pooled.py:spanish \\
        --config.data.files=../shared/data/spanish_bible/reina_valera_1909.txt --out results

Configs (``get_config(arg)``; every field takes ``--config.a.b=value``, the data source too):

* ``tiny``: the embedded Lee news corpus, all five models, tiny sizes.
* ``main``: ``tiny`` with the word-pooled, character and word-level LMs only, the README's
  main-job section (sized for its 15-minute budget on 2 CPU cores).
* ``shakespeare``: a text file (Tiny Shakespeare: ``data.source=files``, paragraphs as
  documents, the last 10% held out as validation 5% + test 5%, contiguous).
* ``spanish``: the same models on a Spanish text; ``data.doc_split='heading'`` makes each
  book (a line such as "Genesis 1": a name, then chapter 1) one document, so the held-out
  validation and test regions are whole books.
* ``paper``: the paper's model: width 512, encoder 2 layers / 4 heads, word LM 8 layers /
  8 heads, decoder 2 layers, p = 4, 192 words of context (for a GPU or TPU).

Models (``models``): ``word_pooled``, ``char``, ``byte``, ``subword``, ``word``, and the
byte-patching peers ``byte_window``, ``megabyte4``, ``megabyte8``, ``spacebyte`` (sizes in
``patching``; ``experiments/byte_patching.py`` runs them at two budgets).

Protocol. Every model is trained on the same training split. Its steps are set so that its
training FLOPs (XLA's count of one forward and backward pass, times steps) equal
``budget.train_flops`` (0: the word-pooled model's at ``train.steps``). Every model is then
evaluated from its checkpoint on ``eval.split`` (test; models are never selected on it):

* bits per character and per UTF-8 byte over the whole split (``experiments.word_pooled_runs``);
* greedy next-word exact match on ``eval.targets`` words after the same context, the longest
  run of whole words with at most ``eval.context_chars`` characters (``lexlm.eval.next_word``),
  by training-frequency bucket and on words with digits.
"""

from __future__ import annotations

import json
import time

import jax
import ml_collections

from experiments import word_pooled_report as report
from experiments import word_pooled_runs as runs
from lexlm.errors import ConfigError
from lexlm.paths import as_path


def base_config() -> ml_collections.ConfigDict:
    from experiments.lm import default_data_config
    from lexlm.train import default_train_config

    c = ml_collections.ConfigDict()
    c.experiment = "word_pooled"
    c.models = "word_pooled,char,byte,subword,word"
    c.data = default_data_config()
    c.data.unit = "char"  # units of the word-pooled model: 'char' | 'byte'
    c.max_units = 12  # L: units per word piece (longer words are split, and counted)
    c.words = 32  # W: words of context of the word-pooled model
    c.unit_vocab = 0  # set from the tokenizer
    c.model = ml_collections.ConfigDict(
        dict(
            prefix=4,
            width=64,
            enc_depth=1,
            enc_heads=2,
            lm_depth=2,
            lm_heads=4,
            dec_depth=1,
            dec_heads=2,
            mlp_ratio=4,
            dtype="float32",
        )
    )
    c.train = default_train_config()
    c.train.update(steps=200, batch_size=16, lr=3e-3, warmup_steps=20, log_every=20)
    c.train.update(ckpt_every=10_000, tensorboard=False)
    c.baseline = ml_collections.ConfigDict(
        dict(
            model=dict(width=64, depth=2, heads=4),
            batch_size=16,
            seq_len=dict(byte=192, char=160, subword=64),
            subword_vocab=512,
            word_seq_len=32,
            word_min_count=2,
            word_max_vocab=0,
        )
    )
    # the byte-patching peers (experiments/byte_patching.py), byte-level like the byte LM:
    # byte_window: the byte LM with sliding-window attention over its last `window` bytes;
    # megabyte4 / megabyte8: MegaByte (lexlm.nn.megabyte) at P = 4 / 8 with these sizes;
    # spacebyte: SpaceByte (lexlm.nn.spacebyte); cap: global positions per window
    c.patching = ml_collections.ConfigDict(
        dict(
            window=48,
            megabyte=dict(
                global_width=128,
                global_depth=2,
                global_heads=4,
                local_width=64,
                local_depth=1,
                local_heads=2,
                mlp_ratio=4,
            ),
            spacebyte=dict(
                local_width=48,
                local_depth=2,
                local_heads=2,
                window=48,
                width=96,
                depth=2,
                heads=4,
                cap=48,
                mlp_ratio=4,
            ),
        )
    )
    c.budget = ml_collections.ConfigDict(dict(train_flops=0.0))
    # > 0: every model warms up for this fraction of its own steps (FLOP matching gives the
    # models different step counts); 0: train.warmup_steps for all
    c.warmup_fraction = 0.0
    c.eval = ml_collections.ConfigDict(
        dict(
            split="test",
            targets=256,
            context_chars=96,
            batch_size=64,
            gen_units=dict(byte=20, char=14, subword=8),
        )
    )
    return c


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = base_config()
    if arg in ("tiny", "main"):
        c.train.steps = 120
        if arg == "main":  # the main job's section: within its 15-minute budget
            c.models = "word_pooled,char,word"
            c.train.steps = 60
            c.eval.targets = 128
    elif arg in ("shakespeare", "spanish"):
        c.data.source = "files"
        c.data.holdout = (0.05, 0.05)
        c.words = 48
        c.model.update(width=128, lm_depth=4, lm_heads=4, enc_heads=4, dec_heads=4)
        c.baseline.model.update(width=128, depth=4, heads=4)
        c.baseline.seq_len.update(byte=320, char=256, subword=96)
        c.baseline.subword_vocab = 2048
        c.baseline.word_seq_len = 48
        c.patching.window = 64
        c.patching.megabyte.update(global_width=256, global_depth=4, local_width=128)
        c.patching.megabyte.update(local_depth=2, local_heads=4)
        # D = 2 D_local and as many global as local blocks (SpaceByte's proportions), at
        # about the byte LM's training FLOPs per byte
        c.patching.spacebyte.update(local_width=96, local_depth=4, local_heads=4, window=64)
        c.patching.spacebyte.update(width=192, depth=4, heads=4, cap=80)
        c.train.update(steps=500, batch_size=16, lr=2e-3, warmup_steps=50, log_every=50)
        c.eval.update(targets=600, context_chars=200)
        if arg == "spanish":
            c.data.doc_split = "heading"
            # a book starts at its chapter 1 heading: "Genesis 1", "II Kings 1", "Song of Solomon 1"
            c.data.heading_pattern = r"^(?:I{1,3} )?[A-Z][a-z]+(?: of [A-Z][a-z]+)? 1$"
            c.max_units = 16
            c.train.steps = 300
    elif arg == "paper":
        c.data.source = "files"
        c.words = 192
        c.model.update(
            prefix=4,
            width=512,
            enc_depth=2,
            enc_heads=4,
            lm_depth=8,
            lm_heads=8,
            dec_depth=2,
            dec_heads=4,
        )
        c.baseline.model.update(width=512, depth=8, heads=8)
        c.baseline.seq_len.update(byte=1024, char=1024, subword=384)
        c.baseline.subword_vocab = 8192
        c.baseline.word_seq_len = 192
        c.train.update(steps=20_000, batch_size=32, lr=1e-3, warmup_steps=500)
        c.eval.update(targets=5000, context_chars=800)
    else:
        raise ValueError(
            f"experiments/word_pooled.py: unknown config {arg!r}; "
            "use 'tiny', 'main', 'shakespeare', 'spanish' or 'paper'"
        )
    return c


def model_list(c) -> list[str]:
    names = [m.strip() for m in str(c.models).split(",") if m.strip()]
    for m in names:
        if m not in runs.KINDS:
            raise ConfigError("models", f"unknown model {m!r}; allowed: {', '.join(runs.KINDS)}")
    if not names:
        raise ConfigError("models", "names no model")
    return names


def validate(c) -> None:
    from lexlm.data import validate_data_config

    if c.data.unit not in ("char", "byte"):
        raise ConfigError(
            "data.unit", f"word-pooled units must be 'char' or 'byte', got {c.data.unit!r}"
        )
    validate_data_config(c.data)
    for kind in model_list(c):
        if kind in runs.PATCH_KINDS:  # the model's sizes, before anything is read or trained
            from experiments import lm_runs

            lm_runs.lm_config(runs.kind_config(c, kind), 259)
    for field in ("max_units", "words", "eval.context_chars"):
        value = c
        for part in field.split("."):
            value = value[part]
        if int(value) < 1:
            raise ConfigError(field, f"must be >= 1, got {value}")
    if int(c.eval.targets) < 0:  # 0: bits per byte only, no next-word predictions
        raise ConfigError("eval.targets", f"must be >= 0, got {c.eval.targets}")
    if not 0.0 <= float(c.warmup_fraction) < 1.0:
        raise ConfigError("warmup_fraction", f"must be in [0, 1), got {c.warmup_fraction}")
    if float(c.budget.train_flops) < 0:
        raise ConfigError("budget.train_flops", f"must be >= 0, got {c.budget.train_flops}")
    for kind, gen in c.eval.gen_units.items():
        if int(gen) >= int(c.baseline.seq_len[kind]):
            raise ConfigError(f"eval.gen_units.{kind}", "must be below baseline.seq_len")


def protocol(c) -> dict:
    """The evaluation settings a saved evaluation must match to be reused."""
    return {"eval": c.eval.to_dict(), "max_units": int(c.max_units)}


def param_count(prep) -> int:
    """Parameters of a run's model, from the abstract init (no values computed)."""
    params, _ = runs._abstract_inputs(prep)
    return int(sum(x.size for x in jax.tree.leaves(params)))


_COUNTS: dict = {}


def _counts(cfg, workdir) -> tuple[float, float, float, int]:
    """(training FLOPs per step, inference FLOPs per batch, bytes per step, parameters) of a
    run config, counted once per process (grids of several budgets share their models)."""
    key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "train"}, sort_keys=True)
    key += json.dumps(cfg.train.batch_size)
    if key not in _COUNTS:
        prep = runs.prepare(cfg, workdir)
        _COUNTS[key] = (
            runs.step_flops(prep),
            runs.forward_flops(prep),
            prep.units_per_batch * prep.bytes_per_unit,
            param_count(prep),
        )
    return _COUNTS[key]


def run(c, out, grid_name: str = "word_pooled") -> dict:
    """Trains (or resumes) every model at matched FLOPs, evaluates each from its checkpoint;
    the runs live in ``<out>/runs/<grid_name>/<model>``."""
    validate(c)
    out = as_path(out)
    grid = out / "runs" / grid_name
    grid.mkdir(parents=True, exist_ok=True)
    (grid / "config.json").write_text(c.to_json_best_effort(indent=2))
    names = model_list(c)
    configs = {k: runs.kind_config(c, k) for k in names}
    flops, infer_flops, bytes_per_step, n_params = {}, {}, {}, {}
    for k in names:
        counts = _counts(configs[k], grid / k)
        flops[k], infer_flops[k], bytes_per_step[k], n_params[k] = counts
    budget = float(c.budget.train_flops)
    if budget <= 0:
        ref = "word_pooled" if "word_pooled" in names else names[0]
        budget = flops[ref] * int(c.train.steps)
    results = {}
    for k in names:
        steps = max(1, round(budget / flops[k]))
        wd = grid / k
        saved = wd / f"word_eval_{c.eval.split}.json"
        if saved.exists():  # evaluated at its final step with this protocol: reuse
            ev = json.loads(saved.read_text())
            if ev.get("step") == steps and ev.get("protocol") == protocol(c):
                results[k] = ev
                continue
        if float(c.warmup_fraction) > 0:
            configs[k].train.warmup_steps = max(1, round(float(c.warmup_fraction) * steps))
        t0 = time.perf_counter()
        result = runs.train_kind(configs[k], wd, steps)
        if result.stopped_by != "steps":
            raise SystemExit(f"{k}: training interrupted at step {result.final_step}")
        train_s = time.perf_counter() - t0
        ev = runs.evaluate_kind(wd, str(c.eval.split))
        ev["protocol"] = protocol(c)
        ev.update(
            steps=steps,
            train_s=train_s,
            flops_per_step=flops[k],
            train_flops=flops[k] * steps,
            train_flops_per_byte=flops[k] / bytes_per_step[k],
            infer_flops_per_byte=infer_flops[k] / bytes_per_step[k],
            train_bytes=steps * bytes_per_step[k],
            params=n_params[k],
        )
        saved.write_text(json.dumps(ev, indent=1))
        results[k] = ev
    texts, is_eos, _ = runs.split_words(c, "train")
    counts = report.train_counts(texts, is_eos)
    results["bigram"] = runs.bigram_reference(c, texts, is_eos, next(iter(results.values())))
    findings = report.findings(results, counts)
    findings.update(budget=budget, split=str(c.eval.split), context_chars=int(c.eval.context_chars))
    (grid / "findings.json").write_text(json.dumps(findings, indent=1))
    report.plot_buckets(findings, grid / "accuracy_by_frequency.png")
    return findings


def report_section(
    findings: dict, plot_path: str = "runs/word_pooled/accuracy_by_frequency.png"
) -> str:
    return report.section(findings, plot_path)


if __name__ == "__main__":
    from experiments.cli import launch

    launch(run, report_section, "word_pooled_report.md", "experiments/word_pooled.py:tiny")
