"""Labelled-text readers, the data block -> splits, vocabulary and batches
(``lexlm.data.labelled``)."""

import numpy as np
import pytest

from lexlm.data import labelled as lab
from lexlm.data.config import default_data_config
from lexlm.errors import ConfigError, DataError


def test_sst2_reader_header_bad_lines_and_invalid_utf8():
    data = b"label\tsentence\n1\tgood film\n0\tbad \xff film\nno label here\n1\t   \n\n0\tdull\n"
    got, stats = lab.parse_sst2(data)
    assert got.texts == ("good film", "bad \ufffd film", "dull")
    np.testing.assert_array_equal(got.labels, [1, 0, 0])
    assert (stats.read, stats.unparsable, stats.empty, stats.replaced_bytes) == (3, 1, 1, 1)
    swapped, _ = lab.parse_sst2(b"sentence\tlabel\nfine\t1\n")
    assert swapped.texts == ("fine",) and swapped.labels.tolist() == [1]
    with pytest.raises(DataError, match=r"^dev\.tsv: line 3: label 2 is not an SST-2 class"):
        lab.parse_sst2(b"1\tgood\n0\tbad\n2\tthird class\n", "dev.tsv")


def test_ag_news_reader_is_one_based_and_joins_title_and_text():
    data = b'label,title,description\n3,"Oil, up",Prices rose.\n1,World,News\\here\nx,bad,row\n'
    got, stats = lab.parse_ag_news(data)
    assert got.texts == ("Oil, up Prices rose.", "World News here")
    assert got.labels.tolist() == [2, 0]
    assert stats.unparsable == 1
    for label in (b"0", b"5"):  # classes 1-4 only: another label is not a new class
        with pytest.raises(DataError, match=rf"^ag\.csv: line 2: label {label.decode()} is not"):
            lab.parse_ag_news(b"1,a,b\n" + label + b",c,d\n", "ag.csv")


def test_vader_ratings_drop_neutral_and_count_it():
    data = b"1\t2.5\tgreat\r\n2\t-0.1\tmeh\r\n3\t0.0\tplain\r\n4\tnan?\tx\r\n"
    got, stats = lab.parse_vader_ratings(data)
    assert got.texts == ("great", "meh") and got.labels.tolist() == [1, 0]
    assert (stats.neutral, stats.unparsable) == (1, 1)


def test_vader_archive_missing_or_corrupt_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LEXLM_VADER_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lab, "__file__", str(tmp_path / "a" / "b" / "labelled.py"))
    with pytest.raises(DataError, match="pip download"):
        lab.read_vader_movies(str(tmp_path / "nowhere"))
    (tmp_path / lab.VADER_SDIST).write_bytes(b"not the archive")
    with pytest.raises(DataError, match="SHA-256"):
        lab.read_vader_movies(str(tmp_path))
    monkeypatch.setenv("LEXLM_VADER_DIR", str(tmp_path))  # the folder the lookup tries first
    with pytest.raises(DataError, match="SHA-256"):
        lab.read_vader_movies()


def test_embedded_vader_movies_are_the_documented_set():
    got, stats = lab.read_vader_movies()  # installed by the setup command
    assert len(got) + stats.neutral == 10605 and stats.neutral == 37
    assert stats.unparsable == 0 and 0.45 < got.labels.mean() < 0.55


def test_read_splits_from_the_data_block(tmp_path):
    c = default_data_config("vader_movies")
    c.holdout, c.split_seed = (0.1, 0.1), 0
    got = lab.read_splits(c)
    assert got.classes == 2 and set(got.stats) == {"all"}
    assert {k: len(v) for k, v in got.splits.items()} == {"train": 8454, "validation": 1057,
                                                           "test": 1057}  # fmt: skip
    files = {s: tmp_path / f"{s}.tsv" for s in ("train", "validation", "test")}
    for i, path in enumerate(files.values()):
        path.write_bytes(b"label\tsentence\n" + b"".join(b"%d\ttext %d\n" % (j % 2, j)
                                                           for j in range(3 + i)))  # fmt: skip
    c = default_data_config("files")
    c.format = "sst2"
    c.split_files = {s: str(p) for s, p in files.items()}
    got = lab.read_splits(c)
    assert got.classes == 2 and {k: len(v) for k, v in got.splits.items()} == {
        "train": 3, "validation": 4, "test": 5}  # fmt: skip
    with pytest.raises(ConfigError, match=r"^classes: the data has 2 classes"):
        lab.read_splits(c, classes=3)
    files["validation"].write_bytes(b"label\tsentence\n\n")
    with pytest.raises(DataError, match=r"validation\.tsv \(data\.split_files\.validation\): "
                                         r"split 'validation' has no labelled text"):  # fmt: skip
        lab.read_splits(c)
    csv = tmp_path / "ag.csv"
    csv.write_bytes(b"".join(b'%d,"t %d",d\n' % (1 + j % 4, j) for j in range(40)))
    c = default_data_config("files")
    c.update(format="ag_news", files=(str(csv),), holdout=(0.25, 0.25), split_seed=1)
    got = lab.read_splits(c)
    assert got.classes == 4 and len(got.splits["test"]) == 10
    assert set(got.splits["train"].labels.tolist()) <= {0, 1, 2, 3}


def test_tfds_source_offline_class_count_and_hidden_labels(tmp_path):
    import tensorflow_datasets as tfds

    c = default_data_config("tfds")
    c.update(tfds_name="ag_news_subset", data_dir=str(tmp_path), text_key="title,description")
    c.splits = {"train": "train", "validation": "test", "test": "test"}
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        got = lab.read_splits(c)
    assert {k: len(v) for k, v in got.splits.items()} == {"train": 7, "validation": 7, "test": 7}
    assert got.classes == 4  # the dataset's label feature
    assert set(got.splits["train"].labels.tolist()) <= {0, 1, 2, 3}

    def records(label):
        def source(self, split, **kwargs):  # like glue/sst2's test split: label -1
            del self, kwargs
            return [{"title": b"Oil", "description": b"prices \xffrose",
                     "label": label if split == "test" else 1}]  # fmt: skip

        return source

    c.splits = {"train": "train", "validation": "train", "test": "test"}
    hidden, outside = r"test.*labels are hidden \(-1\)", "test.*label 7 is outside the 4"
    for label, message in ((-1, hidden), (7, outside)):
        with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                    as_data_source_fn=records(label)):  # fmt: skip
            with pytest.raises(DataError, match=rf"^data\.splits\.{message}"):
                lab.read_splits(c)


def test_fixed_split_is_seeded_disjoint_and_complete():
    data = lab.Labelled(tuple(f"t{i}" for i in range(100)), np.arange(100) % 2)
    a, b = lab.fixed_split(data, (0.1, 0.2), 3), lab.fixed_split(data, (0.1, 0.2), 3)
    assert a["train"].texts == b["train"].texts
    sizes = {k: len(v) for k, v in a.items()}
    assert sizes == {"train": 70, "validation": 10, "test": 20}
    every = set(a["train"].texts) | set(a["validation"].texts) | set(a["test"].texts)
    assert len(every) == 100
    assert lab.fixed_split(data, (0.1, 0.2), 4)["test"].texts != a["test"].texts
    with pytest.raises(ConfigError, match=r"data\.holdout"):
        lab.fixed_split(data, (0.5, 0.6), 0)


def test_vocab_and_encoding_count_truncation_unknowns_and_empty_texts(tmp_path):
    assert lab.word_tokens("Don't STOP, film's end!") == [
        "don't",
        "stop",
        ",",
        "film's",
        "end",
        "!",
    ]
    vocab = lab.ClassVocab.build(["a a b", "b c a"], min_count=2)
    assert vocab.words == ("a", "b") and vocab.size == 4
    vocab.save(tmp_path)
    assert lab.ClassVocab.load(tmp_path).words == vocab.words
    assert lab.ClassVocab.load(tmp_path).sha256 == vocab.sha256 != lab.ClassVocab(["b", "a"]).sha256
    data = lab.Labelled(("a b c a b", "", "z"), np.array([1, 0, 1], np.int32))
    enc = lab.encode_texts(data, vocab, max_len=3)
    np.testing.assert_array_equal(enc.tokens, [[2, 3, lab.UNK], [lab.UNK, 0, 0], [lab.UNK, 0, 0]])
    assert (enc.truncated, enc.empty) == (1, 1)
    assert enc.unknown == 3  # c, the empty text's stand-in, z


def test_batches_resume_exactly_and_eval_batches_cover_each_example_once():
    tokens = np.arange(10, dtype=np.int32)[:, None] + 1
    enc = lab.Encoded(tokens, np.arange(10, dtype=np.int32) % 2, 0, 0, 0)
    run = lab.ClassBatches(enc, 4, seed=1)
    first = [next(run)["tokens"][:, 0].tolist() for _ in range(5)]
    resumed = lab.ClassBatches(enc, 4, seed=1)
    resumed.set_state({"step": 3})
    assert [next(resumed)["tokens"][:, 0].tolist() for _ in range(2)] == first[3:]
    assert sorted(first[0] + first[1]) == sorted(set(first[0] + first[1]))  # one epoch: no repeats
    batches = list(lab.eval_batches(enc, 4))
    seen = np.concatenate([b["tokens"][b["weight"] > 0, 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(1, 11))
    assert batches[-1]["weight"].tolist() == [1, 1, 0, 0]
    # two hosts: each yields its half of every global batch
    halves = [lab.ClassBatches(enc, 4, seed=1, hosts=(i, 2)) for i in range(2)]
    assert [next(h)["tokens"][:, 0].tolist() for h in halves] == [first[0][:2], first[0][2:]]
    with pytest.raises(DataError, match=r"fewer than train\.batch_size = 11"):
        lab.ClassBatches(enc, 11)
