"""The suite runs lexlm under jaxtyping's import hook with beartype (see pyproject addopts).

These tests fail if the hook is not installed: without it a wrong-shaped call either runs
(``v`` with another head width) or fails inside jax with a ValueError, never a TypeCheckError.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import TypeCheckError

from lexlm.nn import attention
from lexlm.nn import lexinvariant as lexinv

HOOK = "run pytest with --jaxtyping-packages=lexlm,beartype.beartype (pyproject addopts)"


def _array(shape, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(0).standard_normal(shape), dtype)


def test_lexlm_functions_are_instrumented():
    assert hasattr(attention.dot_product_attention, "__wrapped__"), HOOK


def test_attention_accepts_matching_shapes():
    q, k, v = _array((2, 5, 3, 4)), _array((2, 6, 3, 4)), _array((2, 6, 3, 4))
    assert attention.dot_product_attention(q, k, v).shape == (2, 5, 3, 4)


def test_attention_rejects_a_head_width_mismatch():
    """v's K differs from q's: jax would happily compute this; the annotation forbids it."""
    q, k, v = _array((2, 5, 3, 4)), _array((2, 6, 3, 4)), _array((2, 6, 3, 8))
    with pytest.raises(TypeCheckError, match="dot_product_attention"):
        attention.dot_product_attention(q, k, v, causal=False)


def test_attention_rejects_a_batch_mismatch():
    q, k, v = _array((2, 5, 3, 4)), _array((3, 6, 3, 4)), _array((3, 6, 3, 4))
    with pytest.raises(TypeCheckError):
        attention.dot_product_attention(q, k, v)


def test_shapes_are_checked_on_tracers_under_jit():
    q, k, v = _array((2, 5, 3, 4)), _array((2, 6, 3, 4)), _array((2, 6, 3, 8))
    attend = jax.jit(attention.dot_product_attention)
    assert attend(q, k, k).shape == (2, 5, 3, 4)
    with pytest.raises(TypeCheckError):
        attend(q, k, v)


def test_random_rows_checks_rank_and_dtype():
    keys = lexinv.sequence_keys(jax.random.key(0), 2)
    assert lexinv.random_rows(keys, jnp.arange(5), 8).shape == (2, 5, 8)
    assert lexinv.random_rows(keys, jnp.zeros((2, 5), jnp.int32), 8).shape == (2, 5, 8)
    with pytest.raises(TypeCheckError):
        lexinv.random_rows(keys, jnp.zeros((2, 5, 1), jnp.int32), 8)  # ids of rank 3
    with pytest.raises(TypeCheckError):
        lexinv.random_rows(keys, jnp.arange(5.0), 8)  # float ids
