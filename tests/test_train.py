"""The trainer: exact resumption, mesh independence, NaN handling, config errors, SIGTERM,
metrics. Runs on CPU; runs on 8 host devices and runs killed on purpose happen in a child
process (``tests/train_helpers.py``)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import train_helpers as th

from lexlm.errors import ConfigError, TrainingError
from lexlm.train import Task, train, validate_train_config

N = th.N
pytestmark = pytest.mark.usefixtures("compile_once")


def test_batches_depend_on_iterator_state():
    """Precondition of the resume test: a resumed run that ignored the data state would see
    different batches."""
    b = th.PatternBatches()
    assert not np.array_equal(b.batch(0)["inputs"], b.batch(N)["inputs"])
    c = th.PatternBatches()
    c.set_state({"index": N})
    assert np.array_equal(next(c)["inputs"], b.batch(N)["inputs"])


def test_resume_after_sigkill_is_exact(reference, tmp_path):
    ref_dir, ref_state = reference
    workdir = tmp_path / "killed"
    proc = th.run_helper([["train", "--workdir", str(workdir), "--kill-at-step", str(N)]])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not th.parse_result(proc.stdout)
    assert th.checkpoint_steps(workdir) == [N]
    assert len(th.losses(workdir)) == N

    batches = th.PatternBatches()
    result = train(th.train_config(), th.tiny_task(), batches, workdir)
    assert (result.start_step, result.final_step, result.stopped_by) == (N, 2 * N, "steps")
    assert batches.index == 2 * N  # consumed batches N..2N-1, not 0..N-1

    got, want = th.losses(workdir), th.losses(ref_dir)
    assert len(want) == 2 * N
    assert got == want  # exact, every step
    th.assert_trees_equal(th.flat(result.state), ref_state)  # params, optimizer state, step


def test_same_losses_on_1_and_8_devices(reference, eight_device_runs, tmp_path):
    ref_dir, _ = reference
    one_device = {"learned": th.losses(ref_dir)}
    lex_dir = tmp_path / "lexinvariant_1"  # runs while the 8-device child does
    train(th.train_config(), th.tiny_task("lexinvariant"), th.PatternBatches(), lex_dir)
    one_device["lexinvariant"] = th.losses(lex_dir)
    assert one_device["learned"] != one_device["lexinvariant"]

    eight_devices = eight_device_runs.wait()
    runs = [("learned", "8,1,1"), ("learned", "2,2,2"), ("lexinvariant", "2,2,2")]
    for embedding, mesh in runs:
        run_dir = eight_devices / f"{embedding}_{mesh}"
        summary = json.loads((run_dir / "train.json").read_text())
        assert summary["devices"] == 8 and summary["final_step"] == 2 * N
        got = th.losses(run_dir)
        assert len(got) == 2 * N
        np.testing.assert_allclose(
            got, one_device[embedding], rtol=1e-5, atol=0, err_msg=f"{embedding} on {mesh}"
        )


def test_nan_loss_stops_with_one_line_error_and_keeps_last_good_checkpoint(tmp_path):
    # Batch index 6 has a NaN mask: the loss of step 7 is NaN. With log_every=10 the host only
    # sees it at the (final) checkpoint boundary of step 8, which must not be saved.
    workdir = tmp_path / "nan"
    cfg = th.train_config(log_every=10)
    with pytest.raises(TrainingError) as excinfo:
        train(cfg, th.tiny_task(), th.PatternBatches(nan_at=6), workdir)
    message = str(excinfo.value)
    assert "\n" not in message
    assert re.search(r"\bstep 7\b", message), message

    assert th.checkpoint_steps(workdir) == [N]
    for entry in (workdir / "checkpoints").iterdir():  # nothing at/after step 7, even partial
        leading = re.match(r"\d+", entry.name)
        assert leading is None or int(leading.group()) < 7, entry.name
    state, data_state, step, _ = th.restore(workdir)
    assert step == N and data_state == {"index": N}
    for name, leaf in th.flat(state).items():
        assert np.all(np.isfinite(leaf)), name
    assert all(math.isfinite(r["loss"]) for r in th.read_metrics(workdir))


def _recording_task():
    calls = []
    inner = th.tiny_task()

    def init(key):
        calls.append(key)
        return inner.init(key)

    return Task(init=init, loss=inner.loss), calls


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mesh": (3, 1, 1)}, "train.mesh"),
        ({"mesh": (1, 2, 1)}, "train.mesh"),
        ({"steps": 0}, "train.steps"),
        ({"steps": -3}, "train.steps"),
        ({"ckpt_every": 0}, "train.ckpt_every"),
        ({"lr": float("nan")}, "train.lr"),
    ],
)
def test_bad_config_fails_before_compiling(overrides, field, tmp_path):
    task, calls = _recording_task()
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as excinfo:
        train(th.train_config(**overrides), task, th.PatternBatches(), workdir)
    assert excinfo.value.field == field
    message = str(excinfo.value)
    assert message.startswith(field + ":") and "\n" not in message
    assert calls == []  # raised before init was traced, let alone compiled
    assert not workdir.exists()


def test_batch_size_must_divide_data_parallel_size():
    with pytest.raises(ConfigError) as excinfo:
        validate_train_config(th.train_config(batch_size=6, mesh=(4, 1, 1)), n_devices=4)
    assert excinfo.value.field == "train.batch_size"
    assert str(excinfo.value).startswith("train.batch_size:") and "\n" not in str(excinfo.value)
    with pytest.raises(ConfigError, match=r"^train\.batch_size:"):
        validate_train_config(th.train_config(batch_size=6, mesh=(1, 4, 1)), n_devices=4)
    with pytest.raises(ConfigError, match=r"^train\.mesh:"):
        validate_train_config(th.train_config(mesh=(3, 1, 1)), n_devices=4)
    # the tensor axis does not split the batch; the valid shapes resolve
    assert validate_train_config(th.train_config(batch_size=6, mesh=(1, 1, 4)), 4) == (1, 1, 4)
    assert validate_train_config(th.train_config(batch_size=8, mesh=(-1, 2, 1)), 4) == (2, 2, 1)


def test_sigterm_saves_current_step_and_exits_cleanly(tmp_path):
    # The hook sleeps after reporting each step, so the signal lands inside a hook (the usual
    # place for it when hooks evaluate): the run must still checkpoint where it stops.
    workdir = tmp_path / "term"
    steps = every = 2 * N  # no periodic checkpoint before the end
    job = ["train", "--workdir", str(workdir), "--steps", str(steps)]
    job += ["--ckpt-every", str(every), "--print-steps", "--hook-sleep", "0.3"]
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        proc = th.run_helper([job], stdout=subprocess.PIPE, stderr=stderr)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("STEP 3 "):
                proc.send_signal(signal.SIGTERM)
                break
        lines.append(proc.communicate()[0])
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 0, stderr_path.read_text()[-3000:]
    (result,) = th.parse_result("".join(lines))
    assert result["stopped_by"] == "sigterm"
    final = result["final_step"]
    assert 3 <= final < every
    assert f"STEP {final} saved=True" in "".join(lines)
    assert th.checkpoint_steps(workdir) == [final]

    state, data_state, step, _ = th.restore(workdir)
    assert step == final and data_state == {"index": final}
    th.assert_trees_equal(th.flat(state.params), th.load_npz(workdir / "train.npz"))


def test_metrics_jsonl_and_tensorboard(reference, tmp_path):
    ref_losses = th.losses(reference[0])
    assert ref_losses[-1] < ref_losses[0] - 1.0  # the patterns are learnable
    workdir = tmp_path / "metrics"
    cfg = th.train_config(log_every=N, tensorboard=True)
    result = train(cfg, th.tiny_task(), th.PatternBatches(), workdir)
    records = th.read_metrics(workdir)
    assert [r["step"] for r in records] == [N, 2 * N]
    assert result.history == records
    for i, r in enumerate(records):
        window = ref_losses[i * N : (i + 1) * N]
        assert r["loss"] == pytest.approx(float(np.mean(window)), rel=1e-6)
        assert r["tokens"] == pytest.approx(th.BATCH * th.SEQ)
        assert math.isfinite(r["tokens_per_s"]) and r["tokens_per_s"] > 0
    events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    data = b"".join(p.read_bytes() for p in events)
    assert b"loss" in data and b"tokens_per_s" in data


def test_importing_train_and_nn_skips_data_stack():
    code = (
        "import sys, lexlm.train, lexlm.nn\n"
        "bad = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('grain', 'tensorflow_datasets', 'tensorflow'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=th.REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_metrics_writer_drops_lines_past_the_resumed_step(tmp_path):
    from lexlm.train.metrics_writer import MetricsWriter

    writer = MetricsWriter(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        writer.write(step, {"loss": float(step)})
    writer.close()
    # Killed after logging step 4 with the last checkpoint at step 2: resume from 2.
    writer = MetricsWriter(tmp_path, tensorboard=False, resume_step=2)
    writer.write(3, {"loss": 30.0})
    writer.close()
    records = th.read_metrics(tmp_path)
    assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_non_finite_gradient_with_finite_loss_stops(tmp_path):
    import jax
    import jax.numpy as jnp

    from lexlm.train import Task

    base = th.tiny_task()

    def loss(params, batch, key):
        value, metrics = base.loss(params, batch, key)
        # Finite forward value (0 * sqrt(0) = 0), NaN gradient (0 * sqrt'(0) = 0 * inf).
        leaf = jax.tree.leaves(params)[0]
        return value + 0.0 * jnp.sqrt(0.0 * jnp.sum(leaf)), metrics

    with pytest.raises(TrainingError, match=r"gradient norm is (nan|inf) at step 1\b"):
        train(th.train_config(log_every=1), Task(base.init, loss), th.PatternBatches(), tmp_path)
