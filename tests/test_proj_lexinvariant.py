"""The lexinvariant project through the command line: findings 1-2 killed and rerun, a
changed config refused, bad input, evaluation of its runs, the main job's reuse of its
baseline LM, and one toy run each of the ablation and the symbol tasks."""

from __future__ import annotations

import json
import shutil

import experiment_helpers as eh
import pytest
import train_helpers as th

# Toy sizes: a few seconds per run.
TOY = [
    "--config.train.steps=6",
    "--config.train.ckpt_every=2",
    "--config.train.log_every=2",
    "--config.train.batch_size=8",
    "--config.train.warmup_steps=2",
    "--config.seq_len=32",
    "--config.model.width=16",
    "--config.model.depth=1",
    "--config.model.heads=2",
    "--config.eval.max_windows=8",
    "--config.eval.batch_size=8",
    "--config.train.progress=False",
    "--config.train.tensorboard=False",
]
# The tiny variant (the main job's findings 1-2), characters only.
SMALL = [
    "--config=lexinvariant:tiny",
    *[a for a in TOY if not a.startswith("--config.eval.max_windows=")],
    "--config.eval.max_windows=96",  # 4 test documents: the bootstrap resamples documents
    "--config.units=char",
    "--config.cipher_draws=2",
    "--config.mechanism.span=16",
    "--config.mechanism.windows=8",
    "--config.mechanism.draws=1",
    "--config.attention_windows=4",
    "--config.probe.windows=4",
    "--config.probe.train_ciphers=2",
    "--config.probe.test_ciphers=1",
    "--config.probe.steps=5",
    "--config.probe.l2=(0.001,0.1)",
    "--config.position_buckets=(1,4,16)",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One uninterrupted run of the command, in a child like every run it is compared with."""
    wd = tmp_path_factory.mktemp("lexinv") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def small_config(*overrides):
    """The experiment config of ``SMALL`` (plus ``overrides``), as the command line builds it."""
    from lexlm.experiment import cli

    argv = ["lexlm.run", *SMALL, *overrides, "--workdir=unused"]
    return cli.parse(argv, cli._run_flags, need_config=True).config


def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    wd = tmp_path / "w"
    # training the first run, computing a findings evaluation, before the report
    faults = ["train_step:3", "evaluate:4", "report:1"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)
    assert (wd / "figures" / "loss_by_position_prose_char.png").stat().st_size > 1000


def test_findings_hold_every_finding_and_their_curves(reference):
    import math

    f = eh.findings(reference)
    f1 = f["finding1"]["prose/char"]
    table = f1["table"]
    assert [r["positions"] for r in table] == ["1-3", "4-15", "16-32"]
    for row in table:
        assert row["ppl_ratio"] == pytest.approx(math.exp(row["lexinvariant"] - row["standard"]))
        copy = math.exp(row["lexinvariant"] - row["standard_copy"])
        assert row["ppl_ratio_copy"] == pytest.approx(copy)
        for name in ("standard", "standard_copy", "lexinvariant", "ppl_ratio", "ppl_ratio_copy"):
            lo, hi = row[f"{name}_interval"]
            assert lo <= row[name] <= hi and lo < hi, name
        assert row["unigram_readout_d16"] > row["in_context_unigram"] - 0.05
    # one seed; four test documents in five 1 KB blocks (the units), paired across models
    assert f["train_seeds"] == 1 and f1["lexinvariant"]["documents"] == 5
    assert f1["learned"]["seeds"] == 1
    d = f1["comparisons"]["lexinvariant - learned"]
    assert d["diff"] == pytest.approx(
        f1["lexinvariant"]["bits_per_byte"] - f1["learned"]["bits_per_byte"]
    )
    r = f1["comparisons"]["lexinvariant / learned_copy"]
    assert r["value"] == pytest.approx(
        math.exp(f1["lexinvariant"]["loss"] - f1["learned_copy"]["loss"])
    )
    assert set(f1["comparisons"]) == {
        "lexinvariant - learned", "lexinvariant / learned", "lexinvariant - learned_copy",
        "lexinvariant / learned_copy", "learned_copy - learned", "learned_copy / learned",
    }  # fmt: skip
    curves = f1["curves"]
    assert set(curves) == {
        "standard",
        "standard + copy readout",
        "lexinvariant",
        "in-context unigram",
    }
    assert all(len(c) == 32 for c in curves.values())  # the figure is drawn from these
    cipher = f["finding2"]["prose/char"]
    assert cipher["standard"]["draws"] == 2 and cipher["standard"]["diff"] > 0.05
    assert abs(cipher["lexinvariant"]["diff"]) < cipher["standard"]["diff"] / 4
    heads = f["attention"]["prose/char"]["lexinvariant"]["block_0"]
    assert len(heads["self"]) == 2  # per head
    assert all(0 <= a + b <= 1 + 1e-6 for a, b in zip(heads["self"], heads["previous"]))
    probe = f["probe"]["prose/char"]
    assert set(probe["layers"]) == {"block_0", "final"} and probe["best_layer"] in probe["layers"]
    assert 0 < probe["chance"] < probe["majority_baseline"] < 1
    assert f["runs"]["prose/char"]["learned"]["name"] == "learned_char"
    assert f["runs"]["prose/char"]["learned_copy"]["name"] == "learned_copy_char"
    saved = json.loads((reference / "runs" / "learned_copy_char" / "config.json").read_text())
    assert saved["model"]["embedding"] == "learned" and saved["model"]["copy_readout"]
    assert set(f["mechanism"]["prose/char"]) == {"learned", "learned_copy", "lexinvariant"}
    report = (reference / "report.md").read_text()
    row = table[0]
    lo, hi = row["standard_interval"]
    assert f"| 1-3 | {row['standard']:.3f} ± {(hi - lo) / 2:.3f} |" in report
    assert "One training seed per run" in report and "not recorded" not in report
    assert "figures/loss_by_position_prose_char.png" in report


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["--config.train.lr=0.01"], ["train.lr", "runs/learned_char"]),
        (["--config.lexinvariant_model.copy_readout=False"],
         ["model.copy_readout", "runs/lexinvariant_char"]),
        (["--config.data.source=files", "--config.data.files={text}"],
         ["data.source", "runs/learned_char"]),
    ],
)  # fmt: skip
def test_a_changed_field_is_refused_by_name_and_nothing_changes(
    reference, tmp_path, overrides, fragments
):
    text = tmp_path / "my.txt"
    text.write_text("\n\n".join(f"Paragraph {i} of my own corpus." * 20 for i in range(40)))
    wd = eh.copy_workdir(reference, tmp_path / "w")
    before = eh.tree_state(wd)
    args = [o.format(text=text) for o in overrides]
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args])
    eh.assert_one_line_error(code, err, *fragments)
    assert eh.tree_state(wd) == before


def test_data_overrides_reach_the_prose_runs(tmp_path):
    from lexlm.proj.lexinvariant.run import run_specs

    text = tmp_path / "my.txt"
    text.write_text("Some text.\n\nMore text.\n")
    c = small_config("--config.data.source=files", f"--config.data.files={text}")
    for spec in run_specs(c):
        assert spec["cfg"].data.source == "files"
        assert [str(f) for f in spec["cfg"].data.files] == [str(text)]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--config.mechanism.spn=3"], "did you mean --config.mechanism.span"),
        (["--config=lexinvariant:nope"], "unknown variant 'nope'"),
        (["--config.data.files=x.txt"], "data.files"),
        (["--config.code_data.files=x.txt"], "code_data.files"),
        (["--config.corpora=poetry"], "corpora"),
        (["--config.units=words"], "units"),
        (["--config.data.unit=subword"], "data.unit"),
        (["--config.train.steps=-5"], "train.steps"),
        (["--config.subword_steps=0"], "subword_steps"),
        (["--config.train.lr=nan"], "train.lr"),
        (["--config.probe.l2=(-0.1,0.01)"], "probe.l2"),
        (["--config.probe.l2=(nan,)"], "probe.l2"),
        (["--config.probe.train_ciphers=1"], "probe.train_ciphers"),
        (["--config.mechanism.span=20"], "mechanism.span"),
        (["--config.lexinvariant_model.colour=1"], "lexinvariant_model"),
        (["--config.experiment=poems"], "experiment"),
        (["--config=lexinvariant:ablation", "--config.ablation.variants=bigger"],
         "ablation.variants"),
        (["--config=lexinvariant:symbols", "--config.symbols.n_symbols=5"], "symbols.n_symbols"),
        (["--config=lexinvariant:symbols", "--config.symbols.semi_ps=(0.1,0.1)"],
         "symbols.semi_ps"),
        (["--config=lexinvariant:symbols", "--config.symbols.tasks=copy,sort"], "symbols.tasks"),
        (["--config=lexinvariant:symbols", "--config.model.embedding=semi"], "model.embedding"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, args, fragment):
    wd = tmp_path / "fresh"
    other = args[0].startswith("--config=lexinvariant:") and args[0] != "--config=lexinvariant:nope"
    argv = [args[0], *TOY, *args[1:]] if other else [*SMALL, *args]
    code, _, err = eh.cli([*argv, f"--workdir={wd}"])
    eh.assert_one_line_error(code, err, fragment)
    assert not wd.exists()


def test_evaluate_every_run_of_the_workdir_and_one_run_dir(reference, tmp_path, cache):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    code, out, err = eh.cli([f"--workdir={wd}", "--split=test"], entry="evaluate")
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["run"] for x in lines] == [
        "runs/learned_char", "runs/learned_copy_char", "runs/lexinvariant_char"
    ]  # fmt: skip
    assert all(x["kind"] == "lm" and x["step"] == 6 for x in lines)
    f = eh.findings(wd)["finding1"]["prose/char"]
    # the findings' loss is summed from per-document, per-bucket cells: the same number
    assert lines[2]["loss"] == pytest.approx(f["lexinvariant"]["loss"])
    assert lines[1]["loss"] == pytest.approx(f["learned_copy"]["loss"])
    run_dir = wd / "runs" / "lexinvariant_char"
    with th.compilation_cache(cache), th.unoptimised_xla():  # the children's compiled programs
        code, out, err = eh.cli([f"--workdir={run_dir}", "--step=4"], entry="evaluate")
    assert code == 0, err
    assert json.loads(out)["step"] == 4 and json.loads(out)["draws"] == 4


def test_report_is_rendered_again_from_the_findings(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    old = (wd / "report.md").read_text()
    (wd / "report.md").unlink()
    code, _, err = eh.cli([f"--workdir={wd}"], entry="report")
    assert code == 0, err
    assert (wd / "report.md").read_text() == old


def test_main_job_may_reuse_the_baseline_as_the_standard_char_lm():
    """The main job hands its baseline lm run to this experiment as the standard character LM;
    that is only fair if the two configs train the same model the same way."""
    from lexlm.experiment import store
    from lexlm.proj.lexinvariant.config import get_config
    from lexlm.proj.lexinvariant.run import run_config
    from lexlm.proj.lm.config import get_config as lm_config

    c = get_config("tiny")
    baseline = lm_config("tiny")
    assert store.run_identity(run_config(c, "prose", "char", "learned")) == store.run_identity(
        baseline
    )
    lexinv = run_config(c, "prose", "char", "lexinvariant")
    assert lexinv.model.embedding == "lexinvariant" and lexinv.model.copy_readout
    assert lexinv.train.to_dict() == baseline.train.to_dict()


def test_a_reused_run_is_checked_and_then_used(reference, tmp_path):
    from lexlm.errors import StaleResultError
    from lexlm.experiment.store import Workdir
    from lexlm.proj.lexinvariant.run import run

    baseline = eh.copy_workdir(reference / "runs" / "learned_char", tmp_path / "baseline")
    before = eh.tree_state(baseline)
    fresh = tmp_path / "fresh"
    changed = small_config("--config.train.lr=0.01")
    with pytest.raises(StaleResultError, match=r"train\.lr"):
        run(changed, Workdir(fresh), reuse={"learned_char": baseline})
    assert not fresh.exists() and eh.tree_state(baseline) == before
    # the reference's other runs with the baseline handed over: the same findings, no training
    wd = eh.copy_workdir(reference, tmp_path / "w")
    shutil.rmtree(wd / "runs" / "learned_char")
    with th.unoptimised_xla():
        found = run(small_config(), Workdir(wd), reuse={"learned_char": baseline})
    assert json.loads(json.dumps(found)) == eh.findings(reference)
    assert not (wd / "runs" / "learned_char").exists()


# ----------------------------------------------------------------------------- ablation, symbols


def test_ablation_toy_run_tabulates_each_variant(tmp_path, cache):
    wd = tmp_path / "ablation"
    # one variant: every variant takes the same path (the findings runs train the copy readout)
    args = ["--config=lexinvariant:ablation", *TOY, f"--workdir={wd}",
            "--config.ablation.variants=no_fix",
            "--config.ablation.position_buckets=(1,4,16)"]  # fmt: skip
    with th.compilation_cache(cache), th.unoptimised_xla():
        code, _, err = eh.cli(args)
    assert code == 0, err
    f = eh.findings(wd)
    rows = {r["variant"]: r for r in f["rows"]}
    assert list(rows) == ["no_fix", "in-context count model"]
    assert rows["no_fix"]["first_loss"] > f["ln_v"] + 0.5  # the init trap of the plain readout
    assert rows["no_fix"]["positions"] == ["1-3", "4-15", "16-32"]
    assert f["first_logged_step"] == {"no_fix": 2}
    report = (wd / "report.md").read_text()
    assert "`model.logit_scale=none`" in report and f"{rows['no_fix']['loss']:.4f}" in report
    saved = json.loads((wd / "runs" / "no_fix" / "config.json").read_text())
    assert saved["model"]["embedding"] == "lexinvariant" and saved["model"]["logit_scale"] == "none"


def test_symbols_toy_run_scores_every_model_and_evaluates_like_an_lm_run(tmp_path, cache):
    wd = tmp_path / "symbols"
    # no semi run: a semi LM trains and is scored through the standard LM's code paths
    args = ["--config=lexinvariant:symbols", *TOY, f"--workdir={wd}",
            "--config.symbols.n_symbols=16", "--config.symbols.semi_ps=()",
            "--config.symbols.lengths.lookup=(2,3)", "--config.symbols.lengths.copy=(2,4)",
            "--config.symbols.lengths.reverse=(2,4)", "--config.symbols.eval_rows=4",
            "--config.symbols.eval_draws=1", "--config.symbols.mix_prob=0.3"]  # fmt: skip
    with th.compilation_cache(cache), th.unoptimised_xla():
        code, _, err = eh.cli(args)
        assert code == 0, err
        f = eh.findings(wd)
        assert list(f["runs"]) == ["standard", "lexinvariant"] and f["semi_ps"] == [0.0]
        std = f["runs"]["standard"]["symbols"]
        assert std["heldout"]["mean"] == 0.0  # it never saw those symbols
        assert 0 < std["context_guess"]["heldout"]["mean"] < 1
        # per-row units (4 rows per task) and the paired comparisons built from them
        assert len(std["heldout"]["units"]["copy:total"]) == 4
        # the symbols config trains 3 seeds in one program: units averaged, spread over seeds
        assert std["heldout"]["spread"]["n"] == 3 and f["train_seeds"] == 3
        assert f["comparisons"]["lexinvariant_vs_standard"]["units"] == 4
        assert len(f["runs"]["standard"]["test"]["units"]["bytes"]) >= 1  # 1 KB test blocks
        saved = json.loads((wd / "runs" / "lexinvariant" / "config.json").read_text())
        vocab = f["runs"]["lexinvariant"]["layout"]["vocab_size"]
        assert saved["vocab_override"] == vocab and saved["symbols"]["mix_prob"] == 0.3
        assert "figures/symbols_sweep.png" in (wd / "report.md").read_text()
        # a symbol run restores with its extra ids from its own config
        code, out, err = eh.cli([f"--workdir={wd / 'runs' / 'lexinvariant'}", "--split=test"],
                                entry="evaluate")  # fmt: skip
    assert code == 0, err
    text = f["runs"]["lexinvariant"]["test"]  # the mean of the seeds; evaluate reads seed 0
    assert json.loads(out)[text["metric"]] == pytest.approx(text["spread"]["values"][0])
