"""Pixel sentence encoders (Pixel-Linguist, Xiao et al., 2024, on PIXEL, Rust et al., 2023)
against a subword-token encoder of the same size, trained the same way.

    python -m lexlm.run --config pixel:tiny --workdir runs/pixel_tiny
    python -m lexlm.run --config pixel:stsb --workdir runs/pixel_stsb \\
        --config.data.split_files.train=$DATA/stsb/sts-train.csv \\
        --config.data.split_files.validation=$DATA/stsb/sts-dev.csv \\
        --config.data.split_files.test=$DATA/stsb/sts-test.csv
    python -m lexlm.run --config pixel:stsb --workdir runs/pixel_tfds \\
        --config.data.source=tfds --config.data.tfds_name=glue/stsb \\
        --config.data.text_key=sentence1,sentence2 --config.data.label_key=label \\
        --config.data.splits.train='train[:90%]' --config.data.splits.validation='train[90%:]' \\
        --config.data.splits.test=validation --config.stages.mae_steps=2000
    python -m lexlm.evaluate --workdir runs/pixel_tiny --split validation

Variants (``get_config(variant)``):

* ``tiny``: the embedded Lee corpus (the background documents' sentences train; the
  50-document similarity set, cut by ``data.split_seed`` into two halves of documents, selects
  (validation) and reports (test)); width-64, 2-layer encoders, one short contrastive run per
  perturbation kind, their soup: a check that the whole pipeline runs.
* ``stsb``: STS Benchmark pairs (``data.source=files``, ``data.format=stsb``, one file per split;
  or ``data.source=tfds`` with ``glue/stsb``, whose test scores are hidden, so its test split
  must be a labelled one): width-128, 4-layer encoders, the perturbation runs on the distinct
  train sentences (scores unused), then the supervised stage on the train pairs scored at
  least ``sentences.sup_min_score``.

Each model in ``models`` (``pixel``: rendered text, ``lexlm.text.render``; ``token``: a
sentencepiece BPE tokenizer trained on the training sentences, kept in the token run's
directory) is a ``SentenceEncoder`` (``lexlm.nn.vit``) of the same width, depth, heads and
length, trained through the stages of ``lexlm.proj.pixel.stages`` into its own run directory
``W/runs/<model>`` (run kind ``encoder``). Every checkpoint from the soup on is scored on the
validation judgements; the best is kept and scored on test, clean and with character typos at
``eval.typo_rates`` in every text, ``eval.typo_seeds`` typo draws per rate. Test never chooses
anything.

``train.seeds = S`` trains each encoder S times, copy s with ``train.seed + s`` (its data
order, initialisation and perturbations), each in its own run directory (``W/runs/<model>``
for copy 0, ``W/runs/<model>_seed<s>`` for the others), each choosing its own checkpoint on
validation; every copy is scored under every typo draw. The findings give each score as the
mean over copies x draws of the per-draw Spearman, with a 95% bootstrap interval over the
test pairs and the spread over copies and over typo draws (``lexlm.proj.pixel.evaluate.
summarize``). The tiny variant keeps one copy (``eval.one_seed_reason`` says why).

``sentences.*`` say how the data becomes training text: ``max_chars`` (sentences and document
chunks are cut to it), ``sup_min_score`` (train pairs at least this similar are positives),
``max_sentences`` (a cap on the unsupervised sentences, 0 = all), ``unlabelled`` (extra text
files, one document per blank-line-separated block, for the topical stage).
"""

from __future__ import annotations

import os

import ml_collections

from lexlm.data.config import default_data_config
from lexlm.errors import ConfigError
from lexlm.experiment import checks
from lexlm.train import default_train_config

VARIANTS = ("tiny", "stsb")
MODELS = ("pixel", "token")
SPLITS = ("validation", "test")


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = ml_collections.ConfigDict()
    c.project = "pixel"
    c.data = default_data_config("lee")
    c.sentences = ml_collections.ConfigDict(
        dict(max_chars=120, sup_min_score=4.0, max_sentences=0, unlabelled="")
    )
    c.models = ",".join(MODELS)
    c.model = ml_collections.ConfigDict(
        dict(width=64, depth=2, heads=4, mlp_ratio=4, max_len=64, dec_width=64, dec_depth=1,
             dec_heads=4, dtype="float32")
    )  # fmt: skip
    c.render = ml_collections.ConfigDict(dict(font_px=8 * 120 / 72, font_path=""))
    c.tokenizer = ml_collections.ConfigDict(dict(vocab_size=2000))
    c.stages = ml_collections.ConfigDict(
        dict(mae_steps=0, mae_ratio=0.25, unsup="typo,word_shuffle,conditional_shuffle,combined",
             unsup_steps=12, rate=0.1, topical_steps=0, sup_steps=0, rounds=1)
    )  # fmt: skip
    c.temperature = 0.05
    c.train = default_train_config()
    del c.train["steps"]  # each stage has its own: stages.*_steps
    c.train.update(batch_size=32, lr=2e-3, warmup_steps=10, log_every=10, ckpt_every=50, keep=1)
    c.train.update(progress=False, tensorboard=False, weight_decay=0.0)
    c.eval = ml_collections.ConfigDict(
        dict(split="test", typo_rates=(0.05, 0.1, 0.2), seed=0, batch=128, examples=3,
             typo_seeds=5, one_seed_reason="")
    )  # fmt: skip
    if arg == "tiny":
        # one training seed: the main job runs this variant, and 3 seeds would not fit its
        # time budget; the typo draws and the bootstrap over pairs are still there
        c.train.seeds = 1
        c.eval.one_seed_reason = "too large for 3 seeds within the main job's time budget"
    elif arg == "stsb":
        c.data.source = "files"
        c.data.format = "stsb"
        c.model.update(width=128, depth=4, heads=4, dec_width=128)
        c.tokenizer.vocab_size = 8000
        c.stages.update(unsup_steps=100, topical_steps=0, sup_steps=400)
        c.train.update(batch_size=64, lr=1e-3, warmup_steps=50, log_every=50, ckpt_every=100)
        c.train.seeds = 3
    else:
        raise checks.unknown_variant("pixel", arg, VARIANTS)
    return c


def model_names(c) -> list[str]:
    return checks.names(c.models, MODELS, "models")


def unsup_kinds(c) -> list[str]:
    from lexlm.text.perturb import PERTURBATIONS

    if not str(c.stages.unsup).strip():
        return []
    return checks.names(c.stages.unsup, PERTURBATIONS, "stages.unsup")


def unlabelled_files(c) -> list[str]:
    from lexlm.data.config import as_list

    return [os.path.abspath(os.path.expanduser(p)) for p in as_list(c.sentences.unlabelled)]


def has_documents(c) -> bool:
    """Whether the data gives documents (for the topical stage): Lee, or unlabelled files."""
    return c.data.source == "lee" or bool(unlabelled_files(c))


def has_labels(c) -> bool:
    """Whether the data gives scored train pairs (for the supervised stage)."""
    return c.data.source != "lee"


def _validate_data(c) -> None:
    from lexlm.data.config import default_data_config, validate_data_config

    validate_data_config(c.data, sources=("lee", "files", "tfds"), formats=("stsb",), units=None)
    default = default_data_config()
    for name in ("unit", "vocab_size"):  # the token encoder's size is tokenizer.vocab_size
        if c.data[name] != default[name]:
            raise ConfigError(
                f"data.{name}", "is not read here: the token encoder's subword tokenizer has "
                "tokenizer.vocab_size pieces, the pixel encoder reads rendered text",
            )  # fmt: skip
    if c.data.source == "files" and c.data.format != "stsb":
        raise ConfigError("data.format", "sentence encoders read 'stsb' files")
    if c.data.source == "tfds":
        from lexlm.data.config import text_keys

        if len(text_keys(c.data)) != 2:
            raise ConfigError(
                "data.text_key", f"needs the two sentences' fields (e.g. sentence1,sentence2), "
                f"got {c.data.text_key!r}",
            )  # fmt: skip
    s = c.sentences
    checks.integer(s.max_chars, "sentences.max_chars", minimum=1)
    checks.in_range(s.sup_min_score, "sentences.sup_min_score", 0.0, 5.0)
    checks.integer(s.max_sentences, "sentences.max_sentences", minimum=0)
    files = unlabelled_files(c)
    if files and c.data.source == "lee":
        raise ConfigError("sentences.unlabelled", "extra documents are read with STS pairs only "
                          "(data.source files or tfds); Lee has its own")  # fmt: skip
    for path in files:
        if not os.path.isfile(path):
            raise ConfigError("sentences.unlabelled", f"no such file: {path}")


def _validate_stages(c) -> None:
    s = c.stages
    unsup_kinds(c)
    for name in ("mae_steps", "unsup_steps", "topical_steps", "sup_steps", "rounds"):
        checks.integer(s[name], f"stages.{name}", minimum=0)
    checks.in_range(s.rate, "stages.rate", 0.0, 1.0)
    if not 0 < checks.number(s.mae_ratio, "stages.mae_ratio") < 1:
        raise ConfigError("stages.mae_ratio", f"must lie in (0, 1), got {s.mae_ratio!r}")
    if int(s.topical_steps) > 0 and not has_documents(c):
        raise ConfigError("stages.topical_steps", "the topical stage needs documents: Lee, or "
                          "text files in sentences.unlabelled")  # fmt: skip
    if int(s.sup_steps) > 0 and not has_labels(c):
        raise ConfigError("stages.sup_steps", f"data.source {c.data.source!r} has no scored "
                          "train pairs for the supervised stage")  # fmt: skip
    from lexlm.proj.pixel.stages import plan

    if not any(stage != "mae" and not stage.startswith("unsup_") for stage, _ in plan(c, "pixel")):
        raise ConfigError(
            "stages", "no stage to select from: set unsup (with unsup_steps > 0), topical_steps "
            "or sup_steps (with rounds > 0)",
        )  # fmt: skip


def _validate_model(c, names: list[str]) -> None:
    from lexlm.proj.pixel.stages import encoder_config, render_config, stage_train_config
    from lexlm.train import validate_train_config

    for name in names:
        encoder_config(c, name, vocab_size=max(int(c.tokenizer.vocab_size), 2))
    if "pixel" in names:
        render_config(c)
    if "token" in names:
        checks.integer(c.tokenizer.vocab_size, "tokenizer.vocab_size", minimum=260)
    checks.positive(c.temperature, "temperature")
    validate_train_config(stage_train_config(c, 1))
    checks.integer(c.train.warmup_steps, "train.warmup_steps", minimum=0)
    checks.number(c.train.weight_decay, "train.weight_decay")


def _validate_eval(c) -> None:
    e = c.eval
    if e.split not in SPLITS:
        raise ConfigError("eval.split", f"unknown {e.split!r}; judged splits: {', '.join(SPLITS)}")
    rates = e.typo_rates if isinstance(e.typo_rates, (list, tuple)) else (e.typo_rates,)
    for rate in rates:
        if not 0 < checks.number(rate, "eval.typo_rates") <= 1:
            raise ConfigError("eval.typo_rates", f"each rate must lie in (0, 1], got {rate!r}")
    if len(set(map(float, rates))) != len(rates):
        raise ConfigError("eval.typo_rates", f"lists a rate twice: {tuple(rates)}")
    checks.integer(e.seed, "eval.seed", minimum=0)
    checks.integer(e.batch, "eval.batch", minimum=1)
    checks.integer(e.examples, "eval.examples", minimum=0)
    checks.integer(e.typo_seeds, "eval.typo_seeds", minimum=1)
    checks.integer(c.train.seeds, "train.seeds", minimum=1)


def validate(c) -> None:
    """Every check that needs no data (a bad value is one line naming the field), after
    ``jax.distributed`` is initialised when ``train.distributed`` (devices are counted)."""
    from lexlm.train.loop import maybe_initialize_distributed

    maybe_initialize_distributed(c.train)
    names = model_names(c)
    _validate_data(c)
    _validate_stages(c)
    _validate_model(c, names)
    _validate_eval(c)
