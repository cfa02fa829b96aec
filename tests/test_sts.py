"""Similarity data and metrics (``lexlm.data.sts``, ``lexlm.eval.sts``) on known answers, and
the encoders' text from a ``data`` block (``lexlm.data.sentence_pairs.sentence_data``)."""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from lexlm.data import sts as data
from lexlm.data.config import default_data_config
from lexlm.data.sentence_pairs import sentence_data
from lexlm.errors import ConfigError, DataError
from lexlm.eval import sts


def _unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


class AngleEmbed:
    """A fake model: each text is a 2-D vector at a fixed angle (optionally scaled); records
    every call so that tests can count what was embedded."""

    def __init__(self, angles: dict[str, float], scale: float = 1.0):
        self.angles, self.scale, self.calls = angles, scale, []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.asarray([_unit(self.angles[t]) for t in texts]) * self.scale


# --- correlations -------------------------------------------------------------------------


def test_rankdata_and_spearman_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 6, size=40).astype(np.float64)  # many ties
        b = a + rng.integers(-3, 4, size=40)
        np.testing.assert_array_equal(sts.rankdata(a), scipy.stats.rankdata(a))
        assert sts.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b)[0], abs=1e-12)
        assert sts.pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], abs=1e-12)
    np.testing.assert_array_equal(sts.rankdata(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])
    assert sts.rankdata(np.zeros(0)).shape == (0,)


def test_spearman_exact_values_nan_and_errors():
    x = np.linspace(-2.0, 3.0, 17)
    assert sts.spearman(x, np.exp(3 * x)) == 1.0  # monotone transform: exactly 1
    assert sts.spearman(x, -(x**3)) == -1.0
    assert sts.spearman(x, x[::-1].copy()) == -1.0
    assert math.isnan(sts.spearman(x, np.full_like(x, 0.1)))
    assert math.isnan(sts.pearson(np.full(5, 0.1), np.arange(5.0)))
    assert math.isnan(sts.spearman(np.array([1.0]), np.array([2.0])))
    assert math.isnan(sts.pearson(np.array([1.0, np.nan, 3.0]), np.arange(3.0)))
    with pytest.raises(ValueError, match="equal lengths"):
        sts.spearman(np.arange(3.0), np.arange(4.0))
    with pytest.raises(ValueError, match="equal lengths"):
        sts.pearson(np.arange(3.0), np.arange(4.0))
    with pytest.raises(ValueError, match="NaN"):
        sts.rankdata(np.array([1.0, np.nan]))


def test_cosine_rows_any_norm_and_zero_rows():
    a = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 2.0], [-5.0, -5.0], [1.0, 0.0]])
    np.testing.assert_allclose(sts.cosine_rows(a, b), [math.sqrt(0.5), -1.0, 0.0])
    with pytest.raises(ValueError, match="one shape"):
        sts.cosine_rows(a, b[:2])


# --- STS-B reading ------------------------------------------------------------------------


def test_parse_stsb_keeps_quotes_ignores_extra_fields_and_counts_drops():
    lines = [
        b'main-captions\tMSRvid\t2012test\t0001\t5.000\tA "man" plays.\tA man is playing.',
        b"main-news\theadlines\t2013\t0002\t1.5\t Oil rose \tPrices fell\tsrc-a\tsrc-b",
        b"main-forums\tdeft\t2014\t0003\t2.0\t   \tnot empty",
        b"main-forums\tdeft\t2014\t0006\t3.0\tnot empty\t\t",
        b"genre\tfile\tyear\tid\tscore\tsentence1\tsentence2",  # a header: non-numeric score
        b"main-news\theadlines\t2013\t0004\tnan\tx\ty",
        b"too\tfew\tfields",
        b"",
        b"main-news\theadlines\t2015\t0005\t0.25\tcaf\xe9 \xff\tcafe\r",
    ]
    stats = data.PairStats()
    got = data.parse_stsb(lines, stats)
    assert got.left == ('A "man" plays.', "Oil rose", "caf\ufffd \ufffd")
    assert got.right == ("A man is playing.", "Prices fell", "cafe")
    assert got.scores.dtype == np.float32
    np.testing.assert_array_equal(got.scores, [5.0, 1.5, 0.25])
    assert len(got) == 3
    assert (stats.read, stats.empty, stats.unparsable, stats.replaced_bytes) == (3, 2, 3, 1)
    total = stats.merge(data.PairStats(1, 2, 3, 4))
    assert dataclasses.astuple(total) == (4, 4, 6, 5)


def test_read_stsb_reads_bytes_from_a_file(tmp_path):
    path = tmp_path / "sts-dev.csv"
    path.write_bytes(b"g\tf\t2012\t1\t4.0\ta b\tc d\r\ng\tf\t2012\t2\t1.0\te\tf\n")
    got = data.read_stsb(str(path))
    assert got.left == ("a b", "e") and got.right == ("c d", "f")
    with pytest.raises(ValueError, match="not found"):
        data.read_stsb(str(tmp_path / "missing.csv"))


# --- document similarity ------------------------------------------------------------------


def test_parse_doc_similarity_upper_triangle():
    docs = [b"first doc", b" second doc ", b"third"]
    matrix = [b"1\t0.5\t0.25", b"0\t1\t0.75", b"0\t0\t1", b""]
    got = data.parse_doc_similarity(docs, matrix)
    assert got.docs == ("first doc", "second doc", "third")
    assert got.pairs.dtype == np.int32
    assert got.pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    np.testing.assert_array_equal(got.scores, np.float32([0.5, 0.25, 0.75]))
    with pytest.raises(ValueError, match="3x3"):
        data.parse_doc_similarity(docs, matrix[:2])
    with pytest.raises(ValueError, match="2x2"):
        data.parse_doc_similarity(docs[:2], matrix)
    with pytest.raises(ValueError, match="3x3"):
        data.parse_doc_similarity(docs, [b"1\t0.5", b"0\t1\t0.75", b"0\t0\t1"])
    with pytest.raises(ValueError, match="empty"):
        data.parse_doc_similarity([b"a", b"  ", b"c"], matrix)
    with pytest.raises(ValueError, match="non-numeric"):
        data.parse_doc_similarity(docs, [b"1\tx\t0.25", b"0\t1\t0.75", b"0\t0\t1"])


def test_read_lee_similarity_from_installed_gensim():
    docs_path, matrix_path = data.lee_similarity_paths()
    assert docs_path.endswith("lee.cor") and matrix_path.endswith("similarities0-1.txt")
    got = data.read_lee_similarity()
    assert len(got.docs) == 50 and all(got.docs)
    assert got.pairs.shape == (1225, 2) and len(got) == 1225
    assert (got.pairs[:, 0] < got.pairs[:, 1]).all()
    assert 0.0 <= got.scores.min() and got.scores.max() <= 1.0
    assert got.scores.std() > 0  # real judgements, not the zero lower triangle
    assert got.replaced_bytes == 1  # one Latin-1 pound sign in lee.cor


def test_doc_chunks_round_trip_max_length_and_long_words():
    rng = np.random.default_rng(1)
    words = ["a", "to", "the", "news", "about", "quickly", "government"]
    for max_chars in (10, 11, 17, 40):
        doc = "  ".join(rng.choice(words, size=60).tolist()) + "\n\t end "
        chunks = data.doc_chunks(doc, max_chars)
        assert " ".join(chunks) == " ".join(doc.split())
        assert all(0 < len(c) <= max_chars for c in chunks)
        # greedy: no chunk could have taken the next chunk's first word
        for c, nxt in itertools.pairwise(chunks):
            assert len(c) + 1 + len(nxt.split()[0]) > max_chars
    assert data.doc_chunks("ab abcdefghij cd ef", 4) == ["ab", "abcd", "efgh", "ij", "cd", "ef"]
    assert data.doc_chunks("abcdefghij xy", 4) == ["abcd", "efgh", "ij", "xy"]
    assert data.doc_chunks("abcdefgh z", 4) == ["abcd", "efgh", "z"]
    assert data.doc_chunks("abcdefg z", 4) == ["abcd", "efg", "z"]
    assert data.doc_chunks("abcdef z", 4) == ["abcd", "ef z"]
    assert data.doc_chunks("", 5) == [] and data.doc_chunks(" \n ", 5) == []
    with pytest.raises(ValueError, match="max_chars"):
        data.doc_chunks("a", 0)


# --- STS scores ---------------------------------------------------------------------------


def _known_pairs():
    """Left "a{k}" at angle 0.01 k, right "b{k}" at 0.01 k + theta_k with theta decreasing in
    the gold score: the cosine, cos(theta_k), is an increasing function of the score. Left
    "a0" appears twice (pairs 0 and 4) so that dedupe has something to do."""
    gold = np.float32([0.0, 1.0, 2.0, 3.0, 4.5])
    theta = 1.4 - 0.3 * gold.astype(np.float64)
    left = ("a0", "a1", "a2", "a3", "a0")
    right = ("b0", "b1", "b2", "b3", "b4")
    angles = {f"a{k}": 0.01 * k for k in range(4)}
    angles.update({f"b{k}": angles[left[k]] + theta[k] for k in range(5)})
    return data.Pairs(left, right, gold), angles, theta


def test_sts_scores_known_answer_and_dedupe():
    pairs, angles, theta = _known_pairs()
    embed = AngleEmbed(angles, scale=3.0)  # not unit norm
    got = sts.sts_scores(embed, pairs, batch=2)
    assert got["spearman"] == 100.0
    expected_r = np.corrcoef(np.cos(theta), pairs.scores.astype(np.float64))[0, 1]
    assert got["pearson"] == pytest.approx(100 * expected_r, abs=1e-9)
    assert got["n"] == 5
    # anisotropy: mean cosine between the distinct left sentences a0..a3 (angles 0.01 k)
    left_angles = 0.01 * np.arange(4)
    cos = np.cos(left_angles[:, None] - left_angles[None, :])
    assert got["anisotropy"] == pytest.approx((cos.sum() - 4) / 12, abs=1e-12)
    embedded = [t for call in embed.calls for t in call]
    assert sorted(embedded) == sorted(set(pairs.left) | set(pairs.right))  # each once
    assert len(embed.calls) == 5 and all(len(c) <= 2 for c in embed.calls)  # 9 texts, batch 2


def test_sts_scores_reversed_gold_gives_minus_100_and_empty_is_nan():
    pairs, angles, _ = _known_pairs()
    flipped = data.Pairs(pairs.left, pairs.right, -pairs.scores)
    assert sts.sts_scores(AngleEmbed(angles), flipped)["spearman"] == -100.0
    empty = sts.sts_scores(AngleEmbed({}), data.Pairs((), (), np.zeros(0, np.float32)))
    assert empty["n"] == 0 and math.isnan(empty["spearman"]) and math.isnan(empty["anisotropy"])


def test_embed_texts_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        sts.embed_texts(lambda texts: np.zeros(len(texts)), ["a", "b"])


def test_doc_similarity_scores_normalise_chunks_then_the_mean():
    # Chunks of 3 characters = one word each. Word vectors with different norms: a mean of
    # raw vectors would lean to "ccc" (norm 3); the mean of unit vectors does not.
    vectors = {
        "aaa": [2.0, 0.0, 0.0, 0.0],
        "bbb": [0.0, 1.0, 0.0, 0.0],
        "ccc": [0.0, 0.0, 3.0, 0.0],
        "ddd": [0.0, 0.0, 0.0, 1.0],
        "eee": [0.5, 0.0, 0.0, 0.0],
    }
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.asarray([vectors[t] for t in texts])

    docs = ("aaa bbb", "aaa ccc", "ddd", "eee eee ccc")
    got = sts.doc_embeddings(embed, docs, max_chars=3)
    r2 = 1 / math.sqrt(2)
    expected = np.array(
        [[r2, r2, 0, 0], [r2, 0, r2, 0], [0, 0, 0, 1], [2 / math.sqrt(5), 0, 1 / math.sqrt(5), 0]]
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert sorted(t for c in calls for t in c) == sorted(vectors)  # chunks deduplicated

    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], np.int32)
    human = np.float32([0.9, 0.1, 0.6, 0.2, 0.8, 0.3])
    sim = data.DocSimilarity(docs, pairs, human)
    scores = sts.doc_similarity_scores(embed, sim, max_chars=3)
    cos = np.array([0.5, 0.0, math.sqrt(0.4), 0.0, 3 / math.sqrt(10), 0.0])
    assert scores["n"] == 6
    expected_rho = scipy.stats.spearmanr(cos, human)[0]
    assert scores["spearman"] == pytest.approx(100 * expected_rho, abs=1e-9)
    expected_r = np.corrcoef(cos, human.astype(np.float64))[0, 1]
    assert scores["pearson"] == pytest.approx(100 * expected_r, abs=1e-9)


def test_tfidf_embedder_known_vectors():
    embed = sts.tfidf_embedder(["the cat sat", "the dog sat", "a bird"])
    v = embed(["The cat, the CAT!", "zebra"])
    idf = lambda df: np.log(4 / (1 + df)) + 1
    # vocabulary by document frequency: the, sat (2 texts), then cat, dog, a, bird
    assert v.shape == (2, 6)
    np.testing.assert_allclose(v[0], [2 * idf(2), 0, 2 * idf(1), 0, 0, 0], rtol=1e-6)
    assert not v[1].any()  # unknown words are ignored
    assert sts.cosine_rows(embed(["cat"]), embed(["dog"]))[0] == 0.0


# --- the data block: judgements and training text (lexlm.data.sts, sentence_pairs) ----------


def test_a_score_outside_0_5_is_one_error_naming_the_line():
    lines = [b"g\tf\t2012\t1\t4.0\ta b\tc d", b"g\tf\t2012\t2\t-7\te\tf"]
    with pytest.raises(
        DataError, match=r"^dev\.csv line 2: score -7 lies outside STS-B's \[0, 5\]"
    ):
        data.parse_stsb(lines, name="dev.csv")


def test_split_doc_similarity_keeps_pairs_inside_each_half():
    docs = tuple(f"doc {i}" for i in range(6))
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)], np.int32)
    scores = np.array([10 * i + j for i, j in pairs], np.float32)
    dev, test = data.split_doc_similarity(data.DocSimilarity(docs, pairs, scores), seed=1)
    assert len(dev.docs) == 3 and len(test.docs) == 3 and not set(dev.docs) & set(test.docs)
    for half in (dev, test):
        assert len(half.pairs) == 3
        for (i, j), s in zip(half.pairs, half.scores):
            a, b = int(half.docs[i].split()[1]), int(half.docs[j].split()[1])
            assert s == 10 * min(a, b) + max(a, b)


def _write_stsb(path, n, seed):
    rng = np.random.default_rng(seed)
    words = "cat dog bird fish tree house road car boat sun moon star".split()
    lines = []
    for i in range(n):
        a = " ".join(rng.choice(words, 5))
        b = " ".join(rng.choice(words, 5))
        lines.append(f"main-captions\tMSRvid\t2012\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{a}.\t{b}.")
    lines.append("main-captions\tMSRvid\t2012\tbad\tnot-a-number\tx\ty")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_stsb_files_data_block(tmp_path):
    c = default_data_config("files")
    c.format = "stsb"
    for split, n in (("train", 40), ("validation", 10), ("test", 10)):
        c.split_files[split] = _write_stsb(tmp_path / f"{split}.csv", n, len(split))
    got = sentence_data(c)
    assert len(got.dev) == 10 and len(got.test) == 10 and got.docs == []
    assert got.stats["train"]["unparsable"] == 1 and got.stats["train_pairs"] == 40
    assert got.stats["sup_pairs"] == int(np.sum(data.read_stsb(c.split_files.train).scores >= 4))
    assert len(sentence_data(c, max_sentences=7).sentences) == 7
    # one file, cut by a seeded permutation into data.holdout fractions
    one = default_data_config("files")
    one.update(format="stsb", files=(c.split_files.train,), holdout=(0.25, 0.25))
    cut = data.read_similarity(one)
    assert (len(cut.train), len(cut.validation), len(cut.test)) == (20, 10, 10)
    assert not set(cut.train.left) & set(cut.test.left)
    c.split_files.test = str(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match=r"data\.split_files\.test"):
        sentence_data(c)


def test_lee_data_block():
    got = sentence_data(default_data_config("lee"))
    assert len(got.dev.docs) == 25 and len(got.test.docs) == 25
    assert len(got.dev.pairs) == 300 and len(got.test.pairs) == 300
    assert not set(got.dev.docs) & set(got.test.docs)
    assert got.stats["documents"] == 293 and max(map(len, got.sentences)) <= 120
    assert got.sup is None and got.stats["sup_pairs"] == 0


def test_tfds_source_offline_and_hidden_scores_are_refused(tmp_path):
    import tensorflow_datasets as tfds

    c = default_data_config("tfds")
    c.update(tfds_name="ag_news_subset", data_dir=str(tmp_path), text_key="sentence1,sentence2")

    def records(self, split, **kwargs):  # glue/stsb's fields; its test split hides scores
        del self, kwargs
        score = -1.0 if split == "test" else 3.5
        return [{"sentence1": b"A cat sits.", "sentence2": b"A cat is \xffsitting.",
                 "label": score}, {"sentence1": b"", "sentence2": b"x", "label": 1.0}]  # fmt: skip

    c.splits = {"train": "train", "validation": "train", "test": "train"}
    mock = dict(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=records)
    with tfds.testing.mock_data(**mock):
        got = sentence_data(c)
    assert len(got.test) == 1 and got.test.right == ("A cat is \ufffdsitting.",)
    assert got.stats["train"]["empty"] == 1 and got.stats["train"]["replaced_bytes"] == 1
    assert got.stats["sup_pairs"] == 0
    c.splits.test = "test"
    with tfds.testing.mock_data(**mock):
        with pytest.raises(ConfigError, match=r"^data\.splits\.test: .*unlabelled"):
            sentence_data(c)


# --- the per-draw Spearman metric and its bootstrap over pairs --------------------------------


def test_mean_spearman_of_averages_each_draws_spearman_on_known_answers():
    from lexlm.eval.intervals import bootstrap_interval

    gold = np.arange(10, dtype=np.float64)
    swapped = gold.copy()
    swapped[[3, 4]] = swapped[[4, 3]]  # one adjacent swap: rho = 1 - 6 * 2 / (10 * 99)
    cos = np.stack([gold, -gold, swapped], axis=1)
    per = sts.per_draw_spearman(cos, gold)
    assert per == pytest.approx([100.0, -100.0, 100 * (1 - 12 / 990)])
    metric = sts.mean_spearman_of("cos", "gold")
    assert metric({"cos": cos, "gold": gold}) == pytest.approx((100 * (1 - 12 / 990)) / 3)
    # not the ensemble: the Spearman of the draws' mean cosine would be ~ +100 here
    assert sts.spearman(cos.mean(axis=1), gold) * 100 > 90
    # a perfect ranking stays perfect on every resample of the pairs (repeated pairs tie on
    # both sides), so its interval is the single point 100
    band = bootstrap_interval(metric, {"cos": gold[:, None], "gold": gold})
    assert (band["value"], band["lo"], band["hi"], band["units"]) == (100.0, 100.0, 100.0, 10)
    # a constant draw has no Spearman: it is left out of the mean, not averaged in as nan
    assert metric({"cos": np.stack([gold, np.ones(10)], axis=1), "gold": gold}) == 100.0
    with pytest.raises(ValueError, match="disagree"):
        sts.per_draw_spearman(np.zeros((4, 2)), gold)
