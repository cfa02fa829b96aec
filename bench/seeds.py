"""Seeds as a batch axis (``train.seeds``): the train step of S copies in one program against
one copy, for the tiny LM configs (the baseline and the lexinvariant LM of the main job).

    python -m bench.seeds                    # S = 4 against S = 1, batch 32, context 128
    python -m bench.seeds --seeds 3 --steps 20

Both steps are built as the trainer builds them (``build_state`` + ``make_train_step`` with
``train.seeds`` = S), compiled, and timed interleaved in the same process (rounds of one
S-step and one 1-step timing, medians), so the ratio compares like with like on a shared
machine. The issue's target is at most 2x the time of one seed for S = 4; the bench prints
the measured ratio and whether it meets it.
"""

from __future__ import annotations

import json
import statistics

import jax
from absl import flags

from bench import common


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("seeds", 4, "S: copies trained in one program", flag_values=fv)
    flags.DEFINE_integer("steps", 10, "timed steps per round", flag_values=fv)
    flags.DEFINE_integer("rounds", 3, "interleaved rounds", flag_values=fv)
    flags.DEFINE_integer("batch", 32, "batch per copy", flag_values=fv)


def time_pair(cfg, seq: int, batch: int, seeds: int, steps: int, rounds: int) -> dict:
    """Median step seconds of S copies and of one, timed in alternating rounds."""
    mesh = common.make_mesh("1")
    one = common.LMStep(cfg, seq, batch, mesh).init()
    many = common.LMStep(cfg, seq, batch, mesh, seeds=seeds).init()
    one.compile(), many.compile()
    t_one, t_many = [], []
    for _ in range(rounds):
        t_one += common.time_step(one, (), warmup=1, iters=steps).times
        t_many += common.time_step(many, (), warmup=1, iters=steps).times
    m1, ms = statistics.median(t_one), statistics.median(t_many)
    return {"one_ms": round(1e3 * m1, 3), "seeds_ms": round(1e3 * ms, 3),
            "ratio": round(ms / m1, 3), "per_seed_ratio": round(ms / m1 / seeds, 3)}  # fmt: skip


def main(argv=None) -> dict:
    args = common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)
    out = {"bench": "seeds", "seeds": args.seeds, "device": jax.devices()[0].device_kind,
           "jax": jax.__version__, "models": {}}  # fmt: skip
    seq = common.SIZES["tiny"]["seq_len"]
    for name in ("learned", "lexinvariant"):
        cfg = common.lm_config("tiny", seq, embedding=name)
        r = time_pair(cfg, seq, args.batch, args.seeds, args.steps, args.rounds)
        out["models"][name] = r
        verdict = "meets" if r["ratio"] <= 2.0 else "misses"
        print(
            f"{name} LM (tiny, batch {args.batch}): S={args.seeds} step {r['seeds_ms']:.1f} ms, "
            f"S=1 {r['one_ms']:.1f} ms: {r['ratio']:.2f}x the time of one seed "
            f"({verdict} the 2x target; {r['per_seed_ratio']:.2f}x per seed)"
        )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
