"""Compiled-memory planning: per-device bytes of a config's train step on a mesh of N devices.

    python -m bench.memory --size 150m --devices 8,64
    python -m bench.memory --size paper --devices 8,64 --mesh data   # no FSDP
    python -m bench.memory --size 150m --devices 64 --tensor 4      # fsdp x tensor

Runs on any machine: the devices are fake host CPU devices (``jax_num_cpu_devices``, set
before jax starts its backends), and the train step (forward, backward, AdamW) is lowered and
compiled for each mesh, never run. For each device count N it prints, per device:

* parameters and optimizer state: the bytes of each leaf's shard under the shardings lexlm's
  rules give it on that mesh (exact: shard shape x dtype, summed over leaves);
* activations and workspace: ``temp`` from the compiled program's memory analysis;
* the program's argument / output bytes (arguments = state + batch shard; the donated state
  is counted in both, ``alias``).

With ``--mesh fsdp`` (default) the mesh is (1, N / tensor, tensor): parameters and optimizer
moments are split over fsdp x tensor, so their bytes per device should fall as about 1/N; the
last column prints (params + optimizer) per device x N / unsharded, which is 1.0 for a perfect
split (dimensions that an axis does not divide stay replicated and push it above 1). The batch
is ``--per_device_batch`` rows per data-parallel device. CPU compiles make CPU choices
(fusion, layouts), so absolute temp bytes differ on GPU/TPU; the parameter and optimizer bytes
do not depend on the backend.
"""

from __future__ import annotations

from absl import flags


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("size", "150m", ["tiny", "150m", "paper"], "model size", flag_values=fv)
    flags.DEFINE_string("devices", "8,64", "comma-separated device counts", flag_values=fv)
    flags.DEFINE_enum(
        "mesh",
        "fsdp",
        ["fsdp", "data"],
        "fsdp: (1, N / tensor, tensor); data: (N, 1, 1)",
        flag_values=fv,
    )
    flags.DEFINE_integer("tensor", 1, "tensor-parallel size (fsdp mesh)", flag_values=fv)
    flags.DEFINE_integer("per_device_batch", 1, "rows per data-parallel device", flag_values=fv)
    flags.DEFINE_integer("seq", None, "context length (default: the size's)", flag_values=fv)
    flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "compute dtype", flag_values=fv)
    flags.DEFINE_bool("remat", False, "rematerialise each block", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's). Importing
    ``bench.common`` imports jax but starts no backend, so ``force_devices`` still works."""
    from bench import common

    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def force_devices(n: int) -> None:
    """Asks XLA for ``n`` host CPU devices (on the CPU backend unless ``JAX_PLATFORMS`` names
    one); must run before jax initialises its backends, which importing jax does not do."""
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backends started already
        if jax.device_count() >= n:
            return
        raise SystemExit(
            f"jax already started with {jax.device_count()} devices; need {n}"
        ) from None
    if not jax.config.jax_platforms:
        jax.config.update("jax_platforms", "cpu")


def shard_bytes(abstract_tree) -> int:
    """Bytes one device holds of a tree of sharded ``ShapeDtypeStruct``s."""
    import jax
    import numpy as np

    total = 0
    for leaf in jax.tree.leaves(abstract_tree):
        shape = leaf.sharding.shard_shape(leaf.shape)
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def mesh_shape(n: int, kind: str, tensor: int) -> tuple[int, int, int]:
    if kind == "data":
        return (n, 1, 1)
    if n % tensor:
        raise SystemExit(f"--tensor {tensor} does not divide {n} devices")
    return (1, n // tensor, tensor)


def first_devices_mesh(shape):
    """A (data, fsdp, tensor) mesh of ``shape`` over the first prod(shape) devices."""
    import jax
    import numpy as np
    from jax.sharding import AxisType, Mesh

    from lexlm.train import sharding as shd

    devices = np.asarray(jax.devices()[: int(np.prod(shape))]).reshape(shape)
    return Mesh(devices, shd.MESH_AXES, axis_types=(AxisType.Auto,) * len(shd.MESH_AXES))


def model_config(args):
    """(LMConfig, context length) of the named size with the command line's options."""
    from bench import common

    seq = args.seq or common.SIZES[args.size]["seq_len"]
    cfg = common.lm_config(args.size, seq, dtype=args.dtype, attention="xla", remat=args.remat)
    return cfg, seq


def plan(args, n: int) -> dict:
    from bench import common

    shape = mesh_shape(n, args.mesh, args.tensor)
    mesh = first_devices_mesh(shape)
    cfg, seq = model_config(args)
    batch = args.per_device_batch * shape[0] * shape[1]
    step = common.LMStep(cfg, seq, batch, mesh)
    step.compile()
    mem = common.memory_stats(step.compiled)
    params = shard_bytes(step.fns.abstract.params)
    opt = shard_bytes(step.fns.abstract.opt_state)
    return dict(
        devices=n,
        mesh=list(shape),
        batch=batch,
        seq=seq,
        params_per_device=params,
        optimizer_per_device=opt,
        temp_per_device=mem["temp"],
        argument_per_device=mem["argument"],
        output_per_device=mem["output"],
        alias_per_device=mem["alias"],
        compile_s=round(step.compile_s, 1),
    )


def size(n: float) -> str:
    return f"{n / 2**30:.3f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def split_ratio(row: dict, unsharded: int) -> float:
    """(params + optimizer) per device x N / unsharded: 1.0 is a perfect 1/N split."""
    return (row["params_per_device"] + row["optimizer_per_device"]) * row["devices"] / unsharded


def main(argv=None) -> dict:
    args = parse_args(argv)
    counts = [int(x) for x in args.devices.split(",") if x]
    force_devices(max(counts))
    import jax

    from bench import common

    cfg, seq = model_config(args)
    one = first_devices_mesh((1, 1, 1))
    ref = common.LMStep(cfg, seq, 1, one)  # built, not compiled: shapes only
    unsharded = shard_bytes(ref.fns.abstract.params) + shard_bytes(ref.fns.abstract.opt_state)
    print(
        f"memory plan: size={args.size} V={cfg.vocab_size} D={cfg.width} L={cfg.depth} "
        f"H={cfg.heads} T={seq} dtype={cfg.dtype} remat={cfg.remat} mesh={args.mesh} "
        f"(data, fsdp, tensor); {ref.param_count():,} parameters; unsharded params + AdamW "
        f"state {size(unsharded)}; fake {jax.default_backend()} devices"
    )
    print(
        "| devices | mesh | batch | params / device | optimizer / device | temp (activations) "
        "/ device | argument / device | (params + opt) x N / unsharded |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for n in counts:
        row = plan(args, n)
        row["split_ratio"] = round(split_ratio(row, unsharded), 4)
        rows.append(row)
        print(
            f"| {n} | {tuple(row['mesh'])} | {row['batch']} | "
            f"{size(row['params_per_device'])} | "
            f"{size(row['optimizer_per_device'])} | {size(row['temp_per_device'])} | "
            f"{size(row['argument_per_device'])} | {row['split_ratio']:.3f} |"
        )
    record = dict(
        bench="memory",
        size=args.size,
        mesh_kind=args.mesh,
        dtype=args.dtype,
        unsharded_params_optimizer=unsharded,
        rows=rows,
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
