"""The lm project through the command line: killed and rerun, changed config, bad input,
evaluation of its run; the shared experiment machinery shows its rules here first."""

from __future__ import annotations

import json

import experiment_helpers as eh
import pytest

# The tiny variant, shrunk so that each run takes seconds.
SMALL = [
    "--config=lm:tiny",
    "--config.train.steps=6",
    "--config.train.ckpt_every=2",
    "--config.train.log_every=2",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=2",
    "--config.seq_len=32",
    "--config.eval.max_windows=8",
    "--config.eval.batch_size=8",
    "--config.train.progress=False",
    "--config.train.tensorboard=False",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One uninterrupted run of the command, in a child like every run it is compared with."""
    wd = tmp_path_factory.mktemp("lm") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    wd = tmp_path / "w"
    faults = ["train_step:3", "checkpoint:1", "evaluate:2", "write:2", "report:1"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)
    assert not list(wd.rglob("*.tmp-*"))  # what the kill inside a write left was cleared
    # a rerun of a finished command reuses everything and changes no result
    before = {k: v for k, v in eh.tree_state(wd).items() if not k.startswith(("report", "prov"))}
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}"])
    assert code == 0, err
    after = {k: v for k, v in eh.tree_state(wd).items() if not k.startswith(("report", "prov"))}
    assert after == before
    # and its provenance says its wall time holds no training: every step was resumed
    prov = json.loads((wd / "provenance.json").read_text())
    assert prov["steps_trained"] == 0 and prov["steps_resumed"] == eh.findings(wd)["steps"]


@pytest.mark.parametrize(
    "override, field",
    [
        ("--config.train.lr=0.01", "train.lr"),
        ("--config.model.width=64", "model.width"),
        ("--config.data.vocab_size=50", "data.vocab_size"),
    ],
)
def test_a_changed_field_is_refused_by_name_and_nothing_changes(reference, tmp_path, override,
                                                                field):  # fmt: skip
    wd = eh.copy_workdir(reference, tmp_path / "w")
    before = eh.tree_state(wd)
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", override])
    eh.assert_one_line_error(code, err, field, "runs/lm")
    assert eh.tree_state(wd) == before


def test_an_edited_data_file_is_refused(tmp_path, cache):
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(f"Paragraph {i} of a small file." * 20 for i in range(40)))
    wd = tmp_path / "w"
    args = [*SMALL, f"--workdir={wd}", "--config.data.source=files", f"--config.data.files={text}",
            "--config.train.steps=2"]  # fmt: skip
    code, _, err = eh.cli(args)
    assert code == 0, err
    text.write_text(text.read_text() + "\n\nOne more paragraph.")
    before = eh.tree_state(wd)
    code, _, err = eh.cli(args)
    eh.assert_one_line_error(code, err, "inputs.text.txt")
    assert eh.tree_state(wd) == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--config.data.files=my.txt"], "data.files"),
        (["--config.train.steps=-5"], "train.steps"),
        (["--config.train.lr=nan"], "train.lr"),
        (["--config.model.heads=5"], "model.heads"),
        (["--config.model.widht=3"], "did you mean --config.model.width"),
        (["--config=lm:nope"], "unknown variant 'nope'"),
        (["--config.data.source=files", "--config.data.files=/no/such.txt"], "no such file"),
        (["--config.train.mesh=(3,1,1)"], "train.mesh"),
        (["--config.data.unit=words"], "data.unit"),
        (["--bogus=1"], "bogus"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, args, fragment):
    wd = tmp_path / "fresh"
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args])
    eh.assert_one_line_error(code, err, fragment)
    assert not wd.exists()


def test_a_second_process_on_the_same_workdir_is_refused(reference, tmp_path):
    from lexlm.locks import WorkdirLock

    wd = eh.copy_workdir(reference, tmp_path / "w")
    with WorkdirLock(wd, enabled=True):
        code, _, err = eh.cli([*SMALL, f"--workdir={wd}"])
    eh.assert_one_line_error(code, err, "in use by another process")


def test_evaluate_reads_the_recorded_config_and_saves_per_step(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    code, out, err = eh.cli([f"--workdir={wd}", "--split=test"], entry="evaluate")
    assert code == 0, err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["run"] == "runs/lm" and line["kind"] == "lm" and line["step"] == 6
    assert line["bits_per_byte"] == pytest.approx(eh.findings(wd)["test"]["bits_per_byte"])
    # an older checkpoint, straight from the run directory; its own evaluation file
    code, out, err = eh.cli([f"--workdir={wd / 'runs' / 'lm'}", "--step=4"], entry="evaluate")
    assert code == 0, err
    assert json.loads(out)["step"] == 4 and json.loads(out)["split"] == "validation"
    assert len(list((wd / "runs" / "lm" / "evals").glob("validation-4-*.json"))) == 1
    code, _, err = eh.cli([f"--workdir={wd}", "--step=5"], entry="evaluate")
    eh.assert_one_line_error(code, err, "step 5")


def test_report_is_rendered_again_from_the_findings(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    old = (wd / "report.md").read_text()
    (wd / "report.md").unlink()
    code, _, err = eh.cli([f"--workdir={wd}"], entry="report")
    assert code == 0, err
    assert (wd / "report.md").read_text() == old
    assert "| test |" in old and "figures/loss_by_position.png" in old


def test_the_150m_variant_is_the_paper_sized_model():
    from lexlm.proj.lm.config import get_config
    from lexlm.proj.lm.run import lm_config

    assert 1.2e8 < lm_config(get_config("150m"), 32000).param_count() < 2.2e8
