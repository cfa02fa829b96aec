"""Symbol tasks for the lexinvariant findings 3-4 (experiments/lexinv_symbols.py).

Generators give the right answers and answer masks; the training mix never shows a held-out
symbol, replaces rows at about the configured rate and resumes exactly from its state; the
accuracy functions count argmax hits at answer positions only. No shared data is read: the
natural text is a small in-memory corpus through the real grain pipeline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import lexinv_symbols as ls
from lexlm.text.tokenizers import EOS_ID, PAD_ID, CharTokenizer

SEPS = ls.Separators(pair=3, lookup=5, copy=6, reverse=7)
SYMBOLS = np.arange(100, 116)

DOCS = [
    "the quick brown fox jumps over the lazy dog | again: and again = once < twice.",
    "a stitch in time saves nine, said the tailor to the fox.",
    "pack my box with five dozen liquor jugs; then go home.",
] * 4


def answers(tokens, mask):
    """The tokens the answer positions predict."""
    return tokens[np.flatnonzero(mask) + 1]


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("seed", range(20))
def test_lookup_answer_is_the_value_paired_with_the_queried_key(seed):
    rng = np.random.default_rng(seed)
    n = 1 + seed % 6
    tokens, mask = ls.lookup_task(rng, SYMBOLS, n, SEPS)
    assert tokens.dtype == np.int32 and mask.dtype == bool and tokens.shape == mask.shape
    assert len(tokens) == 3 * n + 2  # n pairs, n - 1 pair separators, query sep, key, value
    # Context: k v (sep k v)* ; then query separator, queried key, answer.
    pairs = {int(tokens[i]): int(tokens[i + 1]) for i in range(0, 3 * n - 1, 3)}
    assert len(pairs) == n
    assert all(tokens[i] == SEPS.pair for i in range(2, 3 * n - 1, 3))
    assert tokens[-3] == SEPS.lookup
    key = int(tokens[-2])
    assert key in pairs
    assert mask.sum() == 1 and mask[-2]  # the queried key's position predicts the answer
    assert answers(tokens, mask).tolist() == [pairs[key]]
    # Keys and values are distinct symbols, so the answer is determined by the context.
    used = [*pairs.keys(), *pairs.values()]
    assert len(set(used)) == 2 * n and set(used) <= set(SYMBOLS.tolist())


@pytest.mark.parametrize("seed", range(10))
def test_copy_and_reverse_answers_and_masks(seed):
    rng = np.random.default_rng(seed)
    n = 1 + seed % 8
    tokens, mask = ls.copy_task(rng, SYMBOLS, n, SEPS)
    s = tokens[:n]
    assert len(set(s.tolist())) == n and tokens[n] == SEPS.copy
    assert answers(tokens, mask).tolist() == s.tolist()
    assert np.flatnonzero(mask).tolist() == list(range(n, 2 * n))
    tokens, mask = ls.reverse_task(rng, SYMBOLS, n, SEPS)
    s = tokens[:n]
    assert tokens[n] == SEPS.reverse
    assert answers(tokens, mask).tolist() == s[::-1].tolist()
    assert mask.sum() == n and not mask[-1]


def test_too_few_symbols_is_an_error():
    with pytest.raises(ValueError, match="distinct symbols"):
        ls.copy_task(np.random.default_rng(0), SYMBOLS[:3], 4, SEPS)


def test_packed_rows_hold_whole_instances_and_their_answers():
    rng = np.random.default_rng(0)
    rows = ls.task_rows(rng, SYMBOLS, seq_len=64, n_rows=16, seps=SEPS)
    assert rows["inputs"].shape == rows["answer"].shape == (16, 64)
    np.testing.assert_array_equal(rows["inputs"][:, 1:], rows["targets"][:, :-1])
    np.testing.assert_array_equal(rows["mask"], (rows["targets"] != PAD_ID).astype(np.float32))
    assert (rows["inputs"][:, 0] == EOS_ID).all()
    # Every answer target is a symbol and every answer position has a real target.
    assert np.isin(rows["targets"][rows["answer"]], SYMBOLS).all()
    assert (rows["mask"][rows["answer"]] == 1).all()
    # Pad only after the last eos: instances are never cut.
    for toks, mask in zip(rows["inputs"], rows["mask"]):
        real = toks[mask > 0]
        assert PAD_ID not in real.tolist()
    # A row is a few-shot run of one task: one kind of query marker per row.
    markers = np.array([SEPS.lookup, SEPS.copy, SEPS.reverse])
    kinds = np.stack([(rows["inputs"] == m).any(1) for m in markers], 1)
    assert (kinds.sum(1) == 1).all() and kinds.any(0).all()
    one = ls.task_rows(rng, SYMBOLS, 64, 8, SEPS, tasks=("lookup",))
    per_row = one["answer"].sum(1)
    eos_per_row = (one["inputs"] == EOS_ID).sum(1)
    np.testing.assert_array_equal(per_row, eos_per_row - 1)  # one answer per lookup


def test_layout_from_a_char_tokenizer():
    tok = CharTokenizer.build(DOCS)
    layout = ls.make_layout(tok, 16)
    v = tok.vocab_size
    assert layout.vocab_size == v + 16
    assert layout.train_ids == tuple(range(v, v + 8))
    assert layout.heldout_ids == tuple(range(v + 8, v + 16))
    assert layout.separator_chars == {"pair": " ", "lookup": "|", "copy": "=", "reverse": "<"}
    assert tok.encode("|=< ").tolist() == [
        layout.separators.lookup,
        layout.separators.copy,
        layout.separators.reverse,
        layout.separators.pair,
    ]
    assert ls.SymbolLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout
    # Without the first choices the next candidates are taken, never one character twice.
    tok2 = CharTokenizer.build(["colons: and > and ( here"])
    chars = ls.make_layout(tok2, 4).separator_chars
    assert chars == {"pair": " ", "lookup": ":", "copy": ">", "reverse": "("}
    with pytest.raises(ValueError, match="separator"):
        ls.make_layout(CharTokenizer.build(["abc"]), 4)


# ----------------------------------------------------------------------------- training mix


def natural_batches(tok, seed=0, batch_size=8, seq_len=32):
    from lexlm.data import lm_train_dataset

    source = [{"text": d} for d in DOCS]
    ds = lm_train_dataset(source, tok, seq_len, batch_size, seed, 0, 1)
    return iter(ds)


def make_mix(prob=0.3, seed=7, batch_size=8, seq_len=32):
    tok = CharTokenizer.build(DOCS)
    layout = ls.make_layout(tok, 16)
    mix = ls.SymbolMix(
        natural_batches(tok, batch_size=batch_size, seq_len=seq_len),
        layout,
        seq_len,
        prob,
        seed,
        lengths={"lookup": (2, 4), "copy": (2, 5), "reverse": (2, 5)},
    )
    return mix, layout, tok


def test_held_out_symbols_never_reach_training_and_training_symbols_do():
    mix, layout, tok = make_mix(prob=0.3)
    seen = np.zeros(layout.vocab_size, bool)
    for _ in range(200):
        batch = next(mix)
        for k in ("inputs", "targets"):
            seen[batch[k].ravel()] = True
        assert batch["inputs"].dtype == np.int32 and batch["mask"].dtype == np.float32
    assert not seen[list(layout.heldout_ids)].any()
    assert seen[list(layout.train_ids)].all()
    assert seen[: tok.vocab_size].any()


def test_mixing_rate_matches_the_configured_probability():
    mix, layout, _ = make_mix(prob=0.1, batch_size=16)
    n_batches = 150
    task_rows = 0
    for _ in range(n_batches):
        batch = next(mix)
        task_rows += int((batch["inputs"] >= layout.text_vocab).any(1).sum())
    rows = n_batches * 16
    assert task_rows == mix.rows_replaced
    # Binomial(2400, 0.1): s.d. ~ 15 rows; allow 5 s.d.
    assert abs(task_rows - 0.1 * rows) < 5 * np.sqrt(rows * 0.1 * 0.9), task_rows
    assert next(make_mix(prob=0.0)[0])["inputs"].max() < layout.text_vocab


def test_mixing_iterator_resumes_exactly_from_its_state():
    mix, _, _ = make_mix(prob=0.5)
    for _ in range(5):
        next(mix)
    # The state goes through JSON in checkpoints.
    state = json.loads(json.dumps(mix.get_state()))
    expected = [next(mix) for _ in range(6)]
    fresh, _, _ = make_mix(prob=0.5)
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        for k in ("inputs", "targets", "mask"):
            np.testing.assert_array_equal(got[k], want[k])


# ----------------------------------------------------------------------------- accuracy


def test_answer_accuracy_on_hand_made_logits():
    v = 6
    targets = np.array([[2, 3, 4, 5], [1, 1, 1, 1]])
    answer = np.array([[True, True, False, True], [False, True, False, False]])
    pred = np.array([[2, 0, 0, 5], [1, 1, 0, 1]])  # hits: (0,0), (0,3), (1,1); (0,2) ignored
    logits = np.full((2, 4, v), -1.0)
    np.put_along_axis(logits, pred[..., None], 3.0, axis=-1)
    assert ls.answer_accuracy(logits, targets, answer) == (3, 4)


def test_symbol_accuracy_pads_batches_and_counts_answers_only():
    calls = []

    def fake_correct(tokens, targets, answer, key):
        calls.append(tokens.shape)
        pred = tokens  # "predicts" its input: right wherever target == input
        return int(((pred == targets) & answer).sum()), int(answer.sum())

    rows = {
        "inputs": np.array([[1, 7], [7, 7], [3, 4]]),
        "targets": np.array([[7, 7], [7, 2], [3, 9]]),
        "answer": np.array([[True, True], [True, True], [False, True]]),
    }
    import jax

    acc = ls.symbol_accuracy(fake_correct, rows, jax.random.key(0), draws=2, batch_size=2)
    # Answer positions: (0,0) miss, (0,1) hit, (1,0) hit, (1,1) miss, (2,1) miss -> 2 / 5.
    assert acc == pytest.approx(2 / 5)
    assert calls == [(2, 2)] * 4  # the last batch is padded to the batch size


def test_correct_function_matches_answer_accuracy_on_a_tiny_model():
    import jax

    from lexlm.nn import LMConfig, TransformerLM

    cfg = LMConfig(vocab_size=24, width=16, depth=1, heads=2, max_len=16, embedding="semi")
    model = TransformerLM(cfg)
    tokens = np.random.default_rng(0).integers(3, 24, (3, 16)).astype(np.int32)
    params = model.init(jax.random.key(0), tokens)["params"]
    targets = np.roll(tokens, -1, axis=1)
    answer = np.random.default_rng(1).random((3, 16)) < 0.5
    logits = jax.jit(lambda p, t: model.apply({"params": p}, t, method="logits"))(params, tokens)
    want = ls.answer_accuracy(logits, targets, answer)
    got = ls.correct_function(model, params)(tokens, targets, answer, jax.random.key(0))
    assert (int(got[0]), int(got[1])) == want
    # Random rows for some ids change the predictions but not the count of answer positions.
    rnd = ls.correct_function(model, params, random_ids=np.arange(12, 24))
    assert int(rnd(tokens, targets, answer, jax.random.key(0))[1]) == want[1]


def test_context_guess_is_one_over_the_distinct_symbols_seen():
    rows = {
        "inputs": np.array([[1, 100, 101, 6, 100, 0], [1, 102, 6, 0, 0, 0]]),
        "answer": np.array(
            [[False, False, False, True, True, False], [False, False, True] + [False] * 3]
        ),
    }
    # Row 0: two distinct symbols seen at positions 3 and 4; row 1: one symbol seen.
    assert ls.context_guess_accuracy(rows, SYMBOLS) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def fake_findings():
    def run(emb, p, acc, ppl):
        per = {t: acc for t in ls.TASKS} | {"mean": acc}
        symbols = {"heldout": per, "train": per, "context_guess": {"heldout": per, "train": per}}
        if emb != "lexinvariant":
            symbols["heldout_random_rows"] = per
        layout = {
            "n_symbols": 16,
            "text_vocab": 40,
            "separator_chars": {"pair": " ", "lookup": "|", "copy": "=", "reverse": "<"},
        }
        test = {"loss": float(np.log(ppl)), "perplexity": ppl}
        return {"embedding": emb, "semi_p": p, "symbols": symbols, "test": test, "layout": layout}

    runs = {
        "standard": run("learned", 0.0, 0.0, 5.0),
        "lexinvariant": run("lexinvariant", 0, 0.4, 9),
    }
    for p in (0.1, 0.2, 0.5):
        runs[f"semi_p{p:g}"] = run("semi", p, p / 2, 5 + p)
    return {"runs": runs, "tasks": list(ls.TASKS), "timing_s": {"total": 12.0}}


def test_report_section_and_plot(tmp_path):
    f = fake_findings()
    text = ls.report_section(f)
    assert "### Finding 3" in text and "### Finding 4" in text
    assert "| lexinvariant | 0.400 | 0.400 | 0.400 | 0.400 | 0.400 |" in text
    assert "| 0.5 | " in text and "unbounded" in text
    ls.plot_sweep(f, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
