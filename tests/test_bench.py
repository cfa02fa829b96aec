"""The arithmetic behind the benchmark figures the README reports, on cases with known answers
(the benchmarks themselves are scripts, not tests)."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from bench import memory


def test_shard_bytes_counts_each_leaf_once_per_device():
    mesh = jax.make_mesh((1,), ("x",))
    sharding = NamedSharding(mesh, PartitionSpec())
    tree = {
        "w": jax.ShapeDtypeStruct((4, 6), np.float32, sharding=sharding),
        "b": jax.ShapeDtypeStruct((6,), np.dtype("bfloat16"), sharding=sharding),
        "count": jax.ShapeDtypeStruct((), np.int32, sharding=sharding),
    }
    assert memory.shard_bytes(tree) == 4 * 6 * 4 + 6 * 2 + 4


def test_split_ratio_is_one_for_a_perfect_split():
    row = {"devices": 8, "params_per_device": 100, "optimizer_per_device": 200}
    assert memory.split_ratio(row, unsharded=2400) == pytest.approx(1.0)
    # one replicated 80-byte vector on every device on top of the perfect split
    row = {"devices": 8, "params_per_device": 110, "optimizer_per_device": 200}
    assert memory.split_ratio(row, unsharded=2400) == pytest.approx(2480 / 2400)


def test_mesh_shapes():
    assert memory.mesh_shape(64, "fsdp", 1) == (1, 64, 1)
    assert memory.mesh_shape(64, "fsdp", 4) == (1, 16, 4)
    assert memory.mesh_shape(8, "data", 4) == (8, 1, 1)
    with pytest.raises(SystemExit, match="does not divide"):
        memory.mesh_shape(8, "fsdp", 3)


def test_word_pooled_bench_batch_counts_the_characters_it_holds():
    from bench.word_pooled import piece_counts, quotas, word_batch
    from lexlm.nn.word_pooled import WordPooledConfig

    cfg = WordPooledConfig(unit_vocab=20, max_units=5, max_words=7)
    counts = [0, 4, 0, 2, 0, 0, 2]  # 6-character words become a 5- and a 1-character piece
    batch, chars = word_batch(cfg, 3, counts)
    assert batch["units"].shape == (3, 8, 5) and batch["word_mask"].shape == (3, 7)
    lengths = (batch["units"] != 0).sum(-1)
    assert chars == lengths[:, 1:].mean()  # targets are words 1..W
    # pieces [0, 6, 0, 2, 0, 2]: 24 slots get 6/10, 2/10, 2/10 of them (largest remainders)
    assert piece_counts(counts, 5).tolist() == [0, 6, 0, 2, 0, 2]
    assert quotas(np.array([0, 6, 0, 2, 0, 2]), 24).tolist() == [0, 14, 0, 5, 0, 5]
    assert np.bincount(lengths.ravel(), minlength=6).tolist() == [0, 14, 0, 5, 0, 5]


def test_word_length_counts_of_a_known_text_and_pieces_as_word_pieces_cuts_them():
    from bench.word_pooled import length_counts, piece_counts
    from lexlm.text.words import segment_words, word_pieces

    # "To" " be" "," " or" " not" | "a" "  b" "\n\nc": whitespace belongs to the next word
    counts = length_counts(["To be, or not", "a  b\n\nc"])
    assert counts.tolist() == [0, 2, 1, 4, 1]
    assert (counts * np.arange(5)).sum() == len("To be, or not") + len("a  b\n\nc")
    assert piece_counts([0, 0, 1, 0, 0, 0, 0, 1], 3).tolist() == [0, 1, 1, 2]  # 2; 7 = 3+3+1
    text = "Incomprehensibilities, notwithstanding: a b  antidisestablishmentarianism!"
    pieces, _, _ = word_pieces(segment_words(text), 6)
    expect = np.bincount([len(p) for p in pieces], minlength=7)
    assert piece_counts(length_counts([text]), 6).tolist() == expect.tolist()


def test_word_pooled_bench_frozen_lengths_are_the_embedded_corpus():
    from bench.word_pooled import LEE_TRAIN_LENGTHS, lee_train_documents, length_counts
    from lexlm.errors import ConfigError

    try:
        docs = lee_train_documents()
    except (ImportError, ConfigError) as e:
        pytest.skip(f"no data stack: {e}")
    assert length_counts(docs).tolist() == list(LEE_TRAIN_LENGTHS)


def test_interleaved_timer_alternates_probe_and_model_and_divides_by_that_peak(monkeypatch):
    from bench import common

    calls = []
    seconds = {"probe": 0.5, "model": 2.0}

    def fake_timed(f, *args):
        f(*args)
        return seconds[calls[-1]], 0.0

    monkeypatch.setattr(common, "_timed", fake_timed)
    t = common.time_interleaved(
        lambda: calls.append("model"), warmup=1, iters=3,
        probe=(lambda: calls.append("probe"), 100.0),
    )  # fmt: skip
    assert calls == ["probe", "model"] + ["probe", "model"] * 3 + ["probe"]
    assert t.model.times == [2.0] * 3 and t.probe_flops_s == [200.0] * 4 and t.peak == 200.0
    assert t.fraction(100.0) == pytest.approx(0.25)  # 50 FLOP/s of a 200 FLOP/s peak
    assert t.fraction(100.0, n_devices=2) == pytest.approx(0.125)
    assert "25.0% of the interleaved float32 matmul peak 200 FLOP/s" in t.line(100.0)


def test_word_pooled_bench_quotes_etok_without_a_ratio(monkeypatch, capsys):
    import re

    from bench import common, word_pooled

    probe = common.matmul_probe
    monkeypatch.setattr(common, "matmul_probe", lambda dtype: probe(dtype, 64))
    monkeypatch.setitem(word_pooled.SIZES, "tiny", dict(
        wp=dict(width=16, prefix=2, enc_depth=1, enc_heads=2, lm_depth=1, lm_heads=2,
                dec_depth=1, dec_heads=2, max_units=6, max_words=8),
        char=dict(width=16, depth=1, heads=2), batch=2, vocab=20,
    ))  # fmt: skip
    record = word_pooled.main(["--steps=2", "--warmup=0", "--gen_words=2", "--gen_context=2"])
    out = capsys.readouterr().out
    quoted = [line for line in out.splitlines() if "eTok" in line]
    assert len(quoted) == 1 and "quoted" in quoted[0] and "183" in quoted[0]
    assert not re.search(r"\bx\s?\d|\bratio\b|/ ", quoted[0].split("(quoted")[0]), quoted[0]
    assert not any("etok" in k.lower() for k in record)
    assert record["word_pooled"]["fraction_of_peak"] > 0 and record["char"]["words_s"] > 0
    assert len(record["word_pooled"]["probe_flops_s"]) == 3  # one more than the steps
    assert "word-pooled / character LM, this run" in out


def test_byte_transformer_width_matches_a_parameter_target():
    from bench.byte_patching import matched_width

    def count(cfg):  # a stand-in count: 10 * width^2
        return 10 * cfg.local_width**2

    # widths 4, 8, 12, ...: 10 * 32^2 = 10240 and 10 * 36^2 = 12960; 11000 is nearer 10240
    assert matched_width(11_000, 2, 4, 64, count) == 32
    assert matched_width(12_500, 2, 4, 64, count) == 36
    assert matched_width(1, 2, 4, 64, count) == 4  # never below one head's width


def test_fitted_exponent_recovers_known_power_laws():
    from bench.lama import fitted_exponent

    lengths = [64, 128, 256, 512, 1024]
    assert fitted_exponent(lengths, [3e-6 * t for t in lengths]) == pytest.approx(1.0)
    assert fitted_exponent(lengths, [1e-9 * t**2 for t in lengths]) == pytest.approx(2.0)
    # lengths below min_length (fixed overheads) are left out of the fit
    times = [1.0, 1.0, 2e-3 * 256, 2e-3 * 512, 2e-3 * 1024]
    assert fitted_exponent(lengths, times) == pytest.approx(1.0)
    assert math.isnan(fitted_exponent([64, 128], [1.0, 2.0]))


def test_lama_bench_runs_on_short_lengths():
    from bench import lama

    record = lama.main(["--lengths", "16", "--width", "16", "--heads", "2", "--rank", "4",
                        "--iters", "1"])  # fmt: skip
    assert set(record["time_s"]) == {"lama", "low_rank", "standard"}
    assert all(len(v) == 1 and v[0] > 0 for v in record["peak_bytes"].values())


def test_render_bench_reads_both_sentences_of_each_sts_pair(tmp_path):
    from bench.render import read_sts

    f = tmp_path / "sts.csv"
    f.write_text(
        "g\tf\ty\t1\t5.0\tA long first sentence.\tShort.\ng\tf\ty\t2\t1.0\tAbc\tA b c d e f\n"
    )
    assert read_sts(str(f), 0) == ["A long first sentence.", "Short.", "Abc", "A b c d e f"]
    assert read_sts(str(f), 10) == ["A long first sentence.", "A b c d e f"]


def test_bench_flags_parse_twice_in_one_process_and_a_bad_one_is_one_line(capsys):
    from bench import train_throughput

    a = train_throughput.parse_args(["--size=tiny", "--batch", "3", "--vocab_chunk=16", "--remat"])
    b = train_throughput.parse_args(["--noremat", "--steps", "2"])
    assert (a.batch, a.vocab_chunk, a.remat, a.steps) == (3, 16, True, 20)  # 20: tiny's default
    assert (b.batch, b.vocab_chunk, b.remat, b.steps) == (32, 8192, False, 2)
    assert a.seq == b.seq == 128  # None means the size's
    capsys.readouterr()
    for bad in (["--size", "nope"], ["--vocab-chunk", "16"], ["--batch"], ["stray"]):
        with pytest.raises(SystemExit) as e:
            train_throughput.parse_args(bad)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as e:
        train_throughput.parse_args(["--help"])
    assert e.value.code == 0 and "--peak_tflops" in capsys.readouterr().out


def test_render_bench_detects_pixels_renderer_through_gi(monkeypatch):
    """PIXEL draws with cairo + PangoCairo from gi.repository; the obsolete ``pangocairo``
    module is never looked for. Missing pieces read "not available" with the reason."""
    import sys
    import types

    from bench.render import pango_renderer
    from lexlm.text.render import RenderConfig

    cfg = RenderConfig(max_patches=4)
    monkeypatch.setitem(sys.modules, "cairo", None)  # import cairo -> ImportError
    draw, why = pango_renderer(cfg)
    assert draw is None and why.startswith("not available (") and "cairo" in why
    asked = []
    gi = types.ModuleType("gi")

    def require_version(namespace, version):
        asked.append((namespace, version))
        raise ValueError(f"Namespace {namespace} not available")

    gi.require_version = require_version
    monkeypatch.setitem(sys.modules, "cairo", types.ModuleType("cairo"))
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "pangocairo", types.ModuleType("pangocairo"))  # obsolete
    draw, why = pango_renderer(cfg)
    assert draw is None and why == "not available (ValueError: Namespace Pango not available)"
    assert asked == [("Pango", "1.0")]


def test_render_bench_times_the_same_sentences_and_divides_no_quoted_figure(capsys):
    from bench import render

    record = render.main(["--max_patches=16", "--sentences=40", "--per_sentence=8",
                          "--batch=16", "--repeats=3", "--nopin"])  # fmt: skip
    out = capsys.readouterr().out
    assert record["sentences"] == 8 and record["repeats"] == 3
    assert set(record["per_sentence_per_s"]) >= {"glyph cache", "direct"}
    assert all(v > 0 for v in record["per_sentence_per_s"].values())
    quoted = [line for line in out.splitlines() if "11,500" in line]
    assert len(quoted) == 1 and "quoted" in quoted[0] and " x" not in quoted[0]
    if "pangocairo" not in record["per_sentence_per_s"]:
        assert record["pangocairo"].startswith("not available")
        assert "pangocairo   not available" in out
    calls = []

    def count():
        calls.append(1)
        return 10

    rates = render.median_rates({"a": count}, 4)
    assert len(calls) == 5 and rates["a"] > 0  # one warm-up, then 4 timed passes


def test_seed_bench_captures_a_runs_own_task_and_batch_and_times_both_steps(tmp_path):
    """bench.seeds takes a model's task and first batch from its own run (nothing trains),
    builds the S-copy step as the trainer does (state and batch with a leading seed axis), and
    the ratios are of the two medians."""
    from bench import common, seeds

    models = dict(seeds.section_models("lama", str(tmp_path)))
    c = seeds.capture(models["mean"])
    assert c.task.name == "cls_mean"
    assert next(iter(c.batch.values())).shape[0] == 64  # the lama tiny config's batch
    assert not list(tmp_path.rglob("checkpoints/*"))  # the run stopped before training
    r = seeds.time_tasks(c.task, c.batch, 3, steps=1, rounds=1)
    assert r["ratio"] == pytest.approx(r["seeds_ms"] / r["one_ms"], rel=1e-2)
    assert r["per_seed_ratio"] == pytest.approx(r["ratio"] / 3, rel=1e-2)
    assert r["params"] == common.TaskStep(c.task, c.batch, common.make_mesh("1")).param_count()
    step = common.TaskStep(c.task, c.batch, common.make_mesh("1"), seeds=3)
    assert jax.tree.leaves(step.state.params)[0].shape[0] == 3
    assert {"loss_seed0", "loss_seed2"} <= set(step())
    with pytest.raises(RuntimeError, match="without calling the trainer"):
        seeds.capture(lambda: None)


def test_seed_table_floor_and_sentences_on_known_rows():
    """The floor is S x busy cores / cores (at least 1); each sentence counts its rows."""
    from lexlm.proj.main import seeds_report as sr

    assert sr.floor({"cores_busy_one": 1.5}, 4, 2) == 3.0
    assert sr.floor({"cores_busy_one": 0.2}, 4, 2) == 1.0
    assert sr.floor({"cores_busy_one": 2.4}, 4, 2) == 4.0  # more busy than cores: capped
    row = dict(params=10, one_ms=10.0, seeds_ms=15.0, ratio=1.5, per_seed_ratio=0.375,
               cpu_ratio=2.0, cores_busy_one=0.5, cores_busy_seeds=1.4, load_1min=0.5)  # fmt: skip
    slow = {**row, "ratio": 5.0, "cpu_ratio": 5.0, "cores_busy_one": 1.9, "load_1min": 3.5}
    f = {"seeds": 4, "target": 2.0, "cpu_cores": 2, "rounds": 3, "steps": 5, "device": "cpu",
         "models": [{"section": "a", "model": "x", **row},
                    {"section": "b", "model": "y", **slow}]}  # fmt: skip
    text = sr.render(f)
    assert "1 of 2 models meet it" in text
    assert (
        "| a | x | 10 | 10.0 | 15.0 | 1.50x | 0.38x | 2.00x | 0.50 | 1.40 | 1.00x | 0.5 |" in text
    )
    assert "| 3.80x | 3.5 |" in text
    assert "For 1 of 2 models one copy's step already keeps" in text
    assert "over the floor: 1.32x to 1.50x (median 1.41x)" in text  # 5.0 / 3.8 and 1.5 / 1.0
    assert "for 1 models (b/y)" in text
    assert "load above 3): b/y" in text
    assert sr.sentences(f["models"][:1], 4, 2, 2.0) == [
        "Measured ratio over the floor: 1.50x to 1.50x (median 1.50x)."
    ]
