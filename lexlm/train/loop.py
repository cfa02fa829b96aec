"""The one training loop shared by every experiment.

A ``Task`` is what differs between experiments: how to initialise parameters (with logical
partitioning annotations), and a loss ``loss(params, batch, key) -> (scalar, metrics)``. The
loop is the same for language models, classifiers and contrastive encoders: it builds the mesh,
shards parameters by the logical rules, jit-compiles one step (AdamW, warm-up + cosine, clipping),
feeds host batches onto the mesh, logs (tqdm, JSONL, TensorBoard), and checkpoints every N steps
and on SIGTERM. Nothing here imports the data stack: ``batches`` is any iterator of numpy dicts,
optionally with ``get_state``/``set_state`` for exact resumption.

Determinism: the step key is ``fold_in(key(seed), step)``, so a resumed run draws the same
randomness as an uninterrupted one.

Seeds as a batch axis: ``train.seeds = S > 1`` trains S independent copies of the task in one
compiled program, ``jax.vmap`` over the initialisation key, the step key and the data order.
Copy ``s`` draws exactly the randomness of a run with ``train.seed = seed + s`` and
``train.seeds = 1`` (the same parameters to float tolerance: tested). The state's parameters
and optimizer moments then carry a leading axis of S (replicated over the mesh), the batches a
leading axis of S (``lexlm.train.seeds.SeedBatches``), and ``lexlm.train.seeds.seed_params``
takes one copy out for evaluation. Logged metrics are means over the copies, with each copy's
loss as ``loss_seed<s>``; a copy whose loss goes non-finite keeps its old parameters like a
single run, and the run stops at the next log boundary naming the step.

Non-finite loss: the step keeps the old parameters when the loss or gradient norm is not finite
(so no bad state is ever checkpointed), and the host stops the run with a one-line
``TrainingError`` naming the step at the next log or checkpoint boundary.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, no_type_check

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn
from flax import struct

from lexlm import faults
from lexlm.errors import ConfigError, TrainingError
from lexlm.locks import WorkdirLock
from lexlm.paths import as_path
from lexlm.train import sharding as shd
from lexlm.train.checkpoint import Checkpointer
from lexlm.train.metrics_writer import MetricsWriter
from lexlm.train.optim import learning_rate_schedule, make_optimizer

log = logging.getLogger(__name__)

# Steps this process trained and steps it found already trained in checkpoints (resumed),
# over every ``train`` call: the provenance of a findings file says when its wall time
# leaves out training done by an earlier invocation.
STEP_COUNTS = {"trained": 0, "resumed": 0}

LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Task:
    """What an experiment hands the trainer.

    init: key -> parameter tree, leaves may be ``nn.Partitioned`` (logical axis names).
    loss: (params, batch, key) -> (mean loss, metrics). Metrics are scalars; a ``tokens`` entry
      (number of predicted units in the batch) drives the tokens/s figure.
    identity: the config fields that shape the train state, recorded with every checkpoint and
      named when a checkpoint of another state is found (``lexlm.train.checkpoint``).
    """

    init: Callable[[jax.Array], Any]
    loss: LossFn
    name: str = "task"
    identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)


# The annotations describe a live state. jax rebuilds a pytree dataclass through ``__init__``
# after every tree map, with whatever leaves the map made (shardings and ``ShapeDtypeStruct``s in
# ``StateFns``, ``None`` inside jit and orbax), so the runtime checker must not check them.
@no_type_check
class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def default_train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.steps = 200
    c.batch_size = 16  # global batch (all hosts)
    c.lr = 3e-3
    c.warmup_steps = 20
    c.final_lr_fraction = 0.1
    c.b1 = 0.9
    c.b2 = 0.95
    c.weight_decay = 0.1
    c.no_decay = ()  # parameter names exempt from weight decay (besides vectors and scalars)
    c.clip_norm = 1.0
    c.seed = 0
    c.seeds = 1  # S > 1: seeds seed .. seed + S - 1 trained in one program (vmap)
    c.mesh = (-1, 1, 1)  # (data, fsdp, tensor); one -1 is filled from the device count
    c.log_every = 10
    c.ckpt_every = 100
    c.keep = 3
    c.ckpt_async = False
    c.distributed = False  # jax.distributed.initialize() before anything else
    c.coordinator_address = ""  # host:port of process 0 ('' : from the environment)
    c.num_processes = -1  # -1: from the environment
    c.process_id = -1  # -1: from the environment
    c.tensorboard = True
    c.progress = True
    return c


def validate_train_config(cfg, n_devices: int | None = None) -> tuple[int, int, int]:
    """Checks the train section before anything is compiled; returns the mesh shape."""
    n_devices = jax.device_count() if n_devices is None else n_devices
    for field in ("steps", "batch_size", "log_every", "ckpt_every", "keep", "seeds"):
        if int(cfg.get(field, 1)) <= 0:
            raise ConfigError(f"train.{field}", f"must be positive, got {cfg[field]}")
    if not float(cfg.lr) > 0 or not math.isfinite(float(cfg.lr)):
        raise ConfigError("train.lr", f"must be a positive finite number, got {cfg.lr}")
    shape = shd.resolve_mesh_shape(cfg.mesh, n_devices)
    data_parallel = shape[0] * shape[1]
    if int(cfg.batch_size) % data_parallel:
        raise ConfigError(
            "train.batch_size",
            f"{cfg.batch_size} is not divisible by the data-parallel size "
            f"data x fsdp = {shape[0]} x {shape[1]} = {data_parallel}",
        )
    if int(cfg.batch_size) % jax.process_count():
        raise ConfigError(
            "train.batch_size", f"{cfg.batch_size} is not divisible by {jax.process_count()} hosts"
        )
    return shape


def maybe_initialize_distributed(cfg) -> None:
    """``jax.distributed.initialize`` when ``train.distributed``, before anything touches a device.

    Its arguments come from the config (``train.coordinator_address``, ``train.num_processes``,
    ``train.process_id``; empty or -1 means unset), else from the environment. JAX detects TPU
    pods (no arguments needed), SLURM, Open MPI and Kubernetes itself and reads
    ``JAX_COORDINATOR_ADDRESS``; for other clusters lexlm reads ``LEXLM_NUM_PROCESSES`` and
    ``LEXLM_PROCESS_ID``. CPU collectives between processes go through gloo.
    """
    if not cfg.get("distributed", False) or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = str(
        cfg.get("coordinator_address", "") or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    )
    count = int(cfg.get("num_processes", -1))
    count = count if count > 0 else int(os.environ.get("LEXLM_NUM_PROCESSES", -1))
    index = int(cfg.get("process_id", -1))
    index = index if index >= 0 else int(os.environ.get("LEXLM_PROCESS_ID", -1))
    kwargs: dict[str, Any] = {}
    if address:
        kwargs["coordinator_address"] = address
    if count > 0:
        kwargs["num_processes"] = count
    if index >= 0:
        kwargs["process_id"] = index
    jax.distributed.initialize(**kwargs)


@dataclasses.dataclass
class StateFns:
    mesh: jax.sharding.Mesh
    tx: optax.GradientTransformation
    init_state: Callable[[jax.Array], TrainState]
    shardings: TrainState
    abstract: TrainState
    seeds: int = 1


def n_seeds(cfg) -> int:
    """S, the number of seeds trained together (``train.seeds``, 1 when absent)."""
    return int(cfg.get("seeds", 1))


def seed_keys(cfg) -> tuple[jax.Array, jax.Array]:
    """(init keys, step base keys) of a run: each [S] when ``train.seeds`` > 1 (copy s draws
    the keys of ``train.seed = seed + s``), else scalar keys."""
    pairs = [jax.random.split(jax.random.key(int(cfg.seed) + s)) for s in range(n_seeds(cfg))]
    if n_seeds(cfg) == 1:
        return pairs[0][0], pairs[0][1]
    return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])


def _with_seed_axis(sharding: jax.sharding.NamedSharding) -> jax.sharding.NamedSharding:
    """The sharding of a stacked [S, ...] leaf: the seed axis replicated, the rest as before."""
    spec = jax.sharding.PartitionSpec(None, *sharding.spec)
    return jax.sharding.NamedSharding(sharding.mesh, spec)


def build_state(task: Task, cfg, mesh) -> StateFns:
    """Sharded state initialiser, its shardings and abstract shape, without running init.

    With ``train.seeds`` = S > 1 the initialiser takes [S] keys and every parameter and
    optimizer leaf has a leading seed axis."""
    tx = make_optimizer(cfg)
    seeds = n_seeds(cfg)
    with jax.set_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
        boxed = jax.eval_shape(task.init, jax.random.key(0))
        param_shardings = shd.logical_shardings(boxed, mesh)
        if seeds > 1:
            param_shardings = jax.tree.map(_with_seed_axis, param_shardings)

        def init_one(key):
            params = nn.meta.unbox(task.init(key))
            return params, tx.init(params)

        def init_state(key):
            params, opt_state = jax.vmap(init_one)(key) if seeds > 1 else init_one(key)
            params = jax.lax.with_sharding_constraint(params, param_shardings)
            return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)

        example_key = seed_keys(cfg)[0]
        abstract = jax.eval_shape(init_state, example_key)
        # Optimizer moments mirror the parameters; scalars (counts) are replicated.
        opt_shardings = optax.tree_map_params(
            tx,
            lambda _, s: s,
            abstract.opt_state,
            param_shardings,
            transform_non_params=lambda _: shd.replicated(mesh),
        )
        shardings = TrainState(
            step=shd.replicated(mesh), params=param_shardings, opt_state=opt_shardings
        )
        init_jit = jax.jit(init_state, out_shardings=shardings)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    return StateFns(mesh, tx, init_jit, shardings, abstract, seeds)


def make_train_step(task: Task, fns: StateFns):
    mesh, tx = fns.mesh, fns.tx
    batch_sharding = shd.batch_sharding(mesh)
    repl = shd.replicated(mesh)

    seeds = int(getattr(fns, "seeds", 1))
    if seeds > 1:
        batch_sharding = jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(None, *batch_sharding.spec)
        )

    def update_one(params, opt_state, batch, base_key, step):
        key = jax.random.fold_in(base_key, step)
        (loss, metrics), grads = jax.value_and_grad(task.loss, has_aux=True)(params, batch, key)
        grad_norm = optax.global_norm(grads)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
        metrics = {**metrics, "loss": loss, "grad_norm": grad_norm}
        return keep(new_params, params), keep(new_opt_state, opt_state), metrics

    def step_fn(state: TrainState, batch: dict, base_key: jax.Array):
        if seeds > 1:
            update = jax.vmap(update_one, in_axes=(0, 0, 0, 0, None))
            params, opt_state, per_seed = update(
                state.params, state.opt_state, batch, base_key, state.step
            )
            metrics = {k: jnp.mean(v) for k, v in per_seed.items()}
            if "tokens" in per_seed:
                metrics["tokens"] = jnp.sum(per_seed["tokens"])
            metrics.update({f"loss_seed{s}": per_seed["loss"][s] for s in range(seeds)})
        else:
            params, opt_state, metrics = update_one(
                state.params, state.opt_state, batch, base_key, state.step
            )
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    with jax.set_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
        jitted = jax.jit(
            step_fn,
            in_shardings=(fns.shardings, batch_sharding, repl),
            out_shardings=(fns.shardings, repl),
            donate_argnums=(0,),
        )

    def run(state, batch, base_key):
        with jax.set_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
            return jitted(state, batch, base_key)

    run.jitted = jitted
    return run


def put_batch(batch: dict[str, np.ndarray], mesh, seeds: int = 1) -> dict[str, jax.Array]:
    """Per-host numpy batch -> global arrays sharded over data x fsdp (after a leading seed
    axis of ``seeds`` when > 1)."""
    sharding = shd.batch_sharding(mesh)
    if seeds > 1:
        sharding = jax.sharding.NamedSharding(
            mesh, jax.sharding.PartitionSpec(None, *sharding.spec)
        )
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }


class _SigtermFlag:
    """Turns SIGTERM into a flag the loop checks after each step (main thread only).

    Not used on several processes, where JAX's own preemption notifier handles SIGTERM and
    ``reached_preemption`` names the common step to save at."""

    def __init__(self, enabled: bool = True):
        self.set = False
        self.enabled = enabled
        self._previous = None

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    start_step: int
    final_step: int
    stopped_by: str  # 'steps' | 'sigterm'
    history: list[dict]  # logged metric windows


Hook = Callable[[int, TrainState, bool], None]


def _pending(hook: Hook, step: int) -> bool:
    """Whether a checkpoint hook still owes ``step`` its work (say, an evaluation): a run
    killed between a save and its hook owes it, and is paid on the rerun before training on."""
    pending = getattr(hook, "pending", None)
    return bool(pending(step)) if pending is not None else False


def train(
    cfg,
    task: Task,
    batches: Iterator[dict[str, np.ndarray]],
    workdir: str | os.PathLike,
    *,
    hooks: Sequence[Hook] = (),
    resume: bool = True,
) -> TrainResult:
    """Trains ``task`` for ``cfg.steps`` steps (the ``train`` config section).

    Resumes from the newest readable checkpoint in ``workdir/checkpoints`` when ``resume``.
    ``hooks`` run after every step as ``hook(step, state, saved)``; ``saved`` tells whether a
    checkpoint of that step was just written. A hook with a ``pending(step) -> bool`` method
    is also called, with ``saved=True``, for the checkpoint a run resumes from when it says
    that step's work is still owed (the process was killed between the save and the hook).

    One process per workdir: a second one is refused (``lexlm.locks``).
    """
    maybe_initialize_distributed(cfg)
    mesh_shape = validate_train_config(cfg)
    workdir = as_path(workdir)
    with WorkdirLock(workdir):
        return _train(cfg, task, batches, workdir, mesh_shape, hooks, resume)


def _train(cfg, task, batches, workdir, mesh_shape, hooks, resume) -> TrainResult:
    mesh = shd.make_mesh(mesh_shape)
    fns = build_state(task, cfg, mesh)
    step_fn = make_train_step(task, fns)
    ckpt = Checkpointer(
        workdir / "checkpoints",
        keep=int(cfg.keep),
        async_save=bool(cfg.ckpt_async),
        identity_fields=task.identity,
    )
    init_key, base_key = seed_keys(cfg)
    seeds = n_seeds(cfg)

    restored = ckpt.restore(fns.abstract) if resume else None
    if restored is not None:
        state, data_state, start = restored
        if data_state and hasattr(batches, "set_state"):
            batches.set_state(data_state)
        log.info("resumed from step %d in %s", start, ckpt.directory)
        STEP_COUNTS["resumed"] += int(start)
    else:
        with jax.set_mesh(mesh):
            state = fns.init_state(init_key)
        start = 0

    total = int(cfg.steps)
    writer = MetricsWriter(workdir, tensorboard=bool(cfg.tensorboard), resume_step=start)
    schedule = learning_rate_schedule(cfg)
    history: list[dict] = []
    pending: list[tuple[int, dict]] = []
    last_saved = start if restored is not None else None
    window_start = time.perf_counter()
    bar = None
    if cfg.progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc=task.name, dynamic_ncols=True)

    def flush():
        nonlocal window_start
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        steps = [s for s, _ in pending]
        pending.clear()
        for s, m in zip(steps, fetched):
            loss, grad_norm = float(m["loss"]), float(m["grad_norm"])
            if not math.isfinite(grad_norm) and math.isfinite(loss):
                raise TrainingError(f"gradient norm is {grad_norm} at step {s}; stopping")
            if not math.isfinite(loss):
                where = (
                    f"last good checkpoint: step {last_saved}" if last_saved else "no checkpoint"
                )
                raise TrainingError(f"loss is {loss} at step {s}; stopping ({where})")
        elapsed = max(time.perf_counter() - window_start, 1e-9)
        window_start = time.perf_counter()
        mean = {k: float(np.mean([float(m[k]) for m in fetched])) for k in fetched[0]}
        tokens = sum(float(m.get("tokens", 0.0)) for m in fetched)
        mean["tokens_per_s"] = tokens / elapsed
        mean["steps_per_s"] = len(fetched) / elapsed
        mean["lr"] = float(schedule(steps[-1] - 1))
        if hasattr(os, "getloadavg"):  # how busy the machine was: timings under load inflate
            mean["load_1min"] = os.getloadavg()[0]
        record = {"step": steps[-1], **mean}
        history.append(record)
        writer.write(steps[-1], mean)
        if bar is not None:
            bar.set_postfix(loss=f"{mean['loss']:.4f}", tok_s=f"{mean['tokens_per_s']:.0f}")

    stopped_by = "steps"
    step = start
    coordinated = jax.process_count() > 1
    try:
        if restored is not None:
            for hook in hooks:
                if _pending(hook, start):
                    hook(start, state, True)
        with _SigtermFlag(enabled=not coordinated) as sigterm:
            while step < total:
                batch = put_batch(next(batches), mesh, seeds)
                state, metrics = step_fn(state, batch, base_key)
                step += 1
                STEP_COUNTS["trained"] += 1
                pending.append((step, metrics))
                if bar is not None:
                    bar.update(1)
                if step % int(cfg.log_every) == 0:
                    flush()
                faults.point("train_step")
                saved = False
                # Read the flag once: a SIGTERM that arrives later (say, during a hook) is
                # acted on after the next step, which then saves, instead of stopping unsaved.
                # On several processes the preemption notice goes through JAX's coordination
                # service: every host stops and saves at the same agreed step.
                stop = ckpt.reached_preemption(step) if coordinated else sigterm.set
                if step % int(cfg.ckpt_every) == 0 or step == total or stop:
                    flush()  # never checkpoint past a non-finite loss
                    data_state = batches.get_state() if hasattr(batches, "get_state") else None
                    ckpt.save(step, state, data_state)
                    ckpt.wait()
                    last_saved, saved = step, True
                    faults.point("checkpoint")
                for hook in hooks:
                    hook(step, state, saved)
                if stop:
                    stopped_by = "sigterm"
                    log.warning("SIGTERM: saved a checkpoint at step %d and stopped", step)
                    break
            flush()
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        ckpt.close()
    return TrainResult(state, start, step, stopped_by, history)
