"""The sentence encoders (lexlm.nn.vit), their losses (lexlm.train.contrastive_task) and
batches (lexlm.data.sentence_pairs), and the pixel encoder training on an 8-device mesh."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_helpers as th

from lexlm.data.sentence_pairs import (
    MAEBatches,
    PairBatches,
    PixelFeatures,
    TokenFeatures,
    adjacent_pairs,
    span_mask,
    split_sentences,
    text_ids,
)
from lexlm.nn.vit import EncoderConfig, SentenceEncoder, sincos_1d, sincos_2d
from lexlm.text.render import RenderConfig
from lexlm.train.contrastive_task import (
    duplicate_mask,
    info_nce,
    init_params,
    mae_loss,
    make_contrastive_task,
    normalised_pixels,
    soup,
    unbox,
)

PIX = EncoderConfig(kind="pixel", width=32, depth=2, heads=4, max_len=12, dec_width=16,
                    dec_heads=2)  # fmt: skip


def test_sincos_tables_known_values():
    t = sincos_1d(np.arange(3), 4)  # w = 1, 1/100
    np.testing.assert_allclose(t[2], [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)],
                               rtol=1e-6)  # fmt: skip
    g = sincos_2d(30, 8, grid=23)
    np.testing.assert_allclose(g[24, :4], sincos_1d(np.array([1]), 4)[0])  # patch 24: row 1
    np.testing.assert_allclose(g[24, 4:], sincos_1d(np.array([1]), 4)[0])  # ... column 1
    np.testing.assert_allclose(g[5, :4], sincos_1d(np.array([0]), 4)[0])
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d(4, 6, 2)


@pytest.mark.parametrize("kind", ["pixel", "token"])
def test_param_count_formula_matches_init(kind):
    cfg = EncoderConfig(kind=kind, width=32, depth=2, heads=4, max_len=8, vocab_size=50)
    for objective in ("contrastive", "mae") if kind == "pixel" else ("contrastive",):
        shapes = jax.eval_shape(lambda k, o=objective: unbox(init_params(cfg, k, o)),
                                jax.random.key(0))  # fmt: skip
        n = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
        assert n == cfg.param_count(with_decoder=objective == "mae")


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match=r"model\.kind"):
        EncoderConfig(kind="audio")
    with pytest.raises(ValueError, match="grid"):
        EncoderConfig(max_len=600)
    with pytest.raises(ValueError, match="vocab_size"):
        EncoderConfig(kind="token")


def test_embeddings_unit_norm_and_padding_invariant():
    model = SentenceEncoder(PIX)
    params = unbox(init_params(PIX, jax.random.key(1)))
    feats = PixelFeatures(RenderConfig(max_patches=12))
    x, m = feats(["A short one.", "Another sentence here"])
    f = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m))
    e = np.asarray(f(params, x, m))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # garbage in the masked-out patches changes nothing
    noisy = np.where(m[..., None], x, np.uint8(7))
    np.testing.assert_allclose(np.asarray(f(params, noisy, m)), e, atol=1e-5)
    no_head = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m, False))(params, x, m)
    np.testing.assert_allclose(np.linalg.norm(no_head, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(no_head, e)


def test_info_nce_known_answer_and_filler_rows():
    a = jnp.eye(3)
    loss, acc = info_nce(a, a, temperature=1.0)
    # each row: logits (1, 0, 0) against label 0
    expected = -math.log(math.e / (math.e + 2))
    assert float(loss) == pytest.approx(expected, rel=1e-6) and float(acc) == 1.0
    b = a[::-1]  # row 0 matches row 2: the diagonal is not the highest (except row 1)
    _, acc = info_nce(a, b, temperature=1.0)
    assert float(acc) == pytest.approx(1 / 3)
    # a weight-0 row is neither a positive nor a negative: the loss equals the 2-row batch's
    w = jnp.array([1.0, 1.0, 0.0])
    junk = jnp.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    l3, _ = info_nce(junk, junk, 0.5, w)
    l2, _ = info_nce(junk[:2], junk[:2], 0.5)
    assert float(l3) == pytest.approx(float(l2), rel=1e-6)


def test_info_nce_masks_repeated_sentences_known_answer():
    """b_0 and b_2 are one sentence, and a_3 is the sentence b_1: those candidates leave the
    denominators; the loss equals the cross-entropies written out without them."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(4, 3)) for _ in range(2))
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    ids_a, ids_b = text_ids(["x", "y", "z", "q"]), text_ids(["p", "q", "p", "r"])
    dup = np.asarray(duplicate_mask(jnp.asarray(ids_a), jnp.asarray(ids_b)))
    expected = np.zeros((4, 4), bool)
    expected[0, 2] = expected[2, 0] = True  # b_2 is b_0's text, b_0 is b_2's
    expected[3, 1] = True  # b_1 is a_3's own text
    np.testing.assert_array_equal(dup, expected)
    t = 0.5
    s = a @ b.T / t

    def ce(scores, pos, keep):
        return -scores[pos] + np.log(np.sum(np.exp(scores[keep])))

    rows = [ce(s[0], 0, [0, 1, 3]), ce(s[1], 1, [0, 1, 2, 3]), ce(s[2], 2, [1, 2, 3]),
            ce(s[3], 3, [0, 2, 3])]  # fmt: skip
    cols = [ce(s[:, 0], 0, [0, 1, 3]), ce(s[:, 1], 1, [0, 1, 2]), ce(s[:, 2], 2, [1, 2, 3]),
            ce(s[:, 3], 3, [0, 1, 2, 3])]  # fmt: skip
    loss, _ = info_nce(jnp.asarray(a), jnp.asarray(b), t, duplicates=jnp.asarray(dup))
    assert float(loss) == pytest.approx(0.5 * (np.mean(rows) + np.mean(cols)), rel=1e-5)
    plain, _ = info_nce(jnp.asarray(a), jnp.asarray(b), t)
    assert abs(float(plain) - float(loss)) > 1e-3  # the mask changed the loss
    # no repeated text: nothing is masked and the loss is the plain one
    none = duplicate_mask(jnp.asarray(text_ids("abcd")), jnp.asarray(text_ids("efgh")))
    assert not np.asarray(none).any()
    same, _ = info_nce(jnp.asarray(a), jnp.asarray(b), t, duplicates=none)
    assert float(same) == float(plain)


def test_text_ids_equal_exactly_for_equal_texts():
    ids = text_ids(["a cat", "a cat", "a cat ", "Ça va"])
    assert ids.shape == (4, 2) and ids.dtype == np.int32
    assert (ids[0] == ids[1]).all() and (ids[0] != ids[2]).any() and (ids[0] != ids[3]).any()


def test_contrastive_step_counts_unchanged_perturbations_and_duplicates():
    """A word shuffle cannot change a one-word sentence or one of a repeated word: 3 of the 6
    rows (every step); 8 distinct words are reordered except with chance 1/8!. The two copies
    of 'Alpha' are also each other's duplicate (2 masked pairs, both directions)."""
    feats = PixelFeatures(RenderConfig(max_patches=12))
    long = ["one two three four five six seven eight", "red green blue cyan magenta yellow "
            "black white", "ant bee cat dog eel fox gnu hen"]  # fmt: skip
    sents = ["Alpha", "Alpha", "go go go go", *long]
    batches = PairBatches(feats, sents, None, 6, seed=1, kind="word_shuffle")
    task = make_contrastive_task(PIX)
    params = task.init(jax.random.key(0))
    for _ in range(3):
        batch = next(batches)
        _, metrics = jax.jit(task.loss)(params, batch, jax.random.key(1))
        assert float(metrics["unchanged_positives"]) == 3
        # Alpha/Alpha: a, b and cross texts repeat: [i, j] and [j, i] both masked
        assert float(metrics["duplicate_negatives"]) == 2
    weight = np.ones(6, np.float32)
    weight[batches.texts(2)[0].index("Alpha")] = 0  # one copy of Alpha made a filler row
    _, metrics = jax.jit(task.loss)(params, dict(batch, weight=weight), jax.random.key(1))
    assert float(metrics["duplicate_negatives"]) == 0  # a filler row is nobody's negative
    assert float(metrics["unchanged_positives"]) == 2


def test_mae_loss_counts_only_hidden_text_patches():
    patches = jnp.asarray(np.random.default_rng(0).integers(0, 255, (1, 3, 4)), jnp.uint8)
    target = normalised_pixels(1.0 - patches.astype(jnp.float32) / 255.0)
    np.testing.assert_allclose(jnp.mean(target, -1), 0.0, atol=1e-5)
    pred = target.at[0, 1].add(2.0)  # wrong by 2 on patch 1 only
    hidden = jnp.array([[True, True, True]])
    text = jnp.array([[True, True, False]])
    assert float(mae_loss(pred, patches, hidden, text)) == pytest.approx(4.0 / 2, rel=1e-5)
    assert float(mae_loss(pred, patches, hidden & ~jnp.array([[0, 1, 0]], bool), text)) < 1e-9


def test_span_mask_rules():
    rng = np.random.default_rng(0)
    n = np.array([20, 1, 2, 0, 9])
    m = span_mask(n, 24, rng, ratio=0.25)
    assert m.shape == (5, 24)
    for row, k in zip(m, n):
        assert not row[k:].any()  # never the end patch or padding
        if k >= 2:
            assert max(1, round(0.25 * k)) <= row.sum() <= k - 1
    assert m[1].sum() == 1 and m[3].sum() == 0
    with pytest.raises(ValueError, match=r"mae\.ratio"):
        span_mask(n, 24, rng, ratio=1.5)


def test_one_character_typo_changes_only_nearby_patches():
    feats = PixelFeatures(RenderConfig(max_patches=40))
    x, m = feats(["The quick brown fox jumps over the lazy dog.",
                  "The quick brown fox jumps ovar the lazy dog."])  # fmt: skip
    changed = np.flatnonzero((x[0] != x[1]).any(axis=1))
    assert 1 <= len(changed) <= 2 and (m[0] == m[1]).all()
    # the changed patches lie around the edited character, not at the start
    assert changed.min() >= 8


def test_token_features_truncation_and_empty_are_counted():
    class Tok:
        def encode(self, t):
            return [3 + ord(ch) % 5 for ch in t]

    f = TokenFeatures(Tok(), 4)
    ids, mask = f(["abcdef", "", "ab"])
    assert ids.shape == (3, 4) and mask.sum(1).tolist() == [4, 1, 2]
    assert f.stats() == {"texts": 3, "truncated_texts": 1, "truncated_tokens": 2, "empty": 1}


def test_pair_batches_deterministic_and_resumable():
    feats = PixelFeatures(RenderConfig(max_patches=12))
    sents = [f"Sentence number {i} is here." for i in range(10)]
    a = PairBatches(feats, sents, None, 4, seed=3, kind="typo", rate=0.2)
    first = [a.texts(s) for s in range(3)]
    b = PairBatches(feats, sents, None, 4, seed=3, kind="typo", rate=0.2)
    next(b)
    state = b.get_state()
    c = PairBatches(feats, sents, None, 4, seed=3, kind="typo", rate=0.2)
    c.set_state(state)
    assert c.texts(c.step) == first[1]
    batch = next(c)
    assert batch["a"].shape == (4, 12, 256) and batch["weight"].sum() == 4
    assert all(x != y for x, y in zip(*first[0]))  # every positive differs from its anchor
    with pytest.raises(ValueError, match="left sentences"):
        PairBatches(feats, sents, sents[:3], 4)


def test_mae_batches_hide_text_patches_only():
    feats = PixelFeatures(RenderConfig(max_patches=16))
    b = MAEBatches(feats, ["Some words to render, quite a few of them."] * 4, 2, seed=1)
    batch = next(b)
    assert (batch["hidden"] <= batch["text"]).all() and batch["hidden"].any()
    assert (batch["text"].sum(1) == batch["a_mask"].sum(1) - 1).all()


def test_split_sentences_and_adjacent_pairs():
    doc = 'He said "Stop." Then he left! Was it 3 p.m.? 42 people saw it.'
    s = split_sentences(doc)
    assert s == ['He said "Stop."', "Then he left!", "Was it 3 p.m.?", "42 people saw it."]
    assert " ".join(s) == " ".join(doc.split())
    assert adjacent_pairs([s[:3], ["one"]]) == (s[:2], s[1:3])


def test_soup_averages_and_seed_checkpoint_starts_training_there(tmp_path):
    from lexlm.eval.checkpoint_eval import restore_params
    from lexlm.train import default_train_config
    from lexlm.train.contrastive_task import make_contrastive_task, seed_checkpoint

    p = unbox(init_params(PIX, jax.random.key(0)))
    q = jax.tree.map(lambda x: x + 2.0, p)
    s = soup([p, q])
    np.testing.assert_allclose(s["head_dense"]["kernel"], p["head_dense"]["kernel"] + 1.0,
                               rtol=1e-6)  # fmt: skip
    task, t = make_contrastive_task(PIX), default_train_config()
    assert seed_checkpoint(task, t, tmp_path, s)
    assert not seed_checkpoint(task, t, tmp_path, p)  # an existing checkpoint is kept
    restored, step, _ = restore_params(task, t, tmp_path)
    assert step == 0
    np.testing.assert_allclose(restored["block_0"]["qkv"]["kernel"], s["block_0"]["qkv"]["kernel"])
    with pytest.raises(ValueError, match="soup"):
        soup([])


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
