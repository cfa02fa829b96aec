"""In-context references (lexlm.eval.in_context) and the softmax probe (lexlm.eval.probe) on
hand-made cases whose answers are known."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import train_helpers as th

from lexlm.eval import in_context as ic
from lexlm.eval.probe import accuracy_by_position, fit_softmax_probe, probe_objective


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """XLA with most optimisations off (``train_helpers.unoptimised_xla``): these tiny programs
    compile several times faster and compute the same numbers to float rounding."""
    with th.unoptimised_xla():
        yield


def windows_of(inputs, targets, mask=None):
    inputs, targets = np.asarray(inputs, np.int32), np.asarray(targets, np.int32)
    mask = np.ones(inputs.shape, np.float32) if mask is None else np.asarray(mask, np.float32)
    return {"inputs": inputs, "targets": targets, "mask": mask}


def test_bucket_ranges_cover_every_position_once():
    assert ic.bucket_ranges((1, 4, 16), 20) == [(1, 3), (4, 15), (16, 20)]
    assert ic.bucket_ranges((4, 16, 64), 20) == [(1, 3), (4, 15), (16, 20)]
    ranges = ic.bucket_ranges((1, 4, 16, 32, 64, 128, 257), 512)
    assert ranges[-1] == (257, 512)
    covered = [p for lo, hi in ranges for p in range(lo, hi + 1)]
    assert covered == list(range(1, 513))
    assert ic.bucket_means(np.arange(1.0, 11.0), [(1, 2), (3, 10)]) == [1.5, 6.5]


def test_unigram_reference_matches_hand_computed_counts():
    # V = 4, alpha = 0.5. Window 0 inputs 1 1 2, targets 1 2 3; window 1 target 2 is masked.
    w = windows_of([[1, 1, 2], [3, 3, 3]], [[1, 2, 3], [3, 2, 3]], [[1, 1, 1], [1, 0, 1]])
    got = ic.in_context_unigram_nll(w, vocab_size=4, alpha=0.5)

    def p(count, t):
        return (count + 0.5) / (t + 0.5 * 4)

    # Position 1: seen {1} -> p(1) for window 0, seen {3} -> p(3) for window 1.
    pos1 = (-math.log(p(1, 1)) - math.log(p(1, 1))) / 2
    pos2 = -math.log(p(0, 2))  # window 0: 2 unseen among {1, 1}; window 1 masked
    pos3 = (-math.log(p(0, 3)) - math.log(p(3, 3))) / 2
    np.testing.assert_allclose(got, [pos1, pos2, pos3], rtol=1e-6)
    # Streaming in batches of one window gives the same numbers.
    np.testing.assert_allclose(ic.in_context_unigram_nll(w, 4, 0.5, batch_windows=1), got)


def test_unigram_reference_streams_large_vocabularies():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 32000, (3, 64))
    w = windows_of(x, np.roll(x, -1, axis=1))
    nll = ic.in_context_unigram_nll(w, vocab_size=32000)
    assert nll.shape == (64,)
    # Random ids over 32k types almost never repeat: every target is unseen.
    t = np.arange(1, 65)
    unseen = -np.log(0.1 / (t + 0.1 * 32000))
    assert np.mean(np.abs(nll - unseen) < 1e-3) > 0.9


def test_random_readout_reference_approaches_the_count_model_with_width():
    rng = np.random.default_rng(1)
    v, t = 12, 40
    x = rng.integers(0, v, (8, t))
    w = windows_of(x, np.roll(x, -1, axis=1))
    exact = ic.in_context_unigram_nll(w, v)
    narrow = ic.random_readout_unigram_nll(w, v, width=8).mean()
    wide = ic.random_readout_unigram_nll(w, v, width=4096).mean()
    # Crosstalk costs loss at small width and vanishes as D grows (G G^T -> I).
    assert narrow > exact.mean() + 0.1
    assert abs(wide - exact.mean()) < 0.03


def test_count_log_probs_are_normalised_distributions():
    lp = ic.count_log_probs(np.array([0, 2, 2, 1]), vocab_size=5)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-9)
    assert np.argmax(lp[2]) == 2


def test_repeated_span_windows_and_copy_gain():
    x = np.arange(20, dtype=np.int32).reshape(2, 10) + 3
    mask = np.ones((2, 10), np.float32)
    mask[1, 3:] = 0  # window 1 has only 3 real tokens: too short for span 4
    rep = ic.repeated_span_windows(windows_of(x, x, mask), span=4)
    np.testing.assert_array_equal(rep["inputs"], [[3, 4, 5, 6, 3, 4, 5, 6]])
    np.testing.assert_array_equal(rep["targets"][0, :7], [4, 5, 6, 3, 4, 5, 6])
    np.testing.assert_array_equal(rep["mask"], [[1, 1, 1, 1, 1, 1, 1, 0]])
    # A perfect copier: 2 nats on the first copy, 0 on the second; index 3 (the jump) ignored.
    loss = np.array([2, 2, 2, 9, 0, 0, 0, 5.0])
    assert ic.copy_gain(loss, 4) == {"first_copy": 2.0, "second_copy": 0.0, "drop": 2.0}
    with pytest.raises(ValueError, match="span"):
        ic.repeated_span_windows(windows_of(x, x), span=6)


def test_softmax_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 16)) * 4
    y = rng.integers(0, 5, 600)
    x = centres[y] + rng.standard_normal((600, 16))
    probe = fit_softmax_probe(x[:400], y[:400], n_classes=5)
    assert np.mean(probe.predict(x[400:]) == y[400:]) > 0.95
    # Labels independent of the features: held-out accuracy stays near chance (0.2).
    y_noise = rng.integers(0, 5, 600)
    noise = fit_softmax_probe(x[:400], y_noise[:400], n_classes=5)
    assert np.mean(noise.predict(x[400:]) == y_noise[400:]) < 0.35
    with pytest.raises(ValueError, match="labels"):
        fit_softmax_probe(x[:10], np.full(10, 7), n_classes=5)


def test_softmax_probe_reaches_the_known_optimum():
    # Constant features: the optimum has w = 0 and softmax(b) = the label frequencies.
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    probe = fit_softmax_probe(np.ones((100, 3)), y, n_classes=3, l2=1e-2)
    logits = probe.logits(np.ones((1, 3)))[0]
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(), [0.5, 0.3, 0.2], atol=1e-4)
    np.testing.assert_allclose(probe.weights, 0.0, atol=1e-5)
    # Informative features: the objective's gradient vanishes at the fit (it is convex).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 4))
    y = (x @ rng.standard_normal((4, 3))).argmax(-1)
    probe = fit_softmax_probe(x, y, n_classes=3, l2=1e-2)
    z = (x - probe.mean) / probe.scale
    params = {"w": jnp.asarray(probe.weights), "b": jnp.asarray(probe.bias)}
    grad = jax.grad(probe_objective)(params, jnp.asarray(z), jnp.asarray(y), 1e-2)
    assert float(optax.global_norm(grad)) < 1e-4
    with pytest.raises(ValueError, match="l2"):
        fit_softmax_probe(x, y, n_classes=3, l2=-1.0)


def test_accuracy_by_position_buckets_and_baselines():
    correct = np.array([1, 0, 1, 1, 0, 0], bool)
    positions = np.array([1, 2, 3, 4, 5, 6])
    majority = np.array([0, 0, 0, 1, 1, 1], bool)
    rows = accuracy_by_position(correct, positions, (1, 4), {"majority": majority})
    assert rows == [
        {"positions": "1-3", "accuracy": 2 / 3, "majority": 0.0, "n": 3},
        {"positions": "4-6", "accuracy": 1 / 3, "majority": 1.0, "n": 3},
    ]


def test_bag_of_tokens_reference_is_linear_in_counts():
    # One window, V = 3: inputs 1 1 2, targets 2 1 0. With exact rows (G G^T = I) the logits
    # at t are beta * frequency of each type among inputs 1..t.
    w = windows_of([[1, 1, 2]], [[2, 1, 0]])
    got = ic.bag_of_tokens_nll(w, vocab_size=3, beta=2.0)

    def nll(freq, target):
        logits = 2.0 * np.asarray(freq)
        return math.log(np.exp(logits).sum()) - logits[target]

    want = [nll([0, 1, 0], 2), nll([0, 1, 0], 1), nll([0, 2 / 3, 1 / 3], 0)]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # On text whose next token is the most frequent one, a sharper readout is better.
    x = np.array([[1, 1, 1, 1, 2, 1, 1, 1]])
    rep = windows_of(x, np.ones_like(x))
    assert ic.best_bag_scale(rep, 4, None, betas=(1, 8)) == 8.0
    noisy = ic.bag_of_tokens_nll(rep, 4, 8.0, width=4, max_windows=1).mean()
    assert noisy > ic.bag_of_tokens_nll(rep, 4, 8.0).mean()


def test_attention_pattern_stats_on_hand_made_heads():
    from lexlm.eval.attention_stats import attention_pattern_stats

    tokens = np.array([[5, 6, 5, 6, 5, 6]])
    t = tokens.shape[1]
    prev_head = np.zeros((t, t))
    prev_head[0, 0] = 1.0
    prev_head[np.arange(1, t), np.arange(t - 1)] = 1.0
    # Induction head: from the second occurrence on, attend to the token after the last
    # occurrence of the current token (at t-1 for this period-2 sequence).
    induction = prev_head.copy()
    uniform = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
    w = np.stack([prev_head, induction, uniform])[None]  # [1, 3, T, T]
    stats = attention_pattern_stats(w, tokens, skip=2)
    np.testing.assert_allclose(stats["previous"], [1.0, 1.0, np.mean([1 / 3, 1 / 4, 1 / 5, 1 / 6])])
    # In an alternating sequence the previous position *is* the induction target.
    np.testing.assert_allclose(stats["induction"][0], 1.0)
    np.testing.assert_allclose(stats["self"][2], stats["self_uniform"][0])
    np.testing.assert_allclose(stats["entropy"][:2], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(stats["entropy"][2], stats["entropy_uniform"][0])
    # Same-token-earlier: positions t-2, t-4, ... hold the query's token.
    np.testing.assert_allclose(stats["same_token_earlier"][0], 0.0)
    assert stats["same_token_earlier"][2] > 0.25
