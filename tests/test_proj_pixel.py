"""The pixel project: the numbers it reports on known answers, its selection surviving a kill
at any point, and the experiment through the command line (killed and rerun, changed config,
bad input, evaluation of its runs, the report drawn again from the findings)."""

from __future__ import annotations

import json
import math

import experiment_helpers as eh
import numpy as np
import pytest

from lexlm.data import sts
from lexlm.eval import sts as sts_eval
from lexlm.proj.pixel import config as pixel_config
from lexlm.proj.pixel import evaluate as pixel_eval
from lexlm.proj.pixel import report, selection, stages

# The tiny variant, shrunk so that a run takes seconds: 16 wide, one perturbation run of
# 3 steps, its soup, a topical stage of 2 steps (global steps: 1-3 unsup, 4 soup, 5-6 topical).
SMALL = [
    "--config=pixel:tiny",
    "--config.model.width=16",
    "--config.model.depth=1",
    "--config.model.heads=2",
    "--config.model.max_len=16",
    "--config.model.dec_width=16",
    "--config.model.dec_heads=2",
    "--config.tokenizer.vocab_size=600",
    "--config.stages.unsup=combined",
    "--config.stages.unsup_steps=3",
    "--config.stages.topical_steps=2",
    "--config.train.batch_size=8",
    "--config.train.ckpt_every=2",
    "--config.train.log_every=1",
    "--config.eval.batch=32",
    "--config.eval.examples=1",
    "--config.eval.typo_rates=(0.1,)",
    "--config.eval.typo_seeds=2",
    "--config.sentences.max_sentences=200",
]


# --- the reported numbers on known answers ------------------------------------------------


def _pairs(n=6):
    left = tuple(f"left sentence {i} about cats" for i in range(n))
    right = tuple(f"right sentence {i} about dogs" for i in range(n))
    return sts.Pairs(left, right, np.arange(n, dtype=np.float32))


def _embed_by_number(texts):
    """A fake encoder: a unit vector at angle 0.2 x the text's first digit (0 without one).
    Typos never edit digits, so it is unchanged by them."""
    out = []
    for t in texts:
        digits = "".join(ch for ch in t if ch.isdigit()) or "0"
        a = 0.2 * int(digits[0])
        out.append([np.cos(a), np.sin(a)])
    return np.asarray(out, np.float32)


def test_score_and_robustness_known_answers():
    pairs = _pairs()
    assert pixel_eval.target_size(pairs) == 6
    # a target whose right side is always number 0: cosine falls with i, scores rise with i
    shifted = sts.Pairs(pairs.left, tuple("zero" for _ in pairs.right), pairs.scores)
    assert pixel_eval.score(_embed_by_number, shifted, 100)["spearman"] == pytest.approx(-100)
    rows = pixel_eval.robustness(_embed_by_number, shifted, (0.05, 0.2), 0, 100)
    assert [r["rate"] for r in rows] == [0.0, 0.05, 0.2]
    # typos never touch digits, so this encoder is perfectly robust: every drop is 0
    assert all(r["drop"] == pytest.approx(0.0) for r in rows)
    rows = pixel_eval.robustness(_embed_by_number, shifted, (0.2,), 0, 100, typo_seeds=3)
    assert rows[1]["draws"] == pytest.approx([-100.0] * 3) and np.shape(rows[1]["cos"]) == (6, 3)
    assert pixel_eval.typo_seed(0, 0, 0) == 2 and pixel_eval.typo_seed(0, 0, 1) == 1002
    typo = pixel_eval.with_typos(shifted, 0.2, 3)
    assert typo.left != shifted.left and len(typo.left) == len(shifted.left)
    assert pixel_eval.with_typos(shifted, 0.0, 3) is shifted


def test_select_on_dev_takes_the_best_dev_candidate_and_the_earliest_on_ties():
    recs = [
        {"stage": "unsup_typo", "step": 4, "global_step": 4, "candidate": False, "dev": 90.0},
        {"stage": "soup", "step": 0, "global_step": 5, "candidate": True, "dev": 30.0},
        {"stage": "sup_0", "step": 4, "global_step": 9, "candidate": True, "dev": 41.0},
        {"stage": "sup_0", "step": 8, "global_step": 13, "candidate": True, "dev": 41.0},
        {"stage": "sup_0", "step": 12, "global_step": 17, "candidate": True, "dev": math.nan},
    ]
    assert selection.select_on_dev(recs)["global_step"] == 9  # best dev, earliest on ties
    assert selection.select_on_dev(recs[:1]) is None


def _eval(clean_cols, typo_cols):
    """One seed's robustness list: per-pair cosines [N, draws] clean and at 10% typos."""
    gold = np.arange(10, dtype=np.float64)

    def row(rate, cols):
        draws = list(sts_eval.per_draw_spearman(np.stack(cols, 1), gold))
        return {"rate": rate, "spearman": float(np.mean(draws)), "draws": draws,
                "cos": np.stack(cols, 1).tolist()}  # fmt: skip

    return [row(0.0, clean_cols), row(0.1, typo_cols)]


GOLD = list(range(10))
PERFECT = np.arange(10.0)
SWAPPED = PERFECT[[0, 1, 2, 4, 3, 5, 6, 7, 8, 9]]  # Spearman 100 (1 - 12 / 990)
REVERSED = -PERFECT


def test_summarize_means_spreads_and_paired_drop_on_known_answers():
    rho = 100 * (1 - 12 / 990)
    # seed 0: clean perfect, typo draws perfect and reversed; seed 1: clean one swap, typo
    # draws one swap and reversed
    evals = [_eval([PERFECT], [PERFECT, REVERSED]), _eval([SWAPPED], [SWAPPED, REVERSED])]
    clean, typo = pixel_eval.summarize(evals, GOLD)
    assert clean["spearman"] == pytest.approx((100 + rho) / 2)
    assert clean["seeds"]["values"] == pytest.approx([100, rho]) and clean["seeds"]["n"] == 2
    assert typo["spearman"] == pytest.approx((100 - 100 + rho - 100) / 4)
    assert typo["seeds"]["values"] == pytest.approx([0.0, (rho - 100) / 2])  # per seed
    assert typo["typo_seeds"]["values"] == pytest.approx([(100 + rho) / 2, -100.0])  # per draw
    assert typo["drop"] == pytest.approx(clean["spearman"] - typo["spearman"])
    assert typo["drop_lo"] <= typo["drop"] <= typo["drop_hi"] and typo["drop_lo"] > 0
    with pytest.raises(ValueError, match="gold"):
        pixel_eval.summarize(evals, GOLD[:5])


def _findings(pixel_evals, token_evals):
    rows = [{"model": m, "seeds": 1, "robustness": pixel_eval.summarize(e, GOLD)}
            for m, e in (("pixel", pixel_evals), ("token", token_evals))]  # fmt: skip
    return {"rows": rows, "comparisons": {
        "pixel_vs_token": pixel_eval.comparisons(pixel_evals, token_evals, GOLD)}}  # fmt: skip


def test_comparisons_state_an_ordering_only_outside_the_interval():
    # pixel: perfect clean and under typos; token: perfect clean, reversed under typos. Every
    # resample of the pairs gives the same differences: clean 0 (a tie), drop 0 - 200
    pixel = [_eval([PERFECT], [PERFECT])]
    token = [_eval([PERFECT], [REVERSED])]
    clean, typo = pixel_eval.comparisons(pixel, token, GOLD)
    assert (clean["spearman"]["diff"], clean["spearman"]["lo"], clean["spearman"]["hi"]) == (
        0,
        0,
        0,
    )
    assert "drop" not in clean
    assert typo["spearman"]["diff"] == pytest.approx(200.0)
    assert (typo["drop"]["diff"], typo["drop"]["lo"], typo["drop"]["hi"]) == (-200, -200, -200)
    text = " ".join(report.comparison_sentences(_findings(pixel, token)))
    assert "Clean: the pixel and the subword encoder are tied at this budget" in text
    assert "the pixel encoder loses less than the subword encoder (the paper's direction)" in text
    assert "difference -200.0 [-200.0, -200.0]" in text
    # the other way round, the order flips; the same model twice is tied everywhere
    flipped = " ".join(report.comparison_sentences(_findings(token, pixel)))
    assert "the pixel encoder loses more than the subword encoder" in flipped
    same = " ".join(report.comparison_sentences(_findings(pixel, pixel)))
    assert "10% typos: the two encoders' losses are tied at this budget" in same
    assert "loses less" not in same and "loses more" not in same


def test_counts_summed_over_a_stages_log_windows_and_reported(tmp_path):
    """Each metrics line is the mean over the steps since the line before: windows of 2 and 3
    steps with 1.5 and 2 unchanged positives a step sum to 1.5 x 2 + 2 x 3 = 9."""
    from lexlm.proj.pixel import run as pixel_run

    stage = tmp_path / "stages" / "unsup_conditional_shuffle"
    stage.mkdir(parents=True)
    lines = [
        {"step": 2, "loss": 1.0, "unchanged_positives": 1.5, "duplicate_negatives": 0.5},
        {"step": 5, "loss": 0.9, "unchanged_positives": 2.0, "duplicate_negatives": 0.0},
    ]
    (stage / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert pixel_run.summed_metric(stage, "unchanged_positives") == 9
    assert pixel_run.summed_metric(stage, "duplicate_negatives") == 1
    assert pixel_run.summed_metric(stage, "other") is None  # not logged: not recorded
    assert pixel_run.summed_metric(tmp_path / "nothing", "loss") is None
    cfg = pixel_config.get_config("tiny")
    cfg.stages.unsup, cfg.stages.unsup_steps, cfg.train.batch_size = "conditional_shuffle", 5, 4
    assert pixel_run.unchanged_perturbations(cfg, tmp_path, "pixel") == {
        "conditional_shuffle": {"unchanged": 9, "positives": 20}}  # fmt: skip
    assert pixel_run.masked_duplicates(cfg, tmp_path, "pixel") == {"unsup_conditional_shuffle": 1}
    rows = [{"model": "pixel", "unchanged_perturbations": {"conditional_shuffle": {
        "unchanged": 9, "positives": 20}}, "masked_duplicates": {"unsup_conditional_shuffle": 1}},
        {"model": "token"}]  # fmt: skip
    text = " ".join(report._count_lines(rows))
    assert "the pixel encoder: conditional shuffle 9 of 20" in text
    assert "over all stages: the pixel encoder 1." in text
    assert report._count_lines([{"model": "pixel"}]) == []  # old findings: the page as before


def test_the_findings_config_trains_3_seeds_and_the_tiny_one_says_why_it_has_one():
    stsb, tiny = pixel_config.get_config("stsb"), pixel_config.get_config("tiny")
    assert (stsb.train.seeds, stsb.eval.typo_seeds, stsb.eval.one_seed_reason) == (3, 5, "")
    assert (tiny.train.seeds, tiny.eval.typo_seeds) == (1, 5)
    assert "main job" in tiny.eval.one_seed_reason
    from lexlm.proj.pixel.run import encoder_run_config, seed_run_name

    copy = encoder_run_config(stsb, "pixel", 2)
    assert (copy.train.seed, copy.train.seeds) == (stsb.train.seed + 2, 1)
    assert [seed_run_name("token", s) for s in range(3)] == ["token", "token_seed1", "token_seed2"]


def test_the_stage_plan_and_its_global_steps():
    c = pixel_config.get_config("tiny")
    c.stages.update(unsup="typo,combined", unsup_steps=3, topical_steps=2, mae_steps=2)
    assert stages.offsets(c, "pixel") == [
        ("mae", 2, 0), ("unsup_typo", 3, 2), ("unsup_combined", 3, 5), ("soup", 0, 8),
        ("topical_0", 2, 9)]  # fmt: skip
    assert [s for s, _ in stages.plan(c, "token")] == [
        "unsup_typo", "unsup_combined", "soup", "topical_0"]  # fmt: skip
    assert stages.locate(c, "pixel", 8) == ("unsup_combined", 3)
    assert stages.locate(c, "pixel", 9) == ("soup", 0)  # the soup has its own number
    assert stages.locate(c, "pixel", 11) == ("topical_0", 2)
    assert stages.locate(c, "pixel", 12) is None
    assert [stages.is_candidate(s) for s in ("mae", "unsup_typo", "soup", "sup_1")] == [
        False, False, True, True]  # fmt: skip


def _state(value: float):
    import jax.numpy as jnp

    from lexlm.train.loop import TrainState

    return TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.full((2,), value)},
                      opt_state={"m": jnp.zeros((2,))})  # fmt: skip


def test_selection_survives_a_kill_between_the_best_save_and_its_record(tmp_path, monkeypatch):
    def score(params):
        return float(np.sum(params["w"]))

    sel = selection.Selection(tmp_path, {"model": "toy"}, score)
    soup_hook, topical_hook = sel.hook("soup", 3, True), sel.hook("topical_0", 4, True)
    soup_hook(1, _state(1.0), True)  # global step 4: the best so far
    assert sel.best_ckpt.latest_step() == 4
    with monkeypatch.context() as m:  # the process dies writing the next record
        m.setattr(selection, "write_json", lambda *a, **k: (_ for _ in ()).throw(SystemExit))
        with pytest.raises(SystemExit):
            topical_hook(2, _state(2.0), True)  # a better one: saved first, then its record
    sel.close()
    again = selection.Selection(tmp_path, {"model": "toy"}, score)  # the rerun
    hook = again.hook("topical_0", 4, True)
    assert again.best_ckpt.latest_step() == 6 and hook.pending(2) and not hook.pending(0)
    hook(2, _state(2.0), True)  # what the trainer does for a pending checkpoint
    assert not hook.pending(2)
    chosen = again.selected()
    assert (chosen["global_step"], chosen["dev"]) == (6, 4.0)
    assert [r["global_step"] for r in again.records()] == [4, 6]
    again.close()


# --- the experiment through the command line ---------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    """One uninterrupted run of the command, in a child like every run it is compared with."""
    wd = tmp_path_factory.mktemp("pixel") / "reference"
    out = eh.run_subprocess([*SMALL, f"--workdir={wd}"], cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return wd


def test_killed_anywhere_and_rerun_ends_with_the_same_findings(reference, cache, tmp_path):
    wd = tmp_path / "w"
    # Each run resumes what the last left (counts are per process): killed
    # 1. in pixel's perturbation run, right after its checkpoint of step 2, before that step's
    #    validation score (owed: the rerun scores it first, then trains on);
    # 2. writing the soup's record, after its best checkpoint was saved (4th write: the run's
    #    config, the records of steps 2, 3);
    # 3. in the token run's evaluations (the 8th scoring: 4 per run, then dev and test);
    # 4. before the report.
    faults = ["checkpoint:1", "write:4", "evaluate:8", "report:1"]
    codes = eh.kill_chain([*SMALL, f"--workdir={wd}"], cache, faults)
    assert codes[:-1] == [eh.KILLED] * len(faults) and codes[-1] == 0
    assert eh.findings(wd) == eh.findings(reference)

    # a rerun of a finished command reuses everything and changes no result
    def keep(state):
        return {k: v for k, v in state.items() if not k.startswith(("report", "prov"))}

    before = keep(eh.tree_state(wd))
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}"])
    assert code == 0, err
    assert keep(eh.tree_state(wd)) == before


def test_the_findings_hold_each_model_and_the_reference(reference):
    f = eh.findings(reference)
    assert [r["model"] for r in f["rows"]] == ["pixel", "token", "tfidf"]
    assert f["stages"] == {m: ["unsup_combined", "soup", "topical_0"] for m in ("pixel", "token")}
    for row in f["rows"][:2]:
        assert -100 <= row["test"] <= 100 and [r["rate"] for r in row["robustness"]] == [0, 0.1]
        cands = [e for e in row["evals"] if e["candidate"]]
        assert [e["global_step"] for e in row["evals"]] == [2, 3, 4, 6]
        assert [e["stage"] for e in cands] == ["soup", "topical_0"]
        assert row["dev"] == max(e["dev"] for e in cands) and row["params"] > 0
    assert f["rows"][2]["params"] == 0 and f["dev_pairs"] == f["test_pairs"] == 300
    assert (f["seeds"], f["typo_seeds"]) == (1, 2) and "main job" in f["one_seed_reason"]
    for row in f["rows"]:  # one training seed, 2 typo draws, intervals over the 300 test pairs
        clean, typo = row["robustness"]
        assert clean["lo"] <= row["test"] == clean["spearman"] <= clean["hi"]
        assert typo["lo"] <= typo["spearman"] <= typo["hi"] and typo["typo_seeds"]["n"] == 2
        assert typo["drop_lo"] <= typo["drop"] <= typo["drop_hi"]
    for row in f["rows"][:2]:  # the dev counterparts, on the checkpoint chosen on dev
        (seed,) = row["per_seed"]
        assert seed["seed"] == 0 and seed["global_step"] == row["global_step"]
        assert -100 <= row["dev_no_head"] <= 100 and row["dev"] == seed["dev"]
    assert set(f["comparisons"]) == {"pixel_vs_token", "pixel_vs_tfidf", "token_vs_tfidf"}
    assert [c["rate"] for c in f["comparisons"]["pixel_vs_token"]] == [0.0, 0.1]
    for row in f["rows"][:2]:  # 3 steps of 8 perturbed positives; counts from every stage
        counted = row["unchanged_perturbations"]["combined"]
        assert counted["positives"] == 24 and 0 <= counted["unchanged"] <= 24
        assert set(row["masked_duplicates"]) == {"unsup_combined", "topical_0"}
    assert [e["label"] for e in f["examples"]] == ["clean", "10% typos", "word shuffle"]
    provenance = json.loads((reference / "provenance.json").read_text())
    assert set(provenance["timings"]) == {"pixel", "token"}  # timings there, never in findings
    assert "sentences_per_s" in provenance["timings"]["pixel"]["unsup_combined"]


@pytest.mark.parametrize(
    "override, field, run",
    [
        ("--config.train.lr=0.01", "train.lr", "runs/pixel"),
        ("--config.model.width=32", "model.width", "runs/pixel"),
        ("--config.stages.rate=0.2", "stages.rate", "runs/pixel"),
        ("--config.tokenizer.vocab_size=700", "tokenizer.vocab_size", "runs/token"),
    ],
)
def test_a_changed_field_is_refused_by_name_and_nothing_changes(reference, tmp_path, override,
                                                                field, run):  # fmt: skip
    wd = eh.copy_workdir(reference, tmp_path / "w")
    before = eh.tree_state(wd)
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", override])
    eh.assert_one_line_error(code, err, field, run)
    assert eh.tree_state(wd) == before


def test_another_evaluation_setting_reuses_the_runs(reference, tmp_path, unoptimised_xla):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    checkpoints = {k for k in eh.tree_state(wd) if "checkpoints" in k}
    args = [a for a in SMALL if "typo_rates" not in a]  # a repeated tuple flag accumulates
    code, _, err = eh.cli([*args, f"--workdir={wd}", "--config.models=pixel",
                           "--config.eval.typo_rates=(0.2,)"])  # fmt: skip
    assert code == 0, err
    f = eh.findings(wd)
    assert [r["model"] for r in f["rows"]] == ["pixel", "tfidf"]
    assert [r["rate"] for r in f["rows"][0]["robustness"]] == [0.0, 0.2]
    assert f["rows"][0]["dev"] == eh.findings(reference)["rows"][0]["dev"]  # the same selection
    assert {k for k in eh.tree_state(wd) if "checkpoints" in k} == checkpoints  # no training
    assert len(list((wd / "runs" / "pixel" / "evals").glob("test-*.json"))) == 2


def test_more_training_seeds_reuse_seed_0_and_train_the_others(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", "--config.models=pixel",
                           "--config.train.seeds=2"])  # fmt: skip
    assert code == 0, err
    f, ref = eh.findings(wd), eh.findings(reference)
    pixel = f["rows"][0]
    assert f["seeds"] == pixel["seeds"] == 2 and f["one_seed_reason"] == ""
    assert [s["seed"] for s in pixel["per_seed"]] == [0, 1]
    assert pixel["per_seed"][0] == ref["rows"][0]["per_seed"][0]  # seed 0: the same run
    assert (wd / "runs" / "pixel_seed1" / "selection").is_dir()
    assert pixel["dev"] == pytest.approx(np.mean([s["dev"] for s in pixel["per_seed"]]))
    clean = pixel["robustness"][0]
    assert clean["seeds"]["values"] == pytest.approx([s["test"] for s in pixel["per_seed"]])
    assert clean["spearman"] == pytest.approx(np.mean(clean["seeds"]["values"]))
    page = (wd / "report.md").read_text()
    assert "2 training seeds per encoder" in page and "over training seeds" in page


def _write_stsb(path, n, seed, bad_line=None):
    rng = np.random.default_rng(seed)
    words = "cat dog bird fish tree house road car boat sun moon star".split()
    lines = []
    for i in range(n):
        a, b = " ".join(rng.choice(words, 5)), " ".join(rng.choice(words, 5))
        score = "-7" if i + 1 == bad_line else f"{rng.uniform(0, 5):.3f}"
        lines.append(f"main-captions\tMSRvid\t2012\t{i:04d}\t{score}\t{a}.\t{b}.")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _stsb_args(tmp_path, train_pairs=40, bad_line=None, test_pairs=10):
    files = {
        "train": _write_stsb(tmp_path / "train.csv", train_pairs, 0, bad_line),
        "validation": _write_stsb(tmp_path / "dev.csv", 10, 1),
        "test": _write_stsb(tmp_path / "test.csv", test_pairs, 2),
    }
    return ["--config.data.source=files", "--config.data.format=stsb",
            *(f"--config.data.split_files.{s}={p}" for s, p in files.items())]  # fmt: skip


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--config.stages.rate=1.5"], ["stages.rate", "[0.0, 1.0]"]),
        (["--config.stages.mae_ratio=0"], ["stages.mae_ratio"]),
        (["--config.stages.unsup_steps=-2"], ["stages.unsup_steps", ">= 0"]),
        (["--config.eval.typo_rates=(0.1,1.5)"], ["eval.typo_rates"]),
        (["--config.eval.typo_seeds=0"], ["eval.typo_seeds", ">= 1"]),
        (["--config.models=pixel,bert"], ["models", "bert"]),
        (["--config.stages.unsup=typo,blur"], ["stages.unsup", "blur"]),
        (["--config.data.split_files.train=train.csv"], ["data.split_files", "'lee'"]),
        (["--config.stages.sup_steps=4"], ["stages.sup_steps", "no scored"]),
        (["--config.data.vocab_size=500"], ["data.vocab_size", "tokenizer.vocab_size"]),
        (["--config.stages.rat=0.1"], ["did you mean --config.stages.rate"]),
        (["--config=pixel:huge"], ["unknown variant 'huge'"]),
        (["--config.tokenizer.vocab_size=300"], ["tokenizer.vocab_size", "sentencepiece"]),
        (["--config.train.batch_size=5000"], ["data.source", "fewer than train.batch_size"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_trace(tmp_path, args, fragments):
    wd = tmp_path / "fresh"
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args])
    eh.assert_one_line_error(code, err, *fragments)
    assert not wd.exists()


@pytest.mark.parametrize(
    "kind, fragments",
    [
        ("score", ["data.split_files.train", "train.csv) line 3", "score -7", "[0, 5]"]),
        ("few", ["data.split_files.train", "4 sentence pairs", "fewer than one batch"]),
        ("empty", ["data.split_files.test", "test.csv", "no sentence pairs"]),
    ],
)
def test_bad_sts_files_are_one_line_and_leave_no_trace(tmp_path, kind, fragments):
    wd = tmp_path / "fresh"
    args = _stsb_args(tmp_path, train_pairs=4 if kind == "few" else 40,
                      bad_line=3 if kind == "score" else None,
                      test_pairs=0 if kind == "empty" else 10)  # fmt: skip
    code, _, err = eh.cli([*SMALL, f"--workdir={wd}", *args, "--config.stages.topical_steps=0",
                           "--config.stages.sup_steps=2"])  # fmt: skip
    eh.assert_one_line_error(code, err, *fragments)
    assert not wd.exists()


# unoptimised_xla: the children's compile options, so a score is the one the run computed
def test_evaluate_reads_each_run_and_its_recorded_config(reference, tmp_path, unoptimised_xla):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    f = eh.findings(wd)
    code, out, err = eh.cli([f"--workdir={wd}"], entry="evaluate")
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [(x["run"], x["kind"]) for x in lines] == [("runs/pixel", "encoder"),
                                                      ("runs/token", "encoder")]  # fmt: skip
    for line, row in zip(lines, f["rows"]):
        assert line["split"] == "test" and line["step"] == row["global_step"]
        assert line["spearman"] == pytest.approx(row["test"])
    # one run directory, moved away from its experiment: another split, an older step
    moved = eh.copy_workdir(wd / "runs" / "pixel", tmp_path / "moved")
    code, out, err = eh.cli([f"--workdir={moved}", "--split=validation", "--step=3"],
                            entry="evaluate")  # fmt: skip
    assert code == 0, err
    line = json.loads(out)
    assert (line["split"], line["step"], line["stage"]) == ("validation", 3, "unsup_combined")
    record = next(e for e in f["rows"][0]["evals"] if e["global_step"] == 3)
    assert line["spearman"] == pytest.approx(record["dev"], abs=1e-4)  # what selection saw
    code, _, err = eh.cli([f"--workdir={moved}", "--step=2"], entry="evaluate")
    eh.assert_one_line_error(code, err, "global step 2", "train.keep")


def test_report_is_rendered_again_from_the_findings(reference, tmp_path):
    wd = eh.copy_workdir(reference, tmp_path / "w")
    old = (wd / "report.md").read_text()
    (wd / "report.md").unlink()
    for png in (wd / "figures").iterdir():
        png.unlink()
    code, _, err = eh.cli([f"--workdir={wd}"], entry="report")
    assert code == 0, err
    assert (wd / "report.md").read_text() == old
    assert "| pixel encoder (rendered text) |" in old and "figures/robustness.png" in old
    assert "| reference: TF-IDF bag of words (no training) |" in old
    assert "One training seed per encoder (too large for 3 seeds" in old
    assert "no interval recorded" not in old and "95% paired bootstrap interval" in old
    for name in ("robustness.png", "rendered_examples.png"):
        assert (wd / "figures" / name).read_bytes()[:4] == b"\x89PNG"
