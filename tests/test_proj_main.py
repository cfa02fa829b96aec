"""The main job is the same command line over the projects' tiny variants: its sections
validate as one config, run into their own workdirs, and are evaluated and reported alike."""

from __future__ import annotations

import json

import experiment_helpers as eh

from lexlm.proj.main import config as main_config

SMALL_LM = [
    "--config.sections=lm",
    "--config.lm.train.steps=2",
    "--config.lm.train.batch_size=4",
    "--config.lm.seq_len=16",
    "--config.lm.eval.max_windows=4",
    "--config.lm.eval.batch_size=4",
    "--config.lm.train.progress=False",
    "--config.lm.train.tensorboard=False",
]


def test_every_section_is_its_projects_tiny_variant():
    c = main_config.get_config()
    assert main_config.sections(c) == list(main_config.SECTIONS)
    for section in main_config.SECTIONS:
        project = main_config.SOURCES[section][0]
        assert c[section].project == project
        expected = main_config.section_config(section).to_dict()
        assert c[section].to_dict() == expected, section
    assert "symbols" in main_config.sections(main_config.get_config("symbols"))


def test_a_section_runs_into_its_own_workdir_and_is_evaluated_from_the_top(tmp_path):
    wd = tmp_path / "results"
    code, _, err = eh.cli(["--config=main", f"--workdir={wd}", *SMALL_LM])
    assert code == 0, err
    assert set(eh.findings(wd)) == {"lm"}
    assert eh.findings(wd / "runs" / "lm") == eh.findings(wd)["lm"]
    report = (wd / "report.md").read_text()
    assert "### Baseline LM" in report and "figures/lm_loss_by_position.png" in report
    assert (wd / "figures" / "lm_loss_by_position.png").exists()
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    assert [json.loads(x)["run"] for x in out.splitlines()] == ["runs/lm/runs/lm"]


def test_a_bad_section_field_is_named_as_the_command_line_spells_it(tmp_path):
    wd = tmp_path / "results"
    code, _, err = eh.cli(["--config=main", f"--workdir={wd}", *SMALL_LM,
                           "--config.lm.train.steps=-1"])  # fmt: skip
    eh.assert_one_line_error(code, err, "lm.train.steps")
    code, _, err = eh.cli(["--config=main", f"--workdir={wd}", "--config.sections=lm,nope"])
    eh.assert_one_line_error(code, err, "sections", "nope")
    assert not wd.exists()
