"""Word-pooled tokenization ("Learn Your Tokens", Thawani et al., 2023) against byte,
character, subword and word-level LMs at matched training FLOPs, on one bits-per-byte scale.

    python -m lexlm.run --config word_pooled:tiny --workdir runs/wp_tiny
    python -m lexlm.run --config word_pooled:shakespeare --workdir runs/wp_shakespeare \\
        --config.data.files=path/to/tinyshakespeare/input.txt
    python -m lexlm.run --config word_pooled:spanish --workdir runs/wp_spanish \\
        --config.data.files=path/to/reina_valera_1909.txt

Variants (``get_config(variant)``; every field takes ``--config.a.b=value``, the data too):

* ``tiny``: the embedded Lee news corpus, all five models, tiny sizes.
* ``main``: ``tiny`` with the word-pooled, character and word-level LMs only and fewer steps
  and targets: the main job's section.
* ``shakespeare``: a text file (Tiny Shakespeare, ``input.txt`` of karpathy's char-rnn, or
  TFDS ``tiny_shakespeare``): paragraphs as documents, a contiguous tail held out as
  validation and test; wider models.
* ``spanish``: the same models on a Spanish text (the Reina-Valera 1909 Bible);
  ``data.doc_split='heading'`` makes each book (from its "<Name> 1" heading) one document,
  so the held-out validation and test regions are whole books.
* ``paper``: the paper's model sizes (width 512, word LM 8 layers, 192 words of context), for
  a GPU or TPU; give it data with ``--config.data.files=...``.

Models (``models``): ``word_pooled``, ``char``, ``byte``, ``subword``, ``word``, and the
byte-patching peers ``byte_window``, ``megabyte4``, ``megabyte8``, ``spacebyte`` (sizes in
``patching``; the ``byte_patching`` project runs them at several budgets).

Protocol. Every model trains on the same training split into ``W/runs/<model>``; its steps
are set so that its training FLOPs (``lexlm.eval.flops``' count of one forward and backward pass,
times steps) equal ``budget.train_flops`` (0: the word-pooled model's at ``train.steps``). Every
model is then evaluated from its final checkpoint on ``eval.split``:

* bits per character and per UTF-8 byte over the whole split;
* greedy next-word exact match on ``eval.targets`` words after the same context (the longest
  run of whole words with at most ``eval.context_chars`` characters, ``lexlm.eval.next_word``),
  by training-frequency bucket and on words with digits; and the same for a count reference
  that needs no training (the most frequent next word after the previous word).
"""

from __future__ import annotations

import jax
import ml_collections

from lexlm.data.config import SPLITS, default_data_config, validate_data_config
from lexlm.errors import ConfigError
from lexlm.experiment import checks
from lexlm.train import default_train_config, validate_train_config

VARIANTS = ("tiny", "main", "shakespeare", "spanish", "paper")
UNITS = ("char", "byte")  # units of the word-pooled model


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.project = "word_pooled"
    c.models = "word_pooled,char,byte,subword,word"
    c.data = default_data_config("lee")
    c.data.unit = "char"  # units of the word-pooled model: 'char' | 'byte'
    c.max_units = 12  # L: units per word piece (longer words are split, and counted)
    c.words = 32  # W: words of context of the word-pooled model
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
    # the byte-patching peers, byte-level like the byte LM:
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


def shakespeare_sizes(c) -> None:
    """The sizes of the text-file variants (Tiny Shakespeare, the Spanish Bible)."""
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
    # D = 2 D_local and as many global as local blocks (SpaceByte's proportions), at about
    # the byte LM's training FLOPs per byte
    c.patching.spacebyte.update(local_width=96, local_depth=4, local_heads=4, window=64)
    c.patching.spacebyte.update(width=192, depth=4, heads=4, cap=80)
    c.train.update(steps=500, batch_size=16, lr=2e-3, warmup_steps=50, log_every=50)
    c.eval.update(targets=600, context_chars=200)


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = base_config()
    if arg in ("tiny", "main"):
        c.train.steps = 120
        if arg == "main":  # the main job's section: within its time budget
            c.models = "word_pooled,char,word"
            c.train.steps = 60
            c.eval.targets = 128
    elif arg in ("shakespeare", "spanish"):
        shakespeare_sizes(c)
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
        raise checks.unknown_variant("word_pooled", arg, VARIANTS)
    return c


def model_list(c) -> list[str]:
    from lexlm.proj.word_pooled.kinds import KINDS

    return checks.names(c.models, KINDS, "models")


def validate_grid(c) -> None:
    """Every check of the fields the word-pooled and byte-patching grids share (no data
    read, nothing counted): data, sizes, training, evaluation, and each model's run config."""
    from lexlm.proj.word_pooled import kinds

    validate_data_config(c.data, sources=("lee", "files", "tfds"), units=UNITS)
    names = model_list(c)
    validate_train_config(c.train)
    for field in ("max_units", "words", "eval.context_chars", "eval.batch_size"):
        checks.integer(_get(c, field), field, minimum=1)
    checks.integer(c.eval.targets, "eval.targets", minimum=0)  # 0: bits only
    if str(c.eval.split) not in SPLITS:
        raise ConfigError("eval.split", f"unknown {c.eval.split!r}; splits: {', '.join(SPLITS)}")
    if int(c.eval.batch_size) % jax.device_count():
        raise ConfigError(
            "eval.batch_size", f"{c.eval.batch_size} is not divisible by {jax.device_count()}"
        )
    checks.in_range(c.warmup_fraction, "warmup_fraction", 0.0, 1.0, hi_open=True)
    checks.integer(c.baseline.batch_size, "baseline.batch_size", minimum=1)
    for unit in ("byte", "char", "subword"):
        seq = checks.integer(c.baseline.seq_len[unit], f"baseline.seq_len.{unit}", minimum=2)
        gen = checks.integer(c.eval.gen_units[unit], f"eval.gen_units.{unit}", minimum=1)
        if gen >= seq:
            raise ConfigError(f"eval.gen_units.{unit}", f"must be below baseline.seq_len.{unit}")
    checks.integer(c.baseline.word_seq_len, "baseline.word_seq_len", minimum=1)
    checks.integer(c.baseline.word_min_count, "baseline.word_min_count", minimum=1)
    checks.integer(c.baseline.word_max_vocab, "baseline.word_max_vocab", minimum=0)
    if 0 < int(c.baseline.word_max_vocab) <= 3:
        raise ConfigError("baseline.word_max_vocab", "must be 0 (all) or > 3 (pad, eos, unk)")
    for name in names:  # each run config's model and train sections, as its run kind checks
        kinds.validate_run(kinds.run_config(c, name, steps=1))


def validate(c) -> None:
    """Every field that can be checked before data is read or anything counted."""
    validate_grid(c)
    flops = checks.number(c.budget.train_flops, "budget.train_flops")
    if flops < 0:  # 0: the word-pooled model's FLOPs at train.steps
        raise ConfigError("budget.train_flops", f"must be >= 0, got {c.budget.train_flops}")


def _get(c, dotted: str):
    for part in dotted.split("."):
        c = c[part]
    return c
