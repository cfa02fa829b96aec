"""The word_pooled project through the command line: killed and rerun, changed config, bad
input, evaluation of its runs (every run kind: word_pooled, word, lm) alone and moved."""

from __future__ import annotations

import json
import shutil

import experiment_helpers as eh
import numpy as np
import pytest
import train_helpers as th

# The main-job variant (word-pooled, character and word LMs), shrunk so a run takes seconds.
SMALL = [
    "--config=word_pooled:main",
    "--config.train.steps=3",
    "--config.train.ckpt_every=4",
    "--config.train.log_every=1",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=1",
    "--config.train.progress=False",
    "--config.model.width=32",
    "--config.model.prefix=2",
    "--config.model.enc_heads=2",
    "--config.model.lm_depth=1",
    "--config.model.lm_heads=2",
    "--config.model.dec_heads=2",
    "--config.words=16",
    "--config.baseline.batch_size=8",
    "--config.baseline.model.width=32",
    "--config.baseline.model.depth=1",
    "--config.baseline.model.heads=2",
    "--config.baseline.seq_len.char=64",
    "--config.baseline.word_seq_len=16",
    "--config.eval.targets=12",
    "--config.eval.context_chars=24",
    "--config.eval.batch_size=16",
]
MODELS = ("char", "word", "word_pooled")


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
    wd = tmp_path_factory.mktemp("word_pooled") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def test_the_reference_run_matches_flops_and_shares_targets(reference):
    f = eh.findings(reference)
    rows = f["rows"]
    assert list(rows) == ["word_pooled", "char", "word", "bigram"]
    assert all(r["accuracy"]["overall"]["n"] == 12 for r in rows.values())
    models = {k: r for k, r in rows.items() if k != "bigram"}
    assert len({r["n_chars"] for r in models.values()}) == 1  # one text for every model
    assert rows["word_pooled"]["steps"] == 3  # the budget is its FLOPs at train.steps
    for k, r in models.items():  # matched within half a step's FLOPs
        assert abs(r["train_flops"] - f["budget"]) <= r["train_flops"] / r["steps"] / 2, k
        assert 0 < r["bits_per_char"] < 20 and r["params"] > 0
    assert sorted(p.name for p in (reference / "runs").iterdir()) == sorted(MODELS)
    saved = json.loads((reference / "runs" / "word_pooled" / "config.json").read_text())
    assert saved["kind"] == "word_pooled" and saved["train"]["steps"] == 3
    assert saved["eval"]["targets"] == 12 and saved["eval"]["max_units"] == 12
    report = (reference / "report.md").read_text()
    assert "| word-pooled (eTok) |" in report and "figures/accuracy_by_frequency.png" in report
    assert "characters for every model" in report
    provenance = json.loads((reference / "provenance.json").read_text())
    assert set(provenance["timings"]) == set(MODELS)  # timings there, never in findings


def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    """word_pooled trains 3 steps, then char (checkpoints every 4): the 8th step is char's
    5th, after its first checkpoint; the 2nd evaluation computed on the rerun is char's next
    words; the report kill comes after every run is evaluated."""
    assert eh.findings(reference)["rows"]["char"]["steps"] > 5
    wd = tmp_path / "w"
    faults = ["train_step:8", "evaluate:2", "report:1"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)
    # a rerun of a finished command reuses everything and changes no result
    before = {k: v for k, v in eh.tree_state(wd).items() if not k.startswith(("report", "prov"))}
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}"])
    assert code == 0, err
    after = {k: v for k, v in eh.tree_state(wd).items() if not k.startswith(("report", "prov"))}
    assert after == before


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("--config.train.lr=0.01", "train.lr"),
        ("--config.data.vocab_size=40", "data.vocab_size"),  # the character tokenizer's size
        ("--config.budget.train_flops=1e9", "train.steps"),
    ],
)
def test_a_changed_field_is_refused_by_name_and_nothing_changes(reference, tmp_path, override,
                                                                fragment):  # fmt: skip
    wd = eh.copy_workdir(reference, tmp_path / "w")
    before = eh.tree_state(wd)
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", override])
    eh.assert_one_line_error(code, err, fragment, "runs/")
    assert eh.tree_state(wd) == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--config.budget.train_flops=nan"], "budget.train_flops"),
        (["--config.train.steps=-5"], "train.steps"),
        (["--config.budget.train_flops=1000"], "less than one training step of word_pooled"),
        (["--config.models=word_pooled,bpe"], "models"),
        (["--config.data.files=my.txt"], "data.files"),
        (["--config.eval.targts=3"], "did you mean --config.eval.targets"),
        (["--config=word_pooled:nope"], "unknown variant 'nope'"),
        (["--config.data.unit=subword"], "data.unit"),
        (["--config.eval.gen_units.char=64"], "eval.gen_units.char"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, args, fragment):
    wd = tmp_path / "fresh"
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args])
    eh.assert_one_line_error(code, err, fragment)
    assert not wd.exists()


def test_evaluate_every_run_kind_and_a_moved_run_dir(reference, tmp_path, unoptimised_xla):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    rows = eh.findings(wd)["rows"]
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    lines = {r["run"]: r for r in map(json.loads, out.strip().splitlines())}
    assert {k: v["kind"] for k, v in lines.items()} == {
        "runs/char": "lm", "runs/word": "word", "runs/word_pooled": "word_pooled",
    }  # fmt: skip
    units = eh.findings(wd)["units"]
    doc_bytes = units["char"]["bytes"]
    for model in MODELS:
        line = lines[f"runs/{model}"]
        assert line["bits_per_byte"] == pytest.approx(rows[model]["bits_per_byte"])
        assert line["split"] == "test"
        # the per-document units add up to the whole split, the same documents for every kind
        u = units[model]
        assert sum(u["bits"]) / sum(u["bytes"]) == pytest.approx(line["bits_per_byte"])
        # the same 1 KB blocks; a word straddling a block edge counts in the block it starts in
        assert len(u["bytes"]) == len(doc_bytes) and sum(u["bytes"]) == rows[model]["n_bytes"]
        assert np.allclose(u["bytes"], doc_bytes, atol=40)
    # a run directory moved away is evaluated from its own config.json, on another split too
    moved = shutil.move(wd / "runs" / "word_pooled", tmp_path / "elsewhere")
    code, out, err = eh.cli([f"--workdir={moved}", "--split=validation"], entry="evaluate")
    assert code == 0, err
    line = json.loads(out)
    assert (line["split"], line["step"], line["kind"]) == ("validation", 3, "word_pooled")
    assert line["n_chars"] != rows["word_pooled"]["n_chars"]
    assert len(list((tmp_path / "elsewhere" / "evals").glob("validation-3-*.json"))) == 1


def test_report_is_rendered_again_from_the_findings(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    old = (wd / "report.md").read_text()
    (wd / "report.md").unlink()
    code, _, err = eh.cli([f"--workdir={wd}"], entry="report")
    assert code == 0, err
    assert (wd / "report.md").read_text() == old
