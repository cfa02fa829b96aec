"""Tests for lexlm.eval.flops: loop bodies counted times their trip counts, XLA's count
exactly on loop-free programs, and banded window attention counted as computed."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lexlm.eval.flops import counted_flops, train_step_flops, xla_flops
from lexlm.nn import LMConfig, TransformerLM, dot_product_attention
from lexlm.nn import lexinvariant as lexinv

MATMUL = 2 * 64**3  # one [64, 64] x [64, 64] matmul


def spec(*shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def scanned_matmuls(x, ws):
    return jax.lax.scan(lambda c, w: (c @ w, None), x, ws)[0]


def unrolled_matmuls(x, ws):
    for w in ws:
        x = x @ w
    return x


@pytest.mark.parametrize("n", [1, 4, 16])
def test_scan_of_n_matmuls_counts_n_matmuls(n):
    x, ws = spec(64, 64), spec(n, 64, 64)
    assert counted_flops(scanned_matmuls, x, ws) == n * MATMUL
    # XLA alone counts the body once whatever n (the defect this module corrects)
    assert xla_flops(scanned_matmuls, x, ws) < 1.01 * MATMUL


def test_unrolled_scan_counts_the_same():
    x, ws = spec(64, 64), spec(7, 64, 64)

    def f(x, ws):
        return jax.lax.scan(lambda c, w: (c @ w, None), x, ws, unroll=3)[0]

    assert counted_flops(f, x, ws) == 7 * MATMUL


def _mlp(p, x):
    h = jax.nn.gelu(x @ p["w1"] + p["b1"])
    return jax.nn.log_softmax(h @ p["w2"]).mean()


MLP_ARGS = (
    {"w1": spec(16, 32), "b1": spec(32), "w2": spec(32, 8)},
    spec(5, 16),
)


@pytest.mark.parametrize(
    "fn, args",
    [
        (lambda x, y: x @ y, (spec(8, 16), spec(16, 4))),
        (_mlp, MLP_ARGS),
        (jax.value_and_grad(_mlp), MLP_ARGS),
        (jax.checkpoint(_mlp), MLP_ARGS),
        (lambda p, x: jax.lax.cond(x.sum() > 0, _mlp, lambda p, x: x.sum(), p, x), MLP_ARGS),
    ],
    ids=["matmul", "mlp", "value_and_grad", "remat", "cond"],
)
def test_loop_free_programs_get_xla_count_exactly(fn, args):
    assert counted_flops(fn, *args) == xla_flops(fn, *args)
    assert counted_flops(fn, *args) > 0


def test_a_matmul_counts_two_m_k_n():
    assert counted_flops(lambda x, y: x @ y, spec(8, 16), spec(16, 4)) == 2 * 8 * 16 * 4


def test_nested_scans_multiply():
    def nested(x, ws):
        def outer(c, w):
            return jax.lax.scan(lambda c2, _: (c2 @ w, None), c, None, length=3)[0], None

        return jax.lax.scan(outer, x, ws)[0]

    assert counted_flops(nested, spec(64, 64), spec(5, 64, 64)) == 5 * 3 * MATMUL


def test_loops_inside_jit_remat_and_cond_are_found():
    x, ws = spec(64, 64), spec(4, 64, 64)
    inner = jax.jit(jax.checkpoint(scanned_matmuls))
    assert counted_flops(lambda x, ws: inner(x, ws) + 1.0, x, ws) == pytest.approx(
        4 * MATMUL + 64 * 64
    )

    def branchy(x, ws):  # cond counts its most expensive branch
        return jax.lax.cond(x[0, 0] > 0, scanned_matmuls, lambda x, ws: x @ ws[0], x, ws)

    assert counted_flops(branchy, x, ws) == pytest.approx(4 * MATMUL, rel=1e-4)


def test_value_and_grad_of_a_scan_counts_like_the_unrolled_loop():
    x, ws = spec(64, 64), spec(6, 64, 64)

    def loss(f):
        return jax.value_and_grad(lambda x, ws: f(x, ws).sum(), argnums=(0, 1))

    unrolled = counted_flops(loss(unrolled_matmuls), x, [spec(64, 64)] * 6)  # a list: no slicing
    # forward 1 matmul per step, backward 2 (to the carry and to the weight)
    assert unrolled == pytest.approx(6 * 3 * MATMUL, rel=2e-2)
    assert counted_flops(loss(scanned_matmuls), x, ws) == pytest.approx(unrolled, rel=1e-3)


def test_while_loop_is_a_one_line_error():
    def f(x):
        return jax.lax.while_loop(lambda c: c[0, 0] < 10.0, lambda c: c @ c, x)

    with pytest.raises(ValueError, match=r"^counted_flops: a while_loop .*lax\.scan[^\n]*$"):
        counted_flops(f, spec(8, 8))

    # fori_loop with Python-int bounds is a scan, and is counted
    def g(x):
        return jax.lax.fori_loop(0, 5, lambda i, c: c @ c, x)

    assert counted_flops(g, spec(64, 64)) == pytest.approx(5 * MATMUL, rel=1e-5)  # + counter


# -- the repo's chunked vocabulary loss and a scanned stack of layers -----------------------
def _nll(chunk, vocab):
    def f(h, targets, table):
        rows = lambda ids: jnp.take(table, ids, axis=0)
        return lexinv.chunked_tied_nll(h, targets, rows, vocab, chunk).sum()

    return f


def test_chunked_vocabulary_loss_counts_like_the_unchunked_loss():
    b, t, d, v = 2, 16, 32, 600
    args = (spec(b, t, d), spec(b, t, dtype=jnp.int32), spec(v, d))
    whole = counted_flops(_nll(v, v), *args)  # one chunk: no scan
    assert whole == xla_flops(_nll(v, v), *args)
    assert whole > 2 * b * t * d * v  # the logits' matmul and the softmax
    chunked = counted_flops(_nll(200, v), *args)  # 3 chunks of 200
    assert chunked == pytest.approx(whole, rel=1e-3)
    assert xla_flops(_nll(200, v), *args) < 0.4 * whole  # XLA alone: one chunk's worth
    # training: the chunk body is rematerialised, so one more logits matmul than unchunked
    grad = lambda f: jax.value_and_grad(f, argnums=(0, 2))
    ratio = counted_flops(grad(_nll(200, v)), *args) / counted_flops(grad(_nll(v, v)), *args)
    assert 1.25 < ratio < 1.45


def test_word_lm_with_a_vocabulary_larger_than_the_chunk():
    cfg = dict(vocab_size=600, width=32, depth=1, heads=2, max_len=16)
    x = jnp.zeros((2, 16), jnp.int32)

    def forward(chunk):
        model = TransformerLM(LMConfig(**cfg, vocab_chunk=chunk))
        params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), x))
        return counted_flops(lambda p, t: model.apply(p, t, t, method="nll").sum(), params, x)

    assert forward(200) == pytest.approx(forward(8192), rel=1e-3)  # 3 chunks of 200


class _Layer(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, _):
        return jax.nn.gelu(nn.Dense(self.width)(x)), None


class _Scanned(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        stack = nn.scan(
            _Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth
        )
        return stack(32, name="stack")(x, None)[0]


class _Unrolled(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = _Layer(32)(x, None)[0]
        return x


def _train_flops(module, x):
    params = jax.eval_shape(module.init, jax.random.key(0), x)
    loss = lambda p, batch, key: (module.apply(p, batch["x"]).sum(), None)
    return train_step_flops(loss, params, {"x": x}, jax.random.key(0))


def test_scanned_stack_of_layers_counts_like_the_unrolled_stack():
    x = spec(8, 32)
    unrolled = _train_flops(_Unrolled(6), x)
    assert unrolled > 6 * 3 * 2 * 8 * 32 * 32  # forward + two backward matmuls per layer
    # the scan's backward also computes the input's gradient at the first layer, which the
    # unrolled program drops (the input is not a parameter): one [8, 32] x [32, 32] matmul
    assert _train_flops(_Scanned(6), x) == pytest.approx(unrolled + 2 * 8 * 32 * 32, rel=3e-3)
    assert _train_flops(_Scanned(6), x) > 4 * _train_flops(_Scanned(1), x)


def test_lax_scan_over_stacked_params_counts_like_the_unrolled_stack():
    def scanned(ws, x):
        return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, ws)[0].sum()

    def unrolled(ws, x):
        for i in range(ws.shape[0]):
            x = jnp.tanh(x @ ws[i])
        return x.sum()

    args = (spec(5, 32, 32), spec(8, 32))
    assert counted_flops(scanned, *args) == pytest.approx(counted_flops(unrolled, *args), 1e-3)


# -- banded window attention is counted as computed -------------------------------------------
def test_window_attention_flops_fall_in_proportion_to_the_window():
    t = 512
    qkv = (spec(1, t, 4, 32),) * 3
    dense = counted_flops(lambda q, k, v: dot_product_attention(q, k, v), *qkv)
    for window in (16, 32, 64, 128):

        def banded_fn(q, k, v, window=window):
            return dot_product_attention(q, k, v, window=window)

        banded = counted_flops(banded_fn, *qkv)
        # block = window: each query block scores its own and the previous key block
        assert banded / dense == pytest.approx(2 * window / t, rel=0.05)


def test_a_window_near_the_length_costs_no_more_than_dense_attention():
    qkv = (spec(2, 64, 2, 8),) * 3  # window 48 of 64: two blocks of 48 would score 96 keys
    dense = counted_flops(lambda q, k, v: dot_product_attention(q, k, v), *qkv)
    near = counted_flops(lambda q, k, v: dot_product_attention(q, k, v, window=48), *qkv)
    assert near <= 1.02 * dense  # the window's mask: a few integer ops per score
