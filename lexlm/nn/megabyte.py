"""MegaByte (Yu et al., 2023): a global Transformer over fixed patches of P bytes and a local
Transformer that predicts the bytes inside each patch.

For a window of T = K x P input bytes x_0..x_{T-1} (targets: x_1..x_T):

* every byte gets a global embedding of width e = D_G / P plus a learned byte position; the P
  embeddings of a patch are concatenated into one patch vector of width D_G;
* the global stack (causal over the K patches) reads the patch vectors shifted by one patch
  (a learned pad patch first), so patch k's global output has seen bytes < kP only;
* that output, split into P chunks of width e and projected to the local width D_L, is added
  to the local embedding of each byte of patch k (plus a learned position in the patch);
* the local stack is causal inside the patch, so the prediction at position t = kP + p uses
  bytes < kP through the global output and bytes kP..t locally: nothing at or after t + 1.

Every input byte is used, and no context is capped below T (MegaByte has no overflow).

Cached generation: ``prefill_and_generate`` (``lexlm.nn.byte_decode``) steps one byte at a
time; the global stack runs once per patch (its key/value cache holds one slot per patch)
and the local stack once per byte (its cache holds the P slots of the current patch).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from lexlm.nn.attention import causal_allowed
from lexlm.nn.blocks import CachedBlock, empty_kv, logical_param, token_nll
from lexlm.nn.layers import DTYPES, Projection, layer_norm


@dataclasses.dataclass(frozen=True)
class MegaByteConfig:
    vocab_size: int
    max_len: int = 256  # T: bytes per window, a multiple of patch
    patch: int = 8  # P
    global_width: int = 256  # D_G = P x e (e: a byte's global embedding width)
    global_depth: int = 2
    global_heads: int = 4
    local_width: int = 128  # D_L
    local_depth: int = 2
    local_heads: int = 4
    mlp_ratio: int = 4
    dtype: str = "float32"

    embedding = "learned"  # (not a field) the LM task's embedding mode: no per-sequence tables

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")
        if self.patch < 1 or self.max_len % self.patch:
            raise ValueError(
                f"model.patch: the window of {self.max_len} bytes is not a multiple of "
                f"patch={self.patch}"
            )
        if self.global_width % self.patch:
            raise ValueError(
                f"model.global_width: {self.global_width} is not divisible by patch={self.patch}"
            )
        for width, heads, name in (
            (self.global_width, self.global_heads, "global_heads"),
            (self.local_width, self.local_heads, "local_heads"),
        ):
            if heads < 1 or width % heads:
                raise ValueError(f"model.{name}: width {width} is not divisible by {heads}")
        if self.global_depth < 1 or self.local_depth < 1:
            raise ValueError("model.global_depth / model.local_depth: must be >= 1")

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def patches(self) -> int:
        return self.max_len // self.patch


class MegaByteLM(nn.Module):
    """``nll(tokens, targets)``: per-byte nats [B, T]; ``logits(tokens)``: [B, T, V]."""

    cfg: MegaByteConfig

    def setup(self):
        c, dt = self.cfg, self.cfg.compute_dtype
        e = c.global_width // c.patch
        self.global_table = logical_param(
            self, "global_embedding", (c.vocab_size, e), 1.0 / math.sqrt(e), ("vocab", "embed")
        )
        self.global_positions = logical_param(
            self, "global_positions", (c.max_len, e), 0.02, (None, "embed")
        )
        self.pad_patch = logical_param(self, "pad_patch", (c.global_width,), 0.02, ("embed",))
        self.global_blocks = [
            CachedBlock(
                c.global_width, c.global_heads, c.mlp_ratio, c.global_depth, dt, name=f"g{i}"
            )
            for i in range(c.global_depth)
        ]
        self.ln_global = layer_norm("ln_global", dt)
        self.to_local = Projection(
            (e,), (c.local_width,), ("embed", "mlp"), 0.02, dt, name="to_local"
        )
        self.local_table = logical_param(
            self,
            "local_embedding",
            (c.vocab_size, c.local_width),
            1.0 / math.sqrt(c.local_width),
            ("vocab", "embed"),
        )
        self.local_positions = logical_param(
            self, "local_positions", (c.patch, c.local_width), 0.02, (None, "embed")
        )
        self.local_blocks = [
            CachedBlock(c.local_width, c.local_heads, c.mlp_ratio, c.local_depth, dt, name=f"l{i}")
            for i in range(c.local_depth)
        ]
        self.ln_local = layer_norm("ln_local", dt)
        self.readout = Projection(
            (c.local_width,), (c.vocab_size,), ("embed", "vocab"), 0.02, dt, name="readout"
        )

    # -- pieces shared by the full forward and the cached steps --------------------------------
    def _patch_vectors(
        self, tokens: Int[ArrayLike, "B N"], start: int | Array
    ) -> Float[Array, "B M DG"]:
        """Concatenated global embeddings of whole patches of bytes at positions start.."""
        c, dt = self.cfg, self.cfg.compute_dtype
        b, n = tokens.shape
        pos = jax.lax.dynamic_slice_in_dim(self.global_positions, start, n, axis=0)
        x = jnp.take(self.global_table, tokens, axis=0) + pos[None]
        return x.reshape(b, n // c.patch, c.global_width).astype(dt)

    def _local_inputs(
        self, g_out: Float[Array, "B M DG"], tokens: Int[ArrayLike, "B N"], offset: int | Array
    ) -> Float[Array, "B N DL"]:
        """Local input of bytes: projected global chunk + local embedding + position in patch."""
        c, dt = self.cfg, self.cfg.compute_dtype
        b, n = tokens.shape
        e = c.global_width // c.patch
        chunks = self.ln_global(g_out).reshape(b, -1, e)
        chunks = jax.lax.dynamic_slice_in_dim(chunks, offset, n, axis=1)
        pos = jnp.take(self.local_positions, (jnp.arange(n) + offset) % c.patch, axis=0)
        x = self.to_local(chunks) + jnp.take(self.local_table, tokens, axis=0).astype(dt)
        return x + pos[None].astype(dt)

    def _readout(self, x: Float[Array, "B T DL"]) -> Float[Array, "B T V"]:
        return self.readout(self.ln_local(x)).astype(jnp.float32)

    # -- full forward -----------------------------------------------------------------------
    def logits(self, tokens: Int[ArrayLike, "B T"]) -> Float[Array, "B T V"]:
        c = self.cfg
        b, t = tokens.shape
        if t > c.max_len or t % c.patch:
            raise ValueError(
                f"model.max_len: MegaByte needs a window of at most {c.max_len} bytes in whole "
                f"patches of {c.patch}, got {t}"
            )
        k = t // c.patch
        patches = self._patch_vectors(tokens, 0)
        pad = jnp.broadcast_to(self.pad_patch.astype(patches.dtype), (b, 1, c.global_width))
        g = jnp.concatenate([pad, patches[:, :-1]], axis=1)  # patch k sees patches < k
        allowed = causal_allowed(k, k)
        for blk in self.global_blocks:
            g, _ = blk(g, allowed)
        x = self._local_inputs(g, tokens, 0).reshape(b * k, c.patch, c.local_width)
        allowed = causal_allowed(c.patch, c.patch)
        for blk in self.local_blocks:
            x, _ = blk(x, allowed)
        return self._readout(x.reshape(b, t, c.local_width))

    def __call__(self, tokens: Int[ArrayLike, "B T"]) -> Float[Array, "B T V"]:
        return self.logits(tokens)

    def nll(
        self, tokens: Int[ArrayLike, "B T"], targets: Int[ArrayLike, "B T"]
    ) -> Float[Array, "B T"]:
        return token_nll(self.logits(tokens), targets)

    # -- cached steps -------------------------------------------------------------------------
    def init_cache(self, batch: int) -> dict:
        c, dt = self.cfg, self.cfg.compute_dtype

        def kv(slots, width, heads):
            return empty_kv(batch, slots, width, heads, dt)

        return {
            "global": [kv(c.patches, c.global_width, c.global_heads)] * c.global_depth,
            "local": [kv(c.patch, c.local_width, c.local_heads)] * c.local_depth,
            "g_out": jnp.zeros((batch, 1, c.global_width), dt),
            "patch": jnp.zeros((batch, c.patch), jnp.int32),  # input bytes of the current patch
        }

    def global_step(self, cache: dict, k: Int[ArrayLike, ""]) -> dict:
        """Runs the global stack for patch k (at its first byte): its input is the previous
        patch's bytes (``cache['patch']``), or the pad patch for k = 0."""
        c = self.cfg
        b = cache["patch"].shape[0]
        prev = self._patch_vectors(cache["patch"], jnp.maximum(k - 1, 0) * c.patch)
        pad = jnp.broadcast_to(self.pad_patch.astype(prev.dtype), prev.shape)
        g = jnp.where(k == 0, pad, prev)
        allowed = (jnp.arange(c.patches) <= k)[None, None, :]
        layers = []
        for blk, layer in zip(self.global_blocks, cache["global"]):
            g, layer = blk(g, allowed, layer, k)
            layers.append(layer)
        return {**cache, "global": layers, "g_out": g.reshape(b, 1, c.global_width)}

    def local_step(
        self, cache: dict, token: Int[ArrayLike, " B"], t: Int[ArrayLike, ""]
    ) -> tuple[Float[Array, "B V"], dict]:
        """Feeds input byte t (after ``global_step`` when t is a patch start); returns the
        logits of byte t + 1."""
        c = self.cfg
        p = t % c.patch
        x = self._local_inputs(cache["g_out"], token[:, None], p)
        allowed = (jnp.arange(c.patch) <= p)[None, None, :]
        layers = []
        for blk, layer in zip(self.local_blocks, cache["local"]):
            x, layer = blk(x, allowed, layer, p)
            layers.append(layer)
        patch = jax.lax.dynamic_update_slice_in_dim(cache["patch"], token[:, None], p, axis=1)
        return self._readout(x)[:, 0], {**cache, "local": layers, "patch": patch}


__all__ = ["MegaByteConfig", "MegaByteLM"]
