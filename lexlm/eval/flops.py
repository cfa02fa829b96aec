"""FLOPs counted as computed: XLA's count of the lowered program, with every loop body
multiplied by its trip count.

``counted_flops(fn, *args)`` lowers ``fn`` for the arguments' shapes (arguments may be
``jax.ShapeDtypeStruct``s; nothing is compiled or run) and returns its floating-point operation
count: a matmul [m, k] x [k, n] counts 2 m k n, element-wise ops one per element.
``train_step_flops(loss, params, batch, key)`` is the count of one forward and backward pass of
a task's loss (``jax.value_and_grad``); the optimizer's element-wise update is left out, as the
byte-level-LM literature does. ``xla_flops(fn, *args)`` is XLA's raw count.

Why not XLA's count alone: XLA's HLO cost analysis counts a ``while`` loop's body once whatever
its trip count, so a ``lax.scan`` over 16 matmuls costs what one does (a chunked vocabulary
loss, a scanned stack of layers). The count here walks the program's jaxpr
(``jax.make_jaxpr``), recursing into every sub-jaxpr (jit, remat, custom_jvp/custom_vjp,
cond branches, loop bodies), and corrects XLA's count loop by loop:

    true(f) = xla(f) + sum over scans L in f of [length(L) * true(body(L)) - xla(L)]

where ``xla(L)`` is XLA's count of the scan alone (what it contributed to ``xla(f)``, its
body once or ``unroll`` times). So a scan costs exactly ``length`` times its body; the loop's
own bookkeeping (its counter and comparison, a few integer ops) is not counted. A program
without loops gets XLA's count exactly.

Conventions: ``cond``/``switch`` counts its most expensive branch (XLA's convention: a
worst case). ``while_loop`` (``lax.while_loop``, or ``fori_loop`` with traced bounds) has no
trip count known before it runs: counting it raises ``ValueError``; write it as ``lax.scan``
or ``fori_loop`` with Python-int bounds (which JAX lowers to a scan).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.extend import core as jcore

_LOOP_FREE = 0.0


def _xla(analysis) -> float:
    if isinstance(analysis, list):  # older jax: one dict per computation
        analysis = analysis[0]
    if not analysis or "flops" not in analysis:
        raise RuntimeError("this backend's compiler reports no FLOP count")
    return float(analysis["flops"])


def xla_flops(fn: Callable, *args) -> float:
    """XLA's raw FLOP count of ``jax.jit(fn)(*args)`` (a loop body counted once)."""
    return _xla(jax.jit(fn).lower(*args).cost_analysis())


def _spec(aval) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)


def _closed(jaxpr) -> jcore.ClosedJaxpr:
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        return jaxpr
    if jaxpr.constvars:
        raise ValueError("counted_flops: a sub-jaxpr with free constants cannot be counted")
    return jcore.ClosedJaxpr(jaxpr, ())


def _xla_of_jaxpr(closed: jcore.ClosedJaxpr) -> float:
    """XLA's count of a closed jaxpr lowered as a function of its inputs."""
    args = [_spec(v.aval) for v in closed.jaxpr.invars]
    return xla_flops(jcore.jaxpr_as_fun(closed), *args)


def _xla_of_eqn(eqn) -> float:
    """XLA's count of one equation lowered alone (literal inputs kept as constants)."""
    slots = [isinstance(v, jcore.Literal) for v in eqn.invars]
    specs = [_spec(v.aval) for v, lit in zip(eqn.invars, slots) if not lit]

    def alone(*vals):
        it = iter(vals)
        ins = [v.val if lit else next(it) for v, lit in zip(eqn.invars, slots)]
        return eqn.primitive.bind(*ins, **eqn.params)

    return xla_flops(alone, *specs)


def _subjaxprs(params: dict) -> list:
    """The jaxprs an equation's params hold (a jit's body, cond branches, ...); callables
    such as custom_jvp's rule thunks are not part of the lowered program and are skipped."""
    found = []
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            if isinstance(item, jcore.ClosedJaxpr | jcore.Jaxpr):
                found.append(item)
    return found


def _has_loop(jaxpr) -> bool:
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("scan", "while"):
            return True
        if any(_has_loop(sub) for sub in _subjaxprs(eqn.params)):
            return True
    return False


def _true_flops(closed: jcore.ClosedJaxpr) -> float:
    """FLOPs of a closed jaxpr with loop bodies multiplied by their trip counts."""
    return _xla_of_jaxpr(closed) + _correction(closed.jaxpr)


def _correction(jaxpr) -> float:
    """``true - xla`` of a jaxpr: the sum of its loops' corrections, at any depth."""
    jaxpr = jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr
    total = _LOOP_FREE
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "while":
            raise ValueError(
                "counted_flops: a while_loop has no trip count known before it runs; "
                "write it as lax.scan or fori_loop with Python-int bounds"
            )
        subs = _subjaxprs(eqn.params)
        if name != "scan" and not any(_has_loop(sub) for sub in subs):
            continue  # XLA's count of this equation is already right
        if name == "scan":
            body = _true_flops(_closed(eqn.params["jaxpr"]))
            total += eqn.params["length"] * body - _xla_of_eqn(eqn)
        elif name == "cond":
            worst = max(_true_flops(_closed(b)) for b in eqn.params["branches"])
            total += worst - _xla_of_eqn(eqn)
        else:  # jit, remat, custom_jvp/vjp calls: their body is inlined into the program
            total += sum(_correction(sub) for sub in subs)
    return total


def counted_flops(fn: Callable, *args) -> float:
    """FLOPs of ``jax.jit(fn)(*args)`` with loop bodies times their trip counts (module
    docstring); arguments may be ``ShapeDtypeStruct``s."""
    closed = jax.make_jaxpr(fn)(*args)
    return xla_flops(fn, *args) + _correction(closed.jaxpr)


def train_step_flops(loss: Callable, params, batch: dict, key: jax.Array) -> float:
    """FLOPs of one forward + backward pass of ``loss(params, batch, key) -> (scalar, aux)``."""
    return counted_flops(jax.value_and_grad(loss, has_aux=True), params, batch, key)
