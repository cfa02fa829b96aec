"""Lexinvariant embeddings (lexlm.nn.lexinvariant): the design decisions in its docstring.

Covers reproducible per-sequence rows, the chunked tied cross-entropy (values, gradients and
memory), exact invariance for one draw, invariance in expectation over draws (and a standard LM
failing the same test), semi-lexinvariance, and one sharded training run on an 8-device mesh.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import train_helpers as th

from lexlm.nn import LMConfig, TransformerLM
from lexlm.nn import lexinvariant as lexinv


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """XLA with most optimisations off (``train_helpers.unoptimised_xla``): these tiny programs
    compile several times faster and compute the same numbers to float rounding."""
    with th.unoptimised_xla():
        yield


REPO = Path(__file__).resolve().parents[1]


def keys(batch, seed=0):
    return lexinv.sequence_keys(jax.random.key(seed), batch)


# Test data comes from numpy: jax.random would compile a sampler for every distinct shape.
def normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def randint(seed, shape, high):
    return jnp.asarray(np.random.default_rng(seed).integers(0, high, shape), jnp.int32)


# ----------------------------------------------------------------------------- random rows


def test_random_rows_depend_only_on_sequence_key_and_id():
    width = 16
    ks = keys(3)
    ids = jnp.array([[4, 9, 4, 0, 9, 4], [4, 9, 4, 0, 9, 4], [1, 1, 2, 3, 5, 8]], jnp.int32)
    rows = lexinv.random_rows(ks, ids, width)
    chex.assert_shape(rows, (3, 6, width))
    chex.assert_type(rows, jnp.float32)
    r = np.asarray(rows)
    # Same (key, id) -> the same row wherever it occurs in the sequence.
    np.testing.assert_array_equal(r[0, 0], r[0, 2])
    np.testing.assert_array_equal(r[0, 0], r[0, 5])
    np.testing.assert_array_equal(r[0, 1], r[0, 4])
    np.testing.assert_array_equal(r[2, 0], r[2, 1])
    # Different ids in one sequence, or one id in different sequences -> different rows.
    assert not np.allclose(r[0, 0], r[0, 1])
    assert not np.allclose(r[0, 0], r[1, 0])
    assert not np.allclose(r[0, 1], r[1, 1])
    # The row does not depend on which other ids are asked for, nor on the ids' layout.
    alone = lexinv.random_rows(ks[:1], jnp.array([[9]], jnp.int32), width)
    np.testing.assert_array_equal(np.asarray(alone)[0, 0], r[0, 1])
    shared = lexinv.random_rows(ks, jnp.array([4, 9], jnp.int32), width)
    chex.assert_shape(shared, (3, 2, width))
    np.testing.assert_array_equal(np.asarray(shared)[:2], r[:2, :2])
    # Same keys -> same rows (reproducible); a bf16 request is the rounded f32 row.
    np.testing.assert_array_equal(np.asarray(lexinv.random_rows(ks, ids, width)), r)
    bf = lexinv.random_rows(ks, ids, width, jnp.bfloat16)
    chex.assert_type(bf, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(bf), np.asarray(rows.astype(jnp.bfloat16)))


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_random_rows_are_standard_gaussian_over_width_and_independent():
    width, n_seq, n_ids = 32, 512, 8
    rows = np.asarray(lexinv.random_rows(keys(n_seq, 1), jnp.arange(n_ids), width), np.float64)
    n = rows.size
    # Entries ~ N(0, 1/D): z-tests with tolerances from the sample size.
    var = 1.0 / width
    assert abs(rows.mean()) < 5 * np.sqrt(var / n), rows.mean()
    assert abs(rows.var() - var) < 5 * var * np.sqrt(2.0 / (n - 1)), (rows.var(), var)
    # Unit expected squared norm (the scale decision): mean |row|^2 = 1 with SE sqrt(2/D)/sqrt(N).
    sq = (rows**2).sum(-1)
    assert abs(sq.mean() - 1.0) < 5 * np.sqrt(2.0 / width / sq.size), sq.mean()
    # Same id, different sequences: uncorrelated (|r| ~ 1/sqrt(n_pairs) under independence).
    a, b = rows[0::2], rows[1::2]
    tol = 5 / np.sqrt(a.size)
    assert abs(_corr(a, b)) < tol, _corr(a, b)
    # ... and the squares are uncorrelated too (independence beyond second moments).
    assert abs(_corr(a**2, b**2)) < tol
    # Different ids, same sequence: uncorrelated.
    assert abs(_corr(rows[:, 0], rows[:, 1])) < 5 / np.sqrt(rows[:, 0].size)
    # Different coordinates of one row: uncorrelated.
    assert abs(_corr(rows[..., 0], rows[..., 1])) < 5 / np.sqrt(rows[..., 0].size)


def test_random_embed_is_a_lookup_in_random_table():
    vocab, width, batch = 11, 8, 3
    ks = keys(batch, 2)
    toks = randint(3, (batch, 20), vocab)
    emb = lexinv.random_embed(ks, toks, width)
    table = lexinv.random_table(ks, vocab, width)
    chex.assert_shape(table, (batch, vocab, width))
    chex.assert_shape(emb, (batch, 20, width))
    expected = np.asarray(table)[np.arange(batch)[:, None], np.asarray(toks)]
    np.testing.assert_array_equal(np.asarray(emb), expected)


# ----------------------------------------------------------------------------- chunked loss


def full_nll(h, targets, rows):
    logits = lexinv.tied_logits(h, rows)
    lse = jax.nn.logsumexp(logits, axis=-1)
    return lse - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]


@pytest.mark.parametrize("per_sequence", [False, True], ids=["CD", "BCD"])
@pytest.mark.parametrize("chunk", [5, 8, 37, 64])
def test_chunked_tied_nll_equals_full_cross_entropy_and_gradient(chunk, per_sequence):
    vocab, width, batch, length = 37, 16, 2, 9
    h = 3.0 * normal(chunk, (batch, length, width))
    targets = randint(chunk + 1, (batch, length), vocab)
    # Make sure the last (padded) chunk's ids are among the targets.
    targets = targets.at[0, 0].set(vocab - 1).at[1, 0].set(0)
    shape = (batch, vocab, width) if per_sequence else (vocab, width)
    table = normal(chunk + 2, shape) / np.sqrt(width)
    axis = 1 if per_sequence else 0

    def chunked(h, table):
        rows_fn = lambda ids: jnp.take(table, ids, axis=axis)
        return lexinv.chunked_tied_nll(h, targets, rows_fn, vocab, chunk)

    def full(h, table):
        return full_nll(h, targets, table)

    got, ref = jax.jit(chunked)(h, table), full(h, table)
    chex.assert_shape(got, (batch, length))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)

    # Gradients w.r.t. h (and w.r.t. the rows, as a learned tied table needs).
    w = normal(99, (batch, length))  # non-uniform cotangent
    loss = lambda f: lambda h, table: jnp.sum(w * f(h, table))
    gh, gt = jax.jit(jax.grad(loss(chunked), argnums=(0, 1)))(h, table)
    rh, rt = jax.grad(loss(full), argnums=(0, 1))(h, table)
    np.testing.assert_allclose(np.asarray(gh), np.asarray(rh), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gt), np.asarray(rt), rtol=1e-4, atol=1e-5)


def test_chunked_tied_nll_compiled_memory_is_well_below_full_logits():
    batch, length, width, vocab, chunk = 4, 128, 64, 4096, 512
    ks = keys(batch, 4)
    h = normal(5, (batch, length, width))
    targets = randint(6, (batch, length), vocab)

    def chunked(h):
        rows_fn = lambda ids: lexinv.random_rows(ks, ids, width)
        return jnp.sum(lexinv.chunked_tied_nll(h, targets, rows_fn, vocab, chunk))

    def full(h):
        return jnp.sum(full_nll(h, targets, lexinv.random_table(ks, vocab, width)))

    def compiled_grad(f):
        return jax.jit(jax.grad(f)).lower(h).compile()

    chunked_c, full_c = compiled_grad(chunked), compiled_grad(full)
    np.testing.assert_allclose(
        np.asarray(chunked_c(h)), np.asarray(full_c(h)), rtol=1e-4, atol=1e-5
    )
    chunked_b = chunked_c.memory_analysis().temp_size_in_bytes
    full_b = full_c.memory_analysis().temp_size_in_bytes
    logits_b = batch * length * vocab * 4  # one float32 [B, T, V] array
    ratio = full_b / chunked_b
    msg = (
        f"grad temp memory: chunked {chunked_b / 2**20:.2f} MiB, full {full_b / 2**20:.2f} MiB "
        f"(ratio {ratio:.1f}x); one [B,T,V] f32 logits array = {logits_b / 2**20:.2f} MiB"
    )
    print(msg)
    # The chunked version never holds even one [B, T, V] array; the full one holds several.
    assert chunked_b < logits_b, msg
    assert full_b > 2 * logits_b, msg
    assert ratio > 3.0, msg


# ----------------------------------------------------------------------------- invariance

VOCAB, WIDTH, LENGTH = 23, 32, 16


def lex_model(**kw):
    base = dict(vocab_size=VOCAB, width=WIDTH, depth=2, heads=4, max_len=LENGTH, vocab_chunk=8)
    base.update(kw)
    return TransformerLM(LMConfig(**base))


def init_params(model, batch=1, seed=0):
    extra = {} if model.cfg.embedding == "learned" else {"seq_keys": keys(batch, seed + 1)}
    x = jnp.zeros((batch, LENGTH), jnp.int32)
    return nn.meta.unbox(model.init(jax.random.key(seed), x, **extra))


def perturb_params(params, seed=0):
    """Zero biases and unit LayerNorms at init can hide bugs: perturb every parameter."""
    leaves, tree = jax.tree.flatten(params)
    leaves = [p + 0.3 * normal(seed + i, p.shape) for i, p in enumerate(leaves)]
    return jax.tree.unflatten(tree, leaves)


def test_explicit_table_matches_keyed_rows():
    """The table= path used below is the same model as the seq_keys path."""
    model = lex_model(embedding="lexinvariant")
    params = perturb_params(init_params(model))
    ks = keys(3, 8)
    x = randint(9, (3, LENGTH), VOCAB)
    table = lexinv.random_table(ks, VOCAB, WIDTH)
    a = model.apply(params, x, method="logits", seq_keys=ks)
    b = model.apply(params, x, method="logits", table=table)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_exact_invariance_for_a_fixed_draw():
    batch = 3
    model = lex_model(embedding="lexinvariant")
    params = perturb_params(init_params(model), seed=1)
    x = randint(10, (batch, LENGTH), VOCAB)
    y = jnp.roll(x, -1, axis=1)
    table = normal(11, (batch, VOCAB, WIDTH)) / np.sqrt(WIDTH)
    pi = jnp.asarray(np.random.default_rng(12).permutation(VOCAB), jnp.int32)
    assert int(jnp.sum(pi == jnp.arange(VOCAB))) < VOCAB // 2
    table_pi = jnp.zeros_like(table).at[:, pi].set(table)  # G'[:, pi(v)] = G[:, v]
    np.testing.assert_array_equal(np.asarray(table_pi[:, pi]), np.asarray(table))

    logits = model.apply(params, x, method="logits", table=table)
    logits_pi = model.apply(params, pi[x], method="logits", table=table_pi)
    chex.assert_equal_shape([logits, logits_pi])
    np.testing.assert_allclose(
        np.asarray(logits_pi[..., pi]), np.asarray(logits), rtol=1e-5, atol=1e-5
    )
    nll = model.apply(params, x, y, method="nll", table=table)
    nll_pi = model.apply(params, pi[x], pi[y], method="nll", table=table_pi)
    np.testing.assert_allclose(np.asarray(nll_pi), np.asarray(nll), rtol=1e-5, atol=1e-6)

    # Control: relabelled tokens with the rows NOT moved is another draw, and differs.
    nll_unmoved = model.apply(params, pi[x], pi[y], method="nll", table=table)
    assert float(jnp.max(jnp.abs(nll_unmoved - nll))) > 1e-2


# Non-uniform data: a sticky Markov chain with sparse transitions. A learned LM picks up the
# unigram/bigram statistics of the token *identities*; a lexinvariant LM can only use
# in-context structure (here mostly "repeat the current token").
DRAW_V, DRAW_T = 16, 32


def markov_sampler(seed=0):
    rng = np.random.default_rng(seed)
    trans = 0.5 * np.eye(DRAW_V) + 0.5 * rng.dirichlet(np.full(DRAW_V, 0.1), size=DRAW_V)
    start = rng.dirichlet(np.full(DRAW_V, 0.3))
    cum = np.cumsum(trans, axis=1)

    def sample(n, rng):
        x = np.zeros((n, DRAW_T + 1), np.int32)
        x[:, 0] = rng.choice(DRAW_V, n, p=start)
        for t in range(1, DRAW_T + 1):
            u = rng.random(n)[:, None]
            x[:, t] = np.minimum((u > cum[x[:, t - 1]]).sum(1), DRAW_V - 1)
        return x

    return sample


def train_briefly(embedding, sample, steps=30, batch=32):
    cfg = LMConfig(
        vocab_size=DRAW_V, width=32, depth=1, heads=4, max_len=DRAW_T, embedding=embedding
    )
    model = TransformerLM(cfg)

    def extra(key, n):
        return {} if embedding == "learned" else {"seq_keys": lexinv.sequence_keys(key, n)}

    x0 = jnp.zeros((1, DRAW_T), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.key(0), x0, **extra(jax.random.key(1), 1)))
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    def seq_nll(params, x, key):
        return model.apply(params, x[:, :-1], x[:, 1:], method="nll", **extra(key, x.shape[0]))

    @jax.jit
    def step(params, opt, x, key):
        loss, grads = jax.value_and_grad(lambda p: seq_nll(p, x, key).mean())(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    rng = np.random.default_rng(1)
    losses = []
    for i in range(steps):
        params, opt, loss = step(params, opt, jnp.asarray(sample(batch, rng)), jax.random.key(i))
        losses.append(float(loss))
    per_seq = jax.jit(lambda p, x, k: seq_nll(p, x, k).mean(axis=1))
    return params, per_seq, losses


def permutation_gap(per_seq, params, x, x_pi):
    """Mean over sequences of loss(x) - loss(pi(x)), fresh independent draws for each, and its
    standard error."""
    a = np.asarray(per_seq(params, jnp.asarray(x), jax.random.key(1001)), np.float64)
    b = np.asarray(per_seq(params, jnp.asarray(x_pi), jax.random.key(2002)), np.float64)
    d = a - b
    return d.mean(), d.std(ddof=1) / np.sqrt(len(d)), a.mean(), b.mean()


@pytest.fixture(scope="module")
def draw_data():
    sample = markov_sampler(0)
    x = sample(256, np.random.default_rng(2))
    perm = np.random.default_rng(3).permutation(DRAW_V)
    pi = perm[np.roll(np.arange(DRAW_V), 1)][np.argsort(perm)]  # a random cyclic derangement
    assert not np.any(pi == np.arange(DRAW_V))
    return sample, x, pi[x]


def test_mean_loss_over_draws_is_invariant_for_lexinvariant_lm(draw_data):
    sample, x, x_pi = draw_data
    params, per_seq, losses = train_briefly("lexinvariant", sample)
    # It learned in-context structure (below the uniform log V), so it is not a trivial model.
    assert np.mean(losses[-5:]) < np.log(DRAW_V) - 0.3, losses
    diff, se, a, b = permutation_gap(per_seq, params, x, x_pi)
    assert abs(diff) < 4 * se, f"lexinvariant: loss(x)={a:.4f} loss(pi x)={b:.4f} se={se:.4f}"


def test_mean_loss_over_draws_differs_for_learned_lm(draw_data):
    sample, x, x_pi = draw_data
    params, per_seq, losses = train_briefly("learned", sample)
    assert losses[-1] < losses[0] - 0.5, losses
    diff, se, a, b = permutation_gap(per_seq, params, x, x_pi)
    msg = f"learned: loss(x)={a:.4f} loss(pi x)={b:.4f} diff={diff:.4f} tolerance={4 * se:.4f}"
    # The same test fails, and not narrowly: the ciphered text is much harder for it.
    assert abs(diff) > 10 * (4 * se), msg
    assert b > a + 0.5, msg


# ----------------------------------------------------------------------------- semi


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_semi_mask_rate(p):
    batch, vocab = 64, 300
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(11), batch, vocab, p)
    chex.assert_shape(mask, (batch, vocab))
    chex.assert_type(mask, jnp.bool_)
    n = batch * vocab
    rate = float(jnp.mean(mask))
    assert abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / n), (rate, p)
    if 0 < p < 1:  # a mask per sequence: rows differ between sequences
        assert not bool(jnp.all(mask[0] == mask[1]))


@pytest.mark.parametrize("shared_ids", [False, True])
def test_mixed_rows_use_random_row_exactly_where_masked(shared_ids):
    batch, vocab, width = 4, 13, 8
    ks = keys(batch, 12)
    table = normal(13, (vocab, width))
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(14), batch, vocab, 0.5)
    if shared_ids:
        ids = jnp.array([0, 3, 3, 7, 12, 5, 0], jnp.int32)
        ids2 = jnp.broadcast_to(ids, (batch, ids.shape[0]))
    else:
        ids = randint(15, (batch, 30), vocab)
        ids2 = ids
    rows = np.asarray(lexinv.mixed_rows(table, ks, mask, ids))
    chex.assert_shape(rows, (batch, ids2.shape[1], width))
    rand = np.asarray(lexinv.random_rows(ks, ids2, width))
    learned = np.asarray(table)[np.asarray(ids2)]
    m = np.asarray(mask)[np.arange(batch)[:, None], np.asarray(ids2)]
    assert m.any() and not m.all()
    np.testing.assert_array_equal(rows[m], rand[m])
    np.testing.assert_array_equal(rows[~m], learned[~m])
    assert not np.allclose(rand[m], learned[m])  # the two sources really differ


@pytest.fixture(scope="module")
def semi_setup():
    batch = 3
    semi = lex_model(embedding="semi")
    params = perturb_params(init_params(semi, batch), seed=2)
    x = randint(16, (batch, LENGTH), VOCAB)
    x = x.at[:, LENGTH // 2 :].set(x[:, : LENGTH - LENGTH // 2])  # every type repeats
    return semi, params, x, keys(batch, 17)


def test_semi_with_empty_mask_is_the_standard_model(semi_setup):
    semi, params, x, ks = semi_setup
    # The same readout: semi's 'auto' logit scale is on, so the learned model's must be too.
    standard = lex_model(embedding="learned", logit_scale="learned")
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(0), x.shape[0], VOCAB, 0.0)
    assert not bool(mask.any())
    got = semi.apply(params, x, method="logits", seq_keys=ks, semi_mask=mask)
    ref = standard.apply(params, x, method="logits")
    no_mask = semi.apply(params, x, method="logits")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    np.testing.assert_array_equal(np.asarray(no_mask), np.asarray(ref))
    nll = semi.apply(params, x, x, method="nll", seq_keys=ks, semi_mask=mask)
    ref_nll = standard.apply(params, x, x, method="nll")
    np.testing.assert_array_equal(np.asarray(nll), np.asarray(ref_nll))


def test_semi_with_full_mask_is_the_lexinvariant_model(semi_setup):
    semi, params, x, ks = semi_setup
    lexi = lex_model(embedding="lexinvariant")
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(0), x.shape[0], VOCAB, 1.0)
    assert bool(mask.all())
    lex_params = {"params": {k: v for k, v in params["params"].items() if k != "embedding"}}
    got = semi.apply(params, x, method="logits", seq_keys=ks, semi_mask=mask)
    ref = lexi.apply(lex_params, x, method="logits", seq_keys=ks)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6, atol=1e-6)
    nll = semi.apply(params, x, x, method="nll", seq_keys=ks, semi_mask=mask)
    ref_nll = lexi.apply(lex_params, x, x, method="nll", seq_keys=ks)
    np.testing.assert_allclose(np.asarray(nll), np.asarray(ref_nll), rtol=1e-6, atol=1e-6)
    # Different sequence keys give a different model output (the keys are really used).
    other = semi.apply(params, x, method="logits", seq_keys=keys(x.shape[0], 99), semi_mask=mask)
    assert float(jnp.max(jnp.abs(other - got))) > 1e-2


def test_semi_draw_is_per_sequence_per_type_and_tied(semi_setup):
    """With a mask, the model equals one whose per-sequence [B, V, D] table is the mixed table:
    one vector per (sequence, type), at every occurrence, in the input and the output layer."""
    semi, params, x, ks = semi_setup
    batch = x.shape[0]
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(18), batch, VOCAB, 0.5)
    assert bool(mask.any()) and not bool(mask.all())
    present = np.asarray(mask)[np.arange(batch)[:, None], np.asarray(x)]
    assert present.any() and not present.all()  # masked and unmasked types both occur

    mixed = lexinv.mixed_rows(params["params"]["embedding"], ks, mask, jnp.arange(VOCAB))
    chex.assert_shape(mixed, (batch, VOCAB, WIDTH))
    # Per occurrence: embedding a token sequence gives exactly the type's mixed row.
    emb = np.asarray(lexinv.mixed_rows(params["params"]["embedding"], ks, mask, x))
    np.testing.assert_array_equal(emb, np.asarray(mixed)[np.arange(batch)[:, None], x])
    # A masked type repeated in one sequence keeps its vector (and it is not the learned row).
    b, t = map(int, np.argwhere(present[:, : LENGTH // 2])[0])
    np.testing.assert_array_equal(emb[b, t], emb[b, t + LENGTH // 2])
    assert not np.allclose(emb[b, t], np.asarray(params["params"]["embedding"])[x[b, t]])

    lexi = lex_model(embedding="lexinvariant")
    lex_params = {"params": {k: v for k, v in params["params"].items() if k != "embedding"}}
    got = semi.apply(params, x, method="logits", seq_keys=ks, semi_mask=mask)
    ref = lexi.apply(lex_params, x, method="logits", table=mixed)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6, atol=1e-6)
    nll = semi.apply(params, x, x, method="nll", seq_keys=ks, semi_mask=mask)
    ref_nll = lexi.apply(lex_params, x, x, method="nll", table=mixed)
    np.testing.assert_allclose(np.asarray(nll), np.asarray(ref_nll), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- sharded training

TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from lexlm.nn import LMConfig
    from lexlm.train import default_train_config, make_lm_task, train

    assert jax.device_count() == 8, jax.devices()
    V, T, B = 12, 16, 8
    cfg = LMConfig(vocab_size=V, width=32, depth=1, heads=4, max_len=T,
                   embedding="lexinvariant", vocab_chunk=5)
    tc = default_train_config()
    tc.update(steps=40, batch_size=B, lr=3e-2, warmup_steps=2, mesh=(2, 2, 2), log_every=10,
              ckpt_every=1000, tensorboard=False, progress=False)
    rng = np.random.default_rng(0)

    def batches():
        while True:  # each sequence uses 3 of the V types: predictable from its own context
            types = np.stack([rng.choice(V, 3, replace=False) for _ in range(B)])
            seq = np.take_along_axis(types, rng.integers(0, 3, (B, T + 1)), 1)
            seq = seq.astype(np.int32)
            yield {"inputs": seq[:, :-1], "targets": seq[:, 1:],
                   "mask": np.ones((B, T), np.float32)}

    result = train(tc, make_lm_task(cfg, T), batches(), sys.argv[1])
    assert result.final_step == 40, result.final_step
    qkv = result.state.params["block_0"]["qkv"]["kernel"]
    assert len(qkv.sharding.device_set) == 8
    # Really partitioned (embed over fsdp, heads over tensor), not replicated.
    assert qkv.addressable_shards[0].data.shape == (16, 3, 2, 8), qkv.sharding
    print("LOSSES", " ".join(f"{h['loss']:.5f}" for h in result.history))
    """
)


MESH_TEST = "test_lexinvariant_lm_trains_on_8_device_mesh"


def start_mesh_run(work: Path):
    script = work / "train_lexinv.py"
    script.write_text(TRAIN_SCRIPT)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",  # compiles faster, the same losses to rounding
    }
    out, err = work / "stdout.txt", work / "stderr.txt"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(work / "run")],
            cwd=REPO,
            env=env,
            stdout=fo,
            stderr=fe,
        )
    return proc, out, err


@pytest.fixture(scope="module", autouse=True)
def mesh_run(request, tmp_path_factory):
    """In a plain (not xdist) run that includes the mesh test, starts its subprocess as soon as
    this module starts, so that it runs on the second core while the other tests run."""
    selected = any(item.name == MESH_TEST for item in request.session.items)
    if not selected or hasattr(request.config, "workerinput"):
        yield None
        return
    handle = start_mesh_run(tmp_path_factory.mktemp("mesh"))
    yield handle
    if handle[0].poll() is None:  # the mesh test was not run or gave up waiting
        handle[0].kill()
        handle[0].wait()


def test_lexinvariant_lm_trains_on_8_device_mesh(mesh_run, tmp_path):
    proc, out, err = mesh_run or start_mesh_run(tmp_path)
    try:
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err.read_text()[-4000:]
    line = next(s for s in out.read_text().splitlines() if s.startswith("LOSSES"))
    losses = [float(v) for v in line.split()[1:]]
    assert len(losses) == 4 and all(np.isfinite(losses)), losses
    # Each sequence uses 3 of 12 types: a model that reads its context falls well below the
    # uniform guess ln 12 (the count model reaches ln 3); it started at ln 12 (readout fix).
    assert losses[-1] < losses[0] - 0.15 and losses[-1] < math.log(12) - 0.3, losses
