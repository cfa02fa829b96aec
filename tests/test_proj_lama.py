"""The lama project through the command line (killed and rerun, changed config, bad input,
evaluation of its runs, the ``lm`` variant), and its findings code on known cases."""

from __future__ import annotations

import dataclasses
import json
import shutil
import textwrap

import experiment_helpers as eh
import numpy as np
import pytest
import train_helpers as th

from lexlm.errors import ConfigError, DataError
from lexlm.nn.transformer import LMConfig
from lexlm.proj.lama import config as lama_config
from lexlm.proj.lama import findings as fnd
from lexlm.proj.lama import low_rank_lm, report
from lexlm.proj.lama.evaluate import accuracy

# The tiny variant (the embedded ratings), shrunk so that a run takes seconds: two poolings,
# four steps, saved and evaluated every two.
SMALL = [
    "--config=lama:tiny",
    "--config.models=lama,additive",
    "--config.train.steps=4",
    "--config.train.ckpt_every=2",
    "--config.train.log_every=2",
    "--config.train.batch_size=16",
    "--config.train.warmup_steps=1",
    "--config.model.embed=8",
    "--config.model.hidden=8",
    "--config.model.heads=2",
    "--config.model.attn_hidden=8",
    "--config.model.mlp_hidden=8",
    "--config.text.max_len=16",
    "--config.text.max_vocab=500",
    "--config.examples=2",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One uninterrupted run of the command, in a child like every run it is compared with."""
    wd = tmp_path_factory.mktemp("lama") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def ag_news_csv(path, rows: int = 60, bad_label: int | None = None):
    """A small AG News file: ``rows`` articles of the four classes (one label replaced)."""
    lines = [f'{1 + i % 4},"Title {i}","story {i} about topic {i % 4}"' for i in range(rows)]
    if bad_label is not None:
        lines[7] = f'{bad_label},"Odd","a label of no class"'
    path.write_text("\n".join(lines) + "\n")
    return path


# -- killed and rerun -----------------------------------------------------------------------------
def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    wd = tmp_path / "w"
    # lama: killed between the save of step 2 and its evaluation (the rerun's hook owes it),
    # inside that evaluation on the rerun (which then trains on from step 2); last in the
    # report, after the findings were written
    faults = ["checkpoint:1", "evaluate:2", "report:1"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)
    rows = {r["model"]: r for r in eh.findings(wd)["rows"]}
    for run in ("lama", "additive"):  # validation at each saved step, test once: the chosen one
        folder = wd / "runs" / f"cls_{run}"
        names = sorted(p.name.rsplit("-", 1)[0] for p in (folder / "evals").iterdir())
        assert names == sorted([f"test-{rows[run]['step']}", "validation-2", "validation-4"])
        assert [p.name for p in (folder / "selected").iterdir()] == [
            f"params-{rows[run]['step']}.msgpack"]  # fmt: skip


def test_findings_report_and_figures(reference, tmp_path):
    reference = eh.copy_workdir(reference, tmp_path / "w")
    f = eh.findings(reference)
    assert [r["model"] for r in f["rows"]] == ["lama", "additive"]
    assert f["sizes"] == {"train": 8454, "validation": 1057, "test": 1057}
    assert f["read"]["all"]["neutral"] == 37 and f["classes"] == 2 and f["vocab"] == 500
    for r in f["rows"]:  # chosen on validation among the saved steps; test read at it alone
        assert [e["step"] for e in r["evaluations"]] == [2, 4]
        assert all(set(e) == {"step", "validation"} for e in r["evaluations"])
        assert r["validation"] == max(e["validation"] for e in r["evaluations"])
        assert (
            r["entropy"]["texts"] == 1057
            and 0 < r["entropy"]["entropy"] <= r["entropy"]["log_t"] + 1e-9
        )
    assert f["selection"] == "validation" and f["mean_gap"] is None  # mean pooling not run
    assert f["scoring"] == fnd.scoring_costs(16, 2)
    lama = f["attention"]["lama"]
    assert len(lama["tokens"]) == 2 and len(lama["weights"][0]) == 2  # 2 texts, 2 heads
    assert len(lama["weights"][0][0]) == len(lama["tokens"][0])
    np.testing.assert_allclose(np.sum(lama["weights"][0], axis=1), 1.0, atol=1e-3)
    provenance = json.loads((reference / "provenance.json").read_text())
    assert set(provenance["timings"]) == {"cls_lama", "cls_additive"}
    assert all(t["load"] >= 0 for t in provenance["timings"].values())  # the machine's load
    assert "step_s" not in json.dumps(f)  # timings are provenance, never findings
    text = (reference / "report.md").read_text()
    assert "| LAMA |" in text and "figures/attention_lama.png" in text
    assert (
        "at the step validation chose" in text
        and "Mean pooling (no attention): not recorded" in text
    )
    assert (reference / "figures" / "attention_lama.png").read_bytes()[:4] == b"\x89PNG"
    assert not (reference / "figures" / "attention_additive.png").exists()
    (reference / "report.md").unlink()  # rendered again from the findings alone
    code, _, err = eh.cli([f"--workdir={reference}"], entry="report")
    assert code == 0, err
    assert (reference / "report.md").read_text() == text


# -- changed config -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, fields",
    [
        ("--config.train.lr=0.01", ["train.lr"]),
        ("--config.text.max_vocab=400", ["text.max_vocab", "vocab.size"]),
        ("--config.data.split_seed=1", ["data.split_seed", "vocab.sha256"]),
    ],
)
def test_a_changed_field_is_refused_by_name_and_nothing_changes(reference, tmp_path, override,
                                                                fields):  # fmt: skip
    wd = eh.copy_workdir(reference, tmp_path / "w")
    before = eh.tree_state(wd)
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", override])
    eh.assert_one_line_error(code, err, "runs/cls_lama", *fields)
    assert eh.tree_state(wd) == before


def test_fewer_models_reuse_their_runs(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    runs = {k: v for k, v in eh.tree_state(wd).items() if k.startswith("runs/")}
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", "--config.models=additive"])
    assert code == 0, err
    assert eh.findings(wd)["rows"] == eh.findings(reference)["rows"][1:]
    assert {k: v for k, v in eh.tree_state(wd).items() if k.startswith("runs/")} == runs


def test_an_edited_data_file_is_refused_by_its_fingerprint(tmp_path):
    """A run opened on a small AG News file (as a run killed before its first step leaves
    it), then the file is edited: the rerun is refused by the file's fingerprint, and the
    run's evaluation refuses to read the changed file."""
    from lexlm.data import labelled
    from lexlm.experiment import store
    from lexlm.proj.lama import evaluate as lama_eval
    from lexlm.proj.lama import run as lama_run

    csv = ag_news_csv(tmp_path / "ag.csv")
    args = ["--config=lama:ag_news", f"--config.data.files={csv}", "--config.models=additive",
            "--config.data.holdout=(0.25,0.25)", "--config.train.batch_size=8"]  # fmt: skip
    c = lama_config.get_config("ag_news")
    c.models, c.data.files, c.data.holdout = "additive", (str(csv),), (0.25, 0.25)
    c.train.batch_size = 8
    data = labelled.read_splits(c.data)
    assert data.classes == 4 and [len(data.splits[s]) for s in ("train", "test")] == [30, 15]
    vocab = lama_run.build_vocab(c, data.splits["train"].texts)
    cfg = lama_run.classifier_run_config(c, "additive", data.classes, vocab)
    run_dir = tmp_path / "w" / "runs" / "cls_additive"
    store.open_run(run_dir, cfg, lama_run.run_inputs(cfg))
    assert lama_run.vocab_for(cfg, run_dir, vocab).sha256 == vocab.sha256
    config = store.load_run_config(run_dir)
    assert config.kind == "classifier" and config.vocab.size == vocab.size
    assert tuple(config.data.files) == (str(csv),)  # absolute: evaluable from anywhere
    ag_news_csv(csv, rows=64)  # the data changes under the workdir
    before = eh.tree_state(tmp_path / "w")
    code, _, err = eh.cli([*args, f"--workdir={tmp_path / 'w'}"])
    eh.assert_one_line_error(code, err, "runs/cls_additive", "inputs.ag.csv#0")
    diffs = err.split("another config (")[1].split(");")[0]
    named = [d.split(" ")[0] for d in diffs.split(", ")]
    assert named and all(n.startswith(("inputs.", "vocab.")) for n in named), named
    assert eh.tree_state(tmp_path / "w") == before
    with pytest.raises(DataError, match=r"data files changed .*inputs\.ag\.csv#0"):
        lama_eval.check_inputs(config, run_dir)


# -- bad input ------------------------------------------------------------------------------------
def sst2_files(tmp_path, empty: str | None = None) -> list[str]:
    args = []
    for split in ("train", "validation", "test"):
        path = tmp_path / f"{split}.tsv"
        rows = "" if split == empty else "".join(f"{i % 2}\tsentence {i}\n" for i in range(40))
        path.write_text("label\tsentence\n" + rows)
        args.append(f"--config.data.split_files.{split}={path}")
    return args


@pytest.mark.parametrize(
    "case, fragments",
    [
        (["--config.models=lama,bogus"], ["models", "bogus"]),
        ("bad_label", ["ag.csv", "line 8", "label 5 is not an AG News class"]),
        ("missing_split", ["data.split_files.test", "no such file"]),
        ("empty_split", ["validation.tsv", "split 'validation' has no labelled text"]),
        ("small_train", ["fewer than train.batch_size = 64"]),
        (["--config.data.files=ratings.csv"], ["data.files", "vader_movies"]),
        (["--config.text.max_lne=3"], ["did you mean --config.text.max_len"]),
        (["--config=lama:nope"], ["unknown variant 'nope'"]),
        (["--config.train.steps=-5"], ["train.steps"]),
        (["--config.data.vocab_size=50"], ["data.vocab_size", "text.max_vocab"]),
        (["--config.classes=3"], ["classes", "fixes 2"]),
        (["--config.models=self_attention", "--config.model.heads=3"], ["model.heads"]),
        (["--config.text.max_vocab=2"], ["text.max_vocab"]),
        (["--config=lama:lm", "--config.qk_rank=0"], ["qk_rank"]),
        (["--config=lama:lm", "--config.lm_base.train.steps=-1"], ["lm_base.train.steps"]),
        (["--config=lama:lm", "--config.models=lama"], ["has no field 'models'"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, case, fragments):
    if case == "bad_label":
        csv = ag_news_csv(tmp_path / "ag.csv", bad_label=5)
        case = ["--config=lama:ag_news", f"--config.data.files={csv}"]
    elif case == "missing_split":
        case = ["--config=lama:sst2", *sst2_files(tmp_path)[:2],
                f"--config.data.split_files.test={tmp_path / 'nope.tsv'}"]  # fmt: skip
    elif case == "empty_split":
        case = ["--config=lama:sst2", *sst2_files(tmp_path, empty="validation")]
    elif case == "small_train":
        case = ["--config=lama:sst2", *sst2_files(tmp_path), "--config.train.batch_size=64"]
    wd = tmp_path / "fresh"
    # another variant stands alone; an override of the small tiny run replaces its value
    keys = {a.split("=")[0] for a in case}
    base = [] if "--config" in keys else [a for a in SMALL if a.split("=")[0] not in keys]
    code, _, err = eh.cli([*base, f"--workdir={wd}", *case])
    eh.assert_one_line_error(code, err, *fragments)
    assert not wd.exists()


# -- evaluation -----------------------------------------------------------------------------------
def test_evaluate_every_run_from_its_own_config(reference, tmp_path, unoptimised_xla):
    import jax

    from lexlm.errors import CheckpointError
    from lexlm.proj.lama import evaluate as lama_eval

    wd = eh.copy_workdir(reference, tmp_path / "w")
    f = eh.findings(wd)
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [(x["run"], x["kind"], x["step"]) for x in lines] == [
        ("runs/cls_additive", "classifier", 4), ("runs/cls_lama", "classifier", 4)]  # fmt: skip
    # a run dir moved elsewhere, its saved test record gone: test defaults to the step chosen
    # on validation, computed again from the kept parameters of that step and the run's own
    # config and vocabulary, the same number
    chosen = f["rows"][0]["step"]
    moved = shutil.copytree(wd / "runs" / "cls_lama", tmp_path / "elsewhere" / "run")
    for p in (moved / "evals").glob("test-*.json"):
        p.unlink()
    code, out, err = eh.cli([f"--workdir={moved}", "--split=test"], entry="evaluate")
    assert code == 0, err
    line = json.loads(out)
    assert (line["run"], line["examples"], line["step"]) == (".", 1057, chosen)
    assert line["accuracy"] == pytest.approx(f["rows"][0]["test"], abs=1e-6)
    assert len(list((moved / "evals").glob("test-*.json"))) == 1
    # test at a step validation did not choose is refused, and nothing is written
    other = 2 if chosen == 4 else 4
    before = eh.tree_state(moved)
    code, _, err = eh.cli([f"--workdir={moved}", "--split=test", f"--step={other}"],
                          entry="evaluate")  # fmt: skip
    eh.assert_one_line_error(code, err, "step", f"chosen on validation (step {chosen})")
    assert eh.tree_state(moved) == before
    # step 2's checkpoint was not kept (train.keep=1): its saved evaluation still answers,
    # a split never evaluated at step 2 cannot be (without its kept parameters)
    code, out, err = eh.cli([f"--workdir={wd}", "--step=2"], entry="evaluate")
    assert code == 0, err
    got = json.loads(out.splitlines()[1])["accuracy"]
    assert got == pytest.approx(f["rows"][0]["evaluations"][0]["validation"], abs=1e-6)
    kept = lama_eval.selected_params(wd / "runs" / "cls_lama", chosen)
    for run in ("cls_lama", "cls_additive"):
        shutil.rmtree(wd / "runs" / run / "selected")
    code, _, err = eh.cli([f"--workdir={wd}", "--step=2", "--split=train"], entry="evaluate")
    eh.assert_one_line_error(code, err, "step 2")
    # without selected/ (a run trained before it), the chosen step's checkpoint stands in if kept
    run = wd / "runs" / "cls_lama"
    with pytest.raises(
        CheckpointError, match="neither the parameters nor the checkpoint of step 2"
    ):
        lama_eval.selected_params(run, 2)
    restored = lama_eval.selected_params(run, 4)
    assert jax.tree.structure(restored) == jax.tree.structure(kept)
    if chosen == 4:
        jax.tree.map(np.testing.assert_array_equal, restored, kept)


def test_eval_hook_keeps_the_best_step_and_owes_it_after_a_kill(tmp_path, unoptimised_xla):
    """Validation only at each saved step; ``selected/`` holds the best step so far (the
    earliest on ties), a kill before it was written leaves the step owed, and test is never
    scored by the hook."""
    import types

    import jax

    from lexlm.data.labelled import Encoded
    from lexlm.nn.classifier import ClassifierConfig
    from lexlm.proj.lama import evaluate as lama_eval
    from lexlm.train.classifier_task import make_classifier_task

    cfg = ClassifierConfig(vocab_size=12, classes=2, embed=4, hidden=3, heads=2, mlp_hidden=4)
    rng = np.random.default_rng(0)
    enc = Encoded(rng.integers(1, 12, (40, 5)).astype(np.int32),
                  rng.integers(0, 2, 40).astype(np.int32), 0, 0, 0)  # fmt: skip
    task = make_classifier_task(cfg)
    hook = lama_eval.EvalHook(tmp_path, cfg, {"validation": enc}, 16)  # no test split given
    for step, seed in ((2, 0), (4, 1), (6, 2)):
        state = types.SimpleNamespace(params=task.init(jax.random.key(seed)))
        assert hook.pending(step)
        hook(step, state, True)
        assert not hook.pending(step)
        best = fnd.select_on_dev(lama_eval.validation_records(tmp_path, seeds=1))["step"]
        assert lama_eval.selected_steps_on_disk(tmp_path) == [best]
        if best == step:  # killed before the parameters were kept: owed, and paid again
            lama_eval.selected_path(tmp_path, step).unlink()
            assert hook.pending(step)
            hook(step, state, True)
            assert lama_eval.selected_steps_on_disk(tmp_path) == [step]
    names = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "evals").iterdir())
    assert names == ["validation-2", "validation-4", "validation-6"]


# -- the lm variant -------------------------------------------------------------------------------
LM_SMALL = [
    "--config=lama:lm",
    "--config.qk_rank=2",
    "--config.lm_base.train.steps=2",
    "--config.lm_base.train.ckpt_every=2",
    "--config.lm_base.train.log_every=1",
    "--config.lm_base.train.batch_size=4",
    "--config.lm_base.train.warmup_steps=1",
    "--config.lm_base.train.progress=False",
    "--config.lm_base.train.tensorboard=False",
    "--config.lm_base.seq_len=16",
    "--config.lm_base.model.width=16",
    "--config.lm_base.model.heads=2",
    "--config.lm_base.model.depth=1",
    "--config.lm_base.eval.max_windows=4",
    "--config.lm_base.eval.batch_size=4",
]


def test_lm_variant_builds_lm_runs_from_its_base_block(tmp_path, unoptimised_xla):
    wd = tmp_path / "lm"
    code, _, err = eh.cli([*LM_SMALL, f"--workdir={wd}"])
    assert code == 0, err
    f = eh.findings(wd)
    rows = {r["model"]: r for r in f["rows"]}
    assert list(rows) == list(low_rank_lm.LM_MODELS)
    assert {r["step"] for r in rows.values()} == {2}  # the override reached every run
    assert rows["low_rank"]["rank"] == 2 and rows["standard"]["rank"] is None
    eq, std = rows["low_rank_equal_params"], rows["standard"]
    assert eq["width"] > 16 and abs(eq["params"] - std["params"]) < 0.1 * std["params"]
    for name in rows:
        config = json.loads((wd / "runs" / f"lm_{name}" / "config.json").read_text())
        assert config["kind"] == "lm" and config["train"]["steps"] == 2
        assert config["model"]["attention_kind"] == ("standard" if name == "standard"
                                                     else "low_rank")  # fmt: skip
    assert "| low_rank_equal_params |" in (wd / "report.md").read_text()
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    assert [json.loads(x)["kind"] for x in out.strip().splitlines()] == ["lm"] * 3
    before = eh.tree_state(wd)  # a changed base field is refused by its name
    code, _, err = eh.cli([*LM_SMALL, f"--workdir={wd}", "--config.lm_base.train.lr=0.01"])
    eh.assert_one_line_error(code, err, "runs/lm_standard", "train.lr")
    assert eh.tree_state(wd) == before


# -- findings code on known cases -----------------------------------------------------------------
def test_accuracy_counts_weighted_rows_only():
    batches = [
        {"tokens": np.array([0, 1, 2, 3]), "label": np.array([0, 1, 1, 0]),
         "weight": np.array([1.0, 1, 1, 0])},
        {"tokens": np.array([4, 5]), "label": np.array([1, 1]), "weight": np.array([1.0, 0])},
    ]  # fmt: skip
    acc, n = accuracy(lambda t: t % 2, batches)  # right: rows 0 and 1 of 4 real rows
    assert n == 4 and acc == pytest.approx(2 / 4)


def test_selection_uses_validation_only_and_prefers_the_earliest_tie():
    evals = [
        {"step": 10, "validation": 0.7, "test": 0.9},
        {"step": 20, "validation": 0.8, "test": 0.1},
        {"step": 30, "validation": 0.8, "test": 0.2},
    ]
    assert fnd.select_on_dev(evals)["step"] == 20
    with pytest.raises(ValueError):
        fnd.select_on_dev([])


def test_majority_gap_table_and_sentences():
    assert fnd.majority_accuracy(np.array([1, 1, 0]), np.array([1, 0, 0, 0])) == 0.25
    rows = [
        {"model": "lama", "test": 0.80, "validation": 0.8, "step": 5, "attention_params": 100,
         "params": 1000},
        {"model": "additive", "test": 0.82, "validation": 0.8, "step": 5, "attention_params": 50,
         "params": 900},
        {"model": "structured", "test": 0.75, "validation": 0.85, "step": 5,
         "attention_params": 80, "params": 950},
    ]  # fmt: skip
    gap, base = fnd.lama_gap(rows)  # validation chooses structured, though additive tests higher
    assert base == "structured" and gap == pytest.approx(5.0)
    assert fnd.lama_gap(rows[1:]) == (None, None)
    timings = {"timings": {"cls_lama": {"step_s": 0.01}}}
    lines = report.table(rows, 400, timings)
    assert lines[2] == "| LAMA | 80.0 | 80.0 | 5 | 100 | 0.250 | 1,000 | - | 10.0 |"
    assert lines[3].endswith("| 900 | - | - |")  # no timing: reused, not trained in that command
    # the step-time line names a model that trained while another job competed (load > cores+1)
    timings = {"cls_lama": {"step_s": 0.01, "load": 2.2},
               "cls_additive": {"step_s": 0.02, "load": 3.4}}  # fmt: skip
    prov = {"machine": "m", "cpu_cores": 2, "timings": timings}
    line = report.step_time_line(rows[:2], prov)
    assert "on 2 cores: LAMA 2.2, additive attention (HAN) 3.4" in line
    assert "Another job competed while additive attention (HAN) trained" in line
    prov["timings"]["cls_additive"]["load"] = 2.9
    assert report.step_time_line(rows[:2], prov).endswith("Compare them within the table.")
    del prov["timings"]["cls_additive"]["load"]
    assert "load while they trained was not recorded" in report.step_time_line(rows[:2], prov)
    rows = [
        {"model": "standard", "width": 128, "rank": None, "bits_per_char": 2.563,
         "attention_params": 1000, "params": 4000, "flops_per_token": 100.0, "step": 600},
        {"model": "low_rank", "width": 128, "rank": 8, "bits_per_char": 2.646,
         "attention_params": 500, "params": 3500, "flops_per_token": 80.0, "step": 600},
    ]  # fmt: skip
    lm = {"task": "lm", "unit": "char", "source": "lee", "vocab_size": 90, "depth": 2,
          "heads": 4, "seq_len": 128, "steps": 600, "batch_size": 32, "rows": rows}  # fmt: skip
    text = report.render(lm, {}, None)
    assert "rank 8 costs 0.083 bits/char (2.646 against 2.563) with 0.50x" in text
    assert "and 0.80x the forward FLOPs" in text


class Sealed(dict):
    """A findings row whose test accuracy may not be read: reading it fails the test."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError(f"test of {self.get('model', self.get('step'))} read")
        return super().__getitem__(key)


def test_no_test_metric_is_read_before_selection():
    """Selection reads validation alone: steps whose test entries fail on access are chosen
    from, and of the rows only the two chosen on validation have their test read."""
    evals = [Sealed(step=2, validation=0.6, test=0.9), Sealed(step=4, validation=0.7, test=0.1)]
    assert fnd.select_on_dev(evals)["step"] == 4
    rows = [
        Sealed(model="lama", validation=0.70, test=0.99),  # higher test, lower validation
        {"model": "lama_ctx", "validation": 0.72, "test": 0.80},
        Sealed(model="additive", validation=0.60, test=0.99),
        {"model": "self_attention", "validation": 0.71, "test": 0.77},
        {"model": "mean", "validation": 0.75, "test": 0.70},  # a control, not a baseline
    ]
    gap, base = fnd.lama_gap(rows)
    assert base == "self_attention" and gap == pytest.approx(3.0)
    assert fnd.control_gap(rows, "mean") == pytest.approx(10.0)
    assert fnd.control_gap(rows[:4], "mean") is None


def test_scoring_costs_bound_entropy_and_mlp_params_on_known_cases():
    from lexlm.nn.lama import lama_param_count
    from lexlm.nn.pooling import self_attention_qk_param_count

    # D = 4, m = 2: P and Q 16, context 4, key MLP 20; q and k 2 (16 + 4)
    costs = fnd.scoring_costs(4, 2)
    assert costs == {"lama_params": 40, "mhsa_qk_params": 40, "lama_flops_per_token": 48,
                     "mhsa_qk_flops_per_token": 64}  # fmt: skip
    for context in ("learned", "mean"):
        for key_mlp in (True, False):
            got = fnd.scoring_costs(6, 3, key_mlp, context)["lama_params"]
            assert got == lama_param_count(6, 3, context, key_mlp)
    assert fnd.scoring_costs(6, 3)["mhsa_qk_params"] == self_attention_qk_param_count(6)
    assert fnd.scoring_costs(4, 2, key_mlp=False)["lama_flops_per_token"] == 16
    # the largest weight under logits in [-1, 1]: one token at +1, the others at -1
    assert fnd.max_weight(1) == 1.0
    for t in (2, 20):
        logits = np.array([1.0] + [-1.0] * (t - 1))
        assert fnd.max_weight(t) == pytest.approx(np.exp(1) / np.exp(logits).sum())
    assert fnd.max_weight(20) == pytest.approx(0.28, abs=0.005)
    with pytest.raises(ValueError, match="tokens"):
        fnd.max_weight(0)
    # uniform over 4 tokens: log 4; one-hot: 0; padding beyond T ignored; empty texts left out
    weights = [np.array([[0.25] * 4 + [0.0] * 2, [1, 0, 0, 0, 0, 0]]), np.array([[0.5, 0.5]]),
               np.zeros((1, 3))]  # fmt: skip
    got = fnd.attention_entropy(weights, [4, 2, 0])
    assert got["texts"] == 2
    assert got["entropy"] == pytest.approx((np.log(4) / 2 + np.log(2)) / 2, abs=1e-5)
    assert got["log_t"] == pytest.approx((np.log(4) + np.log(2)) / 2, abs=1e-5)
    assert fnd.attention_entropy([], []) == {"entropy": None, "log_t": None, "texts": 0}
    rows = [{"model": "lama", "params": 1000, "attention_params": 100},
            {"model": "self_attention", "params": 950, "attention_params": 300}]  # fmt: skip
    assert fnd.mlp_extra_params(rows, "lama", "self_attention") == 250
    assert fnd.mlp_extra_params(rows[:1], "lama", "self_attention") is None


def classify_findings(**extra) -> dict:
    """A small findings dict of the classification task (as an old finding, without the new
    controls, unless ``extra`` adds them)."""
    rows = [
        {"model": "lama", "test": 0.80, "validation": 0.81, "step": 5, "attention_params": 40,
         "params": 1000},
        {"model": "self_attention", "test": 0.82, "validation": 0.80, "step": 5,
         "attention_params": 80, "params": 950},
    ]  # fmt: skip
    for r, key in zip(rows, ("lama", "self_attention")):
        r.update(extra.pop(key, {}))
    return {"rows": rows, "sizes": {"test": 200}, "width": 4, "heads": 2, **extra}


def test_summary_sentences_with_and_without_the_new_controls():
    old = report.summary_lines(classify_findings())
    text = "\n".join(old)
    assert "test was scored at every saved step" in text
    assert "By validation accuracy (test in brackets): LAMA 81.0 (80.0), multi" in text
    assert "(multi-head self-attention pooling): -2.0 test accuracy points" in text
    assert "Mean pooling (no attention): not recorded in this finding." in text
    assert "LAMA has 50 more parameters than multi-head self-attention pooling" in text
    assert "which adds 90 parameters" in text  # 50 more in all, 40 fewer in the pooling
    assert "(2 D^2 + 2 D = 40): 1.00x the parameters; the FLOPs per token are not recorded" in text
    assert "no token can get more than 0.280 of a head's weight" in text
    assert "Attention entropy against log T: not recorded in this finding." in text
    entropy = {"entropy": 1.5, "log_t": 2.0, "texts": 200}
    mean = {"model": "mean", "test": 0.79, "validation": 0.70, "step": 5, "attention_params": 0,
            "params": 900, "entropy": {"entropy": 2.0, "log_t": 2.0, "texts": 200}}  # fmt: skip
    f = classify_findings(selection="validation", scoring=fnd.scoring_costs(4, 2),
                          lama={"entropy": entropy})  # fmt: skip
    f["rows"].append(mean)
    text = "\n".join(report.summary_lines(f))
    assert "every saved step" not in text and "not recorded" not in text
    assert "The better LAMA model minus mean pooling (no attention): +1.0 test" in text
    assert "1.00x the parameters and 0.75x the FLOPs per token (48 against 64;" in text
    assert (
        "Attention entropy against log T (mean over the test texts, nats): LAMA 1.50 / 2.00, "
        "mean pooling (no attention) 2.00 / 2.00;" in text
    )
    lines = report.table(f["rows"], 100, {})
    assert lines[2].endswith("| 1,000 | 1.50 / 2.00 | - |") and "| - | - |" in lines[3]


def test_equal_param_width_matches_the_standard_model():
    std = LMConfig(vocab_size=100, width=128, depth=2, heads=4, max_len=128)
    low = dataclasses.replace(std, attention_kind="low_rank", qk_rank=8)
    width = low_rank_lm.equal_param_width(std, low)
    assert width > 128 and width % 4 == 0
    wide = dataclasses.replace(low, width=width, qk_rank=round(8 * width / 128))
    step = dataclasses.replace(low, width=width + 4, qk_rank=round(8 * (width + 4) / 128))
    assert abs(wide.param_count() - std.param_count()) <= abs(
        step.param_count() - std.param_count()
    )
    assert abs(wide.param_count() - std.param_count()) / std.param_count() < 0.02


def test_variants():
    for arg in lama_config.VARIANTS:
        c = lama_config.get_config(arg)
        assert c.project == "lama" and c.task == ("lm" if arg == "lm" else "classify")
    assert lama_config.get_config("sst2").data.format == "sst2"
    with pytest.raises(ConfigError, match="unknown variant 'x' of lama"):
        lama_config.get_config("x")
    configs = low_rank_lm.base_run_configs(lama_config.get_config("lm"))
    assert configs["low_rank"].model.qk_rank == 8 and configs["low_rank"].kind == "lm"


MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_disable_most_optimizations", True)  # compiles 2-3x faster
    import numpy as np
    from lexlm.data.labelled import ClassBatches, Encoded
    from lexlm.nn.classifier import ClassifierConfig
    from lexlm.train import default_train_config, train
    from lexlm.train.classifier_task import make_classifier_task

    cfg = ClassifierConfig(vocab_size=20, classes=2, pooling="lama", embed=8, hidden=8, heads=2,
                           mlp_hidden=8, dropout=0.0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64).astype(np.int32)
    tokens = rng.integers(2, 20, (64, 6)).astype(np.int32)
    tokens[:, 0] = 2 + labels  # the label is in the first token
    t = default_train_config()
    t.update(steps=6, batch_size=16, lr=1e-2, warmup_steps=0, log_every=1, ckpt_every=100,
             tensorboard=False, progress=False, mesh=(2, 2, 2))
    result = train(t, make_classifier_task(cfg), ClassBatches(Encoded(tokens, labels, 0, 0, 0),
                   16), sys.argv[1])
    leaf = result.state.params["embed"]["embedding"]
    print("DEVICES", len(leaf.sharding.device_set))
    print("LOSSES", json.dumps([h["loss"] for h in result.history]))
    """
)


def test_classifier_trains_under_jit_on_an_8_device_mesh(tmp_path):
    lines = th.run_script(MESH_SCRIPT, tmp_path / "train_cls.py", [str(tmp_path / "run")])
    losses = json.loads(lines["LOSSES"])
    assert int(lines["DEVICES"]) == 8
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_structured_loss_adds_its_penalty(unoptimised_xla):
    import jax
    import jax.numpy as jnp

    from lexlm.nn.classifier import ClassifierConfig
    from lexlm.train.classifier_task import make_classifier_task

    kw = dict(vocab_size=9, classes=2, pooling="structured", embed=4, hidden=3, heads=2,
              attn_hidden=3, mlp_hidden=4, dropout=0.0)  # fmt: skip
    with_pen = make_classifier_task(ClassifierConfig(**kw, penalty=1.0))
    without = make_classifier_task(ClassifierConfig(**kw, penalty=0.0))
    params = with_pen.init(jax.random.key(0))
    batch = {"tokens": jnp.array([[2, 3, 0], [4, 5, 6]]), "label": jnp.array([0, 1]),
             "weight": jnp.array([1.0, 1.0])}  # fmt: skip
    both = jax.jit(lambda p, b, k: (with_pen.loss(p, b, k), without.loss(p, b, k)))
    (loss1, m1), (loss0, m0) = both(params, batch, jax.random.key(1))  # one compile
    assert "penalty" in m1 and "penalty" not in m0
    assert float(loss1 - loss0) == pytest.approx(float(m1["penalty"]), rel=1e-5)
    assert float(m1["penalty"]) > 0


# -- seeds and intervals --------------------------------------------------------------------------
def seeded_row(model: str, validation: float, correct_per_seed, **extra) -> dict:
    """A findings row as the seeded run writes it, from each seed's 0/1 test correctness."""
    from lexlm.eval import intervals as iv

    per_seed = [{"step": 5, "validation": validation, "test": float(np.mean(c)),
                 "correct": list(c)} for c in correct_per_seed]  # fmt: skip
    tests = [p["test"] for p in per_seed]
    units = fnd.seed_units(per_seed)
    return {"model": model, "validation": validation, "test": float(np.mean(tests)), "step": 5,
            "steps": [5] * len(per_seed), "seeds": per_seed,
            "test_spread": iv.seed_spread(tests),
            "interval": iv.bootstrap_interval(iv.mean("correct"), units),
            "attention_params": 40, "params": 1000, **extra}  # fmt: skip


def test_seed_units_average_each_texts_correctness():
    got = fnd.seed_units([{"correct": [1, 1, 0, 0]}, {"correct": [1, 0, 1, 0]}])
    np.testing.assert_array_equal(got["correct"], [1.0, 0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="different units"):
        fnd.seed_units([{"correct": [1, 0]}, {"correct": [1, 0, 1]}])


def test_gap_sentences_order_only_outside_the_interval():
    """Constructed correctness on 200 test texts: LAMA right on 160, the baseline (chosen on
    validation over a higher-testing one) on the first 100 of them: +30 points, an ordering;
    mean pooling right on as many texts as LAMA but shifted by one: 0 points, tied."""
    n = 200
    lama = np.r_[np.ones(160, int), np.zeros(40, int)]
    base = np.r_[np.ones(100, int), np.zeros(100, int)]
    mean = np.roll(lama, 1)
    rows = [
        seeded_row("lama", 0.80, [lama, lama]),
        seeded_row("additive", 0.50, [np.ones(n, int)] * 2),  # tests higher, validates lower
        seeded_row("structured", 0.70, [base, base]),
        seeded_row("mean", 0.60, [mean, mean]),
    ]
    cmps = fnd.gap_comparisons(rows)
    b, m = cmps["baseline"], cmps["mean"]
    assert (b["a"], b["b"], m["a"], m["b"]) == ("lama", "structured", "lama", "mean")
    assert b["diff"] == pytest.approx(0.30) and b["verdict"] == "a" and b["lo"] > 0
    assert m["diff"] == pytest.approx(0.0) and m["verdict"] == "tied"
    assert m["lo"] < 0 < m["hi"] and b["units"] == n
    f = {"rows": rows, "sizes": {"test": n}, "width": 4, "heads": 2, "selection": "validation",
         "comparisons": cmps, "seeds": 2}  # fmt: skip
    text = "\n".join(report.summary_lines(f))
    assert (
        "The better LAMA model (LAMA) against the best baseline (structured self-attention "
        "(Lin et al.)), both chosen by validation accuracy, in test accuracy points: LAMA is "
        f"better than structured self-attention (Lin et al.) (difference +30.0 "
        f"[{100 * b['lo']:+.1f}, {100 * b['hi']:+.1f}], 95% paired bootstrap interval)." in text
    )
    assert (
        "The better LAMA model (LAMA) against mean pooling (no attention), in test accuracy "
        "points: LAMA and mean pooling (no attention) are tied at this budget (difference +0.0 "
        f"[{100 * m['lo']:+.1f}, {100 * m['hi']:+.1f}], 95% paired bootstrap interval includes "
        "0)." in text
    )
    assert "minus" not in text  # the old point-gap sentences are for old findings only
    # a finding whose rows keep no per-text correctness: no comparison, the old sentences
    assert fnd.gap_comparisons([{"model": "lama", "validation": 0.8, "test": 0.8},
                                {"model": "mean", "validation": 0.7, "test": 0.7}]) == {
        "baseline": None, "mean": None}  # fmt: skip


def test_table_prints_mean_over_seeds_plus_minus_the_interval_and_the_seed_sd():
    n = 100
    ones = np.ones(n, int)
    seeds = [np.r_[ones[:80], 0 * ones[80:]], np.r_[ones[:82], 0 * ones[82:]],
             np.r_[ones[:84], 0 * ones[84:]]]  # fmt: skip
    row = seeded_row("lama", 0.8, seeds)
    i = row["interval"]
    assert row["test"] == pytest.approx(0.82) and i["value"] == pytest.approx(0.82)
    assert i["lo"] < 0.82 < i["hi"]
    line = report.table([row], 80, {})[2]
    half = 100 * (i["hi"] - i["lo"]) / 2
    assert line.startswith(f"| LAMA | 82.0 ± {half:.1f} | 2.0 | 80.0 | 5, 5, 5 | 40 | 0.500 |")
    assert report.table([row], 80, {})[0].startswith(
        "| model | test accuracy (%, mean over seeds ± 95% bootstrap over texts) | seed sd |"
    )
    f = {"rows": [row], "seeds": 3}
    assert report.seeds_line(f).startswith("Each model trains 3 seeds in one program")
    assert "over the 100 test texts of the seed-averaged correctness" in report.seeds_line(f)
    one = seeded_row("lama", 0.8, seeds[:1])
    half = 100 * (one["interval"]["hi"] - one["interval"]["lo"]) / 2
    assert report.table([one], 80, {})[2].startswith(f"| LAMA | 80.0 ± {half:.1f} | - (one seed) |")
    assert report.seeds_line({"rows": [one], "seeds": 1}) == (
        "One training seed (3 seeds of this config are too large for the main job's budget); "
        "± is the 95% bootstrap interval over the 100 test texts."
    )
    old = classify_findings()  # an old finding: no per-text correctness
    assert report.seeds_line(old) == "One seed; no interval recorded in this finding."
    assert report.table(old["rows"], 80, {})[0].startswith("| model | test accuracy (%) | valid")


def test_eval_hook_validates_and_keeps_each_seed_apart(tmp_path, unoptimised_xla):
    """Two copies stacked on a leading axis: each copy's validation record names its seed,
    each keeps its own best step's parameters, equal to its slice of the stacked tree."""
    import types

    import jax

    from lexlm.data.labelled import Encoded
    from lexlm.nn.classifier import ClassifierConfig
    from lexlm.proj.lama import evaluate as lama_eval
    from lexlm.train.classifier_task import make_classifier_task

    cfg = ClassifierConfig(vocab_size=12, classes=2, embed=4, hidden=3, heads=2, mlp_hidden=4)
    rng = np.random.default_rng(0)
    enc = Encoded(rng.integers(1, 12, (40, 5)).astype(np.int32),
                  rng.integers(0, 2, 40).astype(np.int32), 0, 0, 0)  # fmt: skip
    task = make_classifier_task(cfg)
    hook = lama_eval.EvalHook(tmp_path, cfg, {"validation": enc}, 16, seeds=2)
    stacked = {}
    for step in (2, 4, 6):
        keys = jax.random.split(jax.random.key(step), 2)
        stacked[step] = jax.vmap(task.init)(keys)
        assert hook.pending(step)
        hook(step, types.SimpleNamespace(params=stacked[step]), True)
        assert not hook.pending(step)
    for s in (0, 1):
        records = lama_eval.validation_records(tmp_path, seed=s, seeds=2)
        assert [r["step"] for r in records] == [2, 4, 6]
        params = jax.tree.map(lambda x, s=s: x[s], stacked[6])
        want = lama_eval.metrics_of(cfg, params, enc, 16, "validation", 6)["accuracy"]
        assert records[-1]["validation"] == want
        best = fnd.select_on_dev(records)["step"]
        assert lama_eval.selected_steps_on_disk(tmp_path, s, 2) == [best]
    assert not lama_eval.selected_steps_on_disk(tmp_path)  # nothing in the one-seed place
    assert sorted(p.name for p in (tmp_path / "selected").iterdir()) == ["seed0", "seed1"]


def test_seeded_grid_picks_each_seeds_step_and_scores_test_once_per_seed(reference, cache,
                                                                        tmp_path):  # fmt: skip
    """``train.seeds = 2`` through the command: copy 0 is the one-seed run (to float
    tolerance), each copy is validated at every saved step and scored on test once, at its
    own step, and the row keeps each copy's per-text correctness."""
    wd = tmp_path / "w"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}", "--config.models=lama",
                             "--config.train.seeds=2"], cache)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    f = eh.findings(wd)
    (row,) = f["rows"]
    one = eh.findings(reference)["rows"][0]
    assert f["seeds"] == 2 and len(row["seeds"]) == 2 and row["steps"][0] == one["step"]
    first, second = row["seeds"]
    assert first["validation"] == pytest.approx(one["validation"], abs=2 / 1057)
    assert sum(a != b for a, b in zip(first["correct"], one["seeds"][0]["correct"])) <= 2
    assert len(second["correct"]) == 1057 and second["correct"] != first["correct"]
    assert row["test"] == pytest.approx((first["test"] + second["test"]) / 2)
    assert row["test_spread"]["n"] == 2 and row["interval"]["units"] == 1057
    for p in row["seeds"]:
        assert p["validation"] == max(e["validation"] for e in p["evaluations"])
        assert p["test"] == pytest.approx(np.mean(p["correct"]))
    folder = wd / "runs" / "cls_lama"
    records = [json.loads(p.read_text()) for p in (folder / "evals").iterdir()]
    seen = sorted((r["identity"]["split"], r["identity"]["train_seed"], r["identity"]["step"])
                  for r in records)  # fmt: skip
    assert seen == sorted([("validation", s, st) for s in (0, 1) for st in (2, 4)]
                          + [("test", s, row["steps"][s]) for s in (0, 1)])  # fmt: skip
    for s in (0, 1):
        assert [p.name for p in (folder / "selected" / f"seed{s}").iterdir()] == [
            f"params-{row['steps'][s]}.msgpack"]  # fmt: skip
    text = (wd / "report.md").read_text()
    assert "Each model trains 2 seeds in one program" in text
