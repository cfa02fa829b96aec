"""A multinomial logistic (softmax) probe on frozen features, trained with optax.

Used for the deciphering probe of Huang et al. (2023), section 4.3: the hidden state of a
lexinvariant LM at position t, under a random cipher, is mapped to the *plaintext* id of the
token at t. Trained on some ciphers and tested on disjoint ones, it can only succeed if the
model infers token identity from the context's statistics.

Features are standardised with the training set's mean and standard deviation; the probe is
full-batch Adam on the mean cross-entropy plus an L2 penalty on the weights, which is convex,
so the result does not depend on the initialisation (zeros) beyond the step budget.
"""

from __future__ import annotations

import dataclasses

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


def fit_softmax_probe(
    x: Float[np.ndarray, "N D"],
    y: Int[np.ndarray, " N"],
    n_classes: int,
    *,
    l2: float = 1e-4,
    steps: int = 500,
    lr: float = 0.05,
) -> SoftmaxProbe:
    """Fits softmax(W z + b) to labels ``y`` by full-batch Adam (``steps`` steps)."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"probe: {x.shape[0]} feature rows for {y.shape[0]} labels")
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise ValueError(f"probe: labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    x = np.asarray(x, np.float32)
    mean = x.mean(0)
    scale = x.std(0) + 1e-6
    z = jnp.asarray((x - mean) / scale)
    labels = jnp.asarray(y, jnp.int32)
    params = {
        "w": jnp.zeros((x.shape[1], n_classes), jnp.float32),
        "b": jnp.zeros((n_classes,), jnp.float32),
    }
    opt = optax.adam(lr)

    def loss_fn(p):
        logits = z @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return ce + l2 * jnp.sum(p["w"] ** 2)

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            grads = jax.grad(loss_fn)(p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
        return p

    p = jax.device_get(run(params))
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
