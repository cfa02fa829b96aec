"""The byte_patching project through the command line: killed and rerun, a changed budget list
(new entries computed, the others reused), bad budgets, evaluation of its runs."""

from __future__ import annotations

import json

import experiment_helpers as eh
import pytest
import train_helpers as th

# The main-job variant, shrunk: SpaceByte at two budgets of a few steps each.
SMALL = [
    "--config=byte_patching:main",
    "--config.models=spacebyte",
    "--config.budgets=2e8,4e8",
    "--config.ngram_order=2",
    "--config.train.ckpt_every=2",
    "--config.train.log_every=1",
    "--config.train.progress=False",
    "--config.baseline.batch_size=8",
    "--config.baseline.seq_len.byte=64",
    "--config.patching.spacebyte.local_width=16",
    "--config.patching.spacebyte.local_heads=2",
    "--config.patching.spacebyte.width=32",
    "--config.patching.spacebyte.depth=1",
    "--config.patching.spacebyte.heads=2",
    "--config.patching.spacebyte.cap=16",
    "--config.eval.batch_size=8",
    "--config.eval.gen_units.byte=8",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One persistent compilation cache for the children and this process: an in-process
    command that compiles (with ``unoptimised_xla``, as the children do) reuses their
    programs."""
    path = tmp_path_factory.mktemp("jax_cache")
    with th.compilation_cache(path):
        yield path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One uninterrupted run of the command, in a child like every run it is compared with."""
    wd = tmp_path_factory.mktemp("byte_patching") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def test_the_reference_run_matches_each_budget(reference):
    f = eh.findings(reference)
    assert f["budgets"] == [2e8, 4e8] and list(f["rows"]) == ["spacebyte"]
    small, large = f["rows"]["spacebyte"]
    for budget, r in zip(f["budgets"], (small, large)):  # matched within half a step's FLOPs
        assert abs(r["train_flops"] - budget) <= r["train_flops"] / r["steps"] / 2
        assert 0 < r["bits_per_byte"] < 12 and r["params"] > 0
    assert abs(large["steps"] - 2 * small["steps"]) <= 1 and small["n_bytes"] == large["n_bytes"]
    ref = f["reference"]  # the grid of orders 1..2 extends while its largest is best
    tried = [int(k) for k in ref["validation_bits_per_byte_by_order"]]
    assert tried == list(range(1, max(tried) + 1)) and max(tried) >= 2
    assert ref["order"] < max(tried) if ref["turned"] else ref["order"] == max(tried)
    assert 0 < ref["bits_per_byte"] < 8
    assert set(f["spacebyte_patching"]) == {"train", "test"}
    for p in f["spacebyte_patching"].values():
        assert p["cap"] == 16 and 0 <= p["overflow"] <= p["bytes"]
        assert 2 < p["bytes_per_patch"] < 12
    # one text, three counts: the models' bytes count each end-of-text as "\n\n" (2 bytes),
    # the windows hold it as one token, the count reference scores the documents' bytes alone
    n_docs = small["n_bytes"] - f["spacebyte_patching"]["test"]["bytes"]
    assert n_docs == f["spacebyte_patching"]["test"]["bytes"] - f["reference"]["n_bytes"] > 0
    runs = reference / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["budget_2e8", "budget_4e8"]
    for budget, r in zip(("budget_2e8", "budget_4e8"), (small, large)):
        saved = json.loads((runs / budget / "spacebyte" / "config.json").read_text())
        assert saved["kind"] == "lm" and saved["train"]["steps"] == r["steps"]
    report = (reference / "report.md").read_text()
    assert "| SpaceByte |" in report and "figures/bits_per_byte.png" in report


def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    """SpaceByte trains 3 steps at 2e8 and 7 at 4e8 (checkpoints every 2): the 7th step is
    the larger budget's 4th, after its checkpoint at 2; each run has two evaluations (bits;
    the text they divide by), so the 2nd one computed on the rerun is the larger budget's
    second. (The kill at the report, the driver's, is the word_pooled project's test.)"""
    steps = [r["steps"] for r in eh.findings(reference)["rows"]["spacebyte"]]
    assert steps == [3, 7]
    wd = tmp_path / "w"
    faults = ["train_step:7", "evaluate:2"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)


def test_a_changed_budget_list_adds_entries_and_reuses_the_others(reference, tmp_path,
                                                                 unoptimised_xla):  # fmt: skip
    """A new, smaller budget is a new entry with its own (fewer) steps: never the larger
    budget's checkpoint; the budget that stays is reused as it is."""
    wd = eh.copy_workdir(reference, tmp_path / "w")
    kept = {k: v for k, v in eh.tree_state(wd).items() if k.startswith("runs/budget_4e8/")}
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", "--config.budgets=4e8,1e8"])
    assert code == 0, err
    f = eh.findings(wd)
    assert f["budgets"] == [1e8, 4e8]
    old = eh.findings(reference)["rows"]["spacebyte"]
    new = f["rows"]["spacebyte"]
    assert new[1] == old[1]  # reused, not retrained
    assert 1 <= new[0]["steps"] < old[0]["steps"]
    after = eh.tree_state(wd)
    assert {k: v for k, v in after.items() if k.startswith("runs/budget_4e8/")} == kept
    steps = {
        k.split("/")[4] for k in after if k.startswith("runs/budget_1e8/spacebyte/checkpoints/")
    }
    assert steps == {str(new[0]["steps"])}
    # a changed field of every entry is refused before anything is written
    before = eh.tree_state(wd)
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", "--config.train.lr=0.01"])
    eh.assert_one_line_error(code, err, "train.lr", "runs/budget_2e8/spacebyte")
    assert eh.tree_state(wd) == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--config.budgets=2e8,nan"], "budgets"),
        (["--config.budgets=2e8,lots"], "budgets"),
        (["--config.budgets=2e8,-3"], "budgets"),
        (["--config.budgets=2e8,2e8"], "lists a budget twice"),
        (["--config.budgets=1000,2e8"], "1e+03 FLOPs is less than one training step of spacebyte"),
        (["--config.train.steps=-5"], "train.steps"),
        (["--config.models=spacebyte,hnet"], "models"),
        (["--config.patching.spacebyte.heads=5"], "model.heads"),
        (["--config.ngram_order=0"], "ngram_order"),
        (["--config=byte_patching:nope"], "unknown variant 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, args, fragment):
    wd = tmp_path / "fresh"
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args])
    eh.assert_one_line_error(code, err, fragment)
    assert not wd.exists()


def test_evaluate_the_experiment_workdir(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["run"] for x in lines] == ["runs/budget_2e8/spacebyte", "runs/budget_4e8/spacebyte"]
    rows = eh.findings(wd)["rows"]["spacebyte"]
    for line, row in zip(lines, rows):
        assert line["kind"] == "lm" and line["step"] == row["steps"]
        assert line["bits_per_byte"] == pytest.approx(row["bits_per_byte"])
