"""Checkpoints: restoring across device counts onto the current mesh, falling back past a
corrupt latest checkpoint, and refusing to start over when none can be read."""

from __future__ import annotations

import json
import logging
import shutil

import jax
import pytest
import train_helpers as th

from lexlm.errors import CheckpointError
from lexlm.train import train

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
