"""Language-model metrics from per-token negative log-likelihoods.

Everything is accumulated as sums (nats, token counts, bytes, characters) so that windows,
batches and random-embedding draws combine exactly; means are taken once at the end.
bits/byte = total nats / ln 2 / total UTF-8 bytes of the predicted text, which compares models
with different units (bytes, characters, subwords) on the same text.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np


@dataclasses.dataclass
class NLLSums:
    by_position: np.ndarray  # [T] summed nats at each context position
    count_by_position: np.ndarray  # [T] number of predicted tokens at each position
    n_bytes: float = 0.0
    n_chars: float = 0.0

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
        return out


def accumulate_nll(
    nll_fn: Callable[[dict, jax.Array], jax.Array],
    windows: dict[str, np.ndarray],
    batch_size: int,
    key: jax.Array,
    draws: int = 1,
) -> NLLSums:
    """Runs ``nll_fn(batch, key) -> [B, T]`` over all windows, ``draws`` times each.

    ``windows``: {'inputs', 'targets', 'mask': [N, T]} plus optional 'n_bytes'/'n_chars'. The
    last batch is padded with masked rows so the compiled function sees one shape. With several
    draws (random-embedding models) the sums are averaged over draws.
    """
    n, t = windows["inputs"].shape
    sums = np.zeros(t, np.float64)
    counts = np.zeros(t, np.float64)
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
            k = jax.random.fold_in(jax.random.fold_in(key, d), start)
            nll = np.asarray(jax.device_get(nll_fn(batch, k)), np.float64)
            mask = batch["mask"].astype(np.float64)
            sums += (nll * mask).sum(0)
            counts += mask.sum(0)
    return NLLSums(
        by_position=sums / draws,
        count_by_position=counts / draws,
        n_bytes=float(windows.get("n_bytes", 0.0)),
        n_chars=float(windows.get("n_chars", 0.0)),
    )


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average over positions for plotting noisy per-position curves."""
    if width <= 1:
        return np.asarray(values)
    kernel = np.ones(width) / width
    return np.convolve(np.asarray(values), kernel, mode="valid")
