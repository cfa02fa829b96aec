"""LAMA (Mehta et al., 2019): attention-pooling text classifiers against baselines, and low-rank
attention inside the Transformer LM.

    python -m lexlm.run --config lama:tiny --workdir runs/lama_tiny
    python -m lexlm.run --config lama:sst2 --workdir runs/lama_sst2 \\
        --config.data.split_files.train=sst2/train.tsv \\
        --config.data.split_files.validation=sst2/dev.tsv \\
        --config.data.split_files.test=sst2/test.tsv
    python -m lexlm.run --config lama:ag_news --workdir runs/lama_ag_news \\
        --config.data.files=ag_news/test.csv
    python -m lexlm.run --config lama:lm --workdir runs/lama_lm
    python -m lexlm.evaluate --workdir runs/lama_sst2 --split test

Classification variants (``tiny``, ``sst2``, ``ag_news``): embeddings -> BiGRU -> pooling ->
MLP (``lexlm.nn.classifier``), one ``classifier`` run per pooling in ``models``
(``W/runs/cls_<pooling>``), all with the same data, sizes, steps and optimiser; ``mean``
(the masked mean of the states, no attention) is the control. Every saved step of a run is
evaluated on validation (``store.evaluation``); each model's step is chosen by validation
accuracy, and only then is test scored, once, at that step (test never chooses). With
``train.seeds`` = S each run trains S copies in one program, each copy choosing its own step;
the findings keep every copy's per-text test correctness and report accuracy as the mean over
the copies ± the paired bootstrap interval over test texts. ``sst2`` and ``ag_news`` (the
findings configs) train 3 seeds; ``tiny`` (a section of the main job) trains one.

* ``tiny``: the embedded movie-review snippets with human sentiment ratings
  (``data.source='vader_movies'``), cut into train / validation / test by ``data.holdout``.
* ``sst2``: SST-2 (GLUE) as ``label<TAB>sentence`` files, one per split
  (``data.split_files``).
* ``ag_news``: one AG News CSV (``data.files``, ``label,title,description``) cut by
  ``data.holdout`` with ``data.split_seed``.

Any of them reads a TFDS classification set instead with ``--config.data.source=tfds
--config.data.format=text --config.data.tfds_name=ag_news_subset
--config.data.text_key=title,description`` and TFDS split strings in ``data.splits``; the
class count is the dataset's label feature's (or ``--config.classes``). The text knobs
(``text.max_len`` tokens per text, ``text.min_count``, ``text.max_vocab`` words) shape the
word vocabulary, which each run keeps in its ``vocab/`` folder.

``lm``: three ``lm`` runs built from the sub-block ``lm_base`` (the lm project's ``tiny``, so
``--config.lm_base.train.steps=...`` reaches all three): standard attention, low-rank
attention of rank ``qk_rank`` at the same width (equal steps), and low-rank attention widened
to the standard model's parameter count (equal parameters), in ``W/runs/lm_<variant>``; test
bits per character, attention and total parameters, counted forward FLOPs per token.
"""

from __future__ import annotations

import ml_collections

from lexlm.data.config import default_data_config
from lexlm.experiment.checks import unknown_variant
from lexlm.train import default_train_config

VARIANTS = ("tiny", "sst2", "ag_news", "lm")
TASKS = ("classify", "lm")
POOLINGS = ("lama", "lama_ctx", "additive", "structured", "self_attention", "mean")


def classify_config() -> ml_collections.ConfigDict:
    """The fields of every classification variant (``tiny``'s data)."""
    c = ml_collections.ConfigDict()
    c.project = "lama"
    c.task = "classify"
    c.data = default_data_config("vader_movies")
    c.data.holdout = (0.1, 0.1)
    c.classes = 0  # 0: fixed by the data (sst2 2, ag_news 4, vader_movies 2; TFDS: its labels)
    c.text = ml_collections.ConfigDict(dict(max_len=64, min_count=1, max_vocab=20000))
    c.models = ",".join(POOLINGS)
    c.model = ml_collections.ConfigDict(
        dict(embed=100, hidden=50, heads=8, attn_hidden=64, key_mlp=True, mlp_hidden=128,
             dropout=0.2, penalty=1.0)
    )  # fmt: skip
    c.train = default_train_config()
    c.train.update(batch_size=64, lr=2e-3, warmup_steps=50, log_every=50, tensorboard=False)
    c.train.update(progress=False, keep=1)
    c.eval = ml_collections.ConfigDict(dict(batch_size=256))
    c.examples = 3  # test sentences whose attention weights the findings keep
    return c


def lm_variant_config() -> ml_collections.ConfigDict:
    from lexlm.proj.lm import config as lm_config

    c = ml_collections.ConfigDict()
    c.project = "lama"
    c.task = "lm"
    c.lm_base = lm_config.get_config("tiny")  # the LM runs' data, sizes, steps, evaluation
    c.qk_rank = 8  # the low-rank attention's shared rank r at the base width
    return c


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    if arg == "lm":
        return lm_variant_config()
    if arg not in VARIANTS:
        raise unknown_variant("lama", arg, VARIANTS)
    c = classify_config()
    if arg == "tiny":
        c.text.max_len = 48
        c.model.update(embed=48, hidden=32, heads=4, attn_hidden=32, mlp_hidden=64)
        c.train.update(steps=120, ckpt_every=40)
    elif arg == "sst2":
        c.data.source = "files"
        c.data.format = "sst2"
        c.text.max_len = 64
        c.model.update(embed=128, hidden=64, heads=8, attn_hidden=64, mlp_hidden=128)
        c.train.update(steps=3000, ckpt_every=500, seeds=3)  # a findings config: 3 seeds
    elif arg == "ag_news":
        c.data.source = "files"
        c.data.format = "ag_news"
        c.text.max_len = 96
        c.model.update(embed=128, hidden=64, heads=8, attn_hidden=64, mlp_hidden=128)
        c.train.update(steps=1500, ckpt_every=250, seeds=3)
    return c


def validate(c) -> None:
    """Every check that needs no data, before anything is read or compiled."""
    from lexlm.proj.lama.run import validate_experiment

    validate_experiment(c)
