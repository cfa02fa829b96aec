"""Restore parameters from a run's checkpoint into the current mesh, without retraining."""

from __future__ import annotations

import os

import jax

from lexlm.errors import CheckpointError
from lexlm.paths import as_path
from lexlm.train import sharding as shd
from lexlm.train.checkpoint import Checkpointer
from lexlm.train.loop import Task, build_state


def restore_params(
    task: Task,
    train_cfg,
    workdir: str | os.PathLike,
    step: int | None = None,
    mesh_shape=(-1, 1, 1),
    seed: int | None = None,
):
    """Returns (params, step, mesh) from ``workdir/checkpoints`` (latest readable or ``step``).

    A run trained with ``train.seeds`` = S > 1 holds S copies: ``seed`` (0 .. S - 1) picks one;
    ``None`` returns the stacked tree.

    The abstract state is built from the task and the run's train config, so the arrays land
    in the shardings of the mesh this process builds now, whatever mesh wrote them.
    """
    mesh = shd.make_mesh(shd.resolve_mesh_shape(mesh_shape, jax.device_count(), "eval.mesh"))
    fns = build_state(task, train_cfg, mesh)
    ckpt = Checkpointer(
        as_path(workdir) / "checkpoints", keep=int(train_cfg.keep), identity_fields=task.identity
    )
    try:
        restored = ckpt.restore(fns.abstract, step=step)
    finally:
        ckpt.close()
    if restored is None:
        raise CheckpointError(f"no checkpoint in {ckpt.directory}")
    state, _, restored_step = restored
    params = state.params
    seeds = int(train_cfg.get("seeds", 1))
    if seed is not None:
        from lexlm.train.seeds import seed_params

        params = seed_params(params, seed, seeds)
    return params, restored_step, mesh
