"""The lexinvariant findings code (experiments/lexinvariant*.py): tables on hand-made inputs
with known answers, and one end-to-end run of the experiment at toy size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
import train_helpers as th

from experiments import lexinvariant
from experiments import lexinvariant_findings as lf
from experiments.lexinvariant_report import report_section

REPO = Path(__file__).resolve().parents[1]


def test_position_table_buckets_every_position_and_the_ratio():
    std = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    lex = np.array([4.0, 4.0, 4.0, 2.0, 2.0, 2.0, 2.0, 0.5])
    ref = {"in_context_unigram": np.arange(1.0, 9.0)}
    rows = lf.position_table(std, lex, (1, 4, 8), ref)
    assert [r["positions"] for r in rows] == ["1-3", "4-7", "8-8"]  # the last position counts
    assert rows[0]["ppl_ratio"] == pytest.approx(math.exp(2.0))
    assert rows[1]["ppl_ratio"] == pytest.approx(math.exp(1.0))
    assert rows[2]["ppl_ratio"] == pytest.approx(1.0)
    assert [r["in_context_unigram"] for r in rows] == [2.0, 5.5, 8.0]
    with pytest.raises(ValueError, match="position_table"):
        lf.position_table(std, lex[:4], (1, 4))


def test_paired_difference_mean_and_standard_error():
    out = lf.paired_difference([1.0, 2.0, 3.0], [1.5, 2.5, 4.0])
    assert out["diff"] == pytest.approx(2.0 / 3.0)
    assert out["diff_se"] == pytest.approx(np.std([0.5, 0.5, 1.0], ddof=1) / math.sqrt(3))
    assert out["plain_loss"] == 2.0 and out["draws"] == 3


def test_cipher_is_a_bijection_fixing_special_ids():
    cipher = lf.random_cipher(jax.random.key(0), 40)
    assert sorted(cipher.tolist()) == list(range(40))
    np.testing.assert_array_equal(cipher[: lf.SPECIAL_IDS], np.arange(lf.SPECIAL_IDS))
    assert (cipher[lf.SPECIAL_IDS :] != np.arange(lf.SPECIAL_IDS, 40)).sum() > 30
    w = {"inputs": np.array([[3, 4]]), "targets": np.array([[4, 0]]), "mask": np.ones((1, 2))}
    e = lf.encipher(w, cipher)
    np.testing.assert_array_equal(e["inputs"], [[cipher[3], cipher[4]]])
    np.testing.assert_array_equal(e["targets"], [[cipher[4], 0]])


@pytest.fixture(scope="module")
def toy_findings(tmp_path_factory, compile_once):
    """The whole experiment (train, evaluate, every finding) on the embedded corpus at toy
    size: two 12-step runs of a 1 x 16 character LM with a 32-token context. The module's
    compilation cache compiles each program once, not once per call (the evaluations build
    a fresh jitted function per call)."""
    c = lexinvariant.get_config("tiny")
    c.units = ("char",)
    c.base.seq_len = 32
    c.base.model.update(width=16, depth=1, heads=2)
    c.base.train.update(steps=12, batch_size=8, ckpt_every=12, log_every=4, progress=False)
    c.base.train.tensorboard = False
    c.base.eval.update(max_windows=8, batch_size=8)
    c.position_buckets = (1, 4, 16)
    c.readout_widths = (16,)
    c.cipher_draws = 2
    c.mechanism.update(span=16, windows=8, draws=1)
    c.probe.update(windows=4, train_ciphers=2, test_ciphers=1, steps=20)
    out = tmp_path_factory.mktemp("lexinv")
    with th.unoptimised_xla():
        return lexinvariant.run(c, out), out


def test_toy_experiment_produces_every_finding(toy_findings):
    f, out = toy_findings
    table = f["finding1"]["prose/char"]["table"]
    assert [r["positions"] for r in table] == ["1-3", "4-15", "16-32"]
    for row in table:
        assert row["ppl_ratio"] == pytest.approx(math.exp(row["lexinvariant"] - row["standard"]))
        # Crosstalk at width 16 costs the count model loss; it never helps on average.
        assert row["unigram_readout_d16"] > row["in_context_unigram"] - 0.05
    mech = f["mechanism"]["prose/char"]
    assert set(mech) == {"learned", "lexinvariant"} and mech["learned"]["span"] == 16
    cipher = f["finding2"]["prose/char"]
    # A 12-step standard LM already depends on token identity; the lexinvariant LM cannot.
    assert cipher["standard"]["diff"] > 0.05
    assert abs(cipher["lexinvariant"]["diff"]) < 4 * cipher["lexinvariant"]["diff_se"] + 1e-3
    att = f["attention"]["prose/char"]
    for emb in ("learned", "lexinvariant"):
        heads = att[emb]["block_0"]
        assert len(heads["self"]) == 2 and len(heads["induction"]) == 2  # per head
        # Mass on disjoint patterns of one head never exceeds 1.
        assert all(0 <= a + b <= 1 + 1e-6 for a, b in zip(heads["self"], heads["previous"]))
    probe = f["probe"]["prose/char"]
    assert probe["best_layer"] in probe["layers"] and set(probe["layers"]) == {"block_0", "final"}
    assert 0 < probe["chance"] < probe["majority_baseline"] < 1
    saved = json.loads((out / "lexinvariant.json").read_text())
    assert saved["finding2"]["prose/char"]["standard"]["draws"] == 2
    assert (out / "lexinv_loss_by_position_prose_char.png").stat().st_size > 1000


def test_report_section_shows_each_finding(toy_findings):
    f, _ = toy_findings
    text = report_section(f)
    row = f["finding1"]["prose/char"]["table"][0]
    assert f"| 1-3 | {row['standard']:.3f} | {row['lexinvariant']:.3f} |" in text
    m = f["mechanism"]["prose/char"]["lexinvariant"]
    assert f"| prose/char | lexinvariant | 16 | {m['first_copy']:.3f} |" in text
    p = f["probe"]["prose/char"]
    assert f"majority {p['majority_baseline']:.3f}" in text
    att = f["attention"]["prose/char"]["lexinvariant"]["block_0"]
    assert f"| prose/char | lexinvariant | block_0 | {max(att['self']):.3f} (" in text


def test_ablation_rows_and_report():
    from experiments import lexinv_ablation as ab

    results = {
        "no_fix": {"first_loss": 7.3, "loss_by_position": [4.0, 4.0, 3.0, 3.0, 2.0]},
        "logit_scale": {"first_loss": 4.4, "loss_by_position": [4.0, 3.0, 3.0, 2.0, 1.0]},
    }
    rows = ab.ablation_rows(results, np.array([5.0, 4.0, 3.0, 2.0, 1.0]), (1, 2, 4))
    assert rows[0]["positions"] == ["1-1", "2-3", "4-5"]
    assert rows[1]["buckets"] == [4.0, 3.0, 1.5]
    assert rows[2]["variant"] == "in-context count model" and rows[2]["buckets"] == [5.0, 3.5, 1.5]
    text = ab.report_section({"rows": rows, "ln_v": math.log(83), "steps": 600})
    assert (
        "| logit_scale | learned logit scale, init 1/sqrt(D) (chosen) | 4.40 | 4.000 | 3.000 |"
        in text
    )
    cfg = ab.variant_config(ab.get_config("tiny"), "rope")
    assert cfg.model.positions == "rope" and cfg.model.logit_scale == "learned"
    assert ab.variant_config(ab.get_config("tiny"), "no_fix").model.logit_scale == "none"
    with pytest.raises(ValueError, match="variants"):
        ab.variant_config(ab.get_config("tiny"), "bigger")


@pytest.mark.parametrize(
    "override,field",
    [
        ("--config.data.prose.source=nope", "data.source"),
        ("--config.base.train.steps=0", "train.steps"),
        ("--config.data.code.files=/no/such/file.txt", None),  # code is not run by tiny
    ],
)
def test_cli_overrides_reach_the_runs_and_bad_values_stop_in_one_line(tmp_path, override, field):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "experiments.lexinvariant", "--out", str(tmp_path)]
    cmd += ["--config", "experiments/lexinvariant.py:tiny", override]
    if field is None:  # a valid override: stop before training by making the prose bad too
        cmd.append("--config.base.seq_len=-1")
        field = "seq_len"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {field}:"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_probe_l2_grid_accepts_one_strength_or_a_grid_and_rejects_negatives():
    from experiments.lexinvariant_findings import probe_l2_grid

    assert probe_l2_grid(1e-3) == (1e-3,)
    assert probe_l2_grid((1e-4, 0.1)) == (1e-4, 0.1)
    with pytest.raises(ValueError, match=r"^probe\.l2"):
        probe_l2_grid((-1.0,))
