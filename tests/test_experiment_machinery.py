"""The shared experiment machinery on small cases with known answers: identity fields and
their differences, the result store's reuse and refusal rules, atomic writes, the workdir
lock, the fault points and the command line's one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from lexlm import faults
from lexlm.errors import StaleResultError, WorkdirBusyError
from lexlm.experiment import cli, identity, store
from lexlm.experiment.checks import flops_list, flops_name, in_range, integer, names
from lexlm.locks import WorkdirLock
from lexlm.paths import read_json, write_json, write_text


def config(**train):
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(dict(width=64, depth=2, attention="xla"))
    c.train = ml_collections.ConfigDict(dict(lr=1e-3, steps=10, progress=True, mesh=(-1, 1, 1)))
    c.train.update(train)
    c.eval = ml_collections.ConfigDict(dict(split="test", batch_size=8))
    c.blocks = (1, 2)
    return c


def test_identity_fields_leave_out_volatile_fields_and_eval():
    f = identity.fields(config(), exclude=("eval",))
    assert f == {"model.width": 64, "model.depth": 2, "train.lr": 1e-3, "train.steps": 10,
                 "blocks": [1, 2]}  # fmt: skip
    # nested configs: the last two components decide
    assert identity.is_volatile("lama.train.progress") and not identity.is_volatile("train.lr")


def test_differences_name_every_changed_and_missing_field():
    old = {"a": 1, "b": [1, 2], "c": "x"}
    new = {"a": 2, "b": [1, 2], "d": 0.5}
    assert identity.differences(old, new) == 'a 1 -> 2, c "x" -> "<absent>", d "<absent>" -> 0.5'
    many = {f"k{i}": i for i in range(6)}
    assert identity.differences(many, {}, limit=2).endswith("and 4 more")


def test_digest_is_order_independent_and_keeps_nan_apart():
    assert identity.digest({"a": 1, "b": 2}) == identity.digest({"b": 2, "a": 1})
    assert identity.digest({"x": float("nan")}) != identity.digest({"x": 0.0})


def test_open_run_refuses_another_config_before_writing(tmp_path):
    run = tmp_path / "runs" / "a"
    assert not store.check_run(run, config())
    store.open_run(run, config(), {"data.txt#0": "abc"})
    saved = read_json(run / "identity.json")
    assert saved["fields"]["inputs.data.txt#0"] == "abc"
    assert store.check_run(run, config(progress=False, mesh=(2, 1, 1)), {"data.txt#0": "abc"})
    before = (run / "config.json").read_text()
    with pytest.raises(StaleResultError, match=r"train\.lr 0\.001 -> 0\.01\); nothing was changed"):
        store.open_run(run, config(lr=1e-2), {"data.txt#0": "abc"})
    with pytest.raises(StaleResultError, match=r"inputs\.data\.txt#0 \"abc\" -> \"abd\""):
        store.check_run(run, config(), {"data.txt#0": "abd"})
    assert (run / "config.json").read_text() == before
    # an evaluation setting is not part of a run's identity: config.json follows it
    c = config()
    c.eval.batch_size = 16
    store.open_run(run, c, {"data.txt#0": "abc"})
    assert '"batch_size": 16' in (run / "config.json").read_text()


def test_checkpoints_without_identity_are_never_adopted(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(StaleResultError, match=r"no identity\.json"):
        store.check_run(run, config())


def test_evaluations_are_kept_per_setting_and_computed_once(tmp_path):
    run = tmp_path / "r"
    store.open_run(run, config())
    calls = []

    def compute(value):
        def fn():
            calls.append(value)
            return {"loss": value}

        return fn

    assert store.evaluation(run, "test", 10, {"draws": 1}, compute(1.0)) == {"loss": 1.0}
    assert store.evaluation(run, "test", 10, {"draws": 1}, compute(9.0)) == {"loss": 1.0}
    assert store.evaluation(run, "test", 10, {"draws": 4}, compute(2.0)) == {"loss": 2.0}
    assert store.evaluation(run, "test", 5, {"draws": 1}, compute(3.0)) == {"loss": 3.0}
    assert calls == [1.0, 2.0, 3.0]
    records = store.saved_evaluations(run, "test")
    assert [r["identity"]["step"] for r in records] == [5, 10, 10]


def test_artifact_dirs_are_rebuilt_when_torn_and_refused_when_stale(tmp_path):
    built = []

    def build(folder):
        built.append(folder.name)
        write_text(folder / "vocab.txt", "a\nb\n")

    path = tmp_path / "tok"
    store.artifact_dir(path, {"unit": "char"}, build)
    store.artifact_dir(path, {"unit": "char"}, build)
    assert len(built) == 1 and (path / "vocab.txt").read_text() == "a\nb\n"
    assert ".tmp-" in built[0]  # built under a temporary name, then renamed
    with pytest.raises(StaleResultError, match=r"unit \"char\" -> \"byte\""):
        store.artifact_dir(path, {"unit": "byte"}, build)
    (path / ".identity.json").unlink()  # as a kill before the record leaves it
    store.artifact_dir(path, {"unit": "byte"}, build)
    assert len(built) == 2 and read_json(path / ".identity.json")["fields"] == {"unit": "byte"}


def test_cached_values_are_named_by_their_fields(tmp_path):
    calls = []
    for fields in ({"order": 5}, {"order": 5}, {"order": 6}):
        store.cached(tmp_path, "ngram", fields, lambda f=fields: calls.append(f) or f["order"])
    assert calls == [{"order": 5}, {"order": 6}]
    assert len(list((tmp_path / "cache").glob("ngram-*.json"))) == 2


def test_find_runs_walks_nested_grids(tmp_path):
    for name in ("runs/a", "runs/budget_3e12/b", "runs/budget_3e12/c"):
        store.open_run(tmp_path / name, config())
    (tmp_path / "runs" / "x.tmp-123").mkdir()
    found = [store.relative(p, tmp_path) for p in store.find_runs(tmp_path)]
    assert found == ["runs/a", "runs/budget_3e12/b", "runs/budget_3e12/c"]
    assert store.find_runs(tmp_path / "runs" / "a") == [tmp_path / "runs" / "a"]


def test_workdir_run_names_stay_inside_runs(tmp_path):
    wd = store.Workdir(tmp_path)
    assert wd.run("budget_3e12/spacebyte") == tmp_path / "runs" / "budget_3e12" / "spacebyte"
    for bad in ("", "../x", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            wd.run(bad)


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "findings.json"
    write_json(path, {"old": 1})

    def crash(name):
        raise KeyboardInterrupt(name)

    monkeypatch.setattr(faults, "point", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"new": 2})
    assert read_json(path) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # only the temporary


def test_temporaries_left_by_kills_are_removed(tmp_path):
    from lexlm.experiment.driver import remove_temporaries

    (tmp_path / "runs" / "a" / "tok.tmp-1234").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "tok.tmp-1234" / "vocab.txt").write_text("x")
    (tmp_path / "findings.json.tmp-99").write_text("{")
    (tmp_path / "findings.json").write_text("{}")
    assert remove_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "findings.json", "runs"]


def test_lock_refuses_a_second_holder_and_is_freed_by_a_kill(tmp_path):
    wd = tmp_path / "w"
    with WorkdirLock(wd, enabled=True):
        with pytest.raises(WorkdirBusyError, match="in use by another process"):
            WorkdirLock(wd, enabled=True).acquire()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from lexlm.locks import WorkdirLock
            WorkdirLock({str(wd)!r}, enabled=True).acquire()
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusyError):
        WorkdirLock(wd, enabled=True).acquire()
    holder.kill()
    holder.wait()
    lock = WorkdirLock(wd, enabled=True)
    lock.acquire()  # the kernel dropped the dead holder's lock
    lock.release()


def test_a_lock_discarded_after_a_refusal_leaves_no_trace(tmp_path):
    wd = tmp_path / "a" / "b"
    lock = WorkdirLock(wd, enabled=True)
    lock.acquire()
    lock.release(discard=True)
    assert not (tmp_path / "a").exists()


def test_fault_points_kill_at_the_named_hit():
    code = "from lexlm import faults\nfor i in range(5):\n    faults.point('write')\n    print(i)"
    env = {**os.environ, "LEXLM_FAULT": "write:3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == -9 and out.stdout.split() == ["0", "1"]
    with pytest.raises(ValueError, match="unknown point 'nope'"):
        faults._parse("nope:1")


def test_checks_name_the_field():
    assert names("a, b", ("a", "b", "c"), "models") == ["a", "b"]
    with pytest.raises(ValueError, match=r"^models: unknown \['x'\]"):
        names("a,x", ("a",), "models")
    assert flops_list("3e12, 9e12", "budgets") == [3e12, 9e12]
    for bad in ("nan", "-1", "", "3e12,3e12"):
        with pytest.raises(ValueError, match=r"^budgets: "):
            flops_list(bad, "budgets")
    assert [flops_name(b) for b in (3e12, 1.5e11, 9e10, 1e6)] == [
        "budget_3e12", "budget_1.5e11", "budget_9e10", "budget_1e6"]  # fmt: skip
    with pytest.raises(ValueError, match=r"^stages\.rate: must lie in \[0, 1\]"):
        in_range(1.5, "stages.rate", 0, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        integer(-5, "train.steps", 1)


def test_short_config_names_expand_to_the_project_file():
    out = cli.expand_config_arg(["prog", "--config", "lm:tiny", "--config.train.lr=1"])
    assert out[1].endswith(os.path.join("lexlm", "proj", "lm", "config.py") + ":tiny")
    assert out[2] == "--config.train.lr=1"
    assert cli.expand_config_arg(["p", "--config=my/file.py:x"]) == ["p", "--config=my/file.py:x"]


def test_error_text_is_cut_to_its_last_line():
    text = "Traceback (most recent call last):\n  File ...\nlexlm.errors.ConfigError: config: bad"
    assert cli._last_line(text) == "config: bad"
    assert cli._last_line("train.lr: must be > 0") == "train.lr: must be > 0"


def test_a_config_file_that_names_no_project_is_refused(tmp_path, capsys):
    cfg = tmp_path / "other.py"
    cfg.write_text("import ml_collections\ndef get_config(arg=None):\n"
                   "    return ml_collections.ConfigDict({'x': 1})\n")  # fmt: skip
    code = cli.run_main(["prog", f"--config={cfg}", f"--workdir={tmp_path / 'w'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "names no project" in err
    assert not (tmp_path / "w").exists()


def test_evaluate_refuses_a_folder_without_runs(tmp_path, capsys):
    assert cli.evaluate_main(["prog", f"--workdir={tmp_path}"]) == 2
    assert "holds no lexlm run" in capsys.readouterr().err
    assert cli.evaluate_main(["prog", f"--workdir={tmp_path / 'none'}"]) == 2
    assert "no such directory" in capsys.readouterr().err
