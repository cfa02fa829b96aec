"""Training throughput and MFU of the baseline LM (learned, tied embedding).

    python -m bench.train_throughput --size tiny
    python -m bench.train_throughput --size 150m              # CPU: batch 1, fp32
    python -m bench.train_throughput --size 150m --batch 16   # GPU: bf16, auto attn

Builds the train step exactly as the trainer does (make_lm_task + build_state +
make_train_step: AdamW, clipping, the non-finite guard), compiles it ahead of time, feeds one
synthetic in-memory batch, and times steps after warm-up (median), alternating with a matmul
probe of the model's dtype (``common.time_interleaved``). Prints tokens/s, model FLOPs
utilisation against the device's nominal peak (``common.device_peak``; on CPU, which has none,
against the interleaved probe), the model's FLOP/s as a fraction of the interleaved matmul
peak, then a one-line JSON summary.
"""

from __future__ import annotations

import jax
from absl import flags

from bench import common


def defaults(size: str, accel: bool) -> dict:
    """Per size and backend: the CPU settings finish in a few minutes on 2 cores."""
    if size == "tiny":
        return dict(batch=32, dtype="float32", attention="xla", steps=20, warmup=3)
    if accel:
        return dict(batch=16, dtype="bfloat16", attention="auto", steps=20, warmup=3)
    return dict(batch=1, dtype="float32", attention="xla", steps=3, warmup=1)


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("size", "tiny", ["tiny", "150m"], "model size", flag_values=fv)
    flags.DEFINE_integer("steps", None, "timed steps (after warm-up)", flag_values=fv)
    flags.DEFINE_integer("warmup", None, "untimed steps after compilation", flag_values=fv)
    flags.DEFINE_integer("batch", None, "global batch size", flag_values=fv)
    flags.DEFINE_integer("seq", None, "context length (default: the size's)", flag_values=fv)
    flags.DEFINE_integer("vocab", None, "vocabulary size (default: the size's)", flag_values=fv)
    flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype", flag_values=fv)
    flags.DEFINE_enum(
        "attention", None, ["xla", "cudnn", "auto"], "attention implementation", flag_values=fv
    )
    flags.DEFINE_integer("vocab_chunk", 8192, "LMConfig.vocab_chunk", flag_values=fv)
    flags.DEFINE_bool("remat", False, "rematerialise each block", flag_values=fv)
    flags.DEFINE_enum(
        "devices", "all", ["all", "1"], "all devices, or the first only", flag_values=fv
    )
    flags.DEFINE_float("peak_tflops", None, "override the peak per device", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    args = common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)
    for k, v in defaults(args.size, common.on_accelerator()).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.seq = args.seq or common.SIZES[args.size]["seq_len"]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    overrides = dict(
        dtype=args.dtype,
        attention=args.attention,
        embedding="learned",
        vocab_chunk=args.vocab_chunk,
        remat=args.remat,
    )
    if args.vocab:
        overrides["vocab_size"] = args.vocab
    cfg = common.lm_config(args.size, args.seq, **overrides)
    mesh = common.make_mesh(args.devices)
    n_dev = mesh.devices.size
    if common.on_accelerator() or args.peak_tflops:
        peak = common.device_peak(override_tflops=args.peak_tflops)
    else:  # no nominal CPU figure: MFU is against the matmul probe timed between the steps
        peak = common.Peak(None, "CPU: the interleaved matmul probe, measured below")
    print(common.device_line(mesh, peak))

    step = common.LMStep(cfg, args.seq, args.batch, mesh)
    flops_tok = common.model_flops_per_token(cfg, args.seq)
    print(
        f"model: size={args.size} V={cfg.vocab_size} D={cfg.width} L={cfg.depth} "
        f"H={cfg.heads} T={args.seq} B={args.batch} dtype={cfg.dtype} "
        f"attention={cfg.attention} vocab_chunk={cfg.vocab_chunk} remat={cfg.remat}"
    )
    print(
        f"params: {step.param_count():,} (block matmul weights {common.matmul_params(cfg):,}); "
        f"model FLOPs/token {flops_tok:.4g} = 6*(N+V*D) + 12*L*D*T"
    )
    step.compile()
    mem = common.memory_stats(step.compiled)
    print(
        f"compile: {step.compile_s:.1f} s; memory: temp {common.gib(mem['temp'])}, "
        f"argument {common.gib(mem['argument'])}, output {common.gib(mem['output'])}"
    )
    step.init()
    inter = common.time_interleaved(step, dtype=cfg.dtype, warmup=args.warmup, iters=args.steps)
    timing = inter.model
    if peak.flops is None and not common.on_accelerator():
        peak = common.Peak(inter.peak, common.INTERLEAVED)
    tokens = args.batch * args.seq
    tok_s = tokens / timing.median
    util = common.mfu(flops_tok * tokens, timing.median, peak, n_dev)
    loss = float(step.metrics["loss"])
    print(
        f"step time: median {timing.median * 1e3:.2f} ms "
        f"(min {min(timing.times) * 1e3:.2f}, max {max(timing.times) * 1e3:.2f}) "
        f"over {args.steps} steps after {args.warmup} warm-up; loss after {loss:.3f}"
    )
    if not common.on_accelerator():
        print(common.contention_line(timing))
    mfu_s = f"{100 * util:.2f}%" if util is not None else "n/a"
    print(
        f"tokens/s: {tok_s:,.0f}  ({tok_s / n_dev:,.0f} per device)   MFU: {mfu_s} "
        f"(peak {peak.flops:.3g} FLOP/s per device, {peak.source})"
        if peak.flops
        else f"tokens/s: {tok_s:,.0f}  ({tok_s / n_dev:,.0f} per device)   MFU: n/a"
    )
    print("model FLOP/s: " + inter.line(flops_tok * tokens, n_dev))
    record = dict(
        bench="train_throughput",
        size=args.size,
        device=mesh.devices.flat[0].device_kind,
        n_devices=n_dev,
        jax=jax.__version__,
        vocab=cfg.vocab_size,
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        seq=args.seq,
        batch=args.batch,
        dtype=cfg.dtype,
        attention=cfg.attention,
        vocab_chunk=cfg.vocab_chunk,
        remat=cfg.remat,
        params=step.param_count(),
        model_flops_per_token=flops_tok,
        compile_s=round(step.compile_s, 2),
        step_ms_median=round(timing.median * 1e3, 3),
        step_ms_all=[round(t * 1e3, 3) for t in timing.times],
        step_cpu_ms_median=round(timing.cpu_median * 1e3, 3),
        tokens_per_s=round(tok_s, 1),
        mfu=None if util is None else round(util, 5),
        peak_flops_per_device=peak.flops,
        peak_source=peak.source,
        interleaved_peak_flops_s=inter.peak,
        probe_flops_s=inter.probe_flops_s,
        fraction_of_interleaved_peak=round(inter.fraction(flops_tok * tokens, n_dev), 5),
        memory_bytes=mem,
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
