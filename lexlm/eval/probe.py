"""A multinomial logistic (softmax) probe on frozen features, trained with optax.

Used for the deciphering probe of Huang et al. (2023), section 4.3: the hidden state of a
lexinvariant LM at position t, under a random cipher, is mapped to the *plaintext* id of the
token at t. Trained on some ciphers and tested on disjoint ones, it can only succeed if the
model infers token identity from the context's statistics.

Features are standardised with the training set's mean and standard deviation; the probe
minimises the mean cross-entropy plus an L2 penalty on the weights by full-batch L-BFGS. The
objective is convex, so the result does not depend on the initialisation (zeros) beyond the
iteration budget.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Float, Int

from lexlm.eval.in_context import bucket_ranges


@dataclasses.dataclass(frozen=True)
class SoftmaxProbe:
    weights: Float[np.ndarray, "D V"]
    bias: Float[np.ndarray, " V"]
    mean: Float[np.ndarray, " D"]
    scale: Float[np.ndarray, " D"]

    def logits(self, x: Float[np.ndarray, "N D"]) -> Float[np.ndarray, "N V"]:
        z = (np.asarray(x, np.float32) - self.mean) / self.scale
        return z @ self.weights + self.bias

    def predict(self, x: Float[np.ndarray, "N D"]) -> Int[np.ndarray, " N"]:
        return np.argmax(self.logits(x), axis=-1)


def probe_objective(params: dict, z, labels, l2):
    """Mean softmax cross-entropy of ``z @ w + b`` against ``labels``, plus ``l2 * ||w||^2``."""
    logits = z @ params["w"] + params["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce + l2 * jnp.sum(params["w"] ** 2)


@functools.partial(jax.jit, static_argnames=("n_classes", "steps"))
def _fit_lbfgs(z, labels, l2, *, n_classes: int, steps: int):
    """``steps`` L-BFGS iterations (zoom line search) from zeros; returns params and losses.

    Module level and jitted with ``l2`` traced, so an L2 grid compiles once per shape.
    """
    opt = optax.lbfgs()
    value_fn = functools.partial(probe_objective, z=z, labels=labels, l2=l2)
    value_and_grad = optax.value_and_grad_from_state(value_fn)
    params = {
        "w": jnp.zeros((z.shape[1], n_classes), jnp.float32),
        "b": jnp.zeros((n_classes,), jnp.float32),
    }

    def step(carry, _):
        p, s = carry
        value, grad = value_and_grad(p, state=s)
        updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=value_fn)
        return (optax.apply_updates(p, updates), s), value

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, losses


def fit_softmax_probe(
    x: Float[np.ndarray, "N D"],
    y: Int[np.ndarray, " N"],
    n_classes: int,
    *,
    l2: float = 1e-4,
    steps: int = 50,
) -> SoftmaxProbe:
    """Fits softmax(W z + b) to labels ``y`` by ``steps`` full-batch L-BFGS iterations.

    The objective (``probe_objective``) is convex and, for ``l2 > 0``, strictly convex, so
    L-BFGS reaches its minimum in a few dozen iterations, far fewer than full-batch first-order
    steps need (``tests/test_in_context.py`` checks a fit reaches the known optimum).
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"probe: {x.shape[0]} feature rows for {y.shape[0]} labels")
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise ValueError(f"probe: labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    if not l2 >= 0 or steps < 1:
        raise ValueError(f"probe: need l2 >= 0 and steps >= 1, got l2={l2}, steps={steps}")
    x = np.asarray(x, np.float32)
    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    z = jnp.asarray((x - mean) / scale)
    p, _ = _fit_lbfgs(
        z, jnp.asarray(y, jnp.int32), jnp.float32(l2), n_classes=int(n_classes), steps=int(steps)
    )
    p = jax.device_get(p)
    return SoftmaxProbe(np.asarray(p["w"]), np.asarray(p["b"]), mean, scale)


def accuracy_by_position(
    correct: np.ndarray,
    positions: Int[np.ndarray, " N"],
    buckets,
    baselines: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Mean of ``correct`` (and of each baseline's 0/1 array) per position bucket.

    ``buckets``: ascending 1-based left edges (``in_context.bucket_ranges``); the last bucket
    runs to the largest position.
    """
    rows = []
    for lo, hi in bucket_ranges(buckets, int(positions.max())):
        sel = (positions >= lo) & (positions <= hi)
        if not sel.any():
            continue
        row = {"positions": f"{lo}-{hi}", "accuracy": float(correct[sel].mean())}
        for name, hits in (baselines or {}).items():
            row[name] = float(hits[sel].mean())
        row["n"] = int(sel.sum())
        rows.append(row)
    return rows
