"""Word-pooled LM: segmentation, pieces, streams and windows, the model's masks and caches,
the next-word metrics, FLOP counts and the findings table (known answers throughout)."""

import json
import math
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_helpers as th
from flax import linen as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lexlm.data.word_windows import (
    SpellingModel,
    WordVocab,
    WordWindowBatches,
    back_to_back,
    build_word_stream,
    encode_words,
    word_eval_windows,
)
from lexlm.eval import next_word as nw
from lexlm.eval.flops import counted_flops, train_step_flops
from lexlm.nn.word_pooled import WordPooledConfig, WordPooledLM, generate, generate_fn, with_eow
from lexlm.text import ByteTokenizer, CharTokenizer
from lexlm.text.tokenizers import EOS_ID, EOS_TEXT
from lexlm.text.words import segment_words, word_pieces
from lexlm.train.word_pooled_task import make_word_pooled_task

REPO = Path(__file__).resolve().parents[1]
CFG = WordPooledConfig(
    unit_vocab=24, max_units=6, max_words=10, prefix=2, width=32,
    enc_heads=2, lm_heads=2, dec_heads=2,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def unoptimised_module():
    """Most XLA optimisations off for the whole module: compiling is nearly all of these
    tests' time, and the programs compute the same numbers (to float rounding)."""
    with th.unoptimised_xla():
        yield


def random_window(rng, b, w1, cfg=CFG, min_len=1):
    units = rng.integers(3, cfg.unit_vocab, (b, w1, cfg.max_units)).astype(np.int32)
    lengths = rng.integers(min_len, cfg.max_units + 1, (b, w1))
    return np.where(np.arange(cfg.max_units) < lengths[..., None], units, 0).astype(np.int32)


def jitted(model, method=None):
    """``model.apply`` for one method, jitted (one compile instead of one per operation)."""
    return jax.jit(lambda params, x: model.apply({"params": params}, x, method=method))


@pytest.fixture(scope="module")
def model_params():
    model = WordPooledLM(CFG)
    window = random_window(np.random.default_rng(0), 1, CFG.max_words + 1)

    @jax.jit
    def init(key, x):
        params = nn.unbox(model.init(key, x, method="nll")["params"])
        # Non-trivial parameters: a random init has near-uniform outputs that hide mask errors.
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(1), len(leaves))
        noise = [0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
        return jax.tree.unflatten(tree, [x + n for x, n in zip(leaves, noise)])

    params = init(jax.random.key(0), window)
    return model, params


# -- segmentation and pieces ---------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_segmentation_round_trips_arbitrary_unicode(text):
    words = segment_words(text)
    assert "".join(words) == text
    assert all(words)  # no empty words
    # whitespace only ever leads a word, or is the whole (last) word
    for w in words[:-1]:
        assert not w[-1].isspace()


SPACE, WORD, PUNCT, IDEOGRAPH, MARK = range(5)


def reference_class(char):
    """The character classes of lexlm.text.words' docstring, transcribed."""
    import unicodedata

    if char.isspace():
        return SPACE
    category = unicodedata.category(char)
    if category[0] == "M":
        return MARK
    if category[0] in "PS" or category in ("Cc", "Cs"):
        return PUNCT
    if category == "Lo" and unicodedata.name(char, "").startswith("CJK "):
        return IDEOGRAPH
    return WORD


def reference_segment_words(text):
    """The rule of lexlm.text.words written as a plain character loop."""
    words, current, current_class = [], [], SPACE
    for char in text:
        cls = reference_class(char)
        if cls == SPACE:
            if current_class != SPACE:
                words.append("".join(current))
                current, current_class = [], SPACE
            current.append(char)
            continue
        if current_class == SPACE:
            current_class = WORD if cls == MARK else cls
        elif not (cls == MARK or (cls == current_class and cls in (WORD, PUNCT))):
            words.append("".join(current))
            current, current_class = [], (WORD if cls == MARK else cls)
        current.append(char)
    if current:
        words.append("".join(current))
    return words


MIXED = st.text(
    alphabet=st.sampled_from(list(" \n\ta1.,!\u0301\u0302東京éЖ\u200d-_$")), max_size=40
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=60), MIXED))
def test_vectorised_segmentation_follows_the_character_rule(text):
    assert segment_words(text) == reference_segment_words(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.integers(1, 5))
def test_pieces_concatenate_back_to_each_word(text, max_units):
    words = segment_words(text)
    pieces, continued, stats = word_pieces(words, max_units)
    assert all(len(p) <= max_units for p in pieces)
    assert "".join("".join(map(chr, p)) for p in pieces) == text
    assert stats.pieces == len(pieces) and sum(not c for c in continued) == len(words)
    assert stats.split_words == sum(len(w) > max_units for w in words)


def test_word_stream_marks_documents_pieces_and_counts():
    tok = CharTokenizer.build(["ab cdefghij", "x"])
    stream = build_word_stream(["ab cdefghij", "x"], tok, max_units=4)
    # eos, "ab", " cde", "fghi", "j", eos, "x", eos
    assert len(stream) == 8
    assert list(stream.is_eos) == [True, False, False, False, False, True, False, True]
    assert list(stream.continued) == [False, False, False, True, True, False, False, False]
    assert stream.words[2:5] == [" cdefghij"] * 3
    assert tok.decode(stream.units[2]) + tok.decode(stream.units[3]) == " cdefghi"
    assert list(stream.chars) == [2, 2, 4, 4, 1, 2, 1, 2]  # eos stands for "\n\n"
    assert (stream.stats.words, stream.stats.split_words) == (3, 1)
    assert stream.units[0, 0] == EOS_ID


def test_encode_words_cuts_a_whole_document_encoding_per_word():
    text = "Ünïcödé wörds, ok\n\nnext"
    words = segment_words(text)
    for tok in (ByteTokenizer(), CharTokenizer.build([text])):
        got = encode_words(tok, text, words)
        want = [tok.encode(w) for w in words]
        assert [list(g) for g in got] == [list(w) for w in want]


def test_empty_documents_are_skipped_and_counted_and_empty_lines_kept():
    from lexlm.text import clean_documents

    docs, stats = clean_documents(["first\n\n\nline", "", "   \n", "last"], source="t")
    assert docs == ["first\n\n\nline", "last"] and stats.empty_skipped == 2
    # an empty line inside a document stays: it leads the next word
    assert segment_words(docs[0]) == ["first", "\n\n\nline"]


def test_eval_windows_predict_every_piece_once():
    idx, mask = back_to_back(7, 3)
    assert idx.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 1]]
    idx, mask = back_to_back(6, 3)
    assert idx.tolist() == [[0, 1, 2, 3], [3, 4, 5, 0]] and mask.tolist()[1] == [1, 1, 0]
    tok = CharTokenizer.build(["hello there world"])
    stream = build_word_stream(["hello there world"], tok, 4)
    w = word_eval_windows(stream, 2)
    assert w["n_chars"] == len("hello there world") + len(EOS_TEXT)
    assert w["units"].shape[1:] == (3, 4) and w["word_mask"].sum() == len(stream) - 1


def test_training_windows_resume_exactly():
    units = np.arange(50, dtype=np.int32)[:, None]
    a = WordWindowBatches(units, 4, 3, seed=1)
    first = [next(a)["units"] for _ in range(3)]
    b = WordWindowBatches(units, 4, 3, seed=1)
    next(b)
    state = b.get_state()
    c = WordWindowBatches(units, 4, 3, seed=1)
    c.set_state(state)
    np.testing.assert_array_equal(next(c)["units"], first[1])
    assert (np.diff(first[0][..., 0], axis=1) == 1).all()  # consecutive pieces
    with pytest.raises(ValueError, match="fewer than a window"):
        WordWindowBatches(units[:4], 4, 3)


def test_word_vocab_and_spelling_model():
    words = [" a", " b", " a", " c", EOS_TEXT, " a", " b"]
    vocab = WordVocab.build(words, min_count=2)
    assert vocab.words == ["<pad>", "<eos>", "<unk>", " a", " b"]
    assert vocab.encode([" a", " c", EOS_TEXT], [False, False, True]).tolist() == [3, 2, EOS_ID]
    speller = SpellingModel.build([" ab", " b"])
    # chars: ' ' x2, a x1, b x2 -> N = 5 chars, 2 words, |A| = 3: total = 5 + 2 + 3 + 2 = 12
    # " b": p(' ') = 3/12, p(b) = 3/12, p(end of word) = (2 + 1)/12
    want = -3 * math.log(3 / 12)
    assert speller.nats(" b") == pytest.approx(want)
    assert speller.nats("z") == pytest.approx(-math.log(1 / 12) - math.log(3 / 12))
    assert speller.nats("a") == pytest.approx(-math.log(2 / 12) - math.log(3 / 12))
    # a sub-distribution: the probabilities of all strings up to length 3 sum below 1
    alphabet = [" ", "a", "b", "z"]
    total = sum(
        math.exp(-speller.nats("".join(s)))
        for n in range(4)
        for s in __import__("itertools").product(alphabet, repeat=n)
    )
    assert total < 1.0


# -- the model ----------------------------------------------------------------------------------
def test_prefix_ids_never_collide_with_units_or_end_of_word():
    units = set(range(CFG.unit_vocab))
    assert CFG.eow_id not in units
    assert not set(CFG.prefix_ids) & (units | {CFG.eow_id})
    assert max(CFG.prefix_ids) < CFG.in_vocab and len(set(CFG.prefix_ids)) == CFG.prefix


def test_with_eow_marks_the_end_of_each_word():
    units = np.array([[5, 6, 0], [7, 0, 0], [4, 4, 4]], np.int32)
    assert with_eow(units, 99).tolist() == [[5, 6, 99, 0], [7, 99, 0, 0], [4, 4, 4, 99]]


def test_param_count_matches_the_module(model_params):
    _, params = model_params
    assert sum(x.size for x in jax.tree.leaves(params)) == CFG.param_count()


def test_outputs_do_not_depend_on_padding_length(model_params):
    """A word's encoding and its next-word logits are the same with 6 or 4 units of canvas."""
    model, params = model_params
    short_cfg = WordPooledConfig(**{**CFG.__dict__, "max_units": 4})
    short = WordPooledLM(short_cfg)
    p = CFG.prefix
    sliced = dict(params)
    sliced["enc_positions"] = params["enc_positions"][: p + 4]
    sliced["dec_positions"] = params["dec_positions"][: p + 4]
    window = random_window(np.random.default_rng(3), 2, 5, short_cfg)
    wide = np.pad(window, ((0, 0), (0, 0), (0, 2)))
    a = jitted(model, "nll")(params, wide)[0]
    b = jitted(short, "nll")(sliced, window)[0]
    np.testing.assert_allclose(a[..., :5], b, rtol=2e-5, atol=2e-6)
    assert float(jnp.abs(a[..., 5:]).max()) == 0.0  # padding slots are never targets
    assert float(jnp.abs(a).max()) > 0


def test_batch_composition_and_later_words_do_not_change_outputs(model_params):
    model, params = model_params
    rng = np.random.default_rng(4)
    window = random_window(rng, 3, 8)
    nll = jitted(model, "nll")
    full = nll(params, window)[0]
    alone = nll(params, window[1:2])[0]
    np.testing.assert_allclose(full[1:2], alone, rtol=2e-5, atol=2e-6)
    # causal over words: changing words 5.. leaves the predictions of words 1..4 unchanged
    changed = window.copy()
    changed[:, 5:] = random_window(rng, 3, 3)
    other = nll(params, changed)[0]
    np.testing.assert_allclose(other[:, :4], full[:, :4], rtol=2e-5, atol=2e-6)
    assert not np.allclose(other[:, 4:], full[:, 4:])


def test_encoder_masks_padding_keys(model_params):
    model, params = model_params
    units = np.array([[5, 6, 0, 0, 0, 0]], np.int32)
    encode = jitted(model, "encode")
    a = encode(params, units)
    # The paper's mask lets real units attend to padding: with it, pad content would matter.
    # Here the pad embedding row itself is irrelevant.
    params2 = dict(params)
    params2["enc_embed"] = params["enc_embed"].at[0].set(123.0)
    b = encode(params2, units)
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_generation_equals_uncached(model_params, temperature):
    model, params = model_params
    context = random_window(np.random.default_rng(5), 2, 4)
    key = jax.random.key(7)
    cached = generate_fn(model, 3, temperature)(params, context, key)
    uncached = generate(model, params, context, 3, key, temperature, cached=False)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(uncached))
    words = np.asarray(cached)
    assert words.shape == (2, 3, CFG.max_units)
    assert (words[..., 0] != 0).all()  # every word has at least one unit
    # zero padding after the end of word, never a gap
    nz = words != 0
    assert (nz[..., 1:] <= nz[..., :-1]).all()
    with pytest.raises(ValueError, match="max_words"):
        generate(model, params, context, CFG.max_words, key)


def test_greedy_generation_is_the_argmax_of_the_teacher_forced_model(model_params):
    model, params = model_params
    context = random_window(np.random.default_rng(6), 2, 3)
    new = np.asarray(generate_fn(model, 1)(params, context, jax.random.key(0)))
    window = np.concatenate([context, new], axis=1)
    logits = np.array(jitted(model)(params, window))[:, -1]  # predicts word 3
    logits[..., 0] = -np.inf
    targets = np.asarray(with_eow(new[:, 0], CFG.eow_id))
    for r in range(2):
        n = int((new[r, 0] != 0).sum())
        want = list(logits[r].argmax(-1)[: n + 1 if n < CFG.max_units else n])
        assert want == list(targets[r][: len(want)])


# -- metrics ---------------------------------------------------------------------------------
def test_frequency_buckets_and_accuracy_report():
    assert [nw.frequency_bucket(c) for c in (0, 1, 10, 11, 45, 46)] == [
        "unseen", "1-10", "1-10", "11-45", "11-45", ">45",
    ]  # fmt: skip
    counts = {"the": 100, "cat": 3, "ran": 20}
    preds = ["the", "dog", "ran", "7", "x"]
    targets = ["the", "cat", "ran", "7", "zebra"]
    r = nw.accuracy_report(preds, targets, counts)
    assert r["overall"] == {"accuracy": 0.6, "n": 5}
    assert r["buckets"][">45"] == {"accuracy": 1.0, "n": 1}
    assert r["buckets"]["1-10"] == {"accuracy": 0.0, "n": 1}
    assert r["buckets"]["unseen"] == {"accuracy": 0.5, "n": 2}
    assert r["numeracy"] == {"accuracy": 1.0, "n": 1}


def test_context_start_keeps_whole_words_within_the_character_budget():
    chars = np.array([2, 5, 3, 4, 6])
    assert nw.context_start(chars, 4, 7, 100) == 2  # words 2, 3: 7 chars
    assert nw.context_start(chars, 4, 6, 100) == 3
    assert nw.context_start(chars, 4, 1, 100) == 3  # always at least one word
    assert nw.context_start(chars, 4, 100, 2) == 2  # at most max_words
    assert nw.first_word("  hello, you") == "hello" and nw.first_word("\n\n") == ""


def test_select_targets_is_even_and_skips_empty_bodies():
    words = ["\n\n", " a", "  ", " b", " c", " d"]
    eligible = np.ones(6, bool)
    assert nw.select_targets(words, eligible, 10).tolist() == [1, 3, 4, 5]
    assert nw.select_targets(words, eligible, 2).tolist() == [1, 5]


def test_counted_flops_of_a_matmul_and_of_a_training_step():
    a, b = jnp.ones((8, 16)), jnp.ones((16, 4))
    assert counted_flops(lambda x, y: x @ y, a, b) == 2 * 8 * 16 * 4
    task = make_word_pooled_task(CFG)
    params = jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x,
        jax.eval_shape(task.init, jax.random.key(0)),
        is_leaf=lambda x: hasattr(x, "value"),
    )
    batch = {
        "units": jax.ShapeDtypeStruct((2, CFG.max_words + 1, CFG.max_units), jnp.int32),
        "word_mask": jax.ShapeDtypeStruct((2, CFG.max_words), jnp.float32),
    }
    fwd = counted_flops(lambda p, b: task.loss(p, b, None)[0], params, batch)
    train = train_step_flops(task.loss, params, batch, jax.random.key(0))
    # a forward pass costs at least 2 FLOPs per parameter-use; backward is about twice that
    assert fwd > 2 * 2 * CFG.max_words * CFG.max_units * CFG.width
    assert 2.0 < train / fwd < 4.0


def test_findings_table_on_a_small_case():
    from lexlm.proj.word_pooled import report as rep

    counts = rep.train_counts([" the", " cat", "\n\n", " the"], [False, False, True, False])
    assert counts == {"the": 2, "cat": 1}
    base = {"bits_per_byte": 1.0, "bits_per_char": 1.0, "n_chars": 10, "n_bytes": 10}
    results = {
        "word_pooled": {
            **base,
            "steps": 3,
            "predictions": ["the", "cat", "x"],
            "targets": ["the", "cat", "dog"],
        },
        "char": {
            **base,
            "bits_per_byte": 1.5,
            "predictions": ["the", "x", "x"],
            "targets": ["the", "cat", "dog"],
        },
        "bigram": {"predictions": ["the", "cat", "dog"], "targets": ["the", "cat", "dog"]},
    }
    f = rep.findings(results, {"the": 50, "cat": 3})
    assert f["models"] == ["word_pooled", "char"]
    assert f["rows"]["word_pooled"]["accuracy"]["overall"]["accuracy"] == pytest.approx(2 / 3)
    assert f["rows"]["word_pooled"]["accuracy"]["numeracy"] == {"accuracy": None, "n": 0}
    assert f["vs_char"]["overall"] == pytest.approx(2.0)
    # rare = unseen ("dog") + 1-10 ("cat"): word-pooled 1 of 2, char 0 of 2
    assert f["vs_char"]["rare_word_pooled"] == 0.5 and f["vs_char"]["rare_char"] == 0.0
    assert f["vs_char"]["rare_n"] == 2
    setup = {"source": "lee", "files": [], "tfds_name": "", "doc_split": "paragraph",
             "holdout": [0.05, 0.05], "unit": "char", "max_units": 12, "words": 32,
             "model": {"width": 64, "enc_depth": 1, "lm_depth": 2, "dec_depth": 1, "prefix": 4},
             "baseline": {"model": {"width": 64, "depth": 2}, "seq_len": {"char": 160},
                          "subword_vocab": 512, "word_seq_len": 32, "word_min_count": 2},
             "lr": 3e-3, "context_chars": 50}  # fmt: skip
    f.update(budget=1e9, split="test", setup=setup)

    class Figures:
        def save(self, name, png):
            assert png[:4] == b"\x89PNG"
            return f"figures/{name}"

    text = rep.render(f, {"timings": {"char": {"train_s": 2.0}}, "machine": "m"}, Figures())
    assert "| word-pooled (eTok) | 66.7 |" in text and "10 characters for every model" in text
    # orderings are computed from the numbers; without per-document units, none is stated
    assert "neighbours are not ordered): word-pooled (eTok) (1.000), character LM (1.500)." in text
    # with them: a constant gap on every document is an ordering; 2 of 3 against 1 of 3
    # next words is tied (a resample of the two targets both get right or wrong is likely)
    results["word_pooled"]["units"] = {"bits": [10.0] * 12, "bytes": [10.0] * 12}
    results["char"]["units"] = {"bits": [15.0] * 12, "bytes": [10.0] * 12}
    g = {**rep.findings(results, {"the": 50, "cat": 3}), "budget": 1e9, "split": "test"}
    g["setup"] = setup
    with_units = rep.render(g, {"timings": {}, "machine": "m"}, Figures())
    assert "word-pooled (eTok) (1.000) < character LM (1.500)." in with_units
    assert "word-pooled (eTok) (66.7%) ~ character LM (33.3%)." in with_units
    assert "| 1.000 ± 0.000 |" in with_units
    assert "| word-pooled (eTok) | 66.7 ± " in with_units and "over the targets." in with_units
    assert "| word-pooled (eTok) | 66.7 |" in text  # no per-target units: no '±'
    # the prediction diff against the count reference, target by target
    assert g["vs_bigram"]["char"] == {
        "n": 3, "same": 1, "same_and_right": 1,
        "examples": [{"target": "cat", "model": "x", "bigram": "cat"},
                     {"target": "dog", "model": "x", "bigram": "dog"}],
    }  # fmt: skip
    assert (
        "character LM predicts the count reference's word on 1 of 3 targets (1 of them right) "
        "(first difference: target 'cat', character LM 'x', reference 'cat')." in with_units
    )
    assert "The count reference gets 100.0% (this finding recorded no interval" in text
    # with per-target units each model is set against the reference: char's 1 of 3 against
    # 3 of 3 is a paired difference of -2/3 whose resamples never reach 0 ... but 3 targets are
    # too few to order anything (MIN_UNITS), so both are tied
    assert [(c["a"], c["b"]) for c in g["comparisons"]["vs_reference"]] == [
        ("word_pooled", "bigram"), ("char", "bigram")]  # fmt: skip
    assert g["comparisons"]["vs_reference"][1]["diff"] == pytest.approx(-2 / 3)
    assert (
        "each model against it (the paired bootstrap interval over the targets, in points): "
        "word-pooled (eTok) tied (-33.3 [" in with_units
    )
    assert "character LM tied (-66.7 [" in with_units
    assert "66.7% against 33.3% (x2.00) overall" in text
    assert "Training took 2 s in all (m)." in text


def test_reference_comparisons_order_each_model_against_the_count_reference():
    from lexlm.eval import intervals as iv
    from lexlm.proj.word_pooled import report as rep

    units = {
        "bigram": {"correct": [1.0, 0.0] * 10},  # 10 of 20
        "good": {"correct": [1.0] * 20},  # right wherever the reference is, and 10 more
        "same": {"correct": [1.0, 0.0] * 10},  # the reference's own list
        "bad": {"correct": [0.0] * 20},
    }
    out = rep.reference_comparisons(units, "bigram", iv.mean("correct"))
    got = {c["a"]: (c["verdict"], round(c["diff"], 6)) for c in out}
    assert got == {"good": ("a", 0.5), "same": ("tied", 0.0), "bad": ("b", -0.5)}
    assert all(c["b"] == "bigram" and c["units"] == 20 for c in out)


# -- training on a mesh -------------------------------------------------------------------------
MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from lexlm.data.word_windows import WordWindowBatches
    from lexlm.nn.word_pooled import WordPooledConfig
    from lexlm.train import default_train_config, train
    from lexlm.train.word_pooled_task import make_word_pooled_task

    # compiling is nearly all of this script's time; the partitioning is the same
    jax.config.update("jax_disable_most_optimizations", True)
    cfg = WordPooledConfig(unit_vocab=24, max_units=6, max_words=10, prefix=2, width=32,
                           enc_heads=2, lm_heads=2, dec_heads=2)
    rng = np.random.default_rng(0)
    units = rng.integers(3, 24, (400, 6)).astype(np.int32)
    units[:, 3:] = 0
    t = default_train_config()
    t.update(steps=4, batch_size=8, log_every=1, ckpt_every=100, tensorboard=False,
             progress=False, mesh=tuple(json.loads(sys.argv[2])))
    result = train(t, make_word_pooled_task(cfg), WordWindowBatches(units, 10, 8), sys.argv[1])
    leaf = result.state.params["word_lm"]["block_0"]["qkv"]["kernel"]
    print("DEVICES", len(leaf.sharding.device_set))
    print("LOSSES", json.dumps([h["loss"] for h in result.history]))
    """
)


def _mesh_run(tmp_path, devices, mesh):
    args = [str(tmp_path / f"run{devices}"), json.dumps(mesh)]
    lines = th.run_script(MESH_SCRIPT, tmp_path / "train_wp.py", args, devices)
    return int(lines["DEVICES"]), json.loads(lines["LOSSES"])


def test_word_pooled_lm_trains_under_jit_on_an_8_device_mesh(tmp_path):
    n8, losses8 = _mesh_run(tmp_path, 8, [2, 2, 2])
    assert n8 == 8  # parameters really spread over the 8 devices
    assert all(np.isfinite(losses8)) and losses8[-1] < losses8[0]
    # (the trainer's 1-device == 8-device loss equality is tests/test_train.py's job)


# -- the experiment ------------------------------------------------------------------------------
def test_configs_validate_and_the_paper_config_is_the_paper_model():
    from lexlm.errors import ConfigError
    from lexlm.proj.word_pooled import config, kinds

    for arg in ("tiny", "main", "shakespeare", "spanish"):
        c = config.get_config(arg)
        if c.data.source == "files":
            c.data.files = (str(REPO / "README.md"),)
        config.validate(c)
    c = config.get_config("paper")
    m = kinds.word_pooled_config(kinds.run_config(c, "word_pooled", steps=1), 68)
    assert (m.width, m.enc_depth, m.enc_heads, m.lm_depth, m.lm_heads, m.dec_depth) == (
        512, 2, 4, 8, 8, 2,
    )  # fmt: skip
    assert (m.prefix, m.max_words) == (4, 192)
    assert 3.0e7 < m.param_count() < 4.5e7  # eTok's e-char: 38.3M
    bad = config.get_config("tiny")
    bad.data.unit = "subword"
    with pytest.raises(ConfigError, match=r"^data\.unit:"):
        config.validate(bad)
    with pytest.raises(ConfigError, match=r"^config: unknown variant 'nope' of word_pooled"):
        config.get_config("nope")


def test_every_run_config_carries_what_its_evaluation_needs():
    from lexlm.proj.word_pooled import config, kinds

    c = config.get_config("tiny")
    c.warmup_fraction = 0.1
    for model in kinds.KINDS:
        r = kinds.run_config(c, model, steps=40)
        assert r.train.steps == 40 and r.train.warmup_steps == 4
        assert (r.eval.targets, r.eval.context_chars, r.eval.max_units) == (256, 96, 12)
        assert r.kind == {"word_pooled": "word_pooled", "word": "word"}.get(model, "lm")
        if r.kind == "lm":
            assert r.eval.gen_units == c.eval.gen_units[kinds.unit_of(model, c)]
            assert r.eval.max_windows == 0  # bits over the whole split
    assert kinds.run_config(c, "subword", 1).data.vocab_size == 512
    assert kinds.run_config(c, "megabyte8", 1).model.patch == 8


def test_heading_documents_hold_out_whole_books(tmp_path):
    from lexlm.data.builders import split_documents
    from lexlm.errors import ConfigError

    text = "Intro\nGenesis 1\nEn el principio\n\nGenesis 2\nY\n1 Reyes 1\nEl rey\n"
    docs = split_documents(text, "heading", r"^(?:[1-3] )?\S+ 1$")
    assert docs == [
        "Intro\n",
        "Genesis 1\nEn el principio\n\nGenesis 2\nY\n",
        "1 Reyes 1\nEl rey\n",
    ]
    with pytest.raises(ConfigError, match=r"^data\.heading_pattern"):
        split_documents(text, "heading", "")


def test_bigram_reference_predicts_the_most_frequent_follower():
    train = ["", "the", "cat", "sat", "the", "cat", "ran", "the", "dog", "", "a"]
    # after "the": cat (2) beats dog (1); after "cat": sat and ran tie, the first seen wins;
    # an unseen previous word falls back to the most frequent body ("the", 3 times)
    preds = nw.bigram_predictions(train, ["the", "cat", "zebra", ""])
    assert preds == ["cat", "sat", "the", "the"]  # after eos: "the" and "a" tie


def test_token_lm_contexts_join_words_and_keep_end_of_text():
    from lexlm.proj.word_pooled.evaluate import encode_context

    tok = ByteTokenizer()
    words = [EOS_TEXT, "The", " cat", EOS_TEXT, "A"]
    ids = encode_context(tok, words, [True, False, False, True, False])
    want = [EOS_ID, *tok.encode("The cat").tolist(), EOS_ID, *tok.encode("A").tolist()]
    assert ids.tolist() == want and ids.dtype == np.int32
    assert encode_context(tok, [], []).shape == (0,)
