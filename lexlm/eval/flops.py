"""FLOPs counted by XLA, not estimated: the HLO cost analysis of the lowered computation.

``counted_flops(fn, *args)`` lowers ``fn`` for the arguments' shapes (no compile, so it is
cheap) and returns XLA's floating-point operation count of the program: a matmul
[m, k] x [k, n] counts 2 m k n, element-wise ops one per element. The training
count of a task is one forward and backward pass of its loss (``jax.value_and_grad``); the
optimizer's element-wise update is left out, as the byte-level-LM literature does.
"""

from __future__ import annotations

from collections.abc import Callable

import jax


def counted_flops(fn: Callable, *args) -> float:
    """XLA's FLOP count of ``jax.jit(fn)(*args)`` (arguments may be ``ShapeDtypeStruct``s)."""
    analysis = jax.jit(fn).lower(*args).cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per computation
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("this backend's compiler reports no FLOP count")
    return float(analysis["flops"])


def train_step_flops(loss: Callable, params, batch: dict, key: jax.Array) -> float:
    """FLOPs of one forward + backward pass of ``loss(params, batch, key) -> (scalar, aux)``."""
    return counted_flops(jax.value_and_grad(loss, has_aux=True), params, batch, key)
