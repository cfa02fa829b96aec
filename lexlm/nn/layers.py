"""Layer pieces every lexlm model shares: the einsum projection with logically named axes,
the LayerNorm with logically named parameters, and the compute dtypes by name."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax.typing import DTypeLike

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Projection(nn.Module):
    """``y = einsum(x, kernel) + bias`` with logically named kernel axes.

    Written out instead of ``nn.DenseGeneral`` because that initialises multi-dimensional
    kernels in a flattened 2-D shape, which clashes with 3-/4-D logical partitioning.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    axes: tuple[str | None, ...]
    std: float
    dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, x):
        n_in, n_out = len(self.in_shape), len(self.out_shape)
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.normal(self.std), self.axes),
            self.in_shape + self.out_shape,
            jnp.float32,
        )
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, self.axes[n_in:]),
            self.out_shape,
            jnp.float32,
        )
        letters = "abcdefgh"
        batch = "yz"[: x.ndim - n_in]
        ins, outs = letters[:n_in], letters[n_in : n_in + n_out]
        y = jnp.einsum(f"{batch}{ins},{ins}{outs}->{batch}{outs}", x, kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


def layer_norm(name: str, dtype, use_bias: bool = True) -> nn.LayerNorm:
    """A LayerNorm whose scale and bias carry the logical axis ``embed``."""
    return nn.LayerNorm(
        dtype=dtype,
        use_bias=use_bias,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
        name=name,
    )
