"""Language-model metrics from per-token negative log-likelihoods.

Everything is accumulated as sums (nats, token counts, bytes, characters) so that windows,
batches and random-embedding draws combine exactly; means are taken once at the end.
bits/byte = total nats / ln 2 / total UTF-8 bytes of the predicted text, which compares models
with different units (bytes, characters, subwords) on the same text.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


@dataclasses.dataclass
class NLLSums:
    by_position: np.ndarray  # [T] summed nats at each context position
    count_by_position: np.ndarray  # [T] number of predicted tokens at each position
    n_bytes: float = 0.0
    n_chars: float = 0.0
    unit_nats: np.ndarray | None = None  # [U] summed nats of each test unit's targets
    unit_bytes: np.ndarray | None = None  # [U] bytes of each test unit's targets

    @property
    def total_nats(self) -> float:
        return float(self.by_position.sum())

    @property
    def tokens(self) -> float:
        return float(self.count_by_position.sum())

    def summary(self) -> dict:
        loss = self.total_nats / max(self.tokens, 1.0)
        out = {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "tokens": self.tokens,
            "loss_by_position": (
                self.by_position / np.maximum(self.count_by_position, 1.0)
            ).tolist(),
        }
        if self.n_bytes:
            out["bits_per_byte"] = self.total_nats / math.log(2) / self.n_bytes
        if self.n_chars:
            out["bits_per_char"] = self.total_nats / math.log(2) / self.n_chars
        if self.unit_nats is not None and self.unit_bytes is not None:
            # the test units of lexlm.eval.intervals: bits and bytes per unit
            out["units"] = {
                "bits": (self.unit_nats / math.log(2)).tolist(),
                "bytes": np.asarray(self.unit_bytes, np.float64).tolist(),
            }
        return out


def params_mesh(params) -> jax.sharding.Mesh | None:
    """The mesh a parameter tree is sharded over (None for host arrays or one plain device)."""
    for leaf in jax.tree.leaves(params):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, jax.sharding.NamedSharding):
            return sharding.mesh
    return None


def global_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Host rows of the *global* batch (every process holds all of them) -> global arrays split
    over the mesh's data x fsdp axes; each process places only its addressable shards."""
    sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
        for k, v in batch.items()
    }


@functools.cache
def _position_sums_fn(mesh: jax.sharding.Mesh | None):
    """jit: (nll [B, T], mask [B, T]) -> (sum of nll * mask, sum of mask) over B, replicated."""
    out = None if mesh is None else NamedSharding(mesh, PartitionSpec())

    def sums(nll, mask):
        mask = mask.astype(jnp.float32)
        return jnp.sum(nll.astype(jnp.float32) * mask, 0), jnp.sum(mask, 0)

    return jax.jit(sums, out_shardings=out)


def accumulate_nll(
    nll_fn: Callable[[dict, jax.Array], jax.Array],
    windows: dict[str, np.ndarray],
    batch_size: int,
    key: jax.Array,
    draws: int = 1,
    *,
    mesh: jax.sharding.Mesh | None = None,
) -> NLLSums:
    """Runs ``nll_fn(batch, key) -> [B, T]`` over all windows, ``draws`` times each.

    ``windows``: {'inputs', 'targets', 'mask': [N, T]} plus optional 'n_bytes'/'n_chars'. The
    last batch is padded with masked rows so the compiled function sees one shape. With several
    draws (random-embedding models) the sums are averaged over draws. With 'unit_ids' [N, T] and
    'unit_bytes' [U] (``lexlm.data.lm_eval_windows``) the nats are also summed per test unit.

    Data parallel: with a ``mesh`` (default: ``nll_fn.mesh`` when it has one) every batch is
    split over its data x fsdp axes (``global_batch``), so N devices, on one host or many, each
    compute B / N rows, and the per-position sums come back replicated. Every process must call
    this with the same windows. ``batch_size`` is the global batch and must divide by the
    data-parallel size.
    """
    n, t = windows["inputs"].shape
    mesh = mesh if mesh is not None else getattr(nll_fn, "mesh", None)
    if mesh is not None and batch_size % (mesh.shape["data"] * mesh.shape["fsdp"]):
        raise ValueError(
            f"eval batch {batch_size} does not divide over data x fsdp = "
            f"{mesh.shape['data']} x {mesh.shape['fsdp']} devices"
        )
    position_sums = _position_sums_fn(mesh)
    sums = np.zeros(t, np.float64)
    counts = np.zeros(t, np.float64)
    by_unit = "unit_ids" in windows and "unit_bytes" in windows
    unit_nats = np.zeros(len(windows["unit_bytes"]) if by_unit else 0, np.float64)
    for d in range(draws):
        for start in range(0, n, batch_size):
            batch = {
                k: windows[k][start : start + batch_size] for k in ("inputs", "targets", "mask")
            }
            pad = batch_size - batch["inputs"].shape[0]
            if pad:
                batch = {
                    k: np.concatenate([v, np.zeros((pad, t), v.dtype)]) for k, v in batch.items()
                }
            if mesh is not None:
                batch = global_batch(batch, mesh)
            k = jax.random.fold_in(jax.random.fold_in(key, d), start)
            nll = nll_fn(batch, k)
            s, c = jax.device_get(position_sums(nll, batch["mask"]))
            sums += np.asarray(s, np.float64)
            counts += np.asarray(c, np.float64)
            if by_unit:
                rows = windows["unit_ids"][start : start + batch_size]
                token_nll = np.asarray(jax.device_get(nll), np.float64)[: len(rows)]
                real = (rows >= 0) & (np.asarray(windows["mask"][start : start + batch_size]) > 0)
                unit_nats += np.bincount(
                    rows[real], weights=token_nll[real], minlength=len(unit_nats)
                )
    return NLLSums(
        by_position=sums / draws,
        count_by_position=counts / draws,
        n_bytes=float(windows.get("n_bytes", 0.0)),
        n_chars=float(windows.get("n_chars", 0.0)),
        unit_nats=unit_nats / draws if by_unit else None,
        unit_bytes=np.asarray(windows["unit_bytes"]) if by_unit else None,
    )


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over positions for plotting noisy per-position curves."""
    if width <= 1:
        return np.asarray(values)
    kernel = np.ones(width) / width
    return np.convolve(np.asarray(values), kernel, mode="valid")
