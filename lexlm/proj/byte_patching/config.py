"""Byte-patching peers of the word-pooled LM: MegaByte and SpaceByte against byte, subword and
word-pooled LMs at several matched training-FLOP budgets, on one bits-per-byte scale.

    python -m lexlm.run --config byte_patching:tiny --workdir runs/bp_tiny
    python -m lexlm.run --config byte_patching:shakespeare --workdir runs/bp_shakespeare \\
        --config.data.files=path/to/tinyshakespeare/input.txt
    python -m lexlm.run --config byte_patching:spanish --workdir runs/bp_spanish \\
        --config.data.files=path/to/reina_valera_1909.txt --config.budgets=1.5e12,4.5e12

The protocol is the word-pooled grid's (``lexlm.proj.word_pooled``), run once per budget in
``budgets``: the same data and splits, each model's steps set so that its training FLOPs
(``lexlm.eval.flops``' count of one forward and backward pass, times steps) equal the budget,
each warmed up over ``warmup_fraction`` of its own steps, and every model evaluated from its
final checkpoint on ``eval.split``: bits per byte over the whole split, training and inference
FLOPs per byte, parameters. Each budget's models are run directories
``W/runs/<budget name>/<model>``, the budget named by its value (``budget_3e12``), so a changed
budget list adds new entries and reuses the others. Models (``models``, any subset of):

* ``byte``: the byte Transformer (``lexlm.nn.TransformerLM`` on UTF-8 bytes);
* ``byte_window``: the same with sliding-window attention (``patching.window`` bytes);
* ``megabyte4`` / ``megabyte8``: MegaByte (``lexlm.nn.megabyte``) with patches of four and
  eight bytes;
* ``spacebyte``: SpaceByte (``lexlm.nn.spacebyte``);
* ``word_pooled``: the word-pooled LM (eTok); ``subword``: a BPE Transformer; also ``char``
  and ``word`` from the word-pooled grid.

Besides the models, the findings hold a byte n-gram count model's test bits per byte (order
selected on validation; ``lexlm.eval.byte_ngram``), a reference that needs no training, and
SpaceByte's patching of the training and test windows (bytes per patch, bytes past the global
cap).

Variants (``get_config(variant)``; ``--config.a.b=value`` reaches every field, the data too):

* ``tiny``: the embedded Lee corpus, every model, two tiny budgets.
* ``main``: ``tiny`` with MegaByte (``megabyte4``) and SpaceByte at two smaller budgets, the
  main job's section (a check of the pipeline, not a finding).
* ``shakespeare`` / ``spanish``: the word-pooled variants of the same names (sizes, splits),
  every model, two budgets.
* ``paper``: SpaceByte's own grid on PG-19 (``paper_sizes``), for a GPU or TPU pod.
"""

from __future__ import annotations

import ml_collections

from lexlm.experiment import checks
from lexlm.proj.word_pooled import config as wp_config

VARIANTS = ("tiny", "main", "shakespeare", "spanish", "paper")
ALL_MODELS = "byte,byte_window,megabyte4,megabyte8,spacebyte,word_pooled,subword"


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg not in VARIANTS:
        raise checks.unknown_variant("byte_patching", arg, VARIANTS)
    c = wp_config.get_config("tiny" if arg == "main" else arg)
    c.project = "byte_patching"
    del c["budget"]  # one budget per grid entry: `budgets`
    c.models = ALL_MODELS
    c.ngram_order = 5  # the count reference: orders 1..ngram_order, selected on validation
    c.warmup_fraction = 0.05  # each model warms up over 5% of its own steps
    c.eval.targets = 0  # bits per byte only: no next-word predictions (word_pooled has them)
    if arg in ("tiny", "main"):
        c.budgets = "1.5e11,4.5e11"
        if arg == "main":
            c.models = "megabyte4,spacebyte"
            c.budgets = "3e10,9e10"
    elif arg == "paper":
        paper_sizes(c)
    else:
        c.budgets = "3e12,9e12"
    return c


def paper_sizes(c) -> None:
    """SpaceByte's 1e18 / 1e19-FLOP grid (Table 1, sizes from its Table 3) on PG-19 (TFDS
    ``pg19``): every byte model sees 6144 bytes of context. SpaceByte: D / D_local = 1024 /
    512, 16 global and 16 local blocks, T_global = 1024 (6144 / 6 bytes per patch);
    MegaByte: D_G = 1024 (P x e), 16 global blocks, D_L = 512, 16 local blocks (201M + 50M
    parameters, like the paper's); the byte Transformers: 16 x 1024; the subword Transformer
    1536 tokens of an 8192-piece BPE. Batch 64, AdamW at 6.25e-4, 1% warm-up, bfloat16
    compute. For a GPU or TPU pod: point ``train.mesh`` at the devices."""
    c.data.source = "tfds"
    c.data.tfds_name = "pg19"
    c.data.files = ()
    c.baseline.model.update(width=1024, depth=16, heads=16, dtype="bfloat16")
    c.baseline.seq_len.update(byte=6144, char=6144, subword=1536)
    c.patching.window = 512
    mega = dict(global_width=1024, global_depth=16, global_heads=16)
    c.patching.megabyte.update(**mega, local_width=512, local_depth=16, local_heads=8)
    c.patching.megabyte.dtype = "bfloat16"
    space = dict(local_width=512, local_depth=16, local_heads=8, window=512)
    c.patching.spacebyte.update(**space, width=1024, depth=16, heads=16, cap=1024)
    c.patching.spacebyte.dtype = "bfloat16"
    c.model.dtype = "bfloat16"
    c.train.update(batch_size=64, lr=6.25e-4)
    c.baseline.batch_size = 64
    c.warmup_fraction = 0.01
    c.budgets = "1e18,1e19"


def budgets(c) -> list[float]:
    """The budgets, ascending (each one a grid entry named by ``checks.flops_name``)."""
    return sorted(checks.flops_list(c.budgets, "budgets"))


def validate(c) -> None:
    """Every field that can be checked before data is read or anything counted."""
    wp_config.validate_grid(c)
    budgets(c)
    checks.integer(c.ngram_order, "ngram_order", minimum=1)
