"""experiments/pixel_sentence.py: the findings code on known answers, the data block, a tiny
end-to-end run (with resume), and training on the 8-device mesh."""

from __future__ import annotations

import json

import numpy as np
import pytest
import train_helpers as th

from experiments import pixel_data, pixel_report, pixel_sentence
from lexlm.data import sts
from lexlm.errors import ConfigError


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
    assert pixel_report.target_size(pairs) == 6
    # a target whose right side is always number 0: cosine falls with i, scores rise with i
    shifted = sts.Pairs(pairs.left, tuple("zero" for _ in pairs.right), pairs.scores)
    assert pixel_report.score(_embed_by_number, shifted, 100)["spearman"] == pytest.approx(-100)
    rows = pixel_report.robustness(_embed_by_number, shifted, (0.05, 0.2), 0, 100)
    assert [r["rate"] for r in rows] == [0.0, 0.05, 0.2]
    # typos never touch digits, so this encoder is perfectly robust: every drop is 0
    assert all(r["drop"] == pytest.approx(0.0) for r in rows)
    typo = pixel_report.with_typos(shifted, 0.2, 3)
    assert typo.left != shifted.left and len(typo.left) == len(shifted.left)
    assert pixel_report.with_typos(shifted, 0.0, 3) is shifted


def test_select_on_dev_and_typo_gap():
    recs = [
        {"stage": "unsup_typo", "step": 4, "global_step": 4, "candidate": False, "dev": 90.0},
        {"stage": "soup", "step": 0, "global_step": 8, "candidate": True, "dev": 30.0},
        {"stage": "sup_0", "step": 4, "global_step": 12, "candidate": True, "dev": 41.0},
        {"stage": "sup_0", "step": 8, "global_step": 16, "candidate": True, "dev": 41.0},
        {"stage": "sup_0", "step": 12, "global_step": 20, "candidate": True, "dev": float("nan")},
    ]
    assert pixel_report.select_on_dev(recs)["global_step"] == 12  # best dev, earliest on ties
    with pytest.raises(ValueError):
        pixel_report.select_on_dev(recs[:1])
    rows = [
        {"model": "pixel", "robustness": [{"rate": 0.0, "drop": 0.0}, {"rate": 0.1, "drop": 2.0}]},
        {"model": "token", "robustness": [{"rate": 0.0, "drop": 0.0}, {"rate": 0.1, "drop": 5.5}]},
    ]
    assert pixel_report.typo_gap(rows, 0.1) == {"pixel": 2.0, "token": 5.5}
    assert pixel_report.typo_gap(rows[:1], 0.1) is None


def test_split_doc_similarity_keeps_pairs_inside_each_half():
    docs = tuple(f"doc {i}" for i in range(6))
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)], np.int32)
    scores = np.array([10 * i + j for i, j in pairs], np.float32)
    dev, test = pixel_data.split_doc_similarity(sts.DocSimilarity(docs, pairs, scores), seed=1)
    assert len(dev.docs) == 3 and len(test.docs) == 3 and not set(dev.docs) & set(test.docs)
    for half in (dev, test):
        assert len(half.pairs) == 3
        for (i, j), s in zip(half.pairs, half.scores):
            a, b = int(half.docs[i].split()[1]), int(half.docs[j].split()[1])
            assert s == 10 * min(a, b) + max(a, b)


def _write_stsb(path, n, seed):
    rng = np.random.default_rng(seed)
    words = "cat dog bird fish tree house road car boat sun moon star".split()
    lines = []
    for i in range(n):
        a = " ".join(rng.choice(words, 5))
        b = " ".join(rng.choice(words, 5))
        lines.append(f"main-captions\tMSRvid\t2012\t{i:04d}\t{rng.uniform(0, 5):.3f}\t{a}.\t{b}.")
    lines.append("main-captions\tMSRvid\t2012\tbad\tnot-a-number\tx\ty")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_stsb_files_data_block(tmp_path):
    c = pixel_data.default_data_config()
    c.source = "stsb"
    for split, n in (("train", 40), ("validation", 10), ("test", 10)):
        c.files[split] = _write_stsb(tmp_path / f"{split}.csv", n, len(split))
    data = pixel_data.load_data(c)
    assert len(data.dev) == 10 and len(data.test) == 10 and data.docs == []
    assert data.stats["train"]["unparsable"] == 1
    assert data.stats["sup_pairs"] == int(np.sum(sts.read_stsb(c.files.train).scores >= 4.0))
    c.files.test = str(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match=r"data\.files\.test"):
        pixel_data.load_data(c)
    c.source = "wiki"
    with pytest.raises(ConfigError, match=r"data\.source"):
        pixel_data.load_data(c)


def test_lee_data_block():
    data = pixel_data.load_data(pixel_data.default_data_config())
    assert len(data.dev.docs) == 25 and len(data.test.docs) == 25
    assert len(data.dev.pairs) == 300 and len(data.test.pairs) == 300
    assert not set(data.dev.docs) & set(data.test.docs)
    assert data.stats["documents"] == 293 and max(map(len, data.sentences)) <= 120


def test_config_errors():
    c = pixel_sentence.get_config("tiny")
    c.models = "pixel,bert"
    with pytest.raises(ConfigError, match="models"):
        pixel_sentence.model_names(c)
    c.stages.unsup = "typo,blur"
    with pytest.raises(ConfigError, match=r"stages\.unsup"):
        pixel_sentence.unsup_kinds(c)
    with pytest.raises(ValueError, match="unknown config"):
        pixel_sentence.get_config("huge")


def _tiny(c):
    c.model.update(width=16, depth=1, heads=2, max_len=16, dec_width=16, dec_heads=2)
    c.tokenizer.vocab_size = 600
    c.stages.update(unsup="combined", unsup_steps=4, topical_steps=4, mae_steps=2)
    c.train.update(batch_size=8, ckpt_every=4, log_every=2)
    c.eval.update(batch=32, examples=1)
    c.data.max_sentences = 200
    return c


# compile_once: the stages of one encoder share their train step, compiled once.
def test_tiny_run_end_to_end_and_reuse(tmp_path, compile_once, unoptimised_xla):
    c = _tiny(pixel_sentence.get_config("tiny"))
    f = pixel_sentence.run(c, tmp_path)
    assert f["stages"] == ["mae", "unsup_combined", "soup", "topical_0"]
    models = [r for r in f["rows"] if not r.get("reference")]
    for row in models:
        assert -100 <= row["test"] <= 100 and [r["rate"] for r in row["robustness"]] == [
            0.0, 0.05, 0.1, 0.2]  # fmt: skip
        cands = [e for e in row["evals"] if e["candidate"]]
        assert [e["stage"] for e in cands] == ["soup", "topical_0"]
        assert row["dev"] == max(e["dev"] for e in cands)
    assert [r["model"] for r in f["rows"]] == ["pixel", "token", "tfidf"]
    assert f["rows"][2]["params"] == 0 and len(f["rows"][2]["robustness"]) == 4
    assert (tmp_path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "rendered_examples.png").read_bytes()[:4] == b"\x89PNG"
    text = pixel_sentence.report_section(f, image_dir="pixel")
    assert "| pixel encoder (rendered text) |" in text and "pixel/robustness.png" in text
    assert "| reference: TF-IDF bag of words (no training) |" in text
    evals = (tmp_path / "runs" / "pixel" / "evals.jsonl").read_text().splitlines()
    c.models = "pixel"
    again = pixel_sentence.run(c, tmp_path)  # finished: evaluated again from the checkpoint
    assert again["rows"][0]["test"] == f["rows"][0]["test"]
    assert (tmp_path / "runs" / "pixel" / "evals.jsonl").read_text().splitlines() == evals
    saved = json.loads((tmp_path / "findings_pixel.json").read_text())
    assert saved["rows"][0]["params"] > 0


MESH_SCRIPT = """
import json, sys
import jax, numpy as np
from lexlm.data.sentence_pairs import PairBatches, PixelFeatures
from lexlm.nn.vit import EncoderConfig
from lexlm.text.render import RenderConfig
from lexlm.train import default_train_config, train
from lexlm.train.contrastive_task import make_contrastive_task

cfg = EncoderConfig(kind="pixel", width=32, depth=1, heads=4, max_len=16)
t = default_train_config()
t.update(steps=6, batch_size=16, mesh=(2, 2, 2), log_every=1, ckpt_every=6, lr=3e-3,
         progress=False, tensorboard=False, warmup_steps=1)
sents = [f"Sentence {i}: the {w} sat on a mat." for i, w in enumerate("cat dog cow pig hen fox "
         "owl bee ant elk yak emu gnu ape bat rat eel".split())]
batches = PairBatches(PixelFeatures(RenderConfig(max_patches=16)), sents, None, 16, 0, "typo", 0.1)
r = train(t, make_contrastive_task(cfg), batches, sys.argv[1])
print("DEVICES", jax.device_count())
print("LOSSES", json.dumps([h["loss"] for h in r.history]))
"""


def test_pixel_encoder_trains_on_8_device_mesh(tmp_path):
    lines = th.run_script(MESH_SCRIPT, tmp_path / "train_pixel.py", [str(tmp_path / "run")])
    losses = json.loads(lines["LOSSES"])
    assert int(lines["DEVICES"]) == 8
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_tfds_source_offline_and_hidden_scores_are_refused(tmp_path):
    import tensorflow_datasets as tfds

    c = pixel_data.default_data_config()
    c.update(source="tfds", tfds_name="ag_news_subset", data_dir=str(tmp_path))

    def records(self, split, **kwargs):  # glue/stsb's fields; its test split hides scores
        del self, kwargs
        score = -1.0 if split == "test" else 3.5
        return [{"sentence1": b"A cat sits.", "sentence2": b"A cat is \xffsitting.",
                 "label": score}, {"sentence1": b"", "sentence2": b"x", "label": 1.0}]  # fmt: skip

    c.tfds_splits = {"train": "train", "validation": "train", "test": "train"}
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=records):  # fmt: skip
        data = pixel_data.load_data(c)
    assert len(data.test) == 1 and data.test.right == ("A cat is \ufffdsitting.",)
    assert data.stats["train"]["empty"] == 1 and data.stats["train"]["replaced_bytes"] == 1
    assert data.stats["sup_pairs"] == 0
    c.tfds_splits.test = "test"
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_data_source_fn=records):  # fmt: skip
        with pytest.raises(ConfigError, match=r"^data\.tfds_splits\.test: .*unlabelled"):
            pixel_data.load_data(c)
