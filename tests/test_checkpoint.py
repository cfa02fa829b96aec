"""Checkpoints: restoring across device counts onto the current mesh, falling back past a
corrupt latest checkpoint, and refusing to start over when none can be read."""

from __future__ import annotations

import json
import logging
import shutil
import signal

import jax
import pytest
import train_helpers as th

from lexlm.errors import CheckpointError
from lexlm.train import Checkpointer, train

N = th.N
MESH_222 = {"data": 2, "fsdp": 2, "tensor": 2}
LOGGER = "lexlm.train.checkpoint"
# After a failed read, orbax/tensorstore leave callbacks for a closed asyncio loop behind;
# Python reports them (whenever they are collected, often during a later test) as unraisable
# exceptions. They come from orbax, not from lexlm.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.usefixtures("compile_once"),
]


@pytest.fixture(scope="module")
def eight_devices(eight_device_runs):
    return eight_device_runs.wait()


def corrupt(step_dir):
    """Truncates every array data file of a checkpoint's ``state`` item."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def test_checkpoint_from_8_devices_restores_on_1(eight_devices):
    assert jax.device_count() == 1
    run_dir = eight_devices / "learned_2,2,2"
    saved = th.load_npz(run_dir / "train.npz")  # final params, as trained on (2,2,2)
    state, data_state, step, fns = th.restore(run_dir)
    assert step == 2 * N and data_state == {"index": 2 * N}
    th.assert_trees_equal(th.flat(state.params), saved)
    for arr, want in zip(jax.tree.leaves(state), jax.tree.leaves(fns.shardings), strict=True):
        assert arr.sharding.mesh == fns.mesh
        assert len(arr.sharding.device_set) == 1
        assert arr.sharding.is_equivalent_to(want, arr.ndim)


def test_checkpoint_from_1_device_restores_on_8(reference, eight_devices):
    _, ref_state = reference
    ref_params = {k: v for k, v in ref_state.items() if k.startswith(".params")}
    restored = th.load_npz(eight_devices / "reference_on_2,2,2.npz")
    th.assert_trees_equal({".params" + k: v for k, v in restored.items()}, ref_params)

    summary = json.loads((eight_devices / "reference_on_2,2,2.json").read_text())
    assert summary["step"] == 2 * N and summary["data_state"] == {"index": 2 * N}
    report = summary["sharding"]
    assert report.keys() == restored.keys()
    for name, leaf in report.items():
        assert leaf["devices"] == 8 and leaf["mesh"] == MESH_222, name
        assert leaf["same_as_expected"], (name, leaf)
    # Parameters really are split over the current mesh: the [V, D] table over tensor x fsdp,
    # the MLP kernels over fsdp (embed) x tensor (mlp).
    for name in ("['embedding']", "['block_0']['mlp_in']['kernel']"):
        leaf = report[name]
        assert leaf["global_shape"] == [s * 2 for s in leaf["shard_shape"]], (name, leaf)
    sharded = [n for n, leaf in report.items() if leaf["shard_shape"] != leaf["global_shape"]]
    assert len(sharded) >= len(report) // 2, sharded


def test_corrupt_latest_checkpoint_falls_back_to_previous(reference, tmp_path, caplog):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    corrupt(workdir / "checkpoints" / str(2 * N))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        state, data_state, step, _ = th.restore(workdir)
    assert step == N and data_state == {"index": N}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"step {2 * N}" in w for w in warnings), warnings
    assert th.checkpoint_steps(workdir) == [N]
    assert (workdir / "corrupt_checkpoints" / str(2 * N) / "state").is_dir()
    expected, _, _, _ = th.restore(ref_dir, step=N)
    th.assert_trees_equal(th.flat(state), th.flat(expected))


def test_resumed_train_skips_corrupt_latest_checkpoint(reference, tmp_path, caplog):
    ref_dir, ref_state = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    corrupt(workdir / "checkpoints" / str(2 * N))

    batches = th.PatternBatches()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        result = train(th.train_config(), th.tiny_task(), batches, workdir)
    assert any(f"step {2 * N}" in r.getMessage() for r in caplog.records)
    assert (result.start_step, result.final_step) == (N, 2 * N)
    assert (workdir / "corrupt_checkpoints" / str(2 * N)).is_dir()
    assert th.checkpoint_steps(workdir) == [N, 2 * N]
    # the redone steps replace the stale log lines (each step once) and match the original
    # run exactly, and so does the final state
    assert [r["step"] for r in th.read_metrics(workdir)] == list(range(1, 2 * N + 1))
    assert th.losses(workdir) == th.losses(ref_dir)
    th.assert_trees_equal(th.flat(result.state), ref_state)


def test_all_checkpoints_corrupt_raises_instead_of_starting_over(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    for step in (N, 2 * N):
        corrupt(workdir / "checkpoints" / str(step))

    with pytest.raises(CheckpointError) as excinfo:
        th.restore(workdir)
    assert "\n" not in str(excinfo.value)
    assert sorted(p.name for p in (workdir / "corrupt_checkpoints").iterdir()) == sorted(
        [str(N), str(2 * N)]
    )

    # A rerun (say, the scheduler restarting the job) must not silently train from scratch
    # either, even though the unreadable checkpoints are now out of the way.
    metrics_before = (workdir / "metrics.jsonl").read_text()
    batches = th.PatternBatches()
    with pytest.raises(CheckpointError):
        train(th.train_config(), th.tiny_task(), batches, workdir)
    assert batches.index == 0
    assert th.checkpoint_steps(workdir) == []
    assert (workdir / "metrics.jsonl").read_text() == metrics_before


def test_all_checkpoints_corrupt_train_raises(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    for step in (N, 2 * N):
        corrupt(workdir / "checkpoints" / str(step))
    batches = th.PatternBatches()
    with pytest.raises(CheckpointError):
        train(th.train_config(), th.tiny_task(), batches, workdir)
    assert batches.index == 0
    assert th.checkpoint_steps(workdir) == []
    assert len(th.read_metrics(workdir)) == 2 * N  # nothing appended


def test_missing_step_raises(reference):
    ref_dir, _ = reference
    with pytest.raises(CheckpointError, match=r"\bstep 5\b") as excinfo:
        th.restore(ref_dir, step=5)
    assert "\n" not in str(excinfo.value)
    _, data_state, step, _ = th.restore(ref_dir, step=N)  # an existing older step is fine
    assert step == N and data_state == {"index": N}


# --- identity: a checkpoint of another config is never treated as damage -------------------


def lm_task_with(**overrides):
    import dataclasses

    from lexlm.train import make_lm_task

    return make_lm_task(dataclasses.replace(th.lm_config(), **overrides), th.SEQ)


def restore_with(workdir, task, **kwargs):
    from lexlm.train import Checkpointer, build_state, make_mesh

    fns = build_state(task, th.train_config(), make_mesh((-1, 1, 1)))
    ckpt = Checkpointer(workdir / "checkpoints", identity_fields=task.identity, **kwargs)
    try:
        return ckpt.restore(fns.abstract)
    finally:
        ckpt.close()


def test_checkpoint_of_another_config_stops_naming_fields_and_moves_nothing(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    metrics_before = (workdir / "metrics.jsonl").read_text()

    with pytest.raises(CheckpointError) as excinfo:
        restore_with(workdir, lm_task_with(depth=3, width=48))
    message = str(excinfo.value)
    assert "\n" not in message
    assert "model.depth 2 -> 3" in message and "model.width 32 -> 48" in message, message
    assert "nothing was moved" in message
    # the same through the trainer: it stops before reading a batch or touching a file
    batches = th.PatternBatches()
    with pytest.raises(CheckpointError, match=r"model\.depth 2 -> 3"):
        train(th.train_config(), lm_task_with(depth=3), batches, workdir)
    assert batches.index == 0
    assert th.checkpoint_steps(workdir) == [N, 2 * N]
    assert not (workdir / "corrupt_checkpoints").exists()
    assert (workdir / "metrics.jsonl").read_text() == metrics_before
    # the original config still resumes from the untouched latest step
    _, _, step = restore_with(workdir, th.tiny_task())
    assert step == 2 * N


def test_runtime_only_fields_resume_the_same_state(reference, tmp_path):
    ref_dir, _ = reference
    state, _, step = restore_with(ref_dir, lm_task_with(vocab_chunk=16, qkv_std=0.5))
    assert step == 2 * N
    expected, _, _, _ = th.restore(ref_dir)
    th.assert_trees_equal(th.flat(state), th.flat(expected))


def test_identity_mismatch_without_named_fields_names_the_leaves(reference, tmp_path):
    from lexlm.train import checkpoint as ck

    saved = ck.identity_record({"w": jax.ShapeDtypeStruct((2, 3), "float32")}, {"a": 1})
    current = ck.identity_record({"w": jax.ShapeDtypeStruct((2, 4), "float32")}, {"a": 1})
    assert saved["fingerprint"] != current["fingerprint"]
    assert ck.describe_mismatch(saved, current) == "['w'] (2, 3) float32 -> (2, 4) float32"
    renamed = ck.identity_record({"v": jax.ShapeDtypeStruct((2, 3), "float32")}, {"a": 1})
    assert ck.describe_mismatch(saved, renamed) == (
        "['v'] <absent> -> (2, 3) float32, ['w'] (2, 3) float32 -> <absent>"
    )
    same = ck.identity_record({"w": jax.ShapeDtypeStruct((2, 3), "float32")}, {"a": 2})
    assert same["fingerprint"] == saved["fingerprint"]  # fields name, leaves decide


def test_damaged_identity_record_counts_as_corrupt(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    files = [
        p for p in (workdir / "checkpoints" / str(2 * N) / "identity").rglob("*") if p.is_file()
    ]
    assert files
    for p in files:
        p.write_text("{not json")
    _, data_state, step = restore_with(workdir, th.tiny_task())
    assert step == N and data_state == {"index": N}
    assert (workdir / "corrupt_checkpoints" / str(2 * N)).is_dir()


def test_damaged_state_metadata_counts_as_corrupt(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    metadata = workdir / "checkpoints" / str(2 * N) / "state" / "_METADATA"
    assert metadata.is_file()
    metadata.write_bytes(metadata.read_bytes()[:40])
    _, _, step = restore_with(workdir, th.tiny_task())
    assert step == N
    assert (workdir / "corrupt_checkpoints" / str(2 * N)).is_dir()


def test_step_without_identity_record(reference, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    shutil.rmtree(workdir / "checkpoints" / str(2 * N) / "identity")
    _, _, step = restore_with(workdir, th.tiny_task())  # it fits: restored
    assert step == 2 * N
    with pytest.raises(CheckpointError, match="no identity record") as excinfo:
        restore_with(workdir, lm_task_with(depth=3))
    assert "\n" not in str(excinfo.value)
    assert th.checkpoint_steps(workdir) == [N, 2 * N]
    assert not (workdir / "corrupt_checkpoints").exists()


class FlakyRestore:
    """Makes orbax's restore raise a storage error ``failures`` times, then work."""

    def __init__(self, monkeypatch, failures: int, error: Exception):
        import orbax.checkpoint as ocp

        self.calls, self.failures, self.error = 0, failures, error
        original = ocp.CheckpointManager.restore

        def restore(manager, step, *args, **kwargs):
            self.calls += 1
            if self.calls <= self.failures:
                raise self.error
            return original(manager, step, *args, **kwargs)

        monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(104, "Connection reset by peer"),
        ValueError("UNAVAILABLE: GCS backend temporarily unavailable"),
    ],
)
def test_transient_storage_error_is_retried_not_quarantined(reference, monkeypatch, error, caplog):
    ref_dir, _ = reference
    flaky = FlakyRestore(monkeypatch, failures=2, error=error)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _, _, step = restore_with(ref_dir, th.tiny_task(), backoff_s=0.0)
    assert step == 2 * N and flaky.calls == 4  # identity: 2 failures + 1; state: 1
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    assert not (ref_dir.parent / "corrupt_checkpoints").exists()


def test_storage_that_stays_down_stops_without_moving_anything(reference, monkeypatch, tmp_path):
    ref_dir, _ = reference
    workdir = tmp_path / "run"
    shutil.copytree(ref_dir, workdir)
    FlakyRestore(monkeypatch, failures=100, error=TimeoutError("read timed out"))
    with pytest.raises(CheckpointError, match="storage error after 3 tries") as excinfo:
        restore_with(workdir, th.tiny_task(), retries=2, backoff_s=0.0)
    assert "\n" not in str(excinfo.value)
    assert th.checkpoint_steps(workdir) == [N, 2 * N]
    assert not (workdir / "corrupt_checkpoints").exists()


def test_is_transient_follows_the_cause_chain():
    from lexlm.train.checkpoint import is_transient

    try:
        try:
            raise ConnectionError("dropped")
        except ConnectionError as inner:
            raise ValueError("while reading array") from inner
    except ValueError as outer:
        assert is_transient(outer)
    assert not is_transient(ValueError("DATA_LOSS: truncated file"))
    assert not is_transient(FileNotFoundError(2, "No such file"))


# --- processes killed during and between saves, resumed through the real grain pipeline ------

LINES = [
    "It was the best of times, it was the worst of times.",
    "The quick brown fox jumps over the lazy dog, twice.",
    "Colourless green ideas sleep furiously; then they wake.",
    "A stitch in time saves nine, or so the saying goes.",
]


def test_killed_during_save_and_between_saves_resume_exactly(tmp_path):
    """Steps 6, checkpoints every 2. Run A: uninterrupted. Run B: SIGKILLed while orbax writes
    step 4 (before it commits), resumed from 2; then SIGKILLed at step 5, between checkpoints,
    resumed from 4. Both resume on the exact batches of run A (the grain iterator's state)."""
    data = tmp_path / "corpus.txt"
    data.write_text("\n".join(LINES * 40) + "\n")
    ref, run = tmp_path / "ref", tmp_path / "run"
    lm = ["lm", "--data", str(data), "--steps", "6", "--ckpt-every", "2"]

    proc = th.run_helper(
        [[*lm, "--workdir", str(ref)], [*lm, "--workdir", str(run), "--kill-during-save", "4"]]
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert th.parse_result(proc.stdout) == [{"start_step": 0, "final_step": 6}]
    assert th.checkpoint_steps(run) == [2]
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("4")]
    assert leftovers, "the killed save left no partial step 4 behind"

    proc = th.run_helper([[*lm, "--workdir", str(run), "--kill-at-step", "5"]])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert th.checkpoint_steps(run) == [2, 4]

    proc = th.run_helper([[*lm, "--workdir", str(run)]])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert th.parse_result(proc.stdout) == [{"start_step": 4, "final_step": 6}]
    assert not (run / "corrupt_checkpoints").exists()
    assert th.losses(run) == th.losses(ref)  # every step once, exactly the reference losses


def test_transient_storage_error_on_save_is_retried(tmp_path, monkeypatch, caplog):
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    calls = {"n": 0}
    original = ocp.CheckpointManager.save

    def save(manager, step, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise ConnectionResetError(104, "Connection reset by peer")
        return original(manager, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    ckpt = Checkpointer(tmp_path / "checkpoints", backoff_s=0.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        ckpt.save(1, {"w": jnp.arange(3.0)}, {"index": 1})
        ckpt.wait()
    assert ckpt.all_steps() == [1] and calls["n"] == 3
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    ckpt.close()
