"""The data block of ``experiments/lama.py``: which labelled source, read into three splits."""

from __future__ import annotations

import ml_collections

from lexlm.data import labelled as lab
from lexlm.errors import ConfigError
from lexlm.paths import as_path

SOURCES = ("vader", "sst2", "ag_news", "tfds")
SPLITS = ("train", "validation", "test")


def default_data_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.source = "vader"  # 'vader' (embedded) | 'sst2' | 'ag_news' | 'tfds'
    c.archive_dir = ""  # vader: folder of the vaderSentiment sdist ('' = .venv/lexlm-data)
    # sst2: {'train': path, 'validation': path, 'test': path}; ag_news: the one CSV in 'train'
    c.files = {"train": "", "validation": "", "test": ""}
    c.holdout = (0.1, 0.1)  # validation, test fractions when a source has one labelled file
    c.split_seed = 0
    c.tfds_name = ""  # e.g. 'glue/sst2', 'ag_news_subset'
    c.tfds_splits = {"train": "train", "validation": "validation", "test": "test"}
    c.text_keys = ("sentence",)  # tfds: fields joined by a space into the text
    c.label_key = "label"
    c.data_dir = ""  # tfds: '' -> $LEXLM_DATA_DIR or ~/.cache/lexlm/tfds
    c.max_len = 64  # tokens per text (longer: truncated, counted)
    c.min_count = 1  # vocabulary: words seen at least this often in training
    c.max_vocab = 20000
    return c


def _tfds_split(c, split: str) -> tuple[lab.Labelled, lab.ReadStats]:
    from lexlm.data.sources import prepared_builder

    builder = prepared_builder({"source": "tfds", "tfds_name": c.tfds_name, "data_dir": c.data_dir})
    source = builder.as_data_source(split=c.tfds_splits[split])
    pairs, stats = [], lab.ReadStats()
    keys = tuple(c.text_keys) if not isinstance(c.text_keys, str) else (c.text_keys,)
    for record in source:
        parts = []
        for key in keys:
            if key not in record:
                raise ConfigError("data.text_keys", f"{c.tfds_name} has no field {key!r}")
            value = record[key]
            parts.append(lab.decode_counted(value, stats) if isinstance(value, bytes) else value)
        pairs.append((" ".join(parts), int(record[c.label_key])))
    return lab.finish_pairs(pairs, stats)


def _file(c, split: str) -> bytes:
    name = c.files[split]
    if not name:
        raise ConfigError(f"data.files.{split}", f"source {c.source!r} needs a file for {split}")
    path = as_path(name)
    if not path.exists():
        raise ConfigError(f"data.files.{split}", f"no such file: {name}")
    return path.read_bytes()


def check_labels(splits: dict[str, lab.Labelled]) -> None:
    """Every split non-empty and labelled (TFDS marks hidden labels with -1)."""
    for name, data in splits.items():
        if not len(data):
            raise ConfigError("data", f"split {name!r} has no labelled text")
        if int(data.labels.min()) < 0:
            raise ConfigError(
                f"data.tfds_splits.{name}",
                f"split {name!r} has unlabelled examples (label {int(data.labels.min())}); "
                "point it at a labelled split",
            )


def load_splits(c) -> tuple[dict[str, lab.Labelled], dict[str, lab.ReadStats]]:
    """train / validation / test ``Labelled`` and what reading them dropped or replaced."""
    splits, stats = _read_splits(c)
    check_labels(splits)
    return splits, stats


def _read_splits(c) -> tuple[dict[str, lab.Labelled], dict[str, lab.ReadStats]]:
    if c.source not in SOURCES:
        raise ConfigError("data.source", f"{c.source!r} is not one of {SOURCES}")
    if c.source == "tfds":
        if not c.tfds_name:
            raise ConfigError("data.tfds_name", "source 'tfds' needs a dataset name")
        read = {s: _tfds_split(c, s) for s in SPLITS}
        return {s: r[0] for s, r in read.items()}, {s: r[1] for s, r in read.items()}
    if c.source == "sst2":
        read = {s: lab.parse_sst2(_file(c, s)) for s in SPLITS}
        return {s: r[0] for s, r in read.items()}, {s: r[1] for s, r in read.items()}
    if c.source == "vader":
        data, stats = lab.read_vader_movies(c.archive_dir)
    else:  # ag_news: one labelled file, split here
        data, stats = lab.parse_ag_news(_file(c, "train"))
    return lab.fixed_split(data, c.holdout, int(c.split_seed)), {"all": stats}
