"""Sentence encoders over rendered text (PIXEL's ViT, Rust et al., 2023) and over subword tokens
(the baseline), with Pixel-Linguist's pooling head (Xiao et al., 2024) and PIXEL's MAE decoder.

Inputs:

* ``kind='pixel'``: ``patches`` uint8 [N, P, patch * patch], the rendered strip cut into P
  patches of patch x patch pixels (``lexlm.text.render``, 255 = background), and ``mask`` bool
  [N, P] (the text patches plus the black end patch). A patch is flattened row by row and
  embedded by one linear map (a patch x patch convolution with stride patch), after
  ``1 - pixel / 255`` (background 0, ink 1).
* ``kind='token'``: ``tokens`` int32 [N, T] (0 = padding) and ``mask = tokens != 0``, a learned
  embedding table.

Both then add fixed sin-cos positions and run ``depth`` pre-LayerNorm bidirectional blocks
(``CachedBlock``; padding keys masked) and a final LayerNorm. Positions:

* pixel: PIXEL's 2-D sin-cos table on a ``grid`` x ``grid`` square (23 x 23 = 529 patches),
  patch i at row i // grid, column i % grid, truncated to the first P patches the way
  Pixel-Linguist truncates it to 64. Half the channels encode the row, half the column.
* token: the 1-D sin-cos table of the token index.

``embed``: the Linear-GELU-LayerNorm head on every position (``head=True``; Pixel-Linguist
trains with it), the masked mean over positions, then L2 normalisation. ``head=False`` pools the
backbone's outputs directly (Pixel-Linguist's ``PIXELForRepresentation``, which drops the MLP at
inference). There is no CLS token (mean pooling drops it in both papers) and no dropout: the
contrastive positives come from text perturbations, not from dropout noise.

``reconstruct`` (pixel only): PIXEL's MAE. The encoder sees only the visible patches (the hidden
ones are masked out as keys, the static-shape equivalent of removing them); a narrower
bidirectional decoder gets the encoded visible patches and a learned mask token at every hidden
patch, with its own sin-cos positions, and predicts each patch's pixels.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from lexlm.nn.blocks import CachedBlock, logical_param
from lexlm.nn.layers import DTYPES, Projection, layer_norm

ENCODER_KINDS = ("pixel", "token")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    kind: str = "pixel"  # pixel | token
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    max_len: int = 64  # P patches (pixel) or T tokens (token)
    patch: int = 16  # pixel: patch side in pixels
    grid: int = 23  # pixel: side of PIXEL's 2-D position grid (sqrt 529)
    vocab_size: int = 0  # token: the tokenizer's vocabulary
    dec_width: int = 64  # MAE decoder (pixel)
    dec_depth: int = 1
    dec_heads: int = 4
    dtype: str = "float32"

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"model.kind: {self.kind!r} is not one of {ENCODER_KINDS}")
        for name in ("width", "depth", "heads", "mlp_ratio", "max_len", "patch", "grid"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads or self.width % 4:
            raise ValueError(f"model.width: {self.width} must divide by heads and by 4")
        if self.dec_width % self.dec_heads or self.dec_width % 4:
            raise ValueError(f"model.dec_width: {self.dec_width} must divide by dec_heads and 4")
        if self.kind == "pixel" and self.max_len > self.grid * self.grid:
            raise ValueError(
                f"model.max_len: {self.max_len} patches do not fit the {self.grid}^2 grid"
            )
        if self.kind == "token" and self.vocab_size < 2:
            raise ValueError("model.vocab_size: a token encoder needs the tokenizer's vocabulary")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")

    @property
    def pixels(self) -> int:
        return self.patch * self.patch

    def param_count(self, with_decoder: bool = False) -> int:
        d, f = self.width, self.width * self.mlp_ratio
        block = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
        inp = self.pixels * d + d if self.kind == "pixel" else self.vocab_size * d
        head = d * d + d + 2 * d
        total = inp + self.depth * block + 2 * d + head
        if with_decoder:
            e, g = self.dec_width, self.dec_width * self.mlp_ratio
            dblock = 4 * e * e + 4 * e + 2 * e * g + g + e + 4 * e
            total += d * e + e + e + self.dec_depth * dblock + 2 * e + e * self.pixels + self.pixels
        return total


def sincos_1d(positions: ArrayLike, dim: int) -> np.ndarray:
    """[len(positions), dim]: sin(p w_i) in the first half, cos(p w_i) in the second, with
    w_i = 10000^(-i / (dim / 2)) (the Transformer / MAE table)."""
    if dim % 2:
        raise ValueError(f"sincos_1d: dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
    angles = np.asarray(positions, np.float64)[:, None] * omega[None]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def sincos_2d(n: int, dim: int, grid: int) -> np.ndarray:
    """[n, dim] positions of the first n cells of a grid x grid square (row-major): the first
    half of the channels encodes the row, the second the column (PIXEL / MAE)."""
    if dim % 4:
        raise ValueError(f"sincos_2d: dim must be a multiple of 4, got {dim}")
    idx = np.arange(n)
    return np.concatenate([sincos_1d(idx // grid, dim // 2), sincos_1d(idx % grid, dim // 2)], 1)


def l2_normalise(x: Float[Array, "... D"], eps: float = 1e-12) -> Float[Array, "... D"]:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def masked_mean(x: Float[Array, "N T D"], mask: Bool[ArrayLike, "N T"]) -> Float[Array, "N D"]:
    """Mean over the positions where ``mask``; a row with none gives zeros."""
    m = jnp.asarray(mask, x.dtype)[..., None]
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


class SentenceEncoder(nn.Module):
    """``encode`` -> [N, P, D] backbone states; ``embed`` -> [N, D] unit vectors;
    ``reconstruct`` -> [N, P, patch^2] MAE pixel predictions (see the module docstring).
    The MAE decoder's parameters exist only after ``init(..., method='reconstruct')``."""

    cfg: EncoderConfig

    def setup(self):
        c, dt = self.cfg, DTYPES[self.cfg.dtype]
        if c.kind == "pixel":
            self.patch_embed = Projection(
                (c.pixels,), (c.width,), (None, "embed"), 0.02, dt, name="patch_embed"
            )
        else:
            self.tok_embed = logical_param(
                self, "tok_embed", (c.vocab_size, c.width), 0.02, ("vocab", "embed")
            )
        self.blocks = [
            CachedBlock(c.width, c.heads, c.mlp_ratio, c.depth, dt, name=f"block_{i}")
            for i in range(c.depth)
        ]
        self.ln_final = layer_norm("ln_final", dt)
        self.head_dense = Projection(
            (c.width,), (c.width,), ("embed", None), 0.02, dt, name="head_dense"
        )
        self.head_ln = layer_norm("head_ln", dt)
        if c.kind == "pixel":
            self.mae = MAEDecoder(c)

    def _inputs(self, x: ArrayLike) -> Float[Array, "N P D"]:
        c, dt = self.cfg, DTYPES[self.cfg.dtype]
        if c.kind == "pixel":
            y = self.patch_embed((1.0 - jnp.asarray(x, jnp.float32) / 255.0).astype(dt))
            pos = sincos_2d(y.shape[1], c.width, c.grid)
        else:
            y = jnp.take(self.tok_embed, jnp.asarray(x), axis=0).astype(dt)
            pos = sincos_1d(np.arange(y.shape[1]), c.width)
        return y + jnp.asarray(pos, dt)[None]

    def encode(self, x: ArrayLike, mask: Bool[ArrayLike, "N P"]) -> Float[Array, "N P D"]:
        mask = jnp.asarray(mask, bool)
        if mask.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"model.max_len: input of {mask.shape[1]} positions > {self.cfg.max_len}"
            )
        y = self._inputs(x)
        n, t = mask.shape
        allowed = jnp.broadcast_to(mask[:, None, :], (n, t, t))
        for block in self.blocks:
            y, _ = block(y, allowed)
        return self.ln_final(y)

    def pool(
        self, states: Float[Array, "N P D"], mask: Bool[ArrayLike, "N P"], head: bool = True
    ) -> Float[Array, "N D"]:
        if head or self.is_initializing():  # the head's parameters exist either way
            headed = self.head_ln(nn.gelu(self.head_dense(states)))
            states = headed if head else states
        return l2_normalise(masked_mean(states.astype(jnp.float32), mask))

    def embed(self, x: ArrayLike, mask: Bool[ArrayLike, "N P"], head: bool = True):
        """[N, D] L2-normalised sentence embeddings."""
        return self.pool(self.encode(x, mask), mask, head)

    def __call__(self, x: ArrayLike, mask: Bool[ArrayLike, "N P"], head: bool = True):
        return self.embed(x, mask, head)

    def reconstruct(
        self, patches: ArrayLike, mask: Bool[ArrayLike, "N P"], hidden: Bool[ArrayLike, "N P"]
    ) -> Float[Array, "N P X"]:
        """MAE: encode the visible patches (``mask & ~hidden``), decode every patch's pixels."""
        c = self.cfg
        if c.kind != "pixel":
            raise ValueError("model.kind: MAE reconstruction needs kind='pixel'")
        mask, hidden = jnp.asarray(mask, bool), jnp.asarray(hidden, bool)
        states = self.encode(patches, mask & ~hidden)
        if self.is_initializing():
            self.pool(states, mask)
        return self.mae(states, mask, hidden)


class MAEDecoder(nn.Module):
    """PIXEL's pixel decoder: visible states in, a mask token at hidden patches, per-patch
    pixels out (the raw targets' scale; the loss normalises the targets per patch)."""

    cfg: EncoderConfig

    @nn.compact
    def __call__(self, states, mask, hidden):
        c, dt = self.cfg, DTYPES[self.cfg.dtype]
        e = c.dec_width
        y = Projection((c.width,), (e,), ("embed", None), 0.02, dt, name="dec_in")(states)
        token = logical_param(self, "mask_token", (e,), 0.02, (None,))
        y = jnp.where(hidden[..., None], token.astype(dt)[None, None], y)
        y = y + jnp.asarray(sincos_2d(y.shape[1], e, c.grid), dt)[None]
        n, t = mask.shape
        allowed = jnp.broadcast_to(mask[:, None, :], (n, t, t))
        for i in range(c.dec_depth):
            y, _ = CachedBlock(e, c.dec_heads, c.mlp_ratio, c.dec_depth, dt, name=f"block_{i}")(
                y, allowed
            )
        y = layer_norm("ln_final", dt)(y)
        out = Projection((e,), (c.pixels,), (None, None), 0.02, dt, name="out")(y)
        return out.astype(jnp.float32)


@functools.lru_cache(maxsize=32)
def jit_embed(cfg: EncoderConfig, head: bool = True):
    """``f(params, x, mask) -> [N, D]``, jitted (one function per config and head, so repeated
    evaluations compile once per input shape)."""
    model = SentenceEncoder(cfg)
    return jax.jit(lambda p, x, m: model.apply({"params": p}, x, m, head, method="embed"))
