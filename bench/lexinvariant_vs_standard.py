"""Cost of lexinvariance: train-step time and compiled memory, lexinvariant vs standard LM.

    python -m bench.lexinvariant_vs_standard --size tiny
    python -m bench.lexinvariant_vs_standard --size paper --memory
    python -m bench.lexinvariant_vs_standard --size paper --memory --notime

Both models have the same shape; they differ only in where the tied [V, D] table comes from
(learned, or drawn per sequence: ``lexlm.nn.lexinvariant``), the lexinvariant one with its
readout fixes on, exactly as the lexinvariant experiment trains it
(``lexlm.proj.lexinvariant.config.LEXINVARIANT_MODEL``: a learned logit scale and the copy
readout).

Time: both train steps are compiled and run in one process, in rounds ordered A B, B A, A B,
... so that machine drift and contention hit both alike; the figure is median(lexinvariant) /
median(standard) over all timed steps (target <= 1.1x), with the median of per-round ratios as
a check.

Memory (``--memory``): the full train step (forward, backward, AdamW update) of both models at
V=32000, width 1024, 12 layers, 16 heads, batch 8, context 1024 is lowered and compiled, never
run, and ``compiled.memory_analysis()`` is compared (temp + argument + output; target <= 1.2x).
This works on CPU, but a CPU compile makes CPU choices (fusion, layouts), so GPU/TPU bytes
differ; the ratio is the comparison that transfers.
"""

from __future__ import annotations

import os
import statistics

import jax
from absl import flags

from bench import common

MODELS = ("learned", "lexinvariant")


def model_fields(embedding: str) -> dict:
    """LMConfig fields of each benchmarked model: the lexinvariant one as trained."""
    from lexlm.proj.lexinvariant.config import LEXINVARIANT_MODEL

    fields = {"embedding": embedding}
    if embedding == "lexinvariant":
        fields.update(LEXINVARIANT_MODEL)
    return fields


LABEL = {"learned": "standard", "lexinvariant": "lexinvariant"}


def defaults(size: str, accel: bool) -> dict:
    if size == "tiny":
        return dict(batch=32, seq=128, dtype="float32", attention="xla", rounds=6, steps=5)
    if accel:
        return dict(batch=8, seq=1024, dtype="bfloat16", attention="auto", rounds=6, steps=5)
    # 12 x 1024 on 2 CPU cores: ~10 s per step at 1 x 512.
    return dict(batch=1, seq=512, dtype="float32", attention="xla", rounds=2, steps=2)


def _flags(fv: flags.FlagValues) -> None:
    dtypes = ["float32", "bfloat16"]
    flags.DEFINE_enum("size", "tiny", ["tiny", "paper"], "model size", flag_values=fv)
    flags.DEFINE_integer(
        "rounds", None, "alternating rounds (each model once per round)", flag_values=fv
    )
    flags.DEFINE_integer("steps", None, "timed steps per model per round", flag_values=fv)
    flags.DEFINE_integer("batch", None, "global batch size", flag_values=fv)
    flags.DEFINE_integer("seq", None, "context length", flag_values=fv)
    flags.DEFINE_integer("vocab", None, "vocabulary size (default: the size's)", flag_values=fv)
    flags.DEFINE_enum("dtype", None, dtypes, "compute dtype", flag_values=fv)
    flags.DEFINE_enum(
        "attention", None, ["xla", "cudnn", "auto"], "attention implementation", flag_values=fv
    )
    flags.DEFINE_integer("vocab_chunk", 8192, "LMConfig.vocab_chunk", flag_values=fv)
    flags.DEFINE_enum(
        "devices", "all", ["all", "1"], "all devices, or the first only", flag_values=fv
    )
    flags.DEFINE_float("peak_tflops", None, "override the peak per device", flag_values=fv)
    flags.DEFINE_bool(
        "time", True, "time the train steps (--notime: skip the timing)", flag_values=fv
    )
    flags.DEFINE_bool("memory", False, "compare compiled train-step memory", flag_values=fv)
    flags.DEFINE_integer("mem_batch", 8, "--memory: batch size", flag_values=fv)
    flags.DEFINE_integer("mem_seq", 1024, "--memory: context length", flag_values=fv)
    flags.DEFINE_integer("mem_vocab", 32000, "--memory: vocabulary size", flag_values=fv)
    flags.DEFINE_enum("mem_dtype", "bfloat16", dtypes, "--memory: compute dtype", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    args = common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)
    for k, v in defaults(args.size, common.on_accelerator()).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def time_both(args, mesh, peak) -> dict:
    steps = {}
    for emb in MODELS:
        over = dict(dtype=args.dtype, attention=args.attention, vocab_chunk=args.vocab_chunk)
        over.update(model_fields(emb))
        if args.vocab:
            over["vocab_size"] = args.vocab
        cfg = common.lm_config(args.size, args.seq, **over)
        steps[emb] = common.LMStep(cfg, args.seq, args.batch, mesh)
        steps[emb].compile()
        steps[emb].init()
        jax.block_until_ready(steps[emb]())
    cfg = steps["learned"].cfg
    print(
        f"timing: size={args.size} V={cfg.vocab_size} D={cfg.width} L={cfg.depth} H={cfg.heads} "
        f"T={args.seq} B={args.batch} dtype={cfg.dtype} attention={cfg.attention} "
        f"vocab_chunk={cfg.vocab_chunk} (chunks of the output layer: "
        f"{-(-cfg.vocab_size // cfg.vocab_chunk)})"
    )
    times = {emb: [] for emb in MODELS}
    cpu_times = {emb: [] for emb in MODELS}
    round_ratios = []
    for r in range(args.rounds):
        order = MODELS if r % 2 == 0 else MODELS[::-1]
        med = {}
        for emb in order:
            # One untimed step after switching models: the other model's buffers were just hot.
            t = common.time_step(steps[emb], (), warmup=1, iters=args.steps)
            times[emb] += t.times
            cpu_times[emb] += t.cpu_times
            med[emb] = t.median
        round_ratios.append(med["lexinvariant"] / med["learned"])
    peak = common.refresh_peak(peak)
    flops_tok = common.model_flops_per_token(cfg, args.seq)
    tokens = args.batch * args.seq
    n_dev = mesh.devices.size
    out = {"vocab_chunk": cfg.vocab_chunk, "compile_s": {}, "step_ms_median": {}}
    for emb in MODELS:
        m = statistics.median(times[emb])
        util = common.mfu(flops_tok * tokens, m, peak, n_dev)
        mfu_s = f"{100 * util:.2f}%" if util is not None else "n/a"
        print(
            f"  {LABEL[emb]:>12}: step median {m * 1e3:9.2f} ms (min {min(times[emb]) * 1e3:.2f})"
            f" over {len(times[emb])} steps; {tokens / m:,.0f} tokens/s; MFU {mfu_s}; "
            f"compile {steps[emb].compile_s:.1f} s"
        )
        out["step_ms_median"][LABEL[emb]] = round(m * 1e3, 3)
        out["compile_s"][LABEL[emb]] = round(steps[emb].compile_s, 2)
        out.setdefault("tokens_per_s", {})[LABEL[emb]] = round(tokens / m, 1)
        out.setdefault("mfu", {})[LABEL[emb]] = None if util is None else round(util, 5)
    ratio = statistics.median(times["lexinvariant"]) / statistics.median(times["learned"])
    per_round = statistics.median(round_ratios)
    verdict = "ok" if ratio <= 1.1 else "ABOVE target"
    print(
        f"step-time ratio lexinvariant/standard: {ratio:.3f}x (target <= 1.1x: {verdict}); "
        f"median of per-round ratios {per_round:.3f}x; rounds "
        + ", ".join(f"{x:.3f}" for x in round_ratios)
    )
    out.update(time_ratio=round(ratio, 4), time_ratio_per_round=[round(x, 4) for x in round_ratios])
    if not common.on_accelerator():
        cpu = {e: statistics.median(cpu_times[e]) for e in MODELS}
        busy = sum(sum(cpu_times[e]) for e in MODELS) / sum(sum(times[e]) for e in MODELS)
        print(
            f"process CPU time per step: standard {cpu['learned'] * 1e3:.1f} ms, lexinvariant "
            f"{cpu['lexinvariant'] * 1e3:.1f} ms, ratio {cpu['lexinvariant'] / cpu['learned']:.3f}x"
            f" ({busy:.2f} of {os.cpu_count()} cores busy; the CPU-time ratio is the steadier"
            " figure on a shared machine)"
        )
        out["cpu_time_ratio"] = round(cpu["lexinvariant"] / cpu["learned"], 4)
    out["peak_flops_per_device"], out["peak_source"] = peak.flops, peak.source
    return out


def memory_both(args, mesh) -> dict:
    stats, cfgs = {}, {}
    for emb in MODELS:
        cfg = common.lm_config(
            "150m",
            args.mem_seq,
            vocab_size=args.mem_vocab,
            dtype=args.mem_dtype,
            attention="xla" if not common.on_accelerator() else "auto",
            vocab_chunk=args.vocab_chunk,
            **model_fields(emb),
        )
        step = common.LMStep(cfg, args.mem_seq, args.mem_batch, mesh)
        step.compile()
        stats[emb], cfgs[emb] = common.memory_stats(step.compiled), cfg
        stats[emb]["compile_s"] = round(step.compile_s, 2)
        del step
    cfg = cfgs["learned"]
    print(
        f"memory (train step: fwd + bwd + AdamW, compiled, not run): V={cfg.vocab_size} "
        f"D={cfg.width} L={cfg.depth} H={cfg.heads} T={args.mem_seq} B={args.mem_batch} "
        f"dtype={cfg.dtype} attention={cfg.attention} vocab_chunk={cfg.vocab_chunk} "
        f"on {jax.default_backend()}"
    )
    for emb in MODELS:
        s = stats[emb]
        print(
            f"  {LABEL[emb]:>12}: temp {s['temp']:,} B ({common.gib(s['temp'])}), "
            f"argument {s['argument']:,} B ({common.gib(s['argument'])}), "
            f"output {s['output']:,} B ({common.gib(s['output'])}), "
            f"alias {s['alias']:,} B; temp+argument+output {s['total']:,} B "
            f"({common.gib(s['total'])}); compile {s['compile_s']:.1f} s"
        )
    lex, std = stats["lexinvariant"], stats["learned"]
    ratio = lex["total"] / std["total"]
    verdict = "ok" if ratio <= 1.2 else "ABOVE target"
    print(
        f"memory ratio lexinvariant/standard: temp+argument+output {ratio:.3f}x "
        f"(target <= 1.2x: {verdict}); temp alone {lex['temp'] / std['temp']:.3f}x; "
        f"peak estimate (minus donated alias) {lex['peak_estimate'] / std['peak_estimate']:.3f}x"
    )
    return dict(
        mem_config=dict(
            vocab=cfg.vocab_size,
            width=cfg.width,
            depth=cfg.depth,
            heads=cfg.heads,
            seq=args.mem_seq,
            batch=args.mem_batch,
            dtype=cfg.dtype,
            vocab_chunk=cfg.vocab_chunk,
            backend=jax.default_backend(),
        ),
        memory_bytes={LABEL[e]: stats[e] for e in MODELS},
        memory_ratio=round(ratio, 4),
        memory_ratio_temp=round(lex["temp"] / std["temp"], 4),
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    mesh = common.make_mesh(args.devices)
    record = dict(bench="lexinvariant_vs_standard", size=args.size, jax=jax.__version__)
    record.update(device=mesh.devices.flat[0].device_kind, n_devices=mesh.devices.size)
    if args.time:
        peak = common.device_peak(override_tflops=args.peak_tflops)
        print(common.device_line(mesh, peak))
        record.update(batch=args.batch, seq=args.seq, dtype=args.dtype, attention=args.attention)
        record.update(time_both(args, mesh, peak))
    if args.memory:
        record.update(memory_both(args, mesh))
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
