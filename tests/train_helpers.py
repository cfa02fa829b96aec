"""Shared pieces for the trainer and checkpoint tests, and a subprocess entry point.

The device count is fixed when jax starts, so runs on 8 host devices (and runs that are killed
on purpose) happen in a child process started by ``run_helper``::

    python tests/train_helpers.py train --workdir W --mesh 2,2,2 --steps 8 --out W/r.npz \\
        --and restore --workdir V --mesh 2,2,2 --out V/r.npz

Several jobs joined by ``--and`` share one process (one jax start-up). ``train`` trains the tiny
LM on ``PatternBatches`` (``--kill-at-step N`` SIGKILLs the process right after the checkpoint
of step N is written; ``--print-steps``/``--hook-sleep`` print each finished step and then
sleep inside the hook, for the SIGTERM test); ``restore`` restores the newest checkpoint of a
workdir onto the current mesh. Both write the parameters as ``.npz`` and a ``.json`` summary
(result, and for ``restore`` each leaf's sharding).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VOCAB = 40
SEQ = 16
BATCH = 8
N = 4  # checkpoint interval of the reference run; it trains 2N steps
REPO = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve()
# Runs on 8 host devices compile with LLVM optimisation off: it halves their compile time and
# changes nothing about partitioning (they are compared with the 1-device runs to 1e-5 only).
EIGHT_DEVICE_XLA_FLAGS = "--xla_backend_optimization_level=0"
_CACHE_ENV = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}
_cache_dir: str | None = None


@contextlib.contextmanager
def unoptimised_xla():
    """XLA with most optimisations off: compiling is nearly all of a toy run's time, and these
    tiny programs then compile 2-3x faster and compute the same numbers (to float
    rounding). The executables compiled meanwhile are dropped after, so no other test runs
    them (the persistent cache keys them apart by their compile options)."""
    import jax

    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()


@contextlib.contextmanager
def compilation_cache(directory):
    """Persistent compilation cache in ``directory`` for this process and the children started
    by ``run_helper``, so the many runs of the same tiny program compile once. The previous
    settings come back on exit."""
    global _cache_dir
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    previous = {n: getattr(jax.config, n) for n in names}
    previous_dir = _cache_dir
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    cc.reset_cache()
    _cache_dir = str(directory)
    try:
        yield
    finally:
        for n, v in previous.items():
            jax.config.update(n, v)
        cc.reset_cache()
        _cache_dir = previous_dir


class PatternBatches:
    """Deterministic batches of repeated random patterns (learnable by in-context copying).

    Batch ``i`` depends only on (seed, i), so ``get_state``/``set_state`` (the index of the next
    batch) make a resumed iterator continue on exactly the batches an uninterrupted one sees.
    ``nan_at``: 0-based index of a batch whose mask is NaN, so that its loss is NaN (same fields
    and dtypes as every other batch, so the compiled step is the reference one).
    """

    def __init__(
        self, batch_size: int = BATCH, seq_len: int = SEQ, seed: int = 0, nan_at=None, rows=None
    ):
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.nan_at = nan_at
        self.rows = rows  # (start, stop): this process's rows of every global batch
        self.index = 0

    def __iter__(self):
        return self

    def batch(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        rows = []
        for _ in range(self.batch_size):
            period = int(rng.integers(2, 6))
            pattern = rng.integers(0, VOCAB, size=period)
            rows.append(np.resize(pattern, self.seq_len + 1))
        seqs = np.stack(rows).astype(np.int32)
        out = {
            "inputs": seqs[:, :-1],
            "targets": seqs[:, 1:],
            "mask": np.ones((self.batch_size, self.seq_len), np.float32),
        }
        if index == self.nan_at:
            out["mask"][:] = np.nan
        return out

    def __next__(self):
        out = self.batch(self.index)
        self.index += 1
        if self.rows is not None:
            out = {k: v[self.rows[0] : self.rows[1]] for k, v in out.items()}
        return out

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])


def lm_config(embedding: str = "learned"):
    from lexlm.nn.transformer import LMConfig

    return LMConfig(vocab_size=VOCAB, width=32, depth=2, heads=4, max_len=SEQ, embedding=embedding)


def tiny_task(embedding: str = "learned"):
    from lexlm.train import make_lm_task

    return make_lm_task(lm_config(embedding), SEQ)


def train_config(**overrides):
    from lexlm.train import default_train_config

    cfg = default_train_config()
    cfg.steps = 2 * N
    cfg.batch_size = BATCH
    cfg.lr = 1e-2
    cfg.warmup_steps = 2
    cfg.mesh = (-1, 1, 1)
    cfg.log_every = 1
    cfg.ckpt_every = N
    cfg.progress = False
    cfg.tensorboard = False
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def read_metrics(workdir) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(workdir) -> list[float]:
    """Per-step losses of a log_every=1 run, checking every step appears once and in order."""
    records = read_metrics(workdir)
    steps = [r["step"] for r in records]
    assert steps == list(range(1, len(steps) + 1)), steps
    return [r["loss"] for r in records]


def flat(tree) -> dict[str, np.ndarray]:
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}


def load_npz(path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_trees_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), f"{k} differs"


def checkpoint_steps(workdir) -> list[int]:
    from lexlm.train import Checkpointer

    ckpt = Checkpointer(Path(workdir) / "checkpoints")
    try:
        return ckpt.all_steps()
    finally:
        ckpt.close()


def state_fns(embedding: str = "learned", mesh=(-1, 1, 1)):
    from lexlm.train import build_state, make_mesh

    cfg = train_config(mesh=mesh)
    return build_state(tiny_task(embedding), cfg, make_mesh(mesh))


def restore(workdir, embedding: str = "learned", mesh=(-1, 1, 1), step=None):
    """(state, data_state, step, fns) of a checkpoint restored onto ``mesh`` of this process."""
    from lexlm.train import Checkpointer

    fns = state_fns(embedding, mesh)
    ckpt = Checkpointer(Path(workdir) / "checkpoints")
    try:
        state, data_state, restored_step = ckpt.restore(fns.abstract, step=step)
    finally:
        ckpt.close()
    return state, data_state, restored_step, fns


def sharding_report(tree, expected_shardings) -> dict:
    import jax

    out = {}
    arrays = jax.tree_util.tree_flatten_with_path(tree)[0]
    expected = jax.tree.leaves(expected_shardings)
    for (path, arr), want in zip(arrays, expected, strict=True):
        shard = arr.addressable_shards[0].data
        out[jax.tree_util.keystr(path)] = {
            "devices": len(arr.sharding.device_set),
            "mesh": dict(arr.sharding.mesh.shape),
            "spec": str(arr.sharding.spec),
            "expected_spec": str(want.spec),
            "same_as_expected": bool(arr.sharding.is_equivalent_to(want, arr.ndim)),
            "global_shape": list(arr.shape),
            "shard_shape": list(shard.shape),
        }
    return out


def device_env(devices: int) -> dict[str, str]:
    """The environment of a child jax process with ``devices`` host (CPU) devices."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if devices > 1:
        env["XLA_FLAGS"] = (
            f"--xla_force_host_platform_device_count={devices} {EIGHT_DEVICE_XLA_FLAGS}"
        )
    if _cache_dir is not None:
        env.update(_CACHE_ENV, JAX_COMPILATION_CACHE_DIR=_cache_dir)
    return env


def run_script(script: str, path, args: list[str], devices: int = 8, timeout: float = 300):
    """Writes ``script`` to ``path``, runs it with ``devices`` host devices and returns its
    ``KEY value`` stdout lines as a dict (asserting that it exited cleanly)."""
    Path(path).write_text(script)
    out = subprocess.run(
        [sys.executable, str(path), *args], cwd=REPO, env=device_env(devices),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)


def run_helper(jobs: list[list[str]], devices: int = 1, timeout: float = 240, **popen):
    """Runs the entry point of this file with ``devices`` host devices; returns the process
    (``subprocess.Popen`` if ``popen`` is given, else the finished ``CompletedProcess``)."""
    argv = [sys.executable, str(HELPER)]
    for i, job in enumerate(jobs):
        argv += (["--and"] if i else []) + job
    env = device_env(devices)
    if popen:
        return subprocess.Popen(argv, env=env, cwd=REPO, text=True, **popen)
    return subprocess.run(argv, env=env, cwd=REPO, text=True, capture_output=True, timeout=timeout)


def parse_result(stdout: str) -> list[dict]:
    return [json.loads(line[len("RESULT ") :]) for line in stdout.splitlines() if "RESULT " in line]


@functools.cache
def reference_run(base: str):
    """The reference run (2N steps, checkpoints at N and 2N, log_every=1) in this process, once
    per base directory. Returns (workdir, flat final state). Tests must not modify it."""
    from lexlm.train import train

    workdir = Path(base) / "reference"
    result = train(train_config(), tiny_task(), PatternBatches(), workdir)
    assert result.final_step == 2 * N and result.stopped_by == "steps"
    return workdir, flat(result.state)


class Child:
    """A child started by ``run_helper`` in the background (output in files, never a full pipe);
    ``wait`` checks it succeeded and returns its directory."""

    def __init__(self, jobs: list[list[str]], root: Path, devices: int):
        self.root, self.n_jobs = root, len(jobs)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "stdout.txt", "w") as out, open(root / "stderr.txt", "w") as err:
            self.proc = run_helper(jobs, devices=devices, stdout=out, stderr=err)
        atexit.register(self.proc.kill)  # if the session ends without waiting

    def wait(self, timeout: float = 400) -> Path:
        try:
            returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        stderr = (self.root / "stderr.txt").read_text()
        assert returncode == 0, stderr[-3000:]
        results = parse_result((self.root / "stdout.txt").read_text())
        assert len(results) == self.n_jobs, stderr[-3000:]
        return self.root


@functools.cache
def eight_device_runs(base: str, reference_workdir: str) -> Child:
    """Starts (once) a child with 8 host devices that trains the reference configuration on
    meshes (8,1,1) and (2,2,2) (learned) and (2,2,2) (lexinvariant), then restores the 1-device
    reference checkpoint onto (2,2,2). ``.wait()`` returns the directory with the run workdirs."""
    root = Path(base) / "eight_devices"
    jobs = [
        ["train", "--workdir", str(root / "learned_8,1,1"), "--mesh", "8,1,1"],
        ["train", "--workdir", str(root / "learned_2,2,2"), "--mesh", "2,2,2"],
        [
            "train",
            *("--workdir", str(root / "lexinvariant_2,2,2"), "--mesh", "2,2,2"),
            *("--embedding", "lexinvariant"),
        ],
        [
            "restore",
            *("--workdir", reference_workdir, "--mesh", "2,2,2"),
            *("--out", str(root / "reference_on_2,2,2.npz")),
        ],
    ]
    return Child(jobs, root, devices=8)


# ---------------------------------------------------------------------------------------------
# entry point


def _mesh(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(","))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_helpers")
    p.add_argument("command", choices=("train", "restore", "lm", "lm-eval"))
    p.add_argument("--workdir", required=True)
    p.add_argument("--mesh", type=_mesh, default=(-1, 1, 1))
    p.add_argument("--steps", type=int, default=2 * N)
    p.add_argument("--embedding", default="learned")
    p.add_argument("--ckpt-every", type=int, default=N)
    p.add_argument("--kill-at-step", type=int, default=None)
    p.add_argument("--print-steps", action="store_true")
    p.add_argument("--hook-sleep", type=float, default=0.0)
    p.add_argument("--out", default=None)
    p.add_argument("--data", default=None, help="lm: a text file to train on")
    p.add_argument("--coordinator", default="", help="train: jax.distributed coordinator")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument(
        "--kill-during-save",
        type=int,
        default=None,
        help="SIGKILL while the checkpoint of this step is written, before orbax commits it",
    )
    return p


def lm_files_config(data_file: str, steps: int, ckpt_every: int):
    """The tiny LM config on one text file (the real grain pipeline), log_every=1."""
    from lexlm.proj.lm.config import get_config

    cfg = get_config("tiny")
    cfg.data.update(source="files", files=(data_file,), doc_split="line")
    cfg.seq_len = SEQ
    cfg.model.update(width=32, depth=1, heads=2)
    cfg.train.update(
        steps=steps, batch_size=BATCH, ckpt_every=ckpt_every, log_every=1, warmup_steps=2
    )
    cfg.train.update(tensorboard=False, progress=False)
    cfg.eval.batch_size = BATCH
    return cfg


def _kill_during_save(step: int) -> None:
    """Patches orbax so that committing the checkpoint of ``step`` SIGKILLs this process: its
    files are written to orbax's temporary directory, which is never finalised."""
    from orbax.checkpoint._src.path import atomicity

    for cls in (atomicity.AtomicRenameTemporaryPath, atomicity.CommitFileTemporaryPath):
        original = cls.finalize

        async def finalize(self, *args, _original=original, **kwargs):
            if str(self.get_final()).rstrip("/").endswith(f"/{step}"):
                os.kill(os.getpid(), signal.SIGKILL)
            return await _original(self, *args, **kwargs)

        cls.finalize = finalize


def _lm_eval_job(args) -> None:
    """Evaluates an LM run on all devices of this process; reports how batches were split."""
    import jax

    from lexlm.eval import global_batch
    from lexlm.proj.lm.evaluate import eval_windows, metrics_of, nll_function
    from lexlm.proj.lm.run import restore_lm

    model, params, tok, cfg, step = restore_lm(args.workdir)
    fn = nll_function(model, params)
    windows = eval_windows(cfg, tok, "validation")
    bs = int(cfg.eval.batch_size)
    batch = global_batch({k: windows[k][:bs] for k in ("inputs", "targets", "mask")}, fn.mesh)
    nll = fn(batch, jax.random.key(0))
    rows = sorted(int(s.data.shape[0]) for s in nll.addressable_shards)
    # computed here, not read from the run's saved evaluations (those are the 1-device ones)
    m = metrics_of(model, params, windows, cfg, 1, step, "validation")
    summary = {
        "devices": jax.device_count(),
        "batch_size": bs,
        "shard_rows": rows,
        "loss": m["loss"],
        "loss_by_position": m["loss_by_position"],
    }
    Path(args.out).write_text(json.dumps(summary))
    print("RESULT " + json.dumps({"devices": jax.device_count()}), flush=True)


def _lm_job(args, hooks) -> None:
    from lexlm.proj.lm.run import train_run

    if args.kill_during_save is not None:
        _kill_during_save(args.kill_during_save)
    cfg = lm_files_config(args.data, args.steps, args.ckpt_every)
    result = train_run(cfg, args.workdir, hooks=hooks)
    summary = {"start_step": result.start_step, "final_step": result.final_step}
    print("RESULT " + json.dumps(summary), flush=True)


def _job(args) -> None:
    from lexlm.train import train

    out = Path(args.out) if args.out else Path(args.workdir) / f"{args.command}.npz"
    if args.command == "restore":
        state, data_state, step, fns = restore(args.workdir, args.embedding, args.mesh)
        np.savez(out, **flat(state.params))
        report = sharding_report(state.params, fns.shardings.params)
        summary = {"step": step, "data_state": data_state, "sharding": report}
        out.with_suffix(".json").write_text(json.dumps(summary))
        print("RESULT " + json.dumps({"step": step}), flush=True)
        return

    hooks = []
    if args.kill_at_step is not None:

        def kill(step, state, saved):
            # train: right after the checkpoint of the step; lm: at any step (between saves)
            if step == args.kill_at_step and (saved or args.command == "lm"):
                os.kill(os.getpid(), signal.SIGKILL)

        hooks.append(kill)
    if args.print_steps:

        def report_step(step, state, saved):
            print(f"STEP {step} saved={saved}", flush=True)
            time.sleep(args.hook_sleep)

        hooks.append(report_step)
    if args.command == "lm":
        _lm_job(args, hooks)
        return
    if args.command == "lm-eval":
        _lm_eval_job(args)
        return
    cfg = train_config(mesh=args.mesh, steps=args.steps, ckpt_every=args.ckpt_every)
    batches = PatternBatches()
    if args.coordinator:  # one of several processes: its share of every global batch
        cfg.update(
            distributed=True,
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
        per_process = BATCH // args.num_processes
        batches.rows = (args.process_id * per_process, (args.process_id + 1) * per_process)
    result = train(cfg, tiny_task(args.embedding), batches, args.workdir, hooks=hooks)
    import jax

    params = flat(result.state.params)  # replicated over the mesh: every process has them
    if jax.process_index() == 0:
        np.savez(out, **params)
    summary = {
        "start_step": result.start_step,
        "final_step": result.final_step,
        "stopped_by": result.stopped_by,
        "devices": len(result.state.step.sharding.device_set),
    }
    out.with_suffix(".json").write_text(json.dumps(summary))
    print("RESULT " + json.dumps(summary), flush=True)


def main(argv: list[str]) -> None:
    jobs, current = [], []
    for token in argv:
        if token == "--and":
            jobs.append(current)
            current = []
        else:
            current.append(token)
    jobs.append(current)
    parser = _parser()
    for job in jobs:
        _job(parser.parse_args(job))


if __name__ == "__main__":
    main(sys.argv[1:])
