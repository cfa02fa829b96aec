"""Device mesh and the one table of logical-axis rules.

Parameters and activations are annotated with logical names in ``lexlm.nn``; this table maps
them onto the mesh axes ``('data', 'fsdp', 'tensor')``: the batch over data x fsdp, parameters
over fsdp (their ``embed`` dimension) and tensor (heads, MLP hidden, vocabulary).
"""

from __future__ import annotations

import math

import jax
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lexlm.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
)


def resolve_mesh_shape(shape, n_devices: int, field: str = "train.mesh") -> tuple[int, ...]:
    """Fills one -1 entry and checks the product equals the device count."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(MESH_AXES):
        raise ConfigError(field, f"needs {len(MESH_AXES)} entries {MESH_AXES}, got {shape}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ConfigError(field, f"entries must be positive, with at most one -1: {shape}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if n_devices % known:
            raise ConfigError(field, f"{shape} does not divide the {n_devices} devices")
        shape = tuple(n_devices // known if s == -1 else s for s in shape)
    if math.prod(shape) != n_devices:
        raise ConfigError(
            field, f"{shape} needs {math.prod(shape)} devices but {n_devices} are present"
        )
    return shape


def num_slices(devices=None) -> int:
    """How many TPU slices (multi-slice / DCN-connected groups) the devices span."""
    devices = jax.devices() if devices is None else devices
    return len({getattr(d, "slice_index", 0) for d in devices})


def make_mesh(shape) -> Mesh:
    """A (data, fsdp, tensor) mesh with Auto axis types (GSPMD propagation) on all devices.

    Devices are laid out by ``jax.make_mesh``, which follows the physical topology (TPU torus,
    NVLink islands), so the fsdp and tensor axes land on the fastest links. On several TPU
    slices the data axis spans the slices (``create_hybrid_device_mesh``: data over the
    data-centre network, everything else inside a slice); ``data`` must then divide by the
    number of slices.
    """
    shape = resolve_mesh_shape(shape, jax.device_count())
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    slices = num_slices()
    if slices > 1:
        from jax.experimental import mesh_utils

        if shape[0] % slices:
            raise ConfigError(
                "train.mesh", f"data axis {shape[0]} does not divide over {slices} slices"
            )
        devices = mesh_utils.create_hybrid_device_mesh(
            (shape[0] // slices, shape[1], shape[2]), (slices, 1, 1), jax.devices()
        )
        return Mesh(devices, MESH_AXES, axis_types=axis_types)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _fit_spec(spec: PartitionSpec, shape, mesh: Mesh) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide (small dims stay replicated)."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is None:
            fitted.append(None)
            continue
        names = (axes,) if isinstance(axes, str) else tuple(axes)
        keep = tuple(a for a in names if mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in keep)
        fitted.append((keep if len(keep) > 1 else keep[0]) if keep and dim % size == 0 else None)
    return PartitionSpec(*fitted)


def logical_shardings(abstract_boxed_tree, mesh: Mesh, rules=LOGICAL_RULES):
    """NamedShardings for a tree of (possibly ``nn.Partitioned``-boxed) abstract arrays."""
    specs = nn.get_partition_spec(abstract_boxed_tree)
    mesh_specs = nn.logical_to_mesh(specs, rules)
    shapes = jax.tree.map(
        lambda x: x.value if isinstance(x, nn.meta.AxisMetadata) else x,
        abstract_boxed_tree,
        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata),
    )
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, _fit_spec(spec, x.shape, mesh)),
        mesh_specs,
        shapes,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )
