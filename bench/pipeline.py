"""Input pipeline off the critical path: training steps/s with real data vs in-memory batches.

    python -m bench.pipeline                 # the tiny configs, 4 rounds of 80 steps
    python -m bench.pipeline --steps 120 --rounds 4 --only subword

For each tiny config of the LM experiments (the baseline character LM, and the lexinvariant
experiment's character and 512-subword runs), lexlm's trainer runs the same number of steps
twice per round, in alternating order:

* **real**: batches from the grain pipeline on the embedded corpus (read, clean, tokenize,
  pack, batch) in the training process, as ``lexlm.proj.lm.run.train_run`` does;
* **in memory**: the same batches, materialised in a list before the clock starts.

The figure is median steps/s (log windows after the first, which holds the compilation) of
real / in memory (target >= 0.95). On a shared CPU, wall time swings with other jobs; the
bench also prints process CPU time per step, in memory / real, which counts the pipeline's
own work (1.0: free) and is not moved by other tenants.

For the full configs (batch 256 x context 1024 subwords) training cannot run on a CPU;
``--full`` times the pipeline alone for that batch shape and
prints the shortest train step for which it stays within 5% (the pipeline runs between two
asynchronous step dispatches, so it is hidden while a step takes longer than the pipeline
needs for one batch; 0.95 holds for any step >= 19 x the time per batch even when nothing
overlaps).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time

from absl import flags


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("steps", 80, "training steps per run", flag_values=fv)
    flags.DEFINE_integer("rounds", 4, "rounds of one real and one in-memory run", flag_values=fv)
    flags.DEFINE_integer("log_every", 20, "steps per log window", flag_values=fv)
    flags.DEFINE_bool("full", False, "also time the full-config pipeline", flag_values=fv)
    flags.DEFINE_string("only", "", "run only the configs whose name contains this", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    from bench import common

    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def tiny_configs() -> dict:
    from lexlm.proj.lexinvariant.config import get_config as lexinvariant_config
    from lexlm.proj.lexinvariant.run import run_config
    from lexlm.proj.lm.config import get_config as lm_config

    lex = lexinvariant_config("tiny")
    return {
        "lm tiny (char)": lm_config("tiny"),
        "lexinvariant tiny (char)": run_config(lex, "prose", "char", "lexinvariant"),
        "lexinvariant tiny (512 subwords)": run_config(lex, "prose", "subword", "lexinvariant"),
    }


def pipeline_for(cfg, workdir):
    from lexlm.data import lm_train_dataset, open_split
    from lexlm.paths import as_path
    from lexlm.proj.lm.run import tokenizer_for

    tok = tokenizer_for(cfg, as_path(workdir))
    ds = lm_train_dataset(
        open_split(cfg.data, "train"),
        tok,
        seq_len=int(cfg.seq_len),
        batch_size=int(cfg.train.batch_size),
        seed=int(cfg.data.seed),
        worker_count=int(cfg.data.get("worker_count", 0)),
        read_threads=int(cfg.data.get("read_threads", 0)),
    )
    return tok, ds


def timed_run(cfg, task, batches) -> tuple[float, float]:
    """(median steps/s, median process CPU seconds per step) over the log windows after the
    first. A hook samples the clocks at every logging step, right after the loop fetched that
    window's metrics (which waits for its steps), so windows are complete steps."""
    from lexlm.train import train

    marks: list[tuple[int, float, float]] = []
    every = int(cfg.train.log_every)

    def clock(step, state, saved):
        if step % every == 0:
            marks.append((step, time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory() as workdir:
        result = train(cfg.train, task, batches, workdir, resume=False, hooks=(clock,))
    cpu = [(c1 - c0) / (s1 - s0) for (s0, _, c0), (s1, _, c1) in itertools.pairwise(marks)]
    return statistics.median(w["steps_per_s"] for w in result.history[1:]), statistics.median(cpu)


def compare(name: str, cfg, args) -> dict:
    from lexlm.proj.lm.run import lm_config
    from lexlm.train import make_lm_task

    cfg = cfg.copy_and_resolve_references()
    cfg.train.update(
        steps=args.steps,
        log_every=args.log_every,
        ckpt_every=10 * args.steps,
        tensorboard=False,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tok_dir:
        tok, ds = pipeline_for(cfg, tok_dir)
    task = make_lm_task(lm_config(cfg, tok.vocab_size), int(cfg.seq_len), name=name)
    it = iter(ds)
    stored = [next(it) for _ in range(args.steps)]
    rates = {"real": [], "memory": []}
    cpu = {"real": [], "memory": []}
    for r in range(args.rounds):
        for side in ("real", "memory") if r % 2 == 0 else ("memory", "real"):
            batches = iter(ds) if side == "real" else iter(stored)
            rate, cpu_per_step = timed_run(cfg, task, batches)
            rates[side].append(rate)
            cpu[side].append(cpu_per_step)
    ratio = statistics.median(rates["real"]) / statistics.median(rates["memory"])
    cpu_ratio = statistics.median(cpu["memory"]) / statistics.median(cpu["real"])
    verdict = "ok" if ratio >= 0.95 else "BELOW target"
    print(
        f"{name}: real {statistics.median(rates['real']):.2f} steps/s, in memory "
        f"{statistics.median(rates['memory']):.2f} steps/s, ratio {ratio:.3f} "
        f"(target >= 0.95: {verdict}); CPU time per step in memory / real {cpu_ratio:.3f}"
    )
    return dict(
        config=name,
        steps_per_s=rates,
        cpu_s_per_step=cpu,
        ratio=round(ratio, 4),
        cpu_ratio=round(cpu_ratio, 4),
    )


def full_pipeline() -> dict:
    """ms per batch of the pipeline alone at the full configs' shape (256 x 1024 subwords)."""
    from lexlm.proj.lm import config as lm

    cfg = lm.get_config("tiny")
    cfg.data.update(unit="subword", vocab_size=512)
    cfg.seq_len = 1024
    cfg.train.batch_size = 256
    with tempfile.TemporaryDirectory() as tok_dir:
        _, ds = pipeline_for(cfg, tok_dir)
    it = iter(ds)
    next(it)
    n = 5
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    per_batch = (time.perf_counter() - t0) / n
    print(
        f"full-config shape (256 x 1024 subwords, embedded corpus): {per_batch * 1e3:.0f} ms per "
        f"batch in one process; the ratio stays >= 0.95 for train steps >= "
        f"{19 * per_batch:.2f} s even without overlap"
    )
    return dict(ms_per_batch=round(per_batch * 1e3, 1), min_step_s=round(19 * per_batch, 3))


def main(argv=None) -> dict:
    import jax

    from bench import common

    args = parse_args(argv)
    configs = {k: v for k, v in tiny_configs().items() if args.only in k}
    rows = [compare(name, cfg, args) for name, cfg in configs.items()]
    record = dict(bench="pipeline", backend=jax.default_backend(), steps=args.steps, rows=rows)
    if args.full:
        record["full"] = full_pipeline()
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
