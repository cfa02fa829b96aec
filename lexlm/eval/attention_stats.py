"""Where attention heads look: the mass each head puts on the patterns in-context prediction
needs (Olsson et al., 2022): the current position, the previous position, earlier occurrences
of the current token, and the positions right after them (an induction head's target).

``attention_pattern_stats`` takes attention weights [B, H, T, S] and the window's tokens and
returns, per head, the mean mass on each pattern over queries t >= ``skip`` (early queries
have too few keys to say much), next to what uniform causal attention would put there.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int


def pattern_masks(tokens: Int[np.ndarray, "B T"]) -> dict[str, np.ndarray]:
    """Boolean [B, T, S] masks (query t, key s <= t) of each pattern."""
    t_len = tokens.shape[1]
    causal = np.tril(np.ones((t_len, t_len), bool))[None]
    strict = np.tril(np.ones((t_len, t_len), bool), -1)[None]
    same = tokens[:, :, None] == tokens[:, None, :]  # key s holds the query's token
    after_same = np.zeros_like(same)  # key s follows an occurrence of the query's token
    after_same[:, :, 1:] = same[:, :, :-1]
    eye = np.eye(t_len, dtype=bool)[None]
    prev = np.eye(t_len, k=-1, dtype=bool)[None]
    return {
        "self": np.broadcast_to(eye, same.shape),
        "previous": np.broadcast_to(prev, same.shape),
        "same_token_earlier": same & strict,
        "induction": after_same & causal,
    }


def attention_pattern_stats(
    weights: Float[np.ndarray, "B H T S"], tokens: Int[np.ndarray, "B T"], skip: int = 8
) -> dict[str, list[float]]:
    """Per pattern: the mean attention mass of each head [H], plus '<pattern>_uniform', the
    mass uniform causal attention would give it, and 'entropy' per head (nats)."""
    w = np.asarray(weights, np.float64)
    masks = pattern_masks(np.asarray(tokens))
    n_keys = np.arange(1, w.shape[2] + 1)[None, :]  # query t sees t + 1 keys
    out: dict[str, list[float]] = {}
    for name, m in masks.items():
        mass = (w * m[:, None]).sum(-1)[:, :, skip:]  # [B, H, T']
        out[name] = mass.mean(axis=(0, 2)).tolist()
        out[f"{name}_uniform"] = [float((m.sum(-1) / n_keys)[:, skip:].mean())]
    ent = -(w * np.log(np.where(w > 0, w, 1.0))).sum(-1)[:, :, skip:]
    out["entropy"] = ent.mean(axis=(0, 2)).tolist()
    out["entropy_uniform"] = [float(np.log(n_keys[0, skip:]).mean())]
    return out
