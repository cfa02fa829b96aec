"""Baseline decoder-only Transformer LM (the standard LM every lexical experiment compares to).

Configs (``get_config(arg)``):

* ``tiny``: the embedded Lee news corpus, character units, 2 layers x 128 wide, context 128.
  ``python -m experiments.run --config experiments/lm.py:tiny --workdir runs/lm_tiny``
  trains in about a minute on 2 CPU cores and should reach about 2.3 bits/char on validation
  (see the README's results table for the measured figure).
* ``150m``: 12 layers x 1024 wide, 16 heads, context 1024, 32k subwords (~150M parameters with
  the tied table), bf16 compute; for TPU/GPU: pass the data with
  ``--config.data.source=tfds --config.data.tfds_name=wiki40b/en`` or local files.
"""

from __future__ import annotations

import ml_collections

from lexlm.train import default_train_config


def default_data_config() -> ml_collections.ConfigDict:
    # Imported here so that reading a config never pulls in the data stack.
    from lexlm.data import default_data_config as data_defaults

    return data_defaults()


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.experiment = "lm"
    c.data = default_data_config()
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
        raise ValueError(f"experiments/lm.py: unknown config {arg!r}; use 'tiny' or '150m'")
    return c
