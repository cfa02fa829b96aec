"""Tests for lexlm.data: TFDS builders (array_record, no TensorFlow), sources, grain pipelines."""

import itertools
import os
import re
import sys
import time

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import flags
from ml_collections import config_flags

from lexlm.data import (
    LeeCorpus,
    LocalText,
    chunk_bounds,
    default_data_config,
    lee_corpus_path,
    lee_split_indices,
    lm_eval_windows,
    lm_train_dataset,
    open_split,
    read_documents,
    validate_data_config,
)
from lexlm.errors import ConfigError
from lexlm.text import EOS_ID, ByteTokenizer, CharTokenizer

tfds.disable_progress_bar()


def _texts(source):
    return [source[i]["text"] for i in range(len(source))]


def _decoded(source):
    return [t.decode() if isinstance(t, bytes) else t for t in _texts(source)]


@pytest.fixture(scope="module")
def lee_cfg(tmp_path_factory):
    cfg = default_data_config()
    cfg.data_dir = str(tmp_path_factory.mktemp("tfds"))
    return cfg


# ---------------------------------------------------------------- the embedded default corpus


def test_lee_corpus_builds_array_record_and_reads_without_tensorflow(lee_cfg):
    train = open_split(lee_cfg, "train")
    builder = LeeCorpus(data_dir=lee_cfg.data_dir)
    assert builder.is_prepared()
    assert any(".array_record" in f for f in os.listdir(builder.data_dir))
    # The builder is registered, so plain tfds.data_source finds it too.
    direct = tfds.data_source("lee_corpus", split="test", data_dir=lee_cfg.data_dir)
    assert len(train) == 263 and len(direct) == 15
    assert isinstance(train[0]["text"], bytes | str)
    assert "tensorflow" not in sys.modules


def test_lee_splits_are_disjoint_by_document_and_cover_the_corpus(lee_cfg):
    texts = {split: _decoded(open_split(lee_cfg, split)) for split in ("train", "validation")}
    texts["test"] = _decoded(open_split(lee_cfg, "test"))
    assert [len(texts[s]) for s in ("train", "validation", "test")] == [263, 15, 15]
    train = set(texts["train"])
    assert not train & set(texts["validation"])
    assert not train & set(texts["test"])
    assert not set(texts["validation"]) & set(texts["test"])
    with open(lee_corpus_path(), encoding="utf-8") as f:
        corpus = [line.strip() for line in f.read().split("\n")]
    # Every distinct article is in exactly one split (7 exact duplicates are dropped).
    everything = texts["train"] + texts["validation"] + texts["test"]
    assert len(everything) == len(set(everything)) == len(set(corpus)) == 293
    # Documents keep corpus order inside a split, and the split is a fixed permutation.
    assert texts["test"] == [corpus[i] for i in lee_split_indices()["test"]]
    np.testing.assert_array_equal(lee_split_indices()["train"], lee_split_indices()["train"])


# ---------------------------------------------------------------- local files


@pytest.fixture
def text_files(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(
        "\n\n".join(f"Paragraph {i} of file a.\nIt has two lines." for i in range(30)) + "\n"
    )
    # Invalid UTF-8 inside one paragraph, and a whitespace-only paragraph in between.
    (folder / "sub" / "b.txt").write_bytes(
        b"Broken \xff\xfe bytes here.\n\n   \n \n\nLast paragraph of b.\n"
    )
    (folder / "ignored.md").write_text("not a .txt file")
    return folder


def _files_cfg(tmp_path, files, **overrides):
    cfg = default_data_config()
    cfg.source = "files"
    # A ConfigDict keeps the tuple type of the default; a str goes in as a one-element tuple,
    # which is also what a --config.data.files=a.txt,b.txt override produces.
    cfg.files = (files,) if isinstance(files, str) else tuple(files)
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.holdout = (0.1, 0.1)
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def test_local_text_contiguous_split_with_repairs(tmp_path, text_files):
    cfg = _files_cfg(tmp_path, (str(text_files),))
    validate_data_config(cfg)
    with pytest.warns(UserWarning, match="2 invalid UTF-8"):
        splits = {s: _decoded(open_split(cfg, s)) for s in ("train", "validation", "test")}
    everything = splits["train"] + splits["validation"] + splits["test"]
    # Files in sorted order (a.txt, then sub/b.txt); split into contiguous regions.
    assert len(everything) == 32
    assert everything[0].startswith("Paragraph 0 of file a.")
    assert everything[-1] == "Last paragraph of b."
    assert everything[-2] == "Broken \ufffd\ufffd bytes here."
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [26, 3, 3]
    assert splits["test"][0] == "Paragraph 29 of file a.\nIt has two lines."
    builder = LocalText(
        files=cfg.files, doc_split="paragraph", holdout=(0.1, 0.1), data_dir=cfg.data_dir
    )
    stats = builder.info.metadata["stats"]
    assert stats["replacement_chars"] == 2 and stats["documents"] == 32
    assert "tensorflow" not in sys.modules


def test_local_text_line_split_and_rebuild_on_change(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"line {i}" for i in range(20)))
    cfg = _files_cfg(tmp_path, str(path), doc_split="line")
    first = LocalText(files=str(path), doc_split="line", data_dir=cfg.data_dir)
    assert _decoded(open_split(cfg, "test")) == ["line 18", "line 19"]
    time.sleep(0.01)
    path.write_text("\n".join(f"line {i}" for i in range(40)))
    second = LocalText(files=str(path), doc_split="line", data_dir=cfg.data_dir)
    assert second.builder_config.name != first.builder_config.name
    assert _decoded(open_split(cfg, "test")) == [f"line {i}" for i in range(36, 40)]


def test_local_text_errors_name_the_field(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match=r"^data\.files: no such file or folder: .*nope\.txt"):
        validate_data_config(_files_cfg(tmp_path, (missing,)))
    with pytest.raises(ConfigError, match=r"^data\.files"):
        open_split(_files_cfg(tmp_path, missing), "train")
    one = tmp_path / "one.txt"
    one.write_text("A single paragraph.\nStill the same paragraph.\n")
    with pytest.raises(ConfigError, match=r"^data\.doc_split"):
        open_split(_files_cfg(tmp_path, str(one), doc_split="file"), "train")
    with pytest.raises(ConfigError, match=r"^data\.holdout"):
        validate_data_config(_files_cfg(tmp_path, str(one), holdout=(0.5, 0.6)))


@pytest.mark.parametrize("form", ["commas", "tuple"])
def test_command_line_files_override(tmp_path, text_files, monkeypatch, form):
    # config_flags parses a tuple field's override with literal_eval: relative paths may be
    # joined by commas; absolute paths need the quoted tuple form.
    monkeypatch.chdir(text_files)
    names = "a.txt,sub/b.txt" if form == "commas" else f"('{text_files}/a.txt','sub/b.txt')"
    argv = ["prog", f"--config.data.files={names}", "--config.data.holdout=(0.1,0.1)"]
    flag_values = flags.FlagValues()
    root = ml_collections.ConfigDict({"data": default_data_config()})
    config_flags.DEFINE_config_dict("config", root, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    cfg = flag_values.config.data
    cfg.source = "files"
    cfg.data_dir = str(tmp_path / "tfds")
    validate_data_config(cfg)
    with pytest.warns(UserWarning, match="invalid UTF-8"):
        assert len(open_split(cfg, "train")) == 26


# ---------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("field", "value", "error_field"),
    [
        ("source", "web", "data.source"),
        ("unit", "words", "data.unit"),
        ("doc_split", "sentence", "data.doc_split"),
        ("chunk_chars", -1, "data.chunk_chars"),
        ("worker_count", -2, "data.worker_count"),
        ("read_threads", -1, "data.read_threads"),
        ("text_key", "", "data.text_key"),
    ],
)
def test_validate_data_config_names_the_field(field, value, error_field):
    cfg = default_data_config()
    cfg[field] = value
    with pytest.raises(ConfigError) as info:
        validate_data_config(cfg)
    assert info.value.field == error_field


def test_validate_subword_needs_a_vocab_size():
    cfg = default_data_config()
    cfg.unit = "subword"
    with pytest.raises(ConfigError, match=r"^data\.vocab_size"):
        validate_data_config(cfg)
    cfg.vocab_size = 1000
    validate_data_config(cfg)


# ---------------------------------------------------------------- TFDS catalog datasets


def test_unknown_tfds_name_fails_fast_offline(tmp_path):
    cfg = default_data_config()
    cfg.source = "tfds"
    cfg.tfds_name = "tiny_shakespear"
    cfg.data_dir = str(tmp_path)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^data\.tfds_name: .*tiny_shakespeare"):
        validate_data_config(cfg)
    with pytest.raises(ConfigError, match=r"^data\.tfds_name"):
        open_split(cfg, "train")
    assert time.perf_counter() - start < 10
    assert not os.listdir(tmp_path)  # nothing downloaded or prepared


PLAY = (
    "First Speaker:\nWe meet again beside the river gate,\nwhere all our quarrels started.\n\n"
    "Second Speaker:\nThen let them end there too; the tide is turning.\n\n"
    "First Speaker:\nIt turns for you, perhaps, and not for me.\n\n"
    "Second Speaker:\nFor both of us, or neither. Come, sit down."
)


def _one_document_source(self, split, **kwargs):
    # tiny_shakespeare stores each split as ONE record holding the whole text.
    del self, kwargs
    return [{"text": PLAY.encode()}] if split == "test" else [{"text": (PLAY * 5).encode()}]


def test_tfds_catalog_dataset_with_chunking_end_to_end(tmp_path):
    cfg = default_data_config()
    cfg.source = "tfds"
    cfg.tfds_name = "tiny_shakespeare"
    cfg.data_dir = str(tmp_path)
    cfg.chunk_chars = 50
    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=_one_document_source
    ):
        validate_data_config(cfg)
        test = open_split(cfg, "test")
        train = open_split(cfg, "train")
    chunks = _decoded(test)
    assert len(chunks) == 4  # one per speech: each cut at a paragraph break
    assert all(c.endswith(("started.", "turning.", "for me.", "sit down.")) for c in chunks)
    tok = CharTokenizer.build(read_documents(train))
    windows = lm_eval_windows(test, tok, seq_len=32)
    # Chunks joined by eos ("\n\n") give back the original text exactly.
    targets = windows["targets"][windows["mask"] > 0]
    assert tok.decode(targets) == PLAY + "\n\n"
    batch = next(
        iter(lm_train_dataset(train, tok, 16, 2, seed=0, process_index=0, process_count=1))
    )
    assert batch["inputs"].shape == (2, 16)
    assert "tensorflow" not in sys.modules


def test_tfds_mock_random_records_and_text_key(tmp_path):
    cfg = default_data_config()
    cfg.source = "tfds"
    cfg.tfds_name = "ag_news_subset"
    cfg.data_dir = str(tmp_path)
    cfg.text_key = "description"
    cfg.splits = {"train": "train", "validation": "test", "test": "test"}
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        source = open_split(cfg, "validation")
        assert len(source) == 7
        assert read_documents(source)
        cfg.text_key = "text"
        with pytest.raises(ConfigError, match=r"^data\.text_key: .*description"):
            open_split(cfg, "train")
    assert "tensorflow" not in sys.modules


def test_chunk_bounds_cover_text():
    text = "word " * 100 + "\n\n" + "x" * 300
    bounds = chunk_bounds(text, 50)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(end - start <= 100 for start, end in bounds)


# ---------------------------------------------------------------- grain pipelines

# One distinct character per document, so every token says which document it came from.
N_DOCS = 40


def _doc_source(n=N_DOCS, length=7):
    return [{"text": chr(0x4E00 + i) * (length + i % 5)} for i in range(n)]


@pytest.fixture(scope="module")
def doc_tok():
    return CharTokenizer.build([r["text"] for r in _doc_source()])


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _same(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_train_batches_shapes_shift_and_no_dropped_tokens(doc_tok):
    ds = lm_train_dataset(
        _doc_source(), doc_tok, seq_len=8, batch_size=4, seed=0, process_index=0, process_count=1
    )
    batches = _take(iter(ds), 30)
    batch = batches[0]
    assert batch["inputs"].shape == (4, 8) and batch["inputs"].dtype == np.int32
    assert batch["targets"].dtype == np.int32 and batch["mask"].dtype == np.float32
    np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    assert (batch["mask"] == 1).all()
    # Windows are consecutive T + 1 token slices of one stream of whole documents + eos.
    stream = np.concatenate(
        [
            np.append(row_in, row_t[-1])
            for b in batches
            for row_in, row_t in zip(b["inputs"], b["targets"])
        ]
    )
    text = doc_tok.decode(stream)
    docs = text.split("\n\n")
    for doc in docs[:-1]:  # the last one may be cut by the end of the batches we took
        assert len(set(doc)) == 1 and len(doc) == 7 + (ord(doc[0]) - 0x4E00) % 5
    assert len(set(docs[:N_DOCS])) == N_DOCS  # one epoch: every document exactly once


def test_train_seed_determinism(doc_tok):
    def batches(seed):
        ds = lm_train_dataset(_doc_source(), doc_tok, 8, 4, seed, 0, 1)
        return _take(iter(ds), 10)

    assert _same(batches(3), batches(3))
    assert not _same(batches(3), batches(4))


def test_train_iterator_state_restores_exactly(doc_tok):
    ds = lm_train_dataset(_doc_source(), doc_tok, 8, 4, 0, 0, 1)
    iterator = iter(ds)
    _take(iterator, 7)
    state = iterator.get_state()
    expected = _take(iterator, 25)  # crosses epoch boundaries (40 short docs)
    resumed = iter(lm_train_dataset(_doc_source(), doc_tok, 8, 4, 0, 0, 1))
    resumed.set_state(state)
    assert _same(_take(resumed, 25), expected)


def test_hosts_read_disjoint_documents(doc_tok):
    seen = []
    for host in (0, 1):
        ds = lm_train_dataset(
            _doc_source(), doc_tok, 8, 2, seed=0, process_index=host, process_count=2
        )
        ids = np.concatenate([b["inputs"].ravel() for b in _take(iter(ds), 40)])
        seen.append(set(ids.tolist()) - {EOS_ID})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == N_DOCS


def test_empty_documents_are_skipped_and_counted(doc_tok):
    source = [*_doc_source(6), {"text": b""}, {"text": b"  \n "}]
    ds = lm_train_dataset(source, doc_tok, 8, 2, seed=0, process_index=0, process_count=1)
    _take(iter(ds), 20)
    assert ds.pack_stats.empty_skipped >= 2 and ds.text_stats.empty_skipped >= 2
    empty = lm_train_dataset([{"text": ""}] * 3, doc_tok, 8, 2, 0, 0, 1)
    with pytest.raises(ValueError, match="empty"):
        next(iter(empty))


def test_eval_windows_cover_every_target_once():
    docs = ["First document, é.", "Second one\nwith a line break.", "Third."]
    source = [{"text": d.encode()} for d in docs] + [{"text": b""}]
    tok = ByteTokenizer()
    with pytest.warns(UserWarning, match="skipped 1 empty"):
        windows = lm_eval_windows(source, tok, seq_len=16)
    expected = np.concatenate([np.append(tok.encode(d), EOS_ID) for d in docs])
    targets, mask = windows["targets"], windows["mask"]
    assert targets.shape == windows["inputs"].shape == mask.shape
    np.testing.assert_array_equal(targets[mask > 0], expected)
    np.testing.assert_array_equal(windows["inputs"].ravel()[1:], targets.ravel()[:-1])
    assert windows["inputs"][0, 0] == EOS_ID
    assert mask[-1, -1] == 0 and (targets[mask == 0] == 0).all()
    assert windows["n_tokens"] == len(expected)
    assert windows["n_bytes"] == sum(len(d.encode()) for d in docs) + 2 * len(docs)
    assert windows["n_chars"] == sum(len(d) for d in docs) + 2 * len(docs)
    # the bootstrap's test units: blocks of 1 KB within documents, here one per document
    owners = np.concatenate([np.full(len(tok.encode(d)) + 1, i) for i, d in enumerate(docs)])
    np.testing.assert_array_equal(windows["unit_ids"][mask > 0], owners)
    assert (windows["unit_ids"][mask == 0] == -1).all()
    assert windows["unit_bytes"].tolist() == [len(d.encode()) + 2 for d in docs]
    first = lm_eval_windows(source[:3], tok, seq_len=16, max_windows=2)
    assert first["targets"].shape == (2, 16) and first["n_tokens"] == 32
    np.testing.assert_array_equal(first["targets"], targets[:2])
    assert first["unit_bytes"].sum() == first["n_bytes"]  # the kept targets only


def test_read_documents_decodes_and_limits():
    source = [{"text": b"one"}, {"text": "two"}, {"text": b"\xff"}, {"text": b"  "}]
    with pytest.warns(UserWarning, match="skipped 1 empty"):
        assert read_documents(source) == ["one", "two", "\ufffd"]
    assert read_documents(source, limit=2) == ["one", "two"]
    assert re.fullmatch(r"[a-z]+", read_documents(source, limit=1)[0])
