"""Intervals and ordering sentences on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lexlm.eval import intervals as iv


def test_ratio_of_sums_and_mean():
    units = {"nll": np.array([2.0, 6.0]), "n": np.array([1.0, 3.0]), "ok": np.array([1, 0])}
    assert iv.ratio_of_sums("nll", "n")(units) == 2.0
    assert iv.mean("ok")(units) == 0.5


def test_mean_of_averages_task_accuracies_and_resamples_like_its_generic_form():
    # Two tasks over 3 rows: task a 3 of 4 answers right, task b 1 of 8: the unweighted mean
    # of the two accuracies (0.4375), not 4 of 12 answers pooled over tasks.
    units = {"a:correct": np.array([1, 2, 0]), "a:total": np.array([1, 2, 1]),
             "b:correct": np.array([0, 0, 1]), "b:total": np.array([1, 1, 6])}  # fmt: skip
    m = iv.mean_of([iv.ratio_of_sums(f"{t}:correct", f"{t}:total") for t in "ab"])
    assert m(units) == pytest.approx((3 / 4 + 1 / 8) / 2)
    fast = iv.bootstrap_interval(m, units, resamples=200)
    slow = iv.bootstrap_interval(lambda u: m(u), units, resamples=200)  # per-resample path
    assert (fast["lo"], fast["hi"]) == pytest.approx((slow["lo"], slow["hi"]))
    with pytest.raises(ValueError, match="no metrics"):
        iv.mean_of([])


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 50).astype(float)
    y = x + rng.normal(size=50)
    assert iv.spearman(x, y) == pytest.approx(100 * stats.spearmanr(x, y).statistic, abs=1e-9)
    assert iv.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)


def test_constant_shift_gives_a_degenerate_interval_that_excludes_zero():
    rng = np.random.default_rng(1)
    a = {"nll": rng.uniform(1, 2, 40), "n": np.ones(40)}
    b = {"nll": a["nll"] + 0.25, "n": np.ones(40)}
    d = iv.compare(iv.ratio_of_sums("nll", "n"), a, b)
    assert d["diff"] == pytest.approx(-0.25)
    assert d["lo"] == pytest.approx(-0.25) and d["hi"] == pytest.approx(-0.25)
    assert d["excludes_zero"] and iv.ordered(d, lower_is_better=True) == "a"
    assert iv.ordered(d, lower_is_better=False) == "b"
    sentence = iv.ordering_sentence("A", "B", d, lower_is_better=True)
    assert sentence.startswith("A is better than B (difference -0.250 [-0.250, -0.250]")


def test_mean_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=2000)
    got = iv.bootstrap_interval(iv.mean("x"), {"x": x}, resamples=2000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert got["lo"] == pytest.approx(x.mean() - half, abs=0.2 * half)
    assert got["hi"] == pytest.approx(x.mean() + half, abs=0.2 * half)
    # the generic (per-resample) path gives the batched path's interval on the same draws
    generic = iv.bootstrap_interval(lambda u: float(np.mean(u["x"])), {"x": x}, resamples=2000)
    assert (generic["lo"], generic["hi"]) == pytest.approx((got["lo"], got["hi"]))


def test_noise_only_difference_is_tied():
    rng = np.random.default_rng(3)
    a = {"c": rng.integers(0, 2, 200)}
    b = {"c": rng.permutation(a["c"])}  # the same accuracy, different texts right
    d = iv.compare(iv.mean("c"), a, b)
    assert d["diff"] == 0.0 and not d["excludes_zero"]
    s = iv.ordering_sentence("LAMA", "mean pooling", d, lower_is_better=False)
    assert "are tied at this budget" in s and "includes 0" in s


def test_seed_spread_and_mean_over_seeds():
    s = iv.seed_spread([1.0, 2.0, 3.0])
    assert (s["n"], s["mean"], s["sd"], s["min"], s["max"]) == (3, 2.0, 1.0, 1.0, 3.0)
    m = iv.mean_over_seeds([{"x": np.array([1.0, 3.0])}, {"x": np.array([3.0, 5.0])}])
    assert m["x"].tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match="different units"):
        iv.mean_over_seeds([{"x": np.zeros(2)}, {"x": np.zeros(3)}])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="at least 2 test units"):
        iv.bootstrap_interval(iv.mean("x"), {"x": np.ones(1)})
    with pytest.raises(ValueError, match="paired comparison of 3 and 2"):
        iv.compare(iv.mean("x"), {"x": np.ones(3)}, {"x": np.ones(2)})
    assert iv.plus_minus(3.4561, 3.44, 3.47) == "3.456 ± 0.015"


def test_lm_units_are_documents_with_known_sums():
    """Per-document bits from accumulate_nll: a fake NLL of 1 nat per target gives each
    document (its bytes + eos) / ln 2 bits, over batches and a padded last batch."""
    import math

    import jax
    import jax.numpy as jnp

    from lexlm.data import lm_eval_windows
    from lexlm.eval import accumulate_nll
    from lexlm.text import ByteTokenizer

    docs = ["ab", "cdefghij", "k"]
    windows = lm_eval_windows([{"text": d.encode()} for d in docs], ByteTokenizer(), seq_len=4)
    fn = lambda batch, key: jnp.ones(batch["inputs"].shape, jnp.float32)
    summary = accumulate_nll(fn, windows, batch_size=2, key=jax.random.key(0)).summary()
    n_targets = [len(d) + 1 for d in docs]  # one nat per target, eos included
    assert summary["units"]["bits"] == pytest.approx([n / math.log(2) for n in n_targets])
    assert summary["units"]["bytes"] == [len(d) + 2 for d in docs]  # eos counts as 2 bytes
    bpb = iv.ratio_of_sums("bits", "bytes")(summary["units"])
    assert bpb == pytest.approx(summary["bits_per_byte"])


def test_block_units_known_answer():
    """Documents of 5 and 3 bytes in blocks of 2 bytes: blocks 0-2 and 3-4; a 2-byte target
    starting at byte 1 belongs to block 0; the same blocks whatever the tokenization."""
    doc = np.array([-1, 0, 0, 0, 0, 1, 1])
    nbytes = np.array([0, 1, 2, 1, 1, 2, 1])  # document 0: bytes 0 | 1-2 | 3 | 4
    got = iv.block_units(doc, nbytes, np.array([5, 3]), unit_bytes=2)
    assert got.tolist() == [-1, 0, 0, 1, 2, 3, 4]
    bytewise = iv.block_units(np.array([0] * 5 + [1] * 3), np.ones(8), np.array([5, 3]), 2)
    assert bytewise.tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


def test_few_units_state_no_ordering():
    d = {"diff": -1.0, "lo": -1.2, "hi": -0.8, "level": 0.95, "units": 3}
    assert iv.ordered(d, lower_is_better=True) == "tied"
    assert "only 3 test units" in iv.ordering_sentence("A", "B", d, lower_is_better=True)


def test_word_stream_documents_match_lm_documents():
    """A word stream [eos, w, w, eos, w, eos]: the first eos belongs to no document, each
    closing eos to the document it closes (as lm_eval_windows counts them)."""
    from lexlm.data.word_windows import doc_of_pieces, doc_sums

    doc = doc_of_pieces(np.array([True, False, False, True, False, True]))
    assert doc.tolist() == [-1, 0, 0, 0, 1, 1]
    assert doc_sums(doc, np.array([9, 1, 2, 3, 4, 5]), 2).tolist() == [6.0, 9.0]


def test_claim_ordering_with_intervals_known_answer():
    """SpaceByte's claim checked pair by pair over documents: a constant gap is an ordering,
    an equal model is tied, and a tie means the claim does not hold."""
    from lexlm.proj.byte_patching.report import ordering, verdict

    rng = np.random.default_rng(0)
    bits = rng.uniform(50, 100, 30)
    n = np.full(30, 40.0)
    units = {
        "subword": {"bits": bits, "bytes": n},
        "spacebyte": {"bits": bits + 5, "bytes": n},
        "megabyte8": {"bits": bits + 5, "bytes": n},  # tied with SpaceByte
        "byte": {"bits": bits + 9, "bytes": n},
    }
    bpb = {m: float(u["bits"].sum() / u["bytes"].sum()) for m, u in units.items()}
    o = ordering(bpb, units)
    got = {(p["better"], p["worse"]): p["verdict"] for p in o["pairs"]}
    assert got == {("subword", "spacebyte"): "holds", ("spacebyte", "megabyte8"): "tied",
                   ("megabyte8", "byte"): "holds"}  # fmt: skip
    assert o["holds"] is False
    assert "SpaceByte ~ MegaByte, P = 8" in verdict(o)
    assert o["neighbours"][0]["verdict"] == "a"  # subword < the next one
