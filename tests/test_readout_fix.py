"""The lexinvariant readout fix and the position/key options of lexlm.nn.transformer:
the init trap it removes, what each option computes, and that lexinvariance survives them."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_helpers as th

from lexlm.nn import LMConfig, TransformerLM
from lexlm.nn import lexinvariant as lexinv
from lexlm.nn.transformer import rotary, smear_keys
from lexlm.train.optim import decay_mask


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """XLA with most optimisations off (``train_helpers.unoptimised_xla``): these tiny programs
    compile several times faster and compute the same numbers to float rounding."""
    with th.unoptimised_xla():
        yield


V, D, T = 64, 32, 16


def model_and_params(**kw):
    cfg = dict(vocab_size=V, width=D, depth=2, heads=4, max_len=T, embedding="lexinvariant")
    cfg.update(kw)
    model = TransformerLM(LMConfig(**cfg))
    x = jnp.zeros((1, T), jnp.int32)
    params = nn.meta.unbox(
        model.init(jax.random.key(0), x, seq_keys=lexinv.sequence_keys(jax.random.key(1), 1))
    )
    return model, params


def init_loss(model, params):
    """Mean NLL at initialisation on random tokens whose targets never equal the input."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, V, (8, T)), jnp.int32)
    y = (x + jnp.asarray(rng.integers(1, V, (8, T)), jnp.int32)) % V
    ks = lexinv.sequence_keys(jax.random.key(3), 8)
    return float(model.apply(params, x, y, seq_keys=ks, method="nll").mean())


def test_learned_logit_scale_removes_the_init_trap():
    # Without the scale the tied random readout scores the *current* token ~sqrt(D) above the
    # rest: at init the model predicts "next = current", so other targets cost >> ln V.
    trapped = init_loss(*model_and_params(logit_scale="none"))
    fixed = init_loss(*model_and_params())  # 'auto' = learned for lexinvariant
    assert trapped > math.log(V) + 1.5
    assert abs(fixed - math.log(V)) < 0.1


def test_auto_logit_scale_is_on_for_random_rows_only():
    assert LMConfig(vocab_size=V, embedding="lexinvariant").learned_logit_scale
    assert LMConfig(vocab_size=V, embedding="semi").learned_logit_scale
    assert not LMConfig(vocab_size=V, embedding="learned").learned_logit_scale
    _, params = model_and_params()
    assert float(params["params"]["logit_scale"]) == pytest.approx(1 / math.sqrt(D))
    _, params = model_and_params(logit_scale="none", final_ln_bias=False, positions="rope")
    p = params["params"]
    assert "logit_scale" not in p and "bias" not in p["ln_final"] and "positions" not in p
    with pytest.raises(ValueError, match=r"^model\.logit_scale"):
        LMConfig(vocab_size=V, logit_scale="big")
    with pytest.raises(ValueError, match=r"^model\.positions"):
        LMConfig(vocab_size=V, positions="sinusoid")


def test_param_count_matches_the_parameter_tree():
    for kw in (
        {},
        {"logit_scale": "none"},
        {"positions": "rope", "final_ln_bias": False},
        {"copy_readout": True},
    ):
        model, params = model_and_params(**kw)
        n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        assert model.cfg.param_count() == n, kw


def test_rotary_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(0)
    q1 = jnp.asarray(rng.standard_normal((1, 1, 1, 8)), jnp.float32)
    k1 = jnp.asarray(rng.standard_normal((1, 1, 1, 8)), jnp.float32)
    q, k = jnp.tile(q1, (1, 12, 1, 1)), jnp.tile(k1, (1, 12, 1, 1))
    qr, kr = rotary(q, jnp.arange(12)), rotary(k, jnp.arange(12))
    s = np.asarray(jnp.einsum("bthk,bshk->ts", qr, kr))
    np.testing.assert_allclose(s[5, 3], s[9, 7], rtol=1e-5)
    np.testing.assert_allclose(s[2, 2], float(jnp.sum(q1 * k1)), rtol=1e-5)
    assert abs(s[5, 3] - s[5, 4]) > 1e-3
    # A rotation keeps norms.
    np.testing.assert_allclose(jnp.linalg.norm(qr, axis=-1), jnp.linalg.norm(q, axis=-1), 1e-5)


def test_smear_keys_mixes_each_key_with_its_predecessor():
    k = jnp.arange(1.0, 5.0).reshape(1, 4, 1, 1) * jnp.ones((1, 4, 2, 1))
    out = np.asarray(smear_keys(k, jnp.array([0.0, 0.25])))
    np.testing.assert_allclose(out[0, :, 0, 0], [1, 2, 3, 4])  # gate 0: unchanged
    np.testing.assert_allclose(out[0, :, 1, 0], [0.75, 1.75, 2.75, 3.75])  # 0.75 k_t + 0.25 k_t-1


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"smear_keys": True},
        {"positions": "rope", "final_ln_bias": False},
        {"copy_readout": True},
    ],
)
def test_options_keep_exact_invariance_for_a_fixed_draw(kw):
    model, params = model_and_params(**kw)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(5)
    params = jax.tree.unflatten(
        tree, [p + 0.3 * jnp.asarray(rng.standard_normal(p.shape), jnp.float32) for p in leaves]
    )
    x = jnp.asarray(rng.integers(0, V, (2, T)), jnp.int32)
    y = jnp.roll(x, -1, axis=1)
    table = jnp.asarray(rng.standard_normal((2, V, D)) / math.sqrt(D), jnp.float32)
    pi = jnp.asarray(rng.permutation(V), jnp.int32)
    table_pi = jnp.zeros_like(table).at[:, pi].set(table)
    a = model.apply(params, x, y, method="nll", table=table)
    b = model.apply(params, pi[x], pi[y], method="nll", table=table_pi)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    c = model.apply(params, pi[x], pi[y], method="nll", table=table)  # rows not moved
    assert float(jnp.max(jnp.abs(c - a))) > 1e-2


def test_no_decay_names_exempt_parameters():
    params = {
        "positions": jnp.ones((4, 3)),
        "block": {"kernel": jnp.ones((3, 3))},
        "ln": {"scale": jnp.ones(3)},
    }
    assert decay_mask(params) == {
        "positions": True,
        "block": {"kernel": True},
        "ln": {"scale": False},
    }
    assert decay_mask(params, ("positions",))["positions"] is False
    assert decay_mask(params, ("positions",))["block"]["kernel"] is True
