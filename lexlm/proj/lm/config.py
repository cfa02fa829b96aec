"""The baseline decoder-only Transformer LM: the standard LM every lexical experiment compares
to, and the ``lm`` run kind the other projects train through.

    python -m lexlm.run --config lm:tiny --workdir runs/lm_tiny
    python -m lexlm.run --config lm:tiny --workdir runs/mine \\
        --config.data.source=files --config.data.files=my_corpus.txt

Variants (``get_config(variant)``):

* ``tiny``: the embedded Lee news corpus, character units, 2 layers x 128 wide, context 128,
  600 steps of 32 windows: the main job's baseline (its page gives what it reaches).
* ``150m``: 12 layers x 1024 wide, 16 heads, context 1024, 32k subwords (about 150M
  parameters with the tied table), bf16 compute, for TPU / GPU; give it data with
  ``--config.data.source=tfds --config.data.tfds_name=wiki40b/en`` or local files.

The run trains into ``W/runs/lm`` and is evaluated from its final checkpoint on validation
and test (bits per byte and per character, perplexity, loss by position).
"""

from __future__ import annotations

import ml_collections

from lexlm.data.config import default_data_config
from lexlm.experiment.checks import unknown_variant
from lexlm.train import default_train_config

VARIANTS = ("tiny", "150m")


def base_config() -> ml_collections.ConfigDict:
    """One LM run: the fields every ``lm`` run kind reads (other projects start from it)."""
    c = ml_collections.ConfigDict()
    c.project = "lm"
    c.kind = "lm"
    c.arch = "transformer"  # 'transformer' | 'megabyte' | 'spacebyte'
    c.data = default_data_config("lee")
    c.seq_len = 128
    c.model = ml_collections.ConfigDict(
        dict(
            width=128,
            depth=2,
            heads=4,
            mlp_ratio=4,
            dtype="float32",
            attention="xla",
            embedding="learned",
            semi_p=0.0,
            vocab_chunk=8192,
            remat=False,
            logit_scale="auto",
            final_ln_bias=True,
            positions="learned",
            position_std=0.02,
            qkv_std=0.02,
            smear_keys=False,
            copy_readout=False,
        )
    )
    c.train = default_train_config()
    c.eval = ml_collections.ConfigDict(
        dict(split="validation", batch_size=32, max_windows=0, draws=1, seed=0)
    )
    return c


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = base_config()
    if arg == "tiny":
        c.data.unit = "char"
        c.train.steps = 600
        c.train.batch_size = 32
        c.train.lr = 3e-3
        c.train.warmup_steps = 50
        c.train.log_every = 20
        c.train.ckpt_every = 300
    elif arg == "150m":
        c.data.unit = "subword"
        c.data.vocab_size = 32000
        c.seq_len = 1024
        c.model.update(width=1024, depth=12, heads=16, dtype="bfloat16", attention="auto")
        c.model.vocab_chunk = 8192
        c.train.update(steps=100_000, batch_size=256, lr=6e-4, warmup_steps=2000)
        c.train.update(log_every=100, ckpt_every=2000, ckpt_async=True)
        c.eval.update(batch_size=64, max_windows=2048)
    else:
        raise unknown_variant("lm", arg, VARIANTS)
    return c


def validate(c) -> None:
    """Every field that can be checked before data is read or anything compiled."""
    from lexlm.proj.lm.run import validate_run

    validate_run(c)
