"""LAMA pooling, low-rank self-attention and standard multi-head self-attention against sequence
length: time and peak memory of one forward + backward pass, T = 64 .. 4096.

    python -m bench.lama                     # T = 64, 128, ..., 4096
    python -m bench.lama --lengths 64,256,1024 --width 128

Each layer maps states [B, T, D] to its output and is differentiated with respect to its
parameters and the states (a scalar loss: the output's sum of squares):

* ``lama``: LAMA pooling (``lexlm.nn.lama.LAMA``, m heads, learned context, key MLP): no T x T
  tensor, cost linear in T;
* ``low_rank``: one causal self-attention with low-rank shared query/key factors
  (``lexlm.nn.low_rank_attention``, rank r) and standard values/output: T x T scores;
* ``standard``: one causal standard multi-head self-attention (``lexlm.nn.attention``).

Time: the median of ``--iters`` jitted calls after warm-up (CPU wall time; on a shared CPU
the ratios are what transfers). Peak memory: XLA's compiled ``memory_analysis()`` temp +
output bytes of the same function (the arguments are the same for all three). The fitted
exponent is the least-squares slope of log(time) on log(T) over the lengths from 256 on
(below that, fixed per-call overheads dominate); 1 is linear, 2 quadratic.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from bench import common
from lexlm.nn.attention import causal_allowed, dot_product_attention, weighted_values
from lexlm.nn.lama import LAMA
from lexlm.nn.low_rank_attention import low_rank_scores


class LowRankSelfAttention(nn.Module):
    heads: int
    rank: int

    @nn.compact
    def __call__(self, x):
        b, t, d = x.shape
        k = d // self.heads
        a, bb = nn.Dense(self.rank, name="q_factor")(x), nn.Dense(self.rank, name="k_factor")(x)
        v = nn.Dense(d, name="v")(x).reshape(b, t, self.heads, k)
        gains = self.param("gains", nn.initializers.normal(1.0), (self.heads, self.rank))
        y = weighted_values(low_rank_scores(a, bb, gains), v, causal_allowed(t, t))
        return nn.Dense(d, name="out")(y.reshape(b, t, d))


class StandardSelfAttention(nn.Module):
    heads: int

    @nn.compact
    def __call__(self, x):
        b, t, d = x.shape
        k = d // self.heads
        q, kk, v = (nn.Dense(d, name=n)(x).reshape(b, t, self.heads, k) for n in "qkv")
        return nn.Dense(d, name="out")(dot_product_attention(q, kk, v).reshape(b, t, d))


def layer_fn(kind: str, width: int, heads: int, rank: int):
    if kind == "lama":
        module = LAMA(heads)

        def forward(params, x):
            return module.apply(params, x, jnp.ones(x.shape[:2], bool))[0]
    else:
        module = (
            LowRankSelfAttention(heads, rank)
            if kind == "low_rank"
            else StandardSelfAttention(heads)
        )

        def forward(params, x):
            return module.apply(params, x)

    def init(x):
        if kind == "lama":
            return module.init(jax.random.key(0), x, jnp.ones(x.shape[:2], bool))
        return module.init(jax.random.key(0), x)

    def loss(params, x):
        return jnp.sum(forward(params, x) ** 2)

    return init, jax.jit(jax.grad(loss, argnums=(0, 1)))


def fitted_exponent(lengths, times, min_length: int = 256) -> float:
    """Least-squares slope of log(time) against log(T) over lengths >= ``min_length``."""
    pts = [(math.log(t), math.log(s)) for t, s in zip(lengths, times) if t >= min_length]
    if len(pts) < 2:
        return float("nan")
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "lengths",
        "64,128,256,512,1024,2048,4096",
        "comma-separated sequence lengths T",
        flag_values=fv,
    )
    flags.DEFINE_integer("width", 128, "state width D", flag_values=fv)
    flags.DEFINE_integer("heads", 8, "heads", flag_values=fv)
    flags.DEFINE_integer("rank", 16, "low-rank attention's rank r", flag_values=fv)
    flags.DEFINE_integer("batch", 1, "batch size", flag_values=fv)
    flags.DEFINE_integer("iters", 5, "timed calls per layer and length", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def main(argv=None):
    args = parse_args(argv)
    lengths = [int(t) for t in args.lengths.split(",")]
    kinds = ("lama", "low_rank", "standard")
    times = {k: [] for k in kinds}
    memory = {k: [] for k in kinds}
    print(f"width {args.width}, {args.heads} heads, rank {args.rank}, batch {args.batch}")
    print("| T | " + " | ".join(f"{k} ms | {k} MiB" for k in kinds) + " |")
    for t in lengths:
        x = jnp.asarray(np.random.default_rng(0).normal(size=(args.batch, t, args.width)),
                        jnp.float32)  # fmt: skip
        cells = []
        for kind in kinds:
            init, grad = layer_fn(kind, args.width, args.heads, args.rank)
            params = init(x)
            compiled = grad.lower(params, x).compile()
            mem = compiled.memory_analysis()
            peak = (mem.temp_size_in_bytes + mem.output_size_in_bytes) if mem else float("nan")
            timing = common.time_step(compiled, (params, x), warmup=1, iters=args.iters)
            times[kind].append(timing.median)
            memory[kind].append(peak)
            cells.append(f"{timing.median * 1e3:.2f} | {peak / 2**20:.1f}")
        print(f"| {t} | " + " | ".join(cells) + " |", flush=True)
    record = {"lengths": lengths, "time_s": times, "peak_bytes": memory}
    for kind in kinds:
        record[f"{kind}_time_exponent"] = fitted_exponent(lengths, times[kind])
        record[f"{kind}_memory_exponent"] = fitted_exponent(lengths, memory[kind])
        print(
            f"{kind}: time grows as T^{record[f'{kind}_time_exponent']:.2f}, peak memory as "
            f"T^{record[f'{kind}_memory_exponent']:.2f} (fit over T >= 256)"
        )
    last = -1
    print(
        f"at T = {lengths[last]}: LAMA {times['standard'][last] / times['lama'][last]:.1f}x "
        f"faster and {memory['standard'][last] / memory['lama'][last]:.1f}x less memory than "
        f"standard attention; low-rank {times['standard'][last] / times['low_rank'][last]:.2f}x "
        f"faster, {memory['standard'][last] / memory['low_rank'][last]:.2f}x less memory"
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
