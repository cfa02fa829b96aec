"""``experiments/lama.py``: findings code on known cases, configs, the classifier on an 8-device
mesh, and a short end-to-end run on the embedded ratings."""

import dataclasses
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import train_helpers as th

from experiments import lama
from experiments import lama_report as report
from lexlm.errors import ConfigError
from lexlm.nn.transformer import LMConfig

REPO = Path(__file__).resolve().parent.parent


def test_accuracy_counts_weighted_rows_only():
    batches = [
        {"tokens": np.array([0, 1, 2, 3]), "label": np.array([0, 1, 1, 0]),
         "weight": np.array([1.0, 1, 1, 0])},
        {"tokens": np.array([4, 5]), "label": np.array([1, 1]), "weight": np.array([1.0, 0])},
    ]  # fmt: skip
    acc, n = report.accuracy(lambda t: t % 2, batches)  # right: rows 0 and 1 of 4 real rows
    assert n == 4 and acc == pytest.approx(2 / 4)


def test_selection_uses_validation_only_and_prefers_the_earliest_tie():
    evals = [
        {"step": 10, "validation": 0.7, "test": 0.9},
        {"step": 20, "validation": 0.8, "test": 0.1},
        {"step": 30, "validation": 0.8, "test": 0.2},
    ]
    assert report.select_on_dev(evals)["step"] == 20
    with pytest.raises(ValueError):
        report.select_on_dev([])


def test_majority_gap_and_table():
    assert report.majority_accuracy(np.array([1, 1, 0]), np.array([1, 0, 0, 0])) == 0.25
    rows = [
        {"model": "lama", "test": 0.80, "validation": 0.8, "step": 5, "attention_params": 100,
         "params": 1000, "step_s": 0.01},
        {"model": "additive", "test": 0.82, "validation": 0.8, "step": 5, "attention_params": 50,
         "params": 900, "step_s": 0.02},
        {"model": "structured", "test": 0.75, "validation": 0.8, "step": 5,
         "attention_params": 80, "params": 950, "step_s": 0.02},
    ]  # fmt: skip
    gap, base = report.lama_gap(rows)
    assert base == "additive" and gap == pytest.approx(-2.0)
    lines = report.table(rows, 400)
    assert lines[2] == "| LAMA | 80.0 | 80.0 | 5 | 100 | 0.250 | 1,000 | 10.0 |"


def test_equal_param_width_matches_the_standard_model():
    std = LMConfig(vocab_size=100, width=128, depth=2, heads=4, max_len=128)
    low = dataclasses.replace(std, attention_kind="low_rank", qk_rank=8)
    width = lama.equal_param_width(std, low)
    assert width > 128 and width % 4 == 0
    wide = dataclasses.replace(low, width=width, qk_rank=round(8 * width / 128))
    step = dataclasses.replace(low, width=width + 4, qk_rank=round(8 * (width + 4) / 128))
    assert abs(wide.param_count() - std.param_count()) <= abs(
        step.param_count() - std.param_count()
    )
    assert abs(wide.param_count() - std.param_count()) / std.param_count() < 0.02


def test_configs_and_bad_model_names():
    for arg in ("tiny", "sst2", "ag_news", "lm"):
        c = lama.get_config(arg)
        assert c.kind == ("lm" if arg == "lm" else "classify")
    c = lama.get_config("tiny")
    c.models = "lama,bogus"
    with pytest.raises(ConfigError, match="models"):
        lama.model_names(c)
    c = lama.get_config("sst2")  # no files given
    with pytest.raises(ConfigError, match=r"data\.files\.train"):
        lama.run(c, "/nonexistent/out")
    variants = lama.lm_variants(lama.get_config("lm"))
    assert variants["low_rank"] == {"attention_kind": "low_rank", "qk_rank": 8}


MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
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


def test_tiny_run_end_to_end_and_reuse(tmp_path):
    c = lama.get_config("tiny")
    c.models = "lama"
    c.model.update(embed=16, hidden=8, heads=2, attn_hidden=8, mlp_hidden=16)
    c.train.update(steps=10, ckpt_every=5, log_every=5)
    c.examples = 2
    f = lama.run(c, tmp_path)
    assert [r["model"] for r in f["rows"]] == ["lama"]
    for r in f["rows"]:
        assert r["step"] in (5, 10) and 0.0 <= r["test"] <= 1.0
    assert f["read"]["all"]["neutral"] == 37
    assert sum(f["sizes"].values()) == 10605 - 37
    assert (tmp_path / "attention_lama.png").read_bytes()[:4] == b"\x89PNG"
    evals = (tmp_path / "runs" / "cls_lama" / "evals.jsonl").read_text().splitlines()
    assert [json.loads(e)["step"] for e in evals] == [5, 10]
    text = lama.report_section(f)
    assert "| LAMA |" in text and "attention_lama.png" in text
    again = lama.run(c, tmp_path)  # finished runs are not retrained
    assert again["rows"][0]["test"] == f["rows"][0]["test"]  # the same evaluation, read back
    assert len((tmp_path / "runs" / "cls_lama" / "evals.jsonl").read_text().splitlines()) == 2


def test_tfds_source_offline_and_hidden_labels_are_refused(tmp_path):
    import tensorflow_datasets as tfds

    from experiments.lama_data import load_splits

    c = lama.get_config("ag_news").data
    c.update(source="tfds", tfds_name="ag_news_subset", data_dir=str(tmp_path))
    c.text_keys = ("title", "description")
    c.tfds_splits = {"train": "train", "validation": "test", "test": "test"}
    with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
        splits, _ = load_splits(c)
    assert {k: len(v) for k, v in splits.items()} == {"train": 7, "validation": 7, "test": 7}
    assert set(splits["train"].labels.tolist()) <= {0, 1, 2, 3}

    def hidden(self, split, **kwargs):  # like glue/sst2's test split: label -1
        del self, kwargs
        label = -1 if split == "test" else 1
        return [{"title": b"Oil", "description": b"prices \xffrose", "label": label}]

    c.tfds_splits = {"train": "train", "validation": "train", "test": "test"}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=hidden):
        with pytest.raises(ConfigError, match=r"^data\.tfds_splits\.test: .*unlabelled"):
            load_splits(c)


def test_structured_loss_adds_its_penalty():
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
    loss1, m1 = jax.jit(with_pen.loss)(params, batch, jax.random.key(1))
    loss0, m0 = jax.jit(without.loss)(params, batch, jax.random.key(1))
    assert "penalty" in m1 and "penalty" not in m0
    assert float(loss1 - loss0) == pytest.approx(float(m1["penalty"]), rel=1e-5)
    assert float(m1["penalty"]) > 0
