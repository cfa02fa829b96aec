"""LAMA pooling, the attention-pooling baselines, the low-rank Transformer attention and the
BiGRU classifier (``lexlm.nn.lama``, ``pooling``, ``low_rank_attention``, ``classifier``)."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_helpers as th

from lexlm.nn import lama as lama_lib
from lexlm.nn import low_rank_attention as lowrank
from lexlm.nn import pooling
from lexlm.nn.classifier import POOLINGS, ClassifierConfig, TextClassifier
from lexlm.nn.transformer import LMConfig, TransformerLM


@pytest.fixture(autouse=True, scope="module")
def fast_compile():
    """These tiny programs compile 2-3x faster with most XLA optimisations off and compute
    the same numbers to float rounding (``train_helpers.unoptimised_xla``)."""
    with th.unoptimised_xla():
        yield


def _n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_factorised_score_equals_explicit_bilinear_form():
    rng = np.random.default_rng(0)
    c, u = rng.normal(size=(3, 6)), rng.normal(size=(3, 5, 6))
    p, q = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    got = lama_lib.lama_scores(c, u, p, q)
    want = lama_lib.bilinear_scores_reference(c, u, p, q)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # by hand for one head and token: tanh(c^T p_j q_j^T u_t), then the norm across heads
    raw = np.tanh(np.array([c[1] @ np.outer(p[:, j], q[:, j]) @ u[1, 2] for j in range(4)]))
    np.testing.assert_allclose(got[1, 2], raw / np.linalg.norm(raw), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)


def test_masked_softmax_gives_padding_zero_and_handles_empty_rows():
    scores = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 3)) * 50)
    mask = jnp.asarray([[True, True, False, False], [False, False, False, False]])
    w = lama_lib.masked_softmax(scores, mask)
    assert w.shape == (2, 3, 4)
    assert np.all(np.asarray(w[0, :, 2:]) == 0.0)
    np.testing.assert_allclose(w[0].sum(-1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(w[1]) == 0.0)
    np.testing.assert_allclose(
        lama_lib.masked_mean(jnp.ones((1, 3, 2)), jnp.zeros((1, 3), bool)), 0
    )


POOL_MODULES = {
    "lama": lama_lib.LAMA(4, "learned"),
    "lama_ctx": lama_lib.LAMA(4, "mean", key_mlp=False),
    "additive": pooling.AdditiveAttention(),
    "structured": pooling.StructuredSelfAttention(3, 5),
    "self_attention": pooling.SelfAttentionPooling(2),
    "mean": pooling.MeanPooling(),
}


@pytest.mark.parametrize("name", sorted(POOL_MODULES))
def test_pooling_ignores_padding_content_and_length(name):
    module = POOL_MODULES[name]
    rng = np.random.default_rng(2)
    h = rng.normal(size=(2, 5, 8)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    params = module.init(jax.random.key(0), h, mask)
    apply = jax.jit(module.apply)
    pooled, weights = apply(params, h, mask)
    assert np.all(np.asarray(weights[0, :, 3:]) == 0.0)
    # other padding content, and three more padding slots, change nothing for row 0
    h2 = np.concatenate([h, rng.normal(size=(2, 3, 8)).astype(np.float32)], axis=1)
    h2[0, 3:] = rng.normal(size=(5, 8)) * 100
    mask2 = np.concatenate([mask, np.zeros((2, 3), bool)], axis=1)
    pooled2, weights2 = apply(params, h2, mask2)
    np.testing.assert_allclose(pooled2[0], pooled[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights2[0, :, :5], weights[0], rtol=1e-5, atol=1e-7)


def test_lama_context_modes_and_param_count():
    h = jnp.ones((2, 3, 10))
    mask = jnp.ones((2, 3), bool)
    for context in lama_lib.CONTEXTS:
        for key_mlp in (True, False):
            module = lama_lib.LAMA(6, context, key_mlp)
            params = jax.eval_shape(module.init, jax.random.key(0), h, mask)["params"]
            assert _n_params(params) == lama_lib.lama_param_count(10, 6, context, key_mlp)
    with pytest.raises(ValueError, match=r"model\.context"):
        lama_lib.LAMA(2, "global").init(jax.random.key(0), h, mask)


def test_diversity_penalty_known_values():
    one_hot = jnp.asarray([[[1.0, 0, 0], [0, 1.0, 0]]])  # disjoint single tokens
    same = jnp.asarray([[[0.5, 0.5, 0], [0.5, 0.5, 0]]])  # A A^T = 0.5 everywhere
    np.testing.assert_allclose(pooling.diversity_penalty(one_hot), [0.0])
    np.testing.assert_allclose(pooling.diversity_penalty(same), [4 * 0.25])


@pytest.mark.parametrize("name", POOLINGS)
def test_classifier_param_count_matches_module(name):
    cfg = ClassifierConfig(vocab_size=30, classes=3, pooling=name, embed=6, hidden=4, heads=2,
                           attn_hidden=5, mlp_hidden=7)  # fmt: skip
    model = TextClassifier(cfg)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((2, 5), jnp.int32))["params"]
    assert _n_params(params) == cfg.param_count()
    assert _n_params(params.get("pool", {})) == cfg.attention_param_count()
    assert (name == "mean") == (cfg.attention_param_count() == 0)


def test_mean_pooling_is_the_masked_mean_with_uniform_weights():
    h = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    pooled, weights = pooling.MeanPooling().apply({}, h, mask)
    np.testing.assert_allclose(pooled[:, 0], [h[0, :2].mean(0), h[1].mean(0)])
    np.testing.assert_allclose(weights[:, 0], [[0.5, 0.5, 0, 0], [0.25] * 4])


def test_self_attention_weights_are_its_rows_averaged_over_the_queries():
    """By hand: each head's softmax(q k^T / sqrt(K)) over the kept keys, averaged over the
    kept queries; the pooled vector is the output projection of the values so pooled."""
    module = pooling.SelfAttentionPooling(2)
    rng = np.random.default_rng(3)
    h = rng.normal(size=(1, 4, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0]], bool)
    variables = module.init(jax.random.key(0), h, mask)
    pooled, weights = module.apply(variables, h, mask)
    p = variables["params"]
    proj = {n: (h[0] @ np.asarray(p[n]["kernel"]) + np.asarray(p[n]["bias"])).reshape(4, 2, 3)
            for n in ("q", "k", "v")}  # fmt: skip
    want = np.zeros((2, 4))
    values = np.zeros((2, 3))
    for head in range(2):
        s = proj["q"][:3, head] @ proj["k"][:3, head].T / np.sqrt(3)  # kept queries and keys
        a = np.exp(s - s.max(1, keepdims=True))
        a /= a.sum(1, keepdims=True)
        want[head, :3] = a.mean(0)
        values[head] = want[head, :3] @ proj["v"][:3, head]
    np.testing.assert_allclose(weights[0], want, rtol=1e-5, atol=1e-6)
    out = values.reshape(6) @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"])
    np.testing.assert_allclose(pooled[0, 0], out, rtol=1e-4, atol=1e-5)


def test_classifier_outputs_do_not_depend_on_padding_length():
    cfg = ClassifierConfig(vocab_size=30, classes=2, embed=6, hidden=4, heads=3, mlp_hidden=5)
    model = TextClassifier(cfg)
    tokens = np.array([[5, 6, 7, 0, 0], [3, 4, 5, 6, 7]], np.int32)
    params = jax.jit(model.init)(jax.random.key(0), tokens)
    apply = jax.jit(model.apply)
    logits, _ = apply(params, tokens)
    longer = np.concatenate([tokens, np.zeros((2, 4), np.int32)], axis=1)
    logits2, weights2 = apply(params, longer)
    np.testing.assert_allclose(logits2, logits, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(weights2[0, :, 3:]) == 0.0)
    # row 0 alone gives the same output as inside a batch
    alone, _ = apply(params, tokens[:1, :3])
    np.testing.assert_allclose(alone[0], logits[0], rtol=1e-5, atol=1e-6)


def test_classifier_config_errors():
    with pytest.raises(ValueError, match=r"model\.pooling"):
        ClassifierConfig(vocab_size=5, classes=2, pooling="max")
    with pytest.raises(ValueError, match=r"model\.classes"):
        ClassifierConfig(vocab_size=5, classes=1)
    with pytest.raises(ValueError, match=r"model\.heads"):
        ClassifierConfig(vocab_size=5, classes=2, pooling="self_attention", hidden=5, heads=3)


# -- low-rank attention inside the Transformer ------------------------------------------------
def test_low_rank_scores_by_hand():
    a = jnp.asarray([[[1.0, 2.0]]])
    b = jnp.asarray([[[3.0, -1.0], [0.5, 0.5]]])
    gains = jnp.asarray([[1.0, 0.0], [0.5, 2.0]])
    got = lowrank.low_rank_scores(a, b, gains)  # [1, 2 heads, 1, 2 keys]
    np.testing.assert_allclose(got[0, :, 0], [[3.0, 0.5], [1.5 - 4.0, 0.25 + 2.0]])


def test_low_rank_attention_at_full_rank_reproduces_standard_attention():
    std_cfg = LMConfig(vocab_size=11, width=8, depth=1, heads=2, max_len=6)
    low_cfg = dataclasses.replace(std_cfg, attention_kind="low_rank", qk_rank=8)
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, 11, (2, 6)), jnp.int32)
    std_params = nn.unbox(jax.jit(TransformerLM(std_cfg).init)(jax.random.key(0), tokens)["params"])
    low_params = dict(
        nn.unbox(jax.eval_shape(TransformerLM(low_cfg).init, jax.random.key(1), tokens)["params"])
    )  # every leaf is replaced below
    # move the standard weights into the factorised form
    for name in std_params:
        if not name.startswith("block_"):
            low_params[name] = std_params[name]
            continue
        s, lo = std_params[name], dict(low_params[name])
        for key in ("ln_attn", "ln_mlp", "attn_out", "mlp_in", "mlp_out"):
            lo[key] = s[key]
        qkv_k, qkv_b = s["qkv"]["kernel"], s["qkv"]["bias"]  # [D, 3, H, K], [3, H, K]
        lo["q_factor"] = {"kernel": qkv_k[:, 0].reshape(8, 8), "bias": qkv_b[0].reshape(8)}
        lo["k_factor"] = {"kernel": qkv_k[:, 1].reshape(8, 8), "bias": qkv_b[1].reshape(8)}
        lo["v"] = {"kernel": qkv_k[:, 2], "bias": qkv_b[2]}
        lo["gains"] = lowrank.gains_for_full_rank(2, 8)
        low_params[name] = lo
    std = jax.jit(TransformerLM(std_cfg).apply)({"params": std_params}, tokens)
    low = jax.jit(TransformerLM(low_cfg).apply)({"params": low_params}, tokens)
    np.testing.assert_allclose(low, std, rtol=1e-5, atol=1e-5)


def test_low_rank_param_count_and_config_errors():
    cfg = LMConfig(vocab_size=11, width=16, depth=2, heads=4, max_len=8,
                   attention_kind="low_rank", qk_rank=4)  # fmt: skip
    tokens = jnp.zeros((1, 8), jnp.int32)
    params = jax.eval_shape(TransformerLM(cfg).init, jax.random.key(0), tokens)["params"]
    assert _n_params(params) == cfg.param_count()
    std = dataclasses.replace(cfg, attention_kind="standard")
    assert cfg.attention_param_count() == 2 * (16 * 4 + 4) + 4 * 4 + 2 * (16 * 16 + 16)
    assert std.attention_param_count() == 4 * 16 * 16 + 4 * 16
    with pytest.raises(ValueError, match=r"model\.attention_kind"):
        LMConfig(vocab_size=5, attention_kind="linear")
    with pytest.raises(ValueError, match=r"model\.qk_rank"):
        LMConfig(vocab_size=5, width=8, heads=2, attention_kind="low_rank", qk_rank=9)
    with pytest.raises(ValueError, match=r"model\.smear_keys"):
        LMConfig(vocab_size=5, width=8, heads=2, attention_kind="low_rank", smear_keys=True)


def test_low_rank_lm_is_causal():
    cfg = LMConfig(vocab_size=11, width=16, depth=2, heads=4, max_len=8,
                   attention_kind="low_rank", qk_rank=6, positions="rope")  # fmt: skip
    tokens = np.random.default_rng(4).integers(0, 11, (1, 8)).astype(np.int32)
    model = TransformerLM(cfg)
    params = jax.jit(model.init)(jax.random.key(0), tokens)
    apply = jax.jit(model.apply)
    changed = tokens.copy()
    changed[0, 5:] = (changed[0, 5:] + 1) % 11
    np.testing.assert_allclose(apply(params, changed)[0, :5], apply(params, tokens)[0, :5],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
