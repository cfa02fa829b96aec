"""Trainer overhead: lexlm's training loop against a bare jitted step written here.

    python -m bench.trainer_overhead                # tiny LM, 3 rounds of 60 steps
    python -m bench.trainer_overhead --steps 100 --rounds 5

Both sides train the tiny LM (``lm:tiny`` shapes: V=100, 2 x 128, context 128,
batch 32) on the same in-memory batches, from the same initial parameters:

* **bare**: written in this file, without lexlm's trainer: ``TransformerLM.apply`` for the
  masked mean NLL, ``jax.value_and_grad``, the same optax chain (global-norm clipping + AdamW
  with the same schedule), one ``jax.jit`` with the state donated, a Python loop over the
  batches, one wait at the end;
* **lexlm**: ``lexlm.train.train`` (mesh, sharded state, fold-in step keys, the non-finite
  guard, host-to-device batch placement, metrics fetched and written every ``log_every``
  steps, JSONL, a checkpoint at the end), timed by its own log windows.

The figure is time per step of lexlm / bare, each the median over rounds that alternate
bare, lexlm, lexlm, bare, ... in one process (target <= 1.05x). lexlm's first log window
(compilation) and the final checkpoint are excluded; the bare side is timed after a warm-up
call. No data stack is imported: the batches are synthetic.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import optax
from absl import flags
from flax import linen as nn

from bench import common


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("steps", 60, "steps per round and side", flag_values=fv)
    flags.DEFINE_integer("rounds", 3, "rounds (bare, lexlm alternating)", flag_values=fv)
    flags.DEFINE_integer("log_every", 20, "lexlm's steps per log window", flag_values=fv)
    flags.DEFINE_integer("batch", 32, "batch size", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def train_config(args):
    from lexlm.train import default_train_config

    cfg = default_train_config()
    cfg.update(
        steps=args.steps,
        batch_size=args.batch,
        lr=3e-3,
        warmup_steps=10,
        log_every=args.log_every,
        ckpt_every=10 * args.steps,
        tensorboard=False,
        progress=False,
    )
    return cfg


def bare_step_fn(model, cfg):
    """One plain jitted step of the masked mean next-token NLL, outside lexlm's trainer: the
    optimizer is lexlm's AdamW chain (``make_optimizer``) so that the math is the same."""
    from lexlm.train.optim import make_optimizer

    tx = make_optimizer(cfg)

    def loss_fn(params, batch):
        nll = model.apply({"params": params}, batch["inputs"], batch["targets"], method="nll")
        return jnp.sum(nll * batch["mask"]) / jnp.sum(batch["mask"])

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, jax.jit(step, donate_argnums=(0, 1))


def time_bare(model, cfg, params, batches) -> float:
    tx, step = bare_step_fn(model, cfg)
    params = jax.tree.map(jnp.array, params)
    opt_state = tx.init(params)
    device_batches = [jax.device_put(b) for b in batches]
    params, opt_state, loss = step(params, opt_state, device_batches[0])  # compile + warm up
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for b in device_batches:
        params, opt_state, loss = step(params, opt_state, b)
    jax.block_until_ready((params, loss))
    return (time.perf_counter() - t0) / len(device_batches)


def time_lexlm(task, cfg, batches) -> float:
    from lexlm.train import train

    with tempfile.TemporaryDirectory() as workdir:
        result = train(cfg, task, iter(batches), workdir, resume=False)
    windows = result.history[1:]  # the first window holds the compilation
    return statistics.median(1.0 / w["steps_per_s"] for w in windows)


def main(argv=None) -> dict:
    from lexlm.nn import TransformerLM
    from lexlm.train import make_lm_task

    args = parse_args(argv)
    size = common.SIZES["tiny"]
    lm_cfg = common.lm_config("tiny", size["seq_len"])
    model = TransformerLM(lm_cfg)
    cfg = train_config(args)
    task = make_lm_task(lm_cfg, size["seq_len"], name="tiny")
    params = jax.device_get(nn.meta.unbox(task.init(jax.random.key(0))))
    batches = [
        common.synthetic_batch(args.batch, size["seq_len"], lm_cfg.vocab_size, seed=i)
        for i in range(args.steps)
    ]
    times = {"bare": [], "lexlm": []}
    for r in range(args.rounds):
        order = ("bare", "lexlm") if r % 2 == 0 else ("lexlm", "bare")
        for side in order:
            if side == "bare":
                t = time_bare(model, cfg, params, batches)
            else:
                t = time_lexlm(task, cfg, batches)
            times[side].append(t)
            print(f"round {r + 1} {side}: {t * 1e3:.1f} ms/step")
    bare, lex = statistics.median(times["bare"]), statistics.median(times["lexlm"])
    ratio = lex / bare
    verdict = "ok" if ratio <= 1.05 else "ABOVE target"
    print(
        f"trainer overhead (tiny LM, batch {args.batch}, {args.steps} steps x {args.rounds} "
        f"rounds, {jax.device_count()} {jax.default_backend()} device(s)): lexlm "
        f"{lex * 1e3:.1f} ms/step, bare jit {bare * 1e3:.1f} ms/step, ratio {ratio:.3f}x "
        f"(target <= 1.05x: {verdict})"
    )
    record = dict(
        bench="trainer_overhead",
        backend=jax.default_backend(),
        steps=args.steps,
        rounds=args.rounds,
        batch=args.batch,
        ms_per_step={k: [round(t * 1e3, 2) for t in v] for k, v in times.items()},
        ratio=round(ratio, 4),
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
