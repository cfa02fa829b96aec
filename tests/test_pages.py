"""Every results page is what its committed findings render to, and the renderer writes
commands a reader can rerun."""

from __future__ import annotations

import experiment_helpers as eh

from lexlm.experiment import pages


def test_every_page_renders_from_its_committed_findings():
    stale = pages.write_pages(check=True)
    assert not stale, f"rerun python -m lexlm.report --pages: {stale}"


def test_the_check_command_fails_on_a_page_edited_by_hand(monkeypatch, tmp_path):
    page = tmp_path / "README.md"
    page.write_text("# typed by hand\n")
    monkeypatch.setattr(pages, "page_path", lambda project: str(page))
    code, out, err = eh.cli(["--pages", "--check"], entry="report")
    assert code == 1 and "differs" in out and "results pages differ" in err
    assert page.read_text() == "# typed by hand\n"  # --check writes nothing


def test_provenance_says_when_training_was_resumed():
    p = {"command": "python -m lexlm.run --config lm:tiny", "date": "d", "machine": "m",
         "jax": "j", "wall_s": 60.0}  # fmt: skip
    assert pages.provenance_line(p).endswith("jax j, 1.0 min).")
    line = pages.provenance_line({**p, "steps_resumed": 1800})
    assert "1.0 min, resuming 1,800 training steps from the checkpoints of an earlier" in line


def test_a_corrupt_findings_file_is_one_line(monkeypatch, tmp_path):
    (tmp_path / "findings").mkdir()
    (tmp_path / "findings" / "tiny.json").write_text('{"findings": {,')
    monkeypatch.setattr(pages.registry, "project_dir", lambda project: str(tmp_path))
    monkeypatch.setattr(pages, "findings_files", lambda project: ["tiny"])
    code, _, err = eh.cli(["--pages", "--check"], entry="report")
    eh.assert_one_line_error(code, err, "is not valid JSON")


def test_commands_and_configs_name_data_by_a_placeholder():
    cmd = ("python -m lexlm.run --config x:y --workdir /a/b/results/run1 "
           "--config.data.files=/srv/shared/data/tinyshakespeare/input.txt")  # fmt: skip
    assert pages.public_command(cmd) == (
        "python -m lexlm.run --config x:y --workdir=results/run1 "
        "--config.data.files=$DATA/tinyshakespeare/input.txt"
    )
    assert pages.public_paths({"files": ["../shared/data/a.tsv,/x/shared/data/b.tsv"], "n": 1}) == {
        "files": ["$DATA/a.tsv,$DATA/b.tsv"], "n": 1}  # fmt: skip
