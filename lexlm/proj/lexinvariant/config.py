"""Lexinvariant language models (Huang et al., "Lexinvariant Language Models", NeurIPS 2023).

    python -m lexlm.run --config lexinvariant:tiny --workdir runs/lexinv_tiny
    python -m lexlm.run --config lexinvariant:small --workdir runs/lexinv_small \\
        --config.data.source=files --config.data.files=my_corpus.txt
    python -m lexlm.run --config lexinvariant:ablation --workdir runs/lexinv_ablation
    python -m lexlm.run --config lexinvariant:symbols --workdir runs/lexinv_symbols

``c.experiment`` picks what a variant does:

* ``findings`` (findings 1 and 2 of the paper, sections 4.1 and 4.3): for each corpus in
  ``corpora`` (``prose``: the ``data`` block; ``code``: the ``code_data`` block) and each
  unit in ``units`` (``char``; ``subword``: ``subword_vocab`` BPE pieces trained for
  ``subword_steps``), a standard LM and a lexinvariant LM of the same size, trained on the
  same data, vocabulary and steps (``W/runs/<embedding>_<unit>`` for prose,
  ``W/runs/<embedding>_code_<unit>`` for code), evaluated from their checkpoints: loss by
  position next to no-training references, the repeated-span mechanism check, attention
  patterns, the substitution cipher and the deciphering probe. The lexinvariant runs add the
  readout fixes of ``lexinvariant_model`` (a learned logit scale and the copy readout of
  ``lexlm.nn.copy_readout``); the standard LM keeps the plain tied readout, and a second
  standard LM with ``standard_copy_model`` (the copy readout; ``W/runs/learned_copy_<unit>``)
  is the control. Each run trains ``train.seeds`` copies (3 in ``small`` and ``paper``, 1 in
  ``tiny``); every comparison carries a paired bootstrap interval over test documents.
* ``ablation``: the character lexinvariant LM once per readout / position / key option of
  ``ablation.variants`` (``lexlm.proj.lexinvariant.ablation.VARIANTS``), plus the standard
  LM with and without the copy readout, tabulated on the validation split.
* ``symbols`` (findings 3 and 4): standard, lexinvariant and semi-lexinvariant LMs trained on
  text mixed with in-context symbol tasks, scored on symbols never seen in training.

Variants (``get_config(variant)``):

* ``tiny``: prose (the embedded Lee corpus), characters and 512 BPE subwords, the 2 x 128
  model and context 128 of ``lm:tiny``; the main job's section. Its standard character run
  has exactly the config of ``lm:tiny``, so the main job hands it its baseline run (checked).
* ``small``: prose and code (the Python standard library), characters and 512 BPE subwords,
  the tiny model at context 512, 3 seeds per run (``--config.train.seeds=1`` where three do
  not fit: the page says which).
* ``paper``: 12 x 1024, context 512, characters and 32k subwords, wiki40b/en through TFDS
  (prepare it first): for TPU / GPU.
* ``ablation``: the readout-fix ablation of the tiny character lexinvariant LM.
* ``symbols``: findings 3 and 4 with the tiny model on the embedded corpus, 3 seeds per run.
* ``symbols_paper``: findings 3 and 4 at paper scale on wiki40b/en characters.

Every field, the data blocks included, is overridable with ``--config.a.b=value``; the
results page (``lexlm/proj/lexinvariant/README.md``) gives what each variant found.
"""

from __future__ import annotations

import ml_collections

from lexlm.data.config import default_data_config
from lexlm.experiment.checks import unknown_variant

VARIANTS = ("tiny", "small", "paper", "ablation", "symbols", "symbols_paper")
EXPERIMENTS = ("findings", "ablation", "symbols")
CORPORA = {"prose": "data", "code": "code_data"}  # corpus name -> its data block
UNITS = ("char", "subword")

# Model fields of the findings' lexinvariant runs only: the readout fixes. A learned logit
# scale (which LMConfig's logit_scale='auto' already turns on for random rows, spelled out so
# that the run's config.json says what was used) and the copy readout (lexlm.nn.copy_readout).
# The ablation shows why; the standard LM keeps the plain tied readout.
LEXINVARIANT_MODEL = dict(logit_scale="learned", copy_readout=True)
# The control of finding 1: the standard LM with the same copy readout (its plain learned rows
# keep logit_scale 'auto', i.e. none), one more run per (corpus, unit).
STANDARD_COPY_MODEL = dict(copy_readout=True)


def lm_base(variant: str) -> ml_collections.ConfigDict:
    """The LM run fields every variant starts from: ``lm:tiny``, or the paper-scale run."""
    from lexlm.proj.lm.config import get_config as lm_config

    if variant != "paper":
        return lm_config("tiny")
    base = lm_config("150m")  # 12 x 1024, 16 heads, bf16
    base.seq_len = 512
    base.data.source = "tfds"
    base.data.tfds_name = "wiki40b/en"
    base.data.unit = "char"
    base.data.vocab_size = 0
    base.train.steps = 250_000
    return base


def common(c, base) -> None:
    """The blocks of one LM run, shared by every run of an experiment."""
    c.project = "lexinvariant"
    c.data = base.data
    c.seq_len = base.seq_len
    c.model = base.model
    c.train = base.train
    c.eval = base.eval
    c.eval.draws = 4  # random-table draws averaged when a random-embedding run is evaluated


def findings_config(variant: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    base = lm_base("paper" if variant == "paper" else "tiny")
    common(c, base)
    c.experiment = "findings"
    c.code_data = default_data_config("python_stdlib")
    c.code_data.unit = "char"
    c.corpora = "prose"  # comma-separated: prose (data), code (code_data)
    c.units = "char,subword"  # comma-separated: char, subword
    c.subword_vocab = 512  # subword runs: BPE vocabulary size
    c.subword_steps = 200  # subword runs: training steps (and their one checkpoint)
    c.lexinvariant_model = dict(LEXINVARIANT_MODEL)
    c.standard_copy_model = dict(STANDARD_COPY_MODEL)
    c.position_buckets = (1, 4, 16, 32, 64)  # left edges; the last bucket runs to seq_len
    c.readout_widths = ()  # widths of the random-row references; () = the model's width
    c.cipher_draws = 8
    c.mechanism = ml_collections.ConfigDict(dict(span=64, windows=64, draws=2))
    c.attention_windows = 16
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
    if variant in ("small", "paper"):
        c.position_buckets = (1, 4, 16, 32, 64, 128, 257)
    if variant == "small":
        c.corpora = "prose,code"
        c.seq_len = 512
        c.train.update(steps=1200, batch_size=8, ckpt_every=400, log_every=50, seeds=3)
        c.eval.update(max_windows=128, batch_size=16)
        c.mechanism.update(span=256, windows=32)
        c.probe.update(windows=16)
    if variant == "paper":
        c.subword_vocab, c.subword_steps = 32000, 250_000
        c.train.seeds = 3
        c.mechanism.update(span=256, windows=256, draws=4)
        c.probe.update(windows=256, train_ciphers=16, test_ciphers=4, steps=100)
    return c


def ablation_config() -> ml_collections.ConfigDict:
    from lexlm.proj.lexinvariant.ablation import VARIANTS as ABLATION

    c = ml_collections.ConfigDict()
    common(c, lm_base("tiny"))
    c.experiment = "ablation"
    c.ablation = ml_collections.ConfigDict(
        dict(variants=",".join(ABLATION), position_buckets=(1, 4, 16, 32, 64))
    )
    return c


def symbols_config(variant: str) -> ml_collections.ConfigDict:
    from lexlm.data.symbol_tasks import DEFAULT_LENGTHS, TASKS

    c = ml_collections.ConfigDict()
    paper = variant == "symbols_paper"
    common(c, lm_base("paper" if paper else "tiny"))
    c.experiment = "symbols"
    s = ml_collections.ConfigDict()
    s.n_symbols = 64  # ids after the text vocabulary; the second half is held out
    s.mix_prob = 0.1  # fraction of training rows replaced by task rows
    s.tasks = ",".join(TASKS)
    s.lengths = dict(DEFAULT_LENGTHS)  # instance sizes (lo, hi) per task
    s.semi_ps = (0.1, 0.2, 0.5)  # semi-lexinvariant runs (p = 0 is the standard LM)
    s.eval_rows = 64  # evaluation rows per task and symbol set
    s.eval_draws = 4  # random-table draws of the random-embedding models
    s.eval_seed = 1234
    s.one_seed_reason = ""  # why train.seeds stays 1, printed by the report
    c.symbols = s
    if paper:
        c.data.vocab_size = 130  # the most frequent characters
        c.eval.draws = 8
        s.update(n_symbols=128, mix_prob=0.05, eval_rows=512, eval_draws=8)
        s.lengths = {"lookup": (4, 16), "copy": (4, 24), "reverse": (4, 24)}
    else:
        c.train.update(steps=800, ckpt_every=400, seeds=3)  # a findings config: 3 seeds
    return c


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg in ("tiny", "small", "paper"):
        return findings_config(arg)
    if arg == "ablation":
        return ablation_config()
    if arg in ("symbols", "symbols_paper"):
        return symbols_config(arg)
    raise unknown_variant("lexinvariant", arg, VARIANTS)


def validate(c) -> None:
    """Every field that can be checked before data is read or anything compiled: the
    experiment's own fields, then every run's LM config."""
    from lexlm.errors import ConfigError

    experiment = str(c.get("experiment", ""))
    if experiment not in EXPERIMENTS:
        raise ConfigError(
            "experiment", f"unknown {experiment!r}; experiments: {', '.join(EXPERIMENTS)}"
        )
    if experiment == "findings":
        from lexlm.proj.lexinvariant.run import validate_findings

        validate_findings(c)
    elif experiment == "ablation":
        from lexlm.proj.lexinvariant.ablation import validate_ablation

        validate_ablation(c)
    else:
        from lexlm.proj.lexinvariant.symbols import validate_symbols

        validate_symbols(c)
