"""Throughput table: tokens/s and MFU of every lexlm LM at ~150M parameters, per attention.

    python -m bench.lm_table                       # GPU: bf16, batch 16 x 1024
    python -m bench.lm_table --batch 32 --steps 10
    python -m bench.lm_table --cpu_smoke           # CPU: tiny shapes, checks it runs

Each row is one model of ``MODELS`` (12 layers x 1024, 16 heads, V=32000, context 1024, the
``150m`` size of ``lm:150m``) with one attention implementation: ``xla`` (plain XLA
softmax attention) and ``cudnn`` (``jax.nn.dot_product_attention`` on cuDNN; GPU only, skipped
elsewhere). The step is lexlm's full train step (``common.LMStep``: forward, backward,
clipping, AdamW, the non-finite guard) in bfloat16 compute with float32 parameters and the
chunked tied cross-entropy (``vocab_chunk``), so the [B x T, V] float32 logits are never
materialised. Batches are synthetic in-memory arrays; nothing from the data stack is imported.
MFU = model FLOPs per step (``common.model_flops_per_token``) / step time / the device's
dense bf16 peak (``common.PEAK_BF16_FLOPS``).

A model added to the library joins the table with one line in ``MODELS``.
"""

from __future__ import annotations

import jax
from absl import flags

from bench import common

# name -> LMConfig fields on top of the size. One line per model.
MODELS: dict[str, dict] = {
    "baseline (learned tied embedding)": dict(embedding="learned"),
    "lexinvariant (logit scale + copy readout)": dict(
        embedding="lexinvariant", logit_scale="learned", copy_readout=True
    ),
    "semi-lexinvariant (p = 0.5)": dict(embedding="semi", semi_p=0.5),
}
ATTENTIONS = ("xla", "cudnn")


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("batch", 16, "global batch size", flag_values=fv)
    flags.DEFINE_integer("seq", 1024, "context length", flag_values=fv)
    flags.DEFINE_integer("steps", 10, "timed steps (after warm-up)", flag_values=fv)
    flags.DEFINE_integer("warmup", 3, "untimed steps after compilation", flag_values=fv)
    flags.DEFINE_integer("vocab_chunk", 8192, "LMConfig.vocab_chunk", flag_values=fv)
    flags.DEFINE_float("peak_tflops", None, "override the peak per device", flag_values=fv)
    flags.DEFINE_bool("cpu_smoke", False, "tiny shapes on CPU (fp32)", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def row(name: str, fields: dict, attention: str, args, mesh, peak) -> dict:
    size = "tiny" if args.cpu_smoke else "150m"
    dtype = "float32" if args.cpu_smoke else "bfloat16"
    cfg = common.lm_config(
        size,
        args.seq,
        dtype=dtype,
        attention=attention,
        vocab_chunk=args.vocab_chunk,
        **fields,
    )
    step = common.LMStep(cfg, args.seq, args.batch, mesh)
    step.compile()
    step.init()
    timing = common.time_step(step, (), warmup=args.warmup, iters=args.steps)
    tokens = args.batch * args.seq
    util = common.mfu(
        common.model_flops_per_token(cfg, args.seq) * tokens, timing.median, peak, mesh.size
    )
    return dict(
        model=name,
        attention=attention,
        params=step.param_count(),
        step_ms=round(timing.median * 1e3, 2),
        tokens_per_s=round(tokens / timing.median, 1),
        mfu=None if util is None else round(util, 4),
        loss=float(step.metrics["loss"]),
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.cpu_smoke:
        args.batch, args.seq, args.steps, args.warmup = 4, 64, 2, 1
    mesh = common.make_mesh("all")
    peak = common.device_peak(override_tflops=args.peak_tflops)
    print(common.device_line(mesh, peak))
    gpu = jax.default_backend() == "gpu"
    rows = []
    print("| model | attention | parameters | step (ms) | tokens/s | MFU |")
    print("|---|---|---|---|---|---|")
    for name, fields in MODELS.items():
        for attention in ATTENTIONS:
            if attention == "cudnn" and not gpu:
                print(f"| {name} | cudnn | - | - | - | skipped: needs an NVIDIA GPU |")
                continue
            r = row(name, fields, attention, args, mesh, peak)
            rows.append(r)
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            print(
                f"| {name} | {attention} | {r['params']:,} | {r['step_ms']:.1f} | "
                f"{r['tokens_per_s']:,.0f} | {mfu} |"
            )
    record = dict(
        bench="lm_table",
        device=mesh.devices.flat[0].device_kind,
        n_devices=mesh.size,
        batch=args.batch,
        seq=args.seq,
        peak_source=peak.source,
        rows=rows,
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
