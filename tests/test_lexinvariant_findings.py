"""The lexinvariant findings code (lexlm/proj/lexinvariant): tables, sentences and configs on
hand-made inputs with known answers. The end-to-end runs are in test_proj_lexinvariant."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from lexlm.errors import ConfigError
from lexlm.proj.lexinvariant import ablation as ab
from lexlm.proj.lexinvariant import evaluate as lf
from lexlm.proj.lexinvariant import report
from lexlm.proj.lexinvariant.config import get_config
from lexlm.proj.lexinvariant.run import run_config, run_name, validate_findings
from lexlm.proj.lm.run import lm_config


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
        lf.position_table(std.tolist(), lex[:4].tolist(), (1, 4))  # lists: no shape check
    # the sentences under the table are computed from it
    assert report.ratio_sentence(rows) == (
        "The lexinvariant / standard perplexity ratio falls in every bucket from positions 1-3 "
        "on (7.39, 2.72, 1.00)."
    )
    assert report.count_model_sentence(rows) == (
        "The lexinvariant LM is below the in-context count model at positions 4-7 and 8-8."
    )


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


def test_probe_l2_grid_accepts_one_strength_or_a_grid_and_rejects_negatives():
    assert lf.probe_l2_grid(1e-3) == (1e-3,)
    assert lf.probe_l2_grid((1e-4, 0.1)) == (1e-4, 0.1)
    for bad in ((-1.0,), (), (float("nan"),), ("x",)):
        with pytest.raises(ConfigError, match=r"^probe\.l2: "):
            lf.probe_l2_grid(bad)


def test_ablation_rows_sentences_and_report():
    results = {
        "no_fix": {"first_loss": 7.3, "loss": 4.0, "loss_by_position": [4.0, 4.0, 3.0, 3.0, 2.0]},
        "logit_scale": {"first_loss": 4.4, "loss": 3.9,
                        "loss_by_position": [4.0, 3.0, 3.0, 2.0, 1.0]},
        "rope": {"first_loss": 4.4, "loss": 3.92, "loss_by_position": [4.0] * 5},
        "copy_readout": {"first_loss": 3.5, "loss": 3.4, "loss_by_position": [3.0] * 5},
        "standard": {"first_loss": 4.0, "loss": 1.84, "loss_by_position": [2.0] * 5},
        "standard_copy_readout": {"first_loss": 4.0, "loss": 1.85,
                                  "loss_by_position": [2.0] * 5},
    }  # fmt: skip
    rows = ab.ablation_rows(results, np.array([5.0, 4.0, 3.0, 2.0, 1.0]), (1, 2, 4))
    assert rows[0]["positions"] == ["1-1", "2-3", "4-5"]
    assert rows[1]["buckets"] == [4.0, 3.0, 1.5]
    assert rows[-1]["variant"] == "in-context count model" and rows[-1]["buckets"] == [
        5.0,
        3.5,
        1.5,
    ]
    names = list(results)
    f = {
        "rows": rows, "ln_v": math.log(83), "steps": 600, "batch_size": 32, "seq_len": 128,
        "seed": 0, "vocab_size": 83, "model": {"depth": 2, "width": 128, "heads": 4},
        "what": {n: ab.VARIANTS[n][0] for n in names},
        "overrides": {n: ab.overrides(n) for n in names},
        "first_logged_step": {n: 20 for n in names},
    }  # fmt: skip
    text = report.render_ablation(f, {})
    assert "| logit_scale | `model.logit_scale=learned` | learned logit scale" in text
    assert "| 4.400 | 3.9000 | 4.000 | 3.000 | 1.500 |" in text
    assert "from 7.30 to 4.40 (ln V = 4.419)" in text and "from 4.0000 to 3.9000" in text
    assert "by at most 0.0200 nats (`rope`: +0.0200)" in text
    assert "The copy readout gains 0.5000 nats" in text
    assert "does not help the standard LM at this budget (1.8500 with it, 1.8400 without)" in text


def test_ablation_variants_build_their_runs():
    c = get_config("ablation")
    cfg = ab.variant_config(c, "rope")
    assert cfg.model.positions == "rope" and cfg.model.logit_scale == "learned"
    assert cfg.model.embedding == "lexinvariant" and not cfg.model.final_ln_bias
    assert ab.variant_config(c, "no_fix").model.logit_scale == "none"
    assert ab.variant_config(c, "standard").model.embedding == "learned"
    assert ab.variant_config(c, "no_ln_bias_no_pos_decay").train.no_decay == ("positions",)
    assert ab.overrides("rope_qkv_std")[-1] == "model.qkv_std=0.09"
    with pytest.raises(ConfigError, match=r"ablation\.variants"):
        ab.variant_config(c, "bigger")


def test_paper_configs_are_the_paper_sized_models():
    c = get_config("paper")
    for unit, vocab in (("char", 130), ("subword", 32000)):
        for emb in ("learned", "lexinvariant"):
            cfg = run_config(c, "prose", unit, emb)
            assert cfg.seq_len == 512 and cfg.data.tfds_name == "wiki40b/en"
            assert 0.9e8 < lm_config(cfg, vocab).param_count() < 2.2e8, (unit, emb)
    assert run_config(c, "prose", "subword", "learned").data.vocab_size == 32000
    assert run_config(c, "prose", "subword", "learned").train.steps == 250_000
    s = get_config("symbols_paper")
    assert s.data.vocab_size == 130 and s.symbols.n_symbols == 128


@pytest.mark.parametrize("variant", ["tiny", "small", "ablation", "symbols"])
def test_cpu_configs_validate(variant):
    from lexlm.proj.lexinvariant.config import validate

    validate(get_config(variant))


def test_unknown_variant_names_the_project():
    with pytest.raises(ConfigError, match=r"unknown variant 'nope' of lexinvariant"):
        get_config("nope")


def test_findings_runs_take_their_corpus_unit_and_the_readout_fix():
    c = get_config("small")
    code = run_config(c, "code", "char", "lexinvariant")
    assert code.data.source == "python_stdlib" and code.seq_len == 512
    assert code.project == "lm" and code.kind == "lm"  # an lm run: lexlm.evaluate evaluates it
    assert lm_config(code, 83).learned_logit_scale and code.model.copy_readout
    prose_std = run_config(c, "prose", "char", "learned")
    assert prose_std.data.source == "lee"
    assert not lm_config(prose_std, 83).learned_logit_scale  # the standard LM: plain readout
    sub = run_config(get_config("tiny"), "prose", "subword", "learned")
    assert (sub.data.unit, sub.data.vocab_size, sub.train.steps) == ("subword", 512, 200)
    assert run_name("code", "char", "learned") == "learned_code_char"
    assert run_name("prose", "subword", "lexinvariant") == "lexinvariant_subword"
    with pytest.raises(ConfigError, match="corpora"):
        run_config(c, "poetry", "char", "learned")
    c.corpora = "prose,poetry"
    with pytest.raises(ConfigError, match=r"^corpora: unknown \['poetry'\]"):
        validate_findings(c)


# ----------------------------------------------------------------------------- intervals


def test_perplexity_ratio_is_exp_of_the_paired_loss_difference():
    tokens = np.tile([10.0, 20.0, 30.0, 40.0], 3)  # 12 units: enough to state an ordering
    b = {"nats": 1.0 * tokens, "tokens": tokens}
    # a constant gap of 0.5 nats per token in every document: every resample gives it
    a = {"nats": 1.5 * tokens, "tokens": tokens}
    r = lf.perplexity_ratio(a, b)
    assert r["value"] == pytest.approx(math.exp(0.5))
    assert r["lo"] == pytest.approx(math.exp(0.5)) and r["hi"] == pytest.approx(math.exp(0.5))
    assert r["excludes_one"]
    few = lf.perplexity_ratio({k: v[:4] for k, v in a.items()}, {k: v[:4] for k, v in b.items()})
    assert not few["excludes_one"]  # 4 units: too few to state an ordering
    # a gap of +1 in two documents and -1 in two others of the same size: 1.0, and tied
    c = {"nats": tokens, "tokens": tokens}
    same = {"nats": np.array([20.0, 10.0, 20.0, 10.0]), "tokens": np.full(4, 10.0)}
    other = {"nats": np.array([10.0, 20.0, 10.0, 20.0]), "tokens": np.full(4, 10.0)}
    t = lf.perplexity_ratio(same, other)
    assert t["value"] == pytest.approx(1.0) and t["lo"] < 1.0 < t["hi"]
    assert not t["excludes_one"]
    assert lf.perplexity_ratio(c, b)["value"] == pytest.approx(1.0)


def bucket_units_of(nats, tokens):
    return {"nats": nats, "tokens": tokens, "positions": ["1-3", "4-8"]}


def test_interval_table_values_ratios_and_intervals_per_bucket():
    tokens = [[3, 5], [3, 5], [3, 5]]  # three documents x two buckets
    units = {
        "learned": bucket_units_of([[3.0, 5.0], [6.0, 10.0], [3.0, 5.0]], tokens),
        "learned_copy": bucket_units_of([[3.0, 5.0], [3.0, 5.0], [3.0, 5.0]], tokens),
        "lexinvariant": bucket_units_of([[6.0, 5.0], [9.0, 10.0], [6.0, 5.0]], tokens),
    }
    refs = {"in_context_unigram": np.arange(1.0, 9.0)}
    rows = lf.interval_table(units, refs)
    assert [r["positions"] for r in rows] == ["1-3", "4-8"]
    assert rows[0]["standard"] == pytest.approx(12.0 / 9.0)
    assert rows[0]["standard_copy"] == pytest.approx(1.0)
    assert rows[0]["lexinvariant"] == pytest.approx(21.0 / 9.0)
    # lexinvariant is the standard LM plus 1 nat per token in bucket 0, in every document
    assert rows[0]["ppl_ratio"] == pytest.approx(math.e)
    assert rows[0]["ppl_ratio_interval"] == pytest.approx([math.e, math.e])
    assert rows[1]["ppl_ratio"] == pytest.approx(1.0)
    assert rows[1]["ppl_ratio_interval"] == pytest.approx([1.0, 1.0])
    assert rows[0]["ppl_ratio_copy"] == pytest.approx(math.exp(21.0 / 9.0 - 1.0))
    assert rows[0]["standard_copy_interval"] == pytest.approx([1.0, 1.0])  # no spread
    lo, hi = rows[0]["standard_interval"]
    assert 1.0 <= lo < 12.0 / 9.0 < hi <= 2.0  # documents at 1 and 2 nats per token
    assert [r["in_context_unigram"] for r in rows] == [2.0, 6.0]
    whole = lf.bucket_loss(units["learned"], None)
    np.testing.assert_array_equal(whole["nats"], [8.0, 16.0, 8.0])
    np.testing.assert_array_equal(whole["tokens"], [8.0, 8.0, 8.0])
    # without the control run the table still renders its columns (older findings)
    del units["learned_copy"]
    assert "ppl_ratio_copy" not in lf.interval_table(units)[0]


def test_report_states_orderings_only_outside_the_interval():
    apart = {"diff": -0.5, "lo": -0.6, "hi": -0.4, "level": 0.95}
    tied = {"diff": 0.01, "lo": -0.02, "hi": 0.04, "level": 0.95}
    r = {
        "comparisons": {
            "lexinvariant - learned": {**apart, "a": 1.0, "b": 1.5},
            "learned_copy - learned": {**tied, "a": 1.51, "b": 1.5},
            "lexinvariant / learned": {"value": 1.42, "lo": 1.30, "hi": 1.55},
        }
    }
    text = " ".join(report.comparison_sentences(r))
    assert "the lexinvariant LM is better than the standard LM (difference -0.500" in text
    assert "the standard LM + copy readout and the standard LM are tied at this budget" in text
    assert "lexinvariant LM / standard LM 1.420 [1.300, 1.550]" in text
    rows = [
        {"positions": "1-3", "ppl_ratio": 8.0, "ppl_ratio_interval": [7.0, 9.0],
         "lexinvariant": 4.0, "lexinvariant_interval": [3.9, 4.1], "in_context_unigram": 4.5},
        {"positions": "4-8", "ppl_ratio": 4.0, "ppl_ratio_interval": [3.0, 5.0],
         "lexinvariant": 3.0, "lexinvariant_interval": [2.9, 3.1], "in_context_unigram": 3.05},
    ]  # fmt: skip
    assert report.ratio_sentence(rows).endswith(
        "it falls with position (the intervals do not overlap)."
    )
    assert report.count_model_sentence(rows) == (
        "Against the in-context count model, the lexinvariant LM is below at positions 1-3 "
        "and tied with it at positions 4-8."
    )
    rows[1]["ppl_ratio_interval"] = [3.0, 7.5]
    assert "tied at this budget" in report.ratio_sentence(rows)


def test_findings_from_before_the_protocol_render_and_say_what_they_lack():
    import json
    import os

    # the tiny findings as committed before seeds, intervals and the copy-readout control
    old = os.path.join(
        os.path.dirname(__file__), "fixtures", "lexinvariant_tiny_before_intervals.json"
    )
    f = json.loads(open(old).read())
    text = report.render_findings(f["findings"], {}, _NoFigures())
    assert "one seed; no interval recorded in this finding" in text
    assert "standard + copy readout: not recorded in this finding" in text
    assert "| 1-3 | 2.305 | not recorded | 4.413 | 8.24 | not recorded |" in text


class _NoFigures:
    def save(self, name, png):
        return f"figures/{name}"


def test_the_control_run_and_the_seeds_of_each_config():
    c = get_config("tiny")
    copy = run_config(c, "prose", "char", "learned_copy")
    assert copy.model.embedding == "learned" and copy.model.copy_readout
    assert copy.model.logit_scale == "auto"  # as the plain standard LM
    assert run_name("prose", "subword", "learned_copy") == "learned_copy_subword"
    sub = run_config(c, "prose", "subword", "learned_copy")
    assert (sub.train.steps, sub.train.seeds) == (200, 1)  # the tiny runs' steps, one seed
    for variant in ("small", "paper"):
        cfg = run_config(get_config(variant), "prose", "char", "learned_copy")
        assert cfg.train.seeds == 3 and cfg.seq_len == 512 and cfg.model.copy_readout
    with pytest.raises(ConfigError, match="embedding"):
        run_config(c, "prose", "char", "semi")
