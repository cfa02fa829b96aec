"""Tests for lexlm.nn: the attention dispatcher and the Transformer LM (all embedding modes)."""

from __future__ import annotations

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
import pytest
from jax.sharding import PartitionSpec

from lexlm.nn import LMConfig, TransformerLM, dot_product_attention
from lexlm.nn import lexinvariant as lexinv
from lexlm.nn import low_rank_attention as lowrank
from lexlm.nn.attention import (
    banded_attention,
    banded_weighted_values,
    causal_allowed,
    masked_attention,
    weighted_values,
)

REPO = Path(__file__).resolve().parents[1]
MODES = ("learned", "lexinvariant", "semi")
LOGICAL_NAMES = {"embed", "mlp", "heads", "kv", "qkv", "vocab", None}


# ----------------------------------------------------------------------------- attention


def naive_attention(q, k, v, causal):
    """Per-query, per-head loop in float64 numpy."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    b_, t_, h_, d_ = q.shape
    out = np.zeros_like(q)
    for b in range(b_):
        for h in range(h_):
            for t in range(t_):
                last = t + 1 if causal else t_
                scores = np.array([q[b, t, h] @ k[b, s, h] for s in range(last)]) / np.sqrt(d_)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                out[b, t, h] = sum(w[s] * v[b, s, h] for s in range(last))
    return out


def _qkv(seed, shape=(2, 7, 3, 4)):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal(shape), jnp.float32) for _ in range(3))


@pytest.mark.parametrize("causal", [True, False])
def test_xla_attention_matches_naive_loop(causal):
    q, k, v = _qkv(0)
    out = dot_product_attention(q, k, v, causal=causal, impl="xla")
    chex.assert_shape(out, q.shape)
    np.testing.assert_allclose(np.asarray(out), naive_attention(q, k, v, causal), atol=1e-5)


def test_xla_attention_future_tokens_do_not_influence_the_past():
    q, k, v = _qkv(1)
    t0 = 4
    noise = _qkv(2)
    q2, k2, v2 = (a.at[:, t0:].add(10.0 * n[:, t0:]) for a, n in zip((q, k, v), noise))
    out = dot_product_attention(q, k, v, causal=True, impl="xla")
    out2 = dot_product_attention(q2, k2, v2, causal=True, impl="xla")
    np.testing.assert_array_equal(np.asarray(out[:, :t0]), np.asarray(out2[:, :t0]))
    # ... while the perturbed positions themselves do change (the check has power).
    assert float(jnp.min(jnp.abs(out[:, t0:] - out2[:, t0:]).max(axis=(2, 3)))) > 1e-3


def test_auto_attention_on_cpu_is_xla():
    if jax.default_backend() == "gpu":
        pytest.skip("'auto' may pick cudnn on a GPU")
    q, k, v = _qkv(3)
    np.testing.assert_array_equal(
        np.asarray(dot_product_attention(q, k, v, impl="auto")),
        np.asarray(dot_product_attention(q, k, v, impl="xla")),
    )


def test_cudnn_attention_on_cpu_raises_naming_the_field():
    if jax.default_backend() == "gpu":
        pytest.skip("cudnn may be usable on a GPU")
    q, k, v = _qkv(4)
    with pytest.raises(ValueError, match=r"model\.attention.*cudnn"):
        dot_product_attention(q, k, v, impl="cudnn")
    # bf16 does not make it usable on CPU either.
    with pytest.raises(ValueError, match=r"model\.attention"):
        dot_product_attention(*(a.astype(jnp.bfloat16) for a in (q, k, v)), impl="cudnn")


def test_unknown_attention_impl_raises():
    q, k, v = _qkv(5)
    with pytest.raises(ValueError, match=r"model\.attention.*'flash'"):
        dot_product_attention(q, k, v, impl="flash")


@pytest.mark.parametrize("impl", ["cudnn", "flash"])
def test_model_with_unusable_attention_raises_naming_the_field(impl):
    if impl == "cudnn" and jax.default_backend() == "gpu":
        pytest.skip("cudnn may be usable on a GPU")
    model = make(attention=impl)
    with pytest.raises(ValueError, match=r"model\.attention"):
        model.init(jax.random.key(0), tokens())


# ----------------------------------------------------------------------------- banded attention


@pytest.mark.parametrize(
    "t, window, block",
    [
        (17, 5, 0),  # block = window, T not a multiple of it
        (17, 5, 3),  # block smaller than the window, not a divisor
        (17, 5, 7),  # block larger than the window
        (16, 4, 4),  # T a multiple of the block
        (33, 8, 5),
        (10, 10, 0),  # window = T
        (10, 20, 0),  # window > T: full causal attention (the dense scores)
        (10, 20, 4),  # ... and on the band
        (12, 9, 0),  # a band as large as the matrix: the dense scores
        (9, 1, 0),  # window 1: each query sees itself only
        (9, 1, 4),
    ],
)
def test_banded_attention_equals_masked_dense_attention(t, window, block):
    q, k, v = _qkv(t + window + block, (2, t, 3, 4))
    dense = masked_attention(q, k, v, causal_allowed(t, t, window))
    out = banded_attention(q, k, v, window, block)
    chex.assert_shape(out, q.shape)
    np.testing.assert_allclose(np.asarray(out), np.asarray(dense), atol=1e-5)
    if window == 1:  # the known answer: each output is its own value
        np.testing.assert_allclose(np.asarray(out), np.asarray(v), atol=1e-6)


def test_dispatcher_window_is_banded_and_cached_queries_keep_the_mask():
    q, k, v = _qkv(3, (2, 13, 2, 4))
    dense = masked_attention(q, k, v, causal_allowed(13, 13, 4))
    out = dot_product_attention(q, k, v, causal=True, impl="xla", window=4)
    np.testing.assert_allclose(np.asarray(out), np.asarray(dense), atol=1e-5)
    # a query block against a longer cache (t < s) goes through the mask
    cached = dot_product_attention(q[:, -3:], k, v, causal=True, impl="xla", window=4)
    np.testing.assert_allclose(np.asarray(cached), np.asarray(dense[:, -3:]), atol=1e-5)


def test_banded_weighted_values_takes_any_scores_function():
    """Low-rank scoring: keys without a head axis ([B, T, R]), scores by the given function."""
    rng = np.random.default_rng(4)
    a, b = (jnp.asarray(rng.standard_normal((2, 11, 6)), jnp.float32) for _ in range(2))
    gains = jnp.asarray(rng.standard_normal((3, 6)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((2, 11, 3, 4)), jnp.float32)
    dense = weighted_values(lowrank.low_rank_scores(a, b, gains), v, causal_allowed(11, 11, 3))
    out = banded_weighted_values(lambda x, y: lowrank.low_rank_scores(x, y, gains), a, b, v, 3)
    np.testing.assert_allclose(np.asarray(out), np.asarray(dense), atol=1e-5)


def test_banded_attention_bad_window_is_one_line_error():
    q, k, v = _qkv(5)
    with pytest.raises(ValueError, match=r"model\.window.*>= 1"):
        banded_attention(q, k, v, 0)
    with pytest.raises(ValueError, match=r"block must be >= 0"):
        banded_attention(q, k, v, 2, -1)


def _dense_window_attention(q, k, v, window, block=0):
    return masked_attention(q, k, v, causal_allowed(q.shape[1], q.shape[1], window))


def _dense_window_values(scores_fn, q, k, v, window, block=0):
    t = q.shape[1]
    return weighted_values(scores_fn(q, k), v, causal_allowed(t, t, window))


@pytest.mark.parametrize("model_name", ["standard", "low_rank", "spacebyte"])
def test_models_with_a_window_match_their_masked_dense_version(model_name, monkeypatch):
    """The banded path inside each model gives the logits of the old full-matrix mask."""
    from lexlm.nn import attention, blocks, transformer
    from lexlm.nn.spacebyte import SpaceByteConfig, SpaceByteLM

    if model_name == "spacebyte":
        model = SpaceByteLM(
            SpaceByteConfig(
                vocab_size=V, max_len=16, local_width=16, local_depth=2, local_heads=2,
                window=3, width=32, depth=1, heads=2, cap=4,
            )
        )  # fmt: skip
    else:
        model = make(window=3, attention_kind=model_name, max_len=16)
    x = tokens(length=14)
    params = nn.meta.unbox(model.init(jax.random.key(0), x))
    banded = model.apply(params, x)
    monkeypatch.setattr(attention, "banded_attention", _dense_window_attention)
    monkeypatch.setattr(blocks, "banded_attention", _dense_window_attention)
    monkeypatch.setattr(transformer, "banded_weighted_values", _dense_window_values)
    dense = model.apply(params, x)
    np.testing.assert_allclose(np.asarray(banded), np.asarray(dense), atol=1e-5)
    # the window has power: with full attention the logits differ
    if model_name != "spacebyte":
        full = make(window=0, attention_kind=model_name, max_len=16).apply(params, x)
        assert float(jnp.abs(full - banded).max()) > 1e-4


# ----------------------------------------------------------------------------- model helpers

V, T, B, D = 37, 12, 2, 32


def make(embedding="learned", **kw):
    base = dict(vocab_size=V, width=D, depth=2, heads=4, max_len=16, embedding=embedding)
    base.update(kw)
    return TransformerLM(LMConfig(**base))


def extras(embedding, batch=B, seed=7, vocab=V):
    """Per-sequence inputs each mode needs (semi: a mask with both values present)."""
    if embedding == "learned":
        return {}
    keys = lexinv.sequence_keys(jax.random.key(seed), batch)
    if embedding == "lexinvariant":
        return {"seq_keys": keys}
    mask = lexinv.semi_lexinvariant_mask(jax.random.key(seed + 1), batch, vocab, 0.5)
    return {"seq_keys": keys, "semi_mask": mask}


def tokens(seed=0, batch=B, length=T, vocab=V):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (batch, length)), jnp.int32)


def init(model, embedding, seed=0, **kw):
    x = tokens()
    return nn.meta.unbox(model.init(jax.random.key(seed), x, **extras(embedding, **kw)))


@pytest.fixture(scope="module")
def models():
    out = {}
    for mode in MODES:
        model = make(mode, vocab_chunk=8)
        out[mode] = (model, init(model, mode))
    return out


# ----------------------------------------------------------------------------- TransformerLM


@pytest.mark.parametrize("mode", MODES)
def test_output_shapes(models, mode):
    model, params = models[mode]
    x, ex = tokens(), extras(mode)
    h = model.apply(params, x, **ex)
    nll = model.apply(params, x, x, method="nll", **ex)
    logits = model.apply(params, x, method="logits", **ex)
    chex.assert_shape(h, (B, T, D))
    chex.assert_shape(nll, (B, T))
    chex.assert_shape(logits, (B, T, V))
    chex.assert_type([h, nll, logits], jnp.float32)
    chex.assert_tree_all_finite((h, nll, logits))


@pytest.mark.parametrize("mode", MODES)
def test_model_is_causal(models, mode):
    """Changing token t changes no hidden state before t (and does change position t)."""
    model, params = models[mode]
    x, ex = tokens(1), extras(mode)
    t0 = 5
    x2 = x.at[:, t0].set((x[:, t0] + 1) % V)
    h = model.apply(params, x, **ex)
    h2 = model.apply(params, x2, **ex)
    np.testing.assert_allclose(np.asarray(h[:, :t0]), np.asarray(h2[:, :t0]), atol=1e-6, rtol=0)
    assert float(jnp.min(jnp.abs(h[:, t0] - h2[:, t0]).max(axis=-1))) > 1e-3


@pytest.mark.parametrize("chunk", [8, 37, 64])
@pytest.mark.parametrize("mode", MODES)
def test_nll_equals_log_softmax_of_logits(mode, chunk):
    model = make(mode, vocab_chunk=chunk)
    params = init(model, mode)
    x, y, ex = tokens(2), tokens(3), extras(mode)
    nll = model.apply(params, x, y, method="nll", **ex)
    logits = model.apply(params, x, method="logits", **ex)
    ref = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), y[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(nll), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["learned", "lexinvariant"])
def test_bfloat16_compute_close_to_float32(mode):
    m32, m16 = make(mode, vocab_chunk=8), make(mode, vocab_chunk=8, dtype="bfloat16")
    params = init(m32, mode)
    x, y, ex = tokens(4), tokens(5), extras(mode)
    h16 = m16.apply(params, x, **ex)
    chex.assert_type(h16, jnp.bfloat16)
    nll32 = m32.apply(params, x, y, method="nll", **ex)
    nll16 = m16.apply(params, x, y, method="nll", **ex)
    chex.assert_type(nll16, jnp.float32)
    chex.assert_tree_all_finite(nll16)
    # bf16 keeps ~3 significant digits; the loss is a few nats.
    np.testing.assert_allclose(np.asarray(nll16), np.asarray(nll32), rtol=0, atol=0.05)
    assert abs(float(nll16.mean() - nll32.mean())) < 0.01
    assert float(jnp.max(jnp.abs(nll16 - nll32))) > 0  # it really computed in bf16


def test_sequence_longer_than_max_len_raises(models):
    model, params = models["learned"]
    with pytest.raises(ValueError, match=r"model\.max_len.*17.*16"):
        model.apply(params, tokens(length=17))


def test_lexinvariant_without_keys_raises(models):
    model, params = models["lexinvariant"]
    with pytest.raises(ValueError, match="seq_keys"):
        model.apply(params, tokens())


@pytest.mark.parametrize("mode", MODES)
def test_every_param_has_logical_axes_of_its_rank(mode):
    model = make(mode)
    boxed = model.init(jax.random.key(0), tokens(), **extras(mode))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
    specs = nn.get_partition_spec(boxed)
    flat_specs = jax.tree.leaves(specs, is_leaf=lambda s: isinstance(s, PartitionSpec))
    flat_values = jax.tree.leaves(nn.meta.unbox(boxed))
    assert len(flat_specs) == len(flat_values)
    for spec, value in zip(flat_specs, flat_values):
        assert isinstance(spec, PartitionSpec)
        assert len(spec) == value.ndim, (spec, value.shape)
        assert set(spec) <= LOGICAL_NAMES, spec
    p = boxed["params"]
    assert p["positions"].names == (None, "embed")
    assert p["block_0"]["qkv"]["kernel"].names == ("embed", "qkv", "heads", "kv")
    assert p["block_0"]["attn_out"]["kernel"].names == ("heads", "kv", "embed")
    assert p["block_0"]["mlp_in"]["kernel"].names == ("embed", "mlp")
    assert ("embedding" in p) == (mode != "lexinvariant")
    if mode != "lexinvariant":
        assert p["embedding"].names == ("vocab", "embed")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"embedding": "onehot"}, "model.embedding"),
        ({"width": 30, "heads": 4}, "model.heads"),
        ({"dtype": "float16"}, "model.dtype"),
        ({"semi_p": 1.5}, "model.semi_p"),
        ({"semi_p": -0.1}, "model.semi_p"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match="^" + field.replace(".", r"\.")):
        LMConfig(vocab_size=V, **kwargs)


@pytest.mark.parametrize(
    "kw",
    [
        {"embedding": "learned"},
        {"embedding": "lexinvariant"},
        {"embedding": "semi"},
        {"embedding": "learned", "width": 24, "heads": 3, "depth": 3, "mlp_ratio": 2},
        {"embedding": "lexinvariant", "width": 24, "heads": 3, "depth": 1, "max_len": 40},
    ],
)
def test_param_count_matches_init(kw):
    model = make(**kw)
    shapes = jax.eval_shape(
        lambda: nn.meta.unbox(model.init(jax.random.key(0), tokens(), **extras(kw["embedding"])))
    )
    actual = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    assert model.cfg.param_count() == actual


def test_importing_nn_and_train_does_not_import_the_data_stack():
    code = textwrap.dedent(
        """
        import sys
        import lexlm.nn, lexlm.train
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("grain", "tensorflow_datasets", "tensorflow")
            or m == "lexlm.data" or m.startswith("lexlm.data.")
        )
        assert not heavy, heavy
        print("ok")
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
