"""Byte-patching rules of the hierarchical byte LMs, as pure array functions.

Every function takes and returns arrays (numpy or jax: the operations are the ones both share),
so the same code runs in data pipelines, in tests and inside jitted models.

* **SpaceByte** (Slagle, 2024): a byte is *spacelike* if it is not an ASCII letter, an ASCII
  digit or a UTF-8 continuation byte (``0x80``-``0xBF``); UTF-8 lead bytes (``>= 0xC0``) are
  spacelike. The global blocks run at input position t when byte t is spacelike and byte t-1
  is not (the official code's ``spacelike[t] & ~spacelike[t-1]``), so the global output at a
  space feeds the prediction of the next word's first byte. They also run where the paper's
  code puts its BOS: lexlm's special ids (pad, end-of-text, unknown) and the first position
  of every window, which has no earlier byte in view.
* **MegaByte** (Yu et al., 2023): fixed patches of P bytes; position t is in patch t // P.

A *patch* is the run of positions from one global position to just before the next.
``global_slots`` keeps the first ``cap`` global positions of each row (the global context cap
T_global); positions from the first one past the cap on are *overflow*. SpaceByte's code drops
overflow bytes from the loss. lexlm keeps them in the loss, predicted by the local blocks alone
(no global block runs for them), so a bits-per-byte evaluation still scores every byte, and
counts them (``overflow_mask``) so that a report can say how many there were.
"""

from __future__ import annotations

import numpy as np

from lexlm.text.tokenizers import NUM_SPECIAL


def _xp(x):
    """numpy for numpy inputs, jax.numpy for jax arrays and tracers."""
    if isinstance(x, np.ndarray | np.generic):
        return np
    import jax.numpy as jnp

    return jnp


def spacelike(byte_values):
    """bool[...]: True where a byte value (0..255) is spacelike under SpaceByte's rule."""
    b = byte_values
    letter_or_digit = (
        ((b >= ord("0")) & (b <= ord("9")))
        | ((b >= ord("A")) & (b <= ord("Z")))
        | ((b >= ord("a")) & (b <= ord("z")))
    )
    continuation = (b >= 0x80) & (b < 0xC0)
    return ~(letter_or_digit | continuation)


def byte_values(ids):
    """(bytes int32[...], special bool[...]) of byte-tokenizer ids (id = byte + NUM_SPECIAL);
    special ids (pad, end-of-text, unknown) give byte 0 and special True."""
    xp = _xp(ids)
    special = ids < NUM_SPECIAL
    return xp.where(special, 0, ids - NUM_SPECIAL).astype(xp.int32), special


def spacebyte_global(ids):
    """bool[B, T]: the positions where SpaceByte's global blocks run, for byte-tokenizer ids
    [B, T] (see the module docstring: after-space rule, special ids, the window's first
    position)."""
    xp = _xp(ids)
    b, special = byte_values(ids)
    space = spacelike(b) | special
    prev = xp.concatenate([xp.zeros_like(space[:, :1]), space[:, :-1]], axis=1)
    first = xp.arange(ids.shape[1])[None, :] == 0
    return (space & ~prev) | special | first


def megabyte_global(length: int, patch: int):
    """bool[T]: the first position of every fixed patch of ``patch`` bytes."""
    return np.arange(length) % patch == 0


def patch_ids(is_global):
    """int32[B, T]: the patch index of every position (the number of global positions at or
    before it, minus one; -1 before the first global position)."""
    xp = _xp(is_global)
    return (xp.cumsum(is_global.astype(xp.int32), axis=1) - 1).astype(xp.int32)


def global_slots(is_global, cap: int):
    """(positions int32[B, cap], valid bool[B, cap]): each row's first ``cap`` global
    positions, in order; unused slots hold position 0 and valid False."""
    xp = _xp(is_global)
    bsz, t = is_global.shape
    rank = patch_ids(is_global)
    keep = is_global & (rank < cap)
    slot = xp.where(keep, rank, cap)  # cap: out of range, dropped
    pos = xp.broadcast_to(xp.arange(t, dtype=xp.int32)[None, :], (bsz, t))
    rows = xp.broadcast_to(xp.arange(bsz)[:, None], (bsz, t))
    if xp is np:
        out = np.zeros((bsz, cap + 1), np.int32)
        out[rows, slot] = pos
        valid = np.zeros((bsz, cap + 1), bool)
        valid[rows, slot] = keep
        return out[:, :cap], valid[:, :cap]
    out = xp.zeros((bsz, cap), xp.int32).at[rows, slot].set(pos, mode="drop")
    valid = xp.zeros((bsz, cap), bool).at[rows, slot].set(keep, mode="drop")
    return out, valid


def overflow_mask(is_global, cap: int):
    """bool[B, T]: positions in patches past the global cap (no global block serves them)."""
    return patch_ids(is_global) >= cap


def patch_lengths(is_global) -> np.ndarray:
    """int[N]: the length of every patch (global position to the next) over all rows,
    numpy; positions before a row's first global position are not in any patch."""
    lengths = []
    for row in np.asarray(is_global, bool):
        starts = np.flatnonzero(row)
        if len(starts):
            lengths.append(np.diff(np.append(starts, len(row))))
    return np.concatenate(lengths) if lengths else np.zeros((0,), np.int64)


def window_stats(ids, mask, cap: int) -> dict:
    """SpaceByte's patching on evaluation windows (ids, mask [N, T], numpy): scored bytes,
    global positions among them, mean bytes per patch, and the scored bytes past the cap
    (``overflow``: kept in the loss without a global update, see the module docstring)."""
    ids, mask = np.asarray(ids), np.asarray(mask) > 0
    is_global = spacebyte_global(ids)
    over = overflow_mask(is_global, cap)
    n_bytes, n_global = int(mask.sum()), int((is_global & mask).sum())
    return {
        "bytes": n_bytes,
        "global": n_global,
        "bytes_per_patch": n_bytes / n_global if n_global else float("nan"),
        "overflow": int((over & mask).sum()),
        "overflow_fraction": float((over & mask).sum() / n_bytes) if n_bytes else 0.0,
        "cap": int(cap),
    }


__all__ = [
    "byte_values",
    "global_slots",
    "megabyte_global",
    "overflow_mask",
    "patch_ids",
    "patch_lengths",
    "spacebyte_global",
    "spacelike",
    "window_stats",
]
