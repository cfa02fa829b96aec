"""Run directories: every artifact through etils.epath (a gs:// workdir reaches the storage
layer as written), evaluations kept per step and setting, and data-parallel evaluation over
8 devices."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import train_helpers as th
from etils import epath

from lexlm.paths import as_path

pytestmark = pytest.mark.usefixtures("compile_once")

LINES = [
    "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.",
    "It is a truth universally acknowledged that a single man must be in want of a wife.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A 4-step files-source LM run (checkpoints at 2 and 4), trained in this process."""
    from lexlm.proj.lm.run import train_run

    root = tmp_path_factory.mktemp("lm_run")
    data = root / "corpus.txt"
    data.write_text("\n".join(LINES * 30))
    cfg = th.lm_files_config(str(data), steps=4, ckpt_every=2)
    result = train_run(cfg, root / "run")
    assert result.final_step == 4
    return root / "run"


def test_evaluations_are_kept_per_step_and_setting(lm_run, tmp_path):
    import shutil

    from lexlm.experiment.store import saved_evaluations
    from lexlm.proj.lm.evaluate import evaluate_run

    run = tmp_path / "run"
    shutil.copytree(lm_run, run)
    old = evaluate_run(run, split="test", step=2)
    assert old["step"] == 2
    new = evaluate_run(run, split="test")  # the newest checkpoint
    assert new["step"] == 4 and new["loss"] != old["loss"]
    again = evaluate_run(run, split="test", step=2)  # an older step, evaluated after: reused
    assert again == old
    assert [r["identity"]["step"] for r in saved_evaluations(run, "test")] == [2, 4]
    assert saved_evaluations(run, "validation") == []
    # another evaluation setting is another evaluation, next to the first
    cfg = json.loads((run / "config.json").read_text())
    cfg["eval"]["max_windows"] = 2
    (run / "config.json").write_text(json.dumps(cfg))
    fewer = evaluate_run(run, split="test", step=4)
    assert fewer["tokens"] < new["tokens"]
    assert len(saved_evaluations(run, "test")) == 3


def test_gs_workdir_reaches_the_storage_layer_unmangled(monkeypatch, tmp_path):
    """epath's backend is replaced by one that maps gs://bucket/... into tmp_path and records
    every path it is given; the checkpoint manager is replaced by a recorder."""
    import orbax.checkpoint as ocp

    from lexlm.experiment import store
    from lexlm.proj.lm.config import get_config
    from lexlm.text import build_tokenizer, load_tokenizer
    from lexlm.train import Checkpointer
    from lexlm.train.metrics_writer import MetricsWriter

    seen: list[str] = []

    def local(path) -> str:
        text = os.fspath(path)
        seen.append(text)
        assert text.startswith("gs://bucket/run"), text
        return str(tmp_path / text[len("gs://") :])

    def redirect(name):
        return lambda fn, path, *a, **k: fn(local(path), *a, **k)

    def redirect2(name):
        return lambda fn, path, dst, *a, **k: fn(local(path), local(dst), *a, **k)

    names = ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove")
    names += ("rmtree", "stat", "walk")
    mocks = {n: redirect(n) for n in names}
    mocks.update({n: redirect2(n) for n in ("rename", "replace", "copy")})

    class RecordingManager(ocp.CheckpointManager):
        def __init__(self, directory, options=None, item_names=None):
            self.given = directory

        def all_steps(self):
            return []

        def close(self):
            pass

        def wait_until_finished(self):
            pass

    import lexlm.train.checkpoint as ck

    monkeypatch.setattr(ck.ocp, "CheckpointManager", RecordingManager)
    root = "gs://bucket/run"
    assert os.fspath(as_path(root) / "checkpoints") == "gs://bucket/run/checkpoints"
    with epath.testing.mock_epath(**mocks):
        cfg = get_config("tiny")
        store.open_run(root, cfg)
        assert store.load_run_config(root).seq_len == cfg.seq_len
        tok = build_tokenizer("subword", LINES * 20, 300, as_path(root) / "tokenizer")
        again = load_tokenizer(root + "/tokenizer")
        assert again.encode("Call me Ishmael.").tolist() == tok.encode("Call me Ishmael.").tolist()
        writer = MetricsWriter(root, tensorboard=False)
        writer.write(1, {"loss": 2.5})
        writer.write(2, {"loss": 2.0})
        writer.close()
        lines = (as_path(root) / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [1, 2]
        store.evaluation(root, "test", 7, {"draws": 1}, lambda: {"loss": 1.0})
        again = store.evaluation(root, "test", 7, {"draws": 1}, lambda: {"loss": 2.0})
        assert again == {"loss": 1.0}  # read back from the bucket, not recomputed
        ckpt = Checkpointer(root + "/checkpoints")
        assert isinstance(ckpt.directory, epath.Path)
        assert isinstance(ckpt._manager.given, epath.Path)
        assert os.fspath(ckpt._manager.given) == "gs://bucket/run/checkpoints"
        assert ckpt.restore(abstract_state={}) is None
        ckpt.close()
    assert seen and all(s.startswith("gs://bucket/run") for s in seen)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {
        "bucket/run/config.json",
        "bucket/run/identity.json",
        "bucket/run/metrics.jsonl",
        "bucket/run/tokenizer/tokenizer.json",
    } <= written
    assert any(p.startswith("bucket/run/evals/test-7-") for p in written)
    assert not any("gs:" in p for p in written)


def test_evaluation_is_data_parallel_on_8_devices(lm_run, tmp_path):
    """The same run evaluated in a child with 8 host devices: each device holds B / 8 rows of
    every batch, and the loss equals the 1-device evaluation."""
    from lexlm.proj.lm.evaluate import evaluate_run

    one = evaluate_run(lm_run, split="validation")
    out = tmp_path / "eval8.json"
    proc = th.run_helper([["lm-eval", "--workdir", str(lm_run), "--out", str(out)]], devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["devices"] == 8
    batch = got["batch_size"]
    assert got["shard_rows"] == [batch // 8] * 8  # every device computes 1/8 of the batch
    np.testing.assert_allclose(got["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["loss_by_position"], one["loss_by_position"], rtol=1e-4)
