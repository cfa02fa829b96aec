"""Shared pieces of the benchmarks: peak FLOP/s, model FLOPs, step timing, the LM train step.

Model FLOPs utilisation is counted the MaxText way: model FLOPs per step / step time / peak,
where "model FLOPs" are the matmul FLOPs the model needs (``model_flops_per_token``), not what
the compiled program happens to execute (no credit for rematerialisation, random-row generation
or optimizer arithmetic). Batches are synthetic in-memory int32 arrays: these benchmarks measure
compute, not the input pipeline, and never import grain or tensorflow-datasets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import linen as nn
from jax.sharding import AxisType, Mesh

from lexlm.nn.transformer import LMConfig
from lexlm.train import sharding as shd
from lexlm.train.lm_task import make_lm_task
from lexlm.train.loop import build_state, default_train_config, make_train_step, put_batch

# Dense bf16 matmul peak per chip (vendor data sheets, no sparsity). MFU of a float32 run is
# still reported against this figure, as MaxText does.
PEAK_BF16_FLOPS: dict[str, float] = {
    "NVIDIA H100 SXM": 989e12,
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6e": 918e12,
}

# How jax spells device_kind -> the table's key (first match wins, so order matters).
_KIND_PATTERNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h100", "pcie"), "NVIDIA H100 PCIe"),
    (("h100",), "NVIDIA H100 SXM"),
    (("h200",), "NVIDIA H200"),
    (("a100",), "NVIDIA A100"),
    (("v4",), "TPU v4"),
    (("v5 lite",), "TPU v5e"),
    (("v5e",), "TPU v5e"),
    (("v5",), "TPU v5p"),
    (("v6",), "TPU v6e"),
)


CPU_PROBE = "measured: float32 2048^3 matmul probe, best of 5"
INTERLEAVED = "measured: median of matmul probes of the model's dtype timed between its steps"


class Peak(NamedTuple):
    flops: float | None  # per device, FLOP/s
    source: str  # where the number comes from


def cpu_matmul_peak(n: int = 2048, iters: int = 5) -> float:
    """Measured float32 FLOP/s of one n^3 matmul on the CPU backend (best of ``iters``).

    There is no vendor figure for "a CPU" worth trusting, so a CPU run's MFU is relative to what
    XLA's own dense matmul reaches on this machine with all its cores. On a shared machine the
    probe is itself slowed down; ``refresh_peak`` probes again after timing and keeps the best.
    """
    a = jax.device_put(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = _square
    jax.block_until_ready(f(a))
    best = min(_timed(f, a)[0] for _ in range(iters))
    return 2.0 * n**3 / best


@jax.jit
def _square(x):
    return x @ x


def _timed(f, *args) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call, waited for."""
    w, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - w, time.process_time() - c


def device_peak(device=None, override_tflops: float | None = None) -> Peak:
    """Peak FLOP/s of one device: an override, the bf16 table, or a CPU matmul probe."""
    device = device or jax.devices()[0]
    if override_tflops:
        return Peak(float(override_tflops) * 1e12, "given on the command line")
    if device.platform == "cpu":
        return Peak(cpu_matmul_peak(), CPU_PROBE)
    kind = device.device_kind.lower()
    for patterns, key in _KIND_PATTERNS:
        if all(p.lower() in kind for p in patterns):
            return Peak(PEAK_BF16_FLOPS[key], f"table: {key} bf16 dense")
    return Peak(None, f"unknown device kind {device.device_kind!r}: pass --peak_tflops")


def refresh_peak(peak: Peak) -> Peak:
    """For a CPU probe: probes again (e.g. after timing) and keeps the higher figure."""
    if peak.source.startswith(CPU_PROBE):
        again = cpu_matmul_peak()
        return Peak(max(peak.flops, again), CPU_PROBE + ", max of before/after timing")
    return peak


def matmul_params(cfg: LMConfig) -> int:
    """Weights that take part in matmuls inside the blocks: qkv (3D^2), out (D^2), MLP (2DF)."""
    d, f = cfg.width, cfg.width * cfg.mlp_ratio
    return cfg.depth * (4 * d * d + 2 * d * f)


def model_flops_per_token(cfg: LMConfig, seq_len: int) -> float:
    """Training FLOPs per token, the MaxText / PaLM way.

    ``6 * (N + V*D) + 12 * depth * width * seq_len`` where

    * N = the blocks' matmul weights (``matmul_params``). Biases, LayerNorms, the embedding
      lookup and learned positions do no matmul and are left out.
    * V*D = the output layer. The table is tied to the input embedding (or, lexinvariant, is
      random and has no parameters at all), but ``h @ E^T`` is a real [T, D] x [D, V] matmul,
      so it is counted in both models; the two thus share one numerator and any extra work of
      the lexinvariant model (drawing random rows) shows as lower MFU.
    * 6 = 2 FLOPs per multiply-add x 3 passes (forward, backward to activations, backward to
      weights).
    * 12 * depth * width * seq_len: per layer and token, QK^T and AV are 2 * T * D FLOPs each in
      the forward pass, x3 for the backward. Not halved for the causal mask (the PaLM and
      original MaxText convention; the xla path computes the full T x T scores anyway).
    """
    dense = 6 * (matmul_params(cfg) + cfg.vocab_size * cfg.width)
    attention = 12 * cfg.depth * cfg.width * seq_len
    return float(dense + attention)


class StepTimes(NamedTuple):
    median: float  # seconds
    times: list[float]  # every timed step, wall seconds
    cpu_times: list[float]  # this process's CPU seconds per step (all threads)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)


def time_step(fn: Callable, args: Sequence[Any] = (), warmup: int = 2, iters: int = 10):
    """Times ``fn(*args)`` after ``warmup`` calls; each call is waited for (block_until_ready).

    The warm-up calls absorb compilation and first-touch allocation. Per-call timing includes
    one dispatch (tens of microseconds), negligible for the steps timed here. ``fn`` may keep
    state between calls (a train step that donates its state does).

    CPU seconds are recorded too: on a CPU backend shared with other jobs, wall time swings with
    their load while CPU time tracks the work done (CPU / wall / cores shows the contention).
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    both = [_timed(fn, *args) for _ in range(iters)]
    times = [w for w, _ in both]
    return StepTimes(statistics.median(times), times, [c for _, c in both])


def make_mesh(devices: str = "all") -> Mesh:
    """A (data, fsdp, tensor) mesh over all devices (data parallel) or just the first one."""
    devs = jax.devices() if devices == "all" else jax.devices()[:1]
    return Mesh(
        np.asarray(devs).reshape(len(devs), 1, 1),
        shd.MESH_AXES,
        axis_types=(AxisType.Auto,) * len(shd.MESH_AXES),
    )


def synthetic_batch(batch: int, seq_len: int, vocab_size: int, seed: int = 0) -> dict:
    """Uniform random tokens: {'inputs', 'targets' (inputs shifted by one), 'mask' (all ones)}."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab_size, (batch, seq_len + 1), dtype=np.int32)
    return {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "mask": np.ones((batch, seq_len), np.float32),
    }


@dataclasses.dataclass
class LMStep:
    """One baseline or lexinvariant LM train step (make_lm_task + build_state + make_train_step).

    ``compile()`` lowers and compiles without running anything (memory analysis works on any
    backend); ``init()`` materialises parameters and a synthetic batch; calling the object then
    runs one step on its own state (the state is donated, so it is threaded through).
    """

    cfg: LMConfig
    seq_len: int
    batch: int
    mesh: Mesh
    compiled: Any = None
    compile_s: float = 0.0
    state: Any = None
    arrays: Any = None
    key: Any = None
    metrics: Any = None  # of the last step
    seeds: int = 1  # train.seeds: S copies in one program (leading axis S on state and batch)

    def __post_init__(self):
        train_cfg = default_train_config()
        train_cfg.seeds = self.seeds
        train_cfg.batch_size = self.batch
        train_cfg.steps = 1_000_000  # the schedule only; nothing runs that long
        train_cfg.mesh = tuple(self.mesh.devices.shape)
        self.task = make_lm_task(self.cfg, self.seq_len, name=self.cfg.embedding)
        self.fns = build_state(self.task, train_cfg, self.mesh)
        self.step = make_train_step(self.task, self.fns)

    def _abstract_inputs(self):
        batch_sharding = shd.batch_sharding(self.mesh)
        shape = (self.batch, self.seq_len)
        if self.seeds > 1:
            batch_sharding = jax.sharding.NamedSharding(
                self.mesh, jax.sharding.PartitionSpec(None, *batch_sharding.spec)
            )
            shape = (self.seeds, *shape)
        batch = {
            "inputs": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding),
            "targets": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding),
            "mask": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding),
        }
        return self.fns.abstract, batch, jax.eval_shape(lambda: self._keys(0)[1])

    def _keys(self, seed: int):
        keys = [jax.random.key(seed + s) for s in range(self.seeds)]
        init = keys[0] if self.seeds == 1 else jnp.stack(keys)
        step = (
            jax.random.key(seed + 1)
            if self.seeds == 1
            else jnp.stack([jax.random.key(seed + 1 + s) for s in range(self.seeds)])
        )
        return init, step

    def compile(self):
        t0 = time.perf_counter()
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
            self.compiled = self.step.jitted.lower(*self._abstract_inputs()).compile()
        self.compile_s = time.perf_counter() - t0
        return self.compiled

    def init(self, seed: int = 0):
        init_key, self.key = self._keys(seed)
        with jax.set_mesh(self.mesh):
            self.state = self.fns.init_state(init_key)
        data = synthetic_batch(self.batch, self.seq_len, self.cfg.vocab_size, seed)
        if self.seeds > 1:
            data = {k: np.stack([v] * self.seeds) for k, v in data.items()}
        self.arrays = put_batch(data, self.mesh, self.seeds)
        return self

    def __call__(self):
        if self.compiled is None:
            self.compile()
        self.state, self.metrics = self.compiled(self.state, self.arrays, self.key)
        return self.state, self.metrics

    def param_count(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.fns.abstract.params))


def memory_stats(compiled) -> dict[str, int]:
    """Bytes from ``compiled.memory_analysis()``: temp, argument, output, alias, and totals.

    ``total`` = temp + argument + output (what the brief compares); ``peak_estimate`` subtracts
    the aliased (donated) bytes, which are counted in both argument and output.
    """
    m = compiled.memory_analysis()
    out = {
        "temp": int(m.temp_size_in_bytes),
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
        "alias": int(m.alias_size_in_bytes),
    }
    out["total"] = out["temp"] + out["argument"] + out["output"]
    out["peak_estimate"] = out["total"] - out["alias"]
    return out


def device_line(mesh: Mesh, peak: Peak) -> str:
    d = mesh.devices.flat[0]
    peak_s = f"{peak.flops:.3g} FLOP/s" if peak.flops else "unknown"
    return (
        f"device: {d.device_kind} ({d.platform}) x{mesh.devices.size}, jax {jax.__version__}; "
        f"peak per device {peak_s} ({peak.source})"
    )


def mfu(flops_per_step: float, step_s: float, peak: Peak, n_devices: int) -> float | None:
    if not peak.flops:
        return None
    return flops_per_step / step_s / (peak.flops * n_devices)


def contention_line(timing: StepTimes) -> str:
    """How many cores the timed steps kept busy: below the core count, others share the CPU."""
    cores = os.cpu_count() or 1
    busy = sum(timing.cpu_times) / max(sum(timing.times), 1e-9)
    note = "" if busy > 0.8 * cores else " (the CPU is shared or idle: wall times are pessimistic)"
    return (
        f"process CPU time per step: median {timing.cpu_median * 1e3:.1f} ms; "
        f"{busy:.2f} of {cores} cores busy{note}"
    )


def gib(n: float) -> str:
    return f"{n / 2**30:.3f} GiB"


def print_json(record: dict) -> None:
    print(json.dumps(record, sort_keys=False))


# Model sizes, mirroring the experiment configs (which are not imported: reading them pulls in
# the data stack). tiny = lm:tiny with the embedded corpus's ~100 characters;
# 150m = lm:150m; paper = lexinvariant:paper (context 512).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(vocab_size=100, width=128, depth=2, heads=4, seq_len=128),
    "150m": dict(vocab_size=32000, width=1024, depth=12, heads=16, seq_len=1024),
    "paper": dict(vocab_size=32000, width=1024, depth=12, heads=16, seq_len=512),
}


def lm_config(size: str, seq_len: int, **overrides) -> LMConfig:
    shape = {k: v for k, v in SIZES[size].items() if k != "seq_len"}
    return LMConfig(**{**shape, **overrides, "max_len": seq_len})


def on_accelerator() -> bool:
    return jax.default_backend() != "cpu"


@dataclasses.dataclass
class TaskStep:
    """The trainer's train step (build_state + make_train_step) for any ``Task`` and one fixed
    in-memory batch; ``compile()`` then calling the object runs steps on its own state.

    ``seeds`` = S > 1 builds the trainer's seed-batched step (``train.seeds`` = S): S copies,
    initialised from seeds 0 .. S - 1, each fed ``batch`` (stacked on a leading axis of S)."""

    task: Any
    batch: dict
    mesh: Mesh
    compiled: Any = None
    compile_s: float = 0.0
    seeds: int = 1

    def __post_init__(self):
        from lexlm.train.loop import seed_keys

        train_cfg = default_train_config()
        train_cfg.batch_size = next(iter(self.batch.values())).shape[0]
        train_cfg.steps = 1_000_000
        train_cfg.mesh = tuple(self.mesh.devices.shape)
        train_cfg.seeds = int(self.seeds)
        self.fns = build_state(self.task, train_cfg, self.mesh)
        self.step = make_train_step(self.task, self.fns)
        init_key, self.key = (
            (jax.random.key(0), jax.random.key(1)) if self.seeds == 1 else seed_keys(train_cfg)
        )
        with jax.set_mesh(self.mesh):
            self.state = self.fns.init_state(init_key)
        batch = self.batch
        if self.seeds > 1:
            batch = {k: np.stack([np.asarray(v)] * self.seeds) for k, v in batch.items()}
        self.arrays = put_batch(batch, self.mesh, self.seeds)

    def compile(self):
        t0 = time.perf_counter()
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
            self.compiled = self.step.jitted.lower(self.state, self.arrays, self.key).compile()
        self.compile_s = time.perf_counter() - t0
        return self.compiled

    def __call__(self):
        if self.compiled is None:
            self.compile()
        self.state, metrics = self.compiled(self.state, self.arrays, self.key)
        return metrics

    def param_count(self) -> int:
        """Parameters of one copy."""
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.fns.abstract.params))
        return n // self.seeds


HELP = ("-h", "-help", "--help", "--helpshort", "--helpfull")


def parse(
    argv: Sequence[str] | None, define: Callable[[flags.FlagValues], None], doc: str = ""
) -> flags.FlagValues:
    """A bench's command line, parsed as the experiments parse theirs: absl flags, into fresh
    ``FlagValues`` (so one process may parse any number of times).

    ``argv`` is a whole command line, the program first (None: ``sys.argv``); ``define(fv)``
    declares the script's flags (``flags.DEFINE_integer(..., flag_values=fv)``). ``--help``
    prints the first paragraph of ``doc`` and the flags, and exits with status 0. A bad flag, a
    bad value or a stray argument prints one line ``error: ...`` on stderr and exits with
    status 2.
    """
    argv = list(sys.argv if argv is None else argv)
    fv = flags.FlagValues()
    define(fv)
    given = argv[1 : argv.index("--", 1)] if "--" in argv[1:] else argv[1:]
    if any(a in HELP for a in given):
        print(doc.strip().split("\n\n")[0] + "\n" + fv.get_help(include_special_flags=False))
        raise SystemExit(0)
    try:
        rest = fv(argv)[1:]
        if rest:
            raise flags.Error(f"unexpected arguments: {' '.join(rest)}")
    except (flags.Error, ValueError) as e:  # ValueError: --noflag=value, an empty argv
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        raise SystemExit(2) from None
    return fv


class Interleaved(NamedTuple):
    """Model steps and matmul-peak probes timed alternately in one process.

    ``model``: the model's steps (``StepTimes``); ``probe_flops_s``: the FLOP/s of every probe
    (one more than the model's steps: each step lies between two probes); ``dtype``: the probes'.
    """

    model: StepTimes
    probe_flops_s: list[float]
    dtype: str

    @property
    def peak(self) -> float:
        """The interleaved matmul peak: the median of the probes' FLOP/s."""
        return statistics.median(self.probe_flops_s)

    def fraction(self, flops_per_step: float, n_devices: int = 1) -> float:
        """Achieved FLOP/s (median step) as a fraction of the interleaved peak of n devices."""
        return flops_per_step / self.model.median / (self.peak * n_devices)

    def line(self, flops_per_step: float, n_devices: int = 1) -> str:
        """``"<raw> FLOP/s = <f>% of the interleaved <dtype> matmul peak <p> FLOP/s ..."``."""
        raw = flops_per_step / self.model.median
        lo, hi = min(self.probe_flops_s), max(self.probe_flops_s)
        per = f" x{n_devices} devices" if n_devices > 1 else ""
        return (
            f"{raw:.3g} FLOP/s = {self.fraction(flops_per_step, n_devices):.1%} of the "
            f"interleaved {self.dtype} matmul peak {self.peak:.3g} FLOP/s{per} (median of "
            f"{len(self.probe_flops_s)} probes between the steps, range {lo:.3g}-{hi:.3g})"
        )


def matmul_probe(dtype: str = "float32", n: int | None = None) -> tuple[Callable, float]:
    """``(probe, flops)``: a jitted n x n x n matmul of ``dtype`` on the first device, and its
    FLOPs (2 n^3). n defaults to 2048 on CPU and 8192 on an accelerator (big enough to reach
    the matrix units' rate)."""
    n = n or (8192 if on_accelerator() else 2048)
    a = jax.device_put(
        np.random.default_rng(0).standard_normal((n, n), np.float32).astype(jnp.dtype(dtype))
    )
    return (lambda: _square(a)), 2.0 * n**3


def time_interleaved(
    fn: Callable,
    args: Sequence[Any] = (),
    *,
    dtype: str = "float32",
    warmup: int = 2,
    iters: int = 10,
    probe: tuple[Callable, float] | None = None,
) -> Interleaved:
    """Times ``fn(*args)`` and a matmul-peak probe of ``dtype`` alternately in this process.

    Call order: ``warmup`` x (probe, fn) untimed, then probe, fn, probe, fn, ..., probe, all
    timed, ``iters`` calls of ``fn`` and ``iters + 1`` probes, each waited for. So the peak and
    the step see the same machine at the same time (a shared CPU's load, a GPU's clocks), and
    ``Interleaved.fraction`` compares like with like. ``probe``: ``(callable, FLOPs per call)``,
    by default ``matmul_probe(dtype)``.

        t = time_interleaved(step, dtype="bfloat16", iters=5)
        print(t.line(flops_per_step))
    """
    call, probe_flops = probe or matmul_probe(dtype)
    for _ in range(warmup):
        jax.block_until_ready(call())
        jax.block_until_ready(fn(*args))
    probes = [_timed(call)[0]]
    both = []
    for _ in range(iters):
        both.append(_timed(fn, *args))
        probes.append(_timed(call)[0])
    times = [w for w, _ in both]
    model = StepTimes(statistics.median(times), times, [c for _, c in both])
    return Interleaved(model, [probe_flops / max(t, 1e-12) for t in probes], dtype)


def quoted_line(what: str, figure: str, source: str) -> str:
    """A figure quoted from elsewhere, labelled as such; it is never divided by."""
    return f"{what}: {figure} (quoted from {source}; not measured in this run, so never divided)"
