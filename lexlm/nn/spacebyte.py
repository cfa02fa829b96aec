"""SpaceByte (Slagle, 2024): local byte blocks with sliding-window attention, and wider global
blocks that run only at the positions after-space rule picks (``lexlm.text.patching``).

For a window of T input bytes (targets: the next byte of each):

1. bytes are embedded at the local width D_L plus a learned position, then the first half of
   the local blocks run (causal, each byte sees its last ``window`` bytes, computed on that
   band only: ``attention.banded_attention``, O(T * window));
2. the first ``cap`` global positions (``patching.global_slots``) are gathered, zero-padded to
   the global width D and run through the global blocks (causal over global positions);
3. the global blocks' residual update, truncated to D_L, is added back at each global
   position, and the second half of the local blocks and the byte readout run.

Causality: every block is causal, and a global position's input is the local stream at that
position, so the prediction at t depends on bytes 0..t only (the global positions themselves
are a function of the bytes up to each position). Positions past the cap get no global update
and stay in the loss (``patching`` module docstring). ``depth=0`` leaves the global blocks out:
a byte Transformer of ``local_depth`` blocks (full attention when ``window >= max_len``), with
the same cached generation, for benchmarks.

Cached generation (``lexlm.nn.byte_decode``): the local blocks keep one key/value slot per byte;
the global blocks keep one slot per byte too, of which only the global positions are attended
(a per-row mask), so a row's global state is written at the byte it belongs to and the batch
needs no shared patch schedule. The global stack is skipped for a step where no row has a
global position.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from lexlm.nn.attention import causal_allowed
from lexlm.nn.blocks import CachedBlock, empty_kv, logical_param, token_nll
from lexlm.nn.layers import DTYPES, Projection, layer_norm
from lexlm.text import patching


@dataclasses.dataclass(frozen=True)
class SpaceByteConfig:
    vocab_size: int
    max_len: int = 256  # T: bytes per window
    local_width: int = 128  # D_L
    local_depth: int = 2  # all local blocks; half before the global blocks, half after
    local_heads: int = 4
    window: int = 64  # sliding window of the local attention (SpaceByte: D_L)
    width: int = 256  # D: the global width (>= D_L)
    depth: int = 2  # global blocks (0: a local-only byte Transformer)
    heads: int = 4
    cap: int = 64  # T_global: global positions per window
    mlp_ratio: int = 4
    dtype: str = "float32"

    embedding = "learned"  # (not a field) the LM task's embedding mode: no per-sequence tables

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")
        if self.width < self.local_width:
            raise ValueError(
                f"model.width: the global width {self.width} is below the local width "
                f"{self.local_width}"
            )
        if self.depth > 0 and (self.local_depth < 2 or self.local_depth % 2):
            raise ValueError(
                f"model.local_depth: must be even and >= 2 (half before, half after the "
                f"global blocks), got {self.local_depth}"
            )
        for width, heads, name in (
            (self.width, self.heads, "heads"),
            (self.local_width, self.local_heads, "local_heads"),
        ):
            if heads < 1 or width % heads:
                raise ValueError(f"model.{name}: width {width} is not divisible by {heads}")
        if self.window < 1:
            raise ValueError(f"model.window: must be >= 1, got {self.window}")
        if self.depth > 0 and not 1 <= self.cap <= self.max_len:
            raise ValueError(f"model.cap: must be in 1..max_len={self.max_len}, got {self.cap}")

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def lower(self) -> int:
        return self.local_depth // 2 if self.depth else self.local_depth


class SpaceByteLM(nn.Module):
    """``nll(tokens, targets)``: per-byte nats [B, T]; ``logits(tokens)``: [B, T, V]."""

    cfg: SpaceByteConfig

    def setup(self):
        c, dt = self.cfg, self.cfg.compute_dtype
        self.table = logical_param(
            self,
            "embedding",
            (c.vocab_size, c.local_width),
            1.0 / math.sqrt(c.local_width),
            ("vocab", "embed"),
        )
        self.positions = logical_param(
            self, "positions", (c.max_len, c.local_width), 0.02, (None, "embed")
        )

        def block(width, heads, depth, name):
            return CachedBlock(width, heads, c.mlp_ratio, depth, dt, name=name)

        n_local = c.local_depth
        self.local_blocks = [
            block(c.local_width, c.local_heads, n_local, f"local_{i}") for i in range(n_local)
        ]
        self.global_blocks = [block(c.width, c.heads, c.depth, f"g{i}") for i in range(c.depth)]
        self.ln_final = layer_norm("ln_final", dt)
        self.readout = Projection(
            (c.local_width,), (c.vocab_size,), ("embed", "vocab"), 0.02, dt, name="readout"
        )

    def _embed(self, tokens, start):
        dt = self.cfg.compute_dtype
        n = tokens.shape[1]
        pos = jax.lax.dynamic_slice_in_dim(self.positions, start, n, axis=0)
        return (jnp.take(self.table, tokens, axis=0) + pos[None]).astype(dt)

    def _up(self, x: Float[Array, "B N DL"]) -> Float[Array, "B N D"]:
        c = self.cfg
        return jnp.pad(x, ((0, 0), (0, 0), (0, c.width - c.local_width)))

    def _readout(self, x: Float[Array, "B T DL"]) -> Float[Array, "B T V"]:
        return self.readout(self.ln_final(x)).astype(jnp.float32)

    # -- full forward -----------------------------------------------------------------------
    def logits(self, tokens: Int[ArrayLike, "B T"]) -> Float[Array, "B T V"]:
        c = self.cfg
        tokens = jnp.asarray(tokens)
        b, t = tokens.shape
        if t > c.max_len:
            raise ValueError(f"model.max_len: window of {t} bytes exceeds {c.max_len}")
        x = self._embed(tokens, 0)
        # local blocks: sliding-window attention on the band only (allowed=None)
        for blk in self.local_blocks[: c.lower]:
            x, _ = blk(x, None, window=c.window)
        if c.depth:
            cap = min(c.cap, t)
            pos, valid = patching.global_slots(patching.spacebyte_global(tokens), cap)
            g_in = self._up(jnp.take_along_axis(x, pos[..., None], axis=1))
            g = g_in
            g_allowed = causal_allowed(cap, cap) & valid[:, None, :]
            for blk in self.global_blocks:
                g, _ = blk(g, g_allowed)
            update = (g - g_in)[..., : c.local_width] * valid[..., None].astype(g.dtype)
            rows = jnp.arange(b)[:, None]
            x = x.at[rows, pos].add(update)
        for blk in self.local_blocks[c.lower :]:
            x, _ = blk(x, None, window=c.window)
        return self._readout(x)

    def __call__(self, tokens: Int[ArrayLike, "B T"]) -> Float[Array, "B T V"]:
        return self.logits(tokens)

    def nll(
        self, tokens: Int[ArrayLike, "B T"], targets: Int[ArrayLike, "B T"]
    ) -> Float[Array, "B T"]:
        return token_nll(self.logits(tokens), targets)

    # -- cached steps -------------------------------------------------------------------------
    def init_cache(self, batch: int) -> dict:
        c, dt = self.cfg, self.cfg.compute_dtype

        def kv(width, heads):
            return empty_kv(batch, c.max_len, width, heads, dt)

        return {
            "local": [kv(c.local_width, c.local_heads)] * c.local_depth,
            "global": [kv(c.width, c.heads)] * c.depth,
            "is_global": jnp.zeros((batch, c.max_len), bool),  # global positions so far
            "count": jnp.zeros((batch,), jnp.int32),  # global positions so far, per row
            "prev_space": jnp.zeros((batch,), bool),  # was the previous byte spacelike
        }

    def step_is_global(
        self, cache: dict, token: Int[ArrayLike, " B"], t: Int[ArrayLike, ""]
    ) -> Bool[Array, " B"]:
        """Whether input byte t of each row is a global position within the cap."""
        b, special = patching.byte_values(token)
        space = patching.spacelike(b) | special
        rule = (space & ~cache["prev_space"]) | special | (t == 0)
        return rule & (cache["count"] < self.cfg.cap) & (self.cfg.depth > 0)

    def step(
        self,
        cache: dict,
        token: Int[ArrayLike, " B"],
        t: Int[ArrayLike, ""],
        run_global: bool = True,
    ) -> tuple[Float[Array, "B V"], dict]:
        """Feeds input byte t; returns the logits of byte t + 1. ``run_global=False`` (a
        static choice of the caller) skips the global stack when no row is global here."""
        c = self.cfg
        is_g = self.step_is_global(cache, token, t)
        x = self._embed(token[:, None], t)
        keys = jnp.arange(c.max_len)
        local_allowed = ((keys <= t) & (keys > t - c.window))[None, None, :]
        layers = list(cache["local"])
        for i in range(c.lower):
            x, layers[i] = self.local_blocks[i](x, local_allowed, layers[i], t)
        g_layers = list(cache["global"])
        seen = cache["is_global"]
        if c.depth:
            seen = jax.lax.dynamic_update_slice_in_dim(seen, is_g[:, None], t, axis=1)
        if c.depth and run_global:
            g_in = self._up(x)
            g = g_in
            allowed = seen[:, None, :]
            for i, blk in enumerate(self.global_blocks):
                g, g_layers[i] = blk(g, allowed, g_layers[i], t)
            update = (g - g_in)[..., : c.local_width]
            x = x + update * is_g[:, None, None].astype(x.dtype)
        for i in range(c.lower, c.local_depth):
            x, layers[i] = self.local_blocks[i](x, local_allowed, layers[i], t)
        b, special = patching.byte_values(token)
        cache = {
            "local": layers,
            "global": g_layers,
            "is_global": seen,
            "count": cache["count"] + is_g.astype(jnp.int32),
            "prev_space": patching.spacelike(b) | special,
        }
        return self._readout(x)[:, 0], cache


__all__ = ["SpaceByteConfig", "SpaceByteLM"]
