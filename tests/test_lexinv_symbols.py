"""Symbol tasks for the lexinvariant findings 3-4 (lexlm/data/symbol_tasks.py and
lexlm/proj/lexinvariant/symbol*.py).

Generators give the right answers and answer masks; the training mix never shows a held-out
symbol, replaces rows at about the configured rate and resumes exactly from its state; the
accuracy functions count argmax hits at answer positions only; every run's config carries its
embedding, the symbol fields and its model vocabulary, and a bad value is named by its field.
No shared data is read: the natural text is a small in-memory corpus through the real grain
pipeline. The end-to-end run is in test_proj_lexinvariant.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import train_helpers as th

from lexlm.data import symbol_tasks as st
from lexlm.errors import ConfigError
from lexlm.proj.lexinvariant import symbol_eval as ev
from lexlm.proj.lexinvariant import symbols as ls
from lexlm.proj.lexinvariant.config import get_config
from lexlm.text.tokenizers import EOS_ID, PAD_ID, CharTokenizer


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """XLA with most optimisations off (``train_helpers.unoptimised_xla``): these tiny programs
    compile several times faster and compute the same numbers to float rounding."""
    with th.unoptimised_xla():
        yield


SEPS = st.Separators(pair=3, lookup=5, copy=6, reverse=7)
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
    tokens, mask = st.lookup_task(rng, SYMBOLS, n, SEPS)
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
    tokens, mask = st.copy_task(rng, SYMBOLS, n, SEPS)
    s = tokens[:n]
    assert len(set(s.tolist())) == n and tokens[n] == SEPS.copy
    assert answers(tokens, mask).tolist() == s.tolist()
    assert np.flatnonzero(mask).tolist() == list(range(n, 2 * n))
    tokens, mask = st.reverse_task(rng, SYMBOLS, n, SEPS)
    s = tokens[:n]
    assert tokens[n] == SEPS.reverse
    assert answers(tokens, mask).tolist() == s[::-1].tolist()
    assert mask.sum() == n and not mask[-1]


def test_too_few_symbols_is_an_error():
    with pytest.raises(ValueError, match="distinct symbols"):
        st.copy_task(np.random.default_rng(0), SYMBOLS[:3], 4, SEPS)


def test_packed_rows_hold_whole_instances_and_their_answers():
    rng = np.random.default_rng(0)
    rows = st.task_rows(rng, SYMBOLS, seq_len=64, n_rows=16, seps=SEPS)
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
    one = st.task_rows(rng, SYMBOLS, 64, 8, SEPS, tasks=("lookup",))
    per_row = one["answer"].sum(1)
    eos_per_row = (one["inputs"] == EOS_ID).sum(1)
    np.testing.assert_array_equal(per_row, eos_per_row - 1)  # one answer per lookup


def test_layout_from_a_char_tokenizer():
    tok = CharTokenizer.build(DOCS)
    layout = st.make_layout(tok, 16)
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
    assert st.SymbolLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout
    # Without the first choices the next candidates are taken, never one character twice.
    tok2 = CharTokenizer.build(["colons: and > and ( here"])
    chars = st.make_layout(tok2, 4).separator_chars
    assert chars == {"pair": " ", "lookup": ":", "copy": ">", "reverse": "("}
    with pytest.raises(ValueError, match="separator"):
        st.make_layout(CharTokenizer.build(["abc"]), 4)


# ----------------------------------------------------------------------------- training mix


def natural_batches(tok, seed=0, batch_size=8, seq_len=32):
    from lexlm.data import lm_train_dataset

    source = [{"text": d} for d in DOCS]
    ds = lm_train_dataset(source, tok, seq_len, batch_size, seed, 0, 1)
    return iter(ds)


def make_mix(prob=0.3, seed=7, batch_size=8, seq_len=32):
    tok = CharTokenizer.build(DOCS)
    layout = st.make_layout(tok, 16)
    mix = st.SymbolMix(
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
    assert ev.answer_accuracy(logits, targets, answer) == (3, 4)


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

    acc = ev.symbol_accuracy(fake_correct, rows, jax.random.key(0), draws=2, batch_size=2)
    # Answer positions: (0,0) miss, (0,1) hit, (1,0) hit, (1,1) miss, (2,1) miss -> 2 / 5.
    assert acc == pytest.approx(2 / 5)
    assert calls == [(2, 2)] * 4  # the last batch is padded to the batch size


def test_correct_function_matches_answer_accuracy_on_a_tiny_model():
    import jax
    import jax.numpy as jnp

    from lexlm.nn import LMConfig, TransformerLM

    cfg = LMConfig(vocab_size=24, width=16, depth=1, heads=2, max_len=16, embedding="semi")
    model = TransformerLM(cfg)
    tokens = np.random.default_rng(0).integers(3, 24, (3, 16)).astype(np.int32)
    params = model.init(jax.random.key(0), jnp.asarray(tokens))["params"]  # a jax.Array
    targets = np.roll(tokens, -1, axis=1)
    answer = np.random.default_rng(1).random((3, 16)) < 0.5
    logits = jax.jit(lambda p, t: model.apply({"params": p}, t, method="logits"))(params, tokens)
    want = ev.answer_accuracy(logits, targets, answer)
    got = ev.correct_function(model, params)(tokens, targets, answer, jax.random.key(0))
    assert (int(got[0]), int(got[1])) == want
    # Random rows for some ids change the predictions but not the count of answer positions.
    rnd = ev.correct_function(model, params, random_ids=np.arange(12, 24))
    assert int(rnd(tokens, targets, answer, jax.random.key(0))[1]) == want[1]


def test_semi_twin_takes_a_standard_models_parameters():
    # A learned model (logit scale 'auto' -> none) evaluated with random rows for chosen ids:
    # its semi twin must accept its parameters, and with no id randomised it is the same model.
    import jax
    import jax.numpy as jnp

    from lexlm.nn import LMConfig, TransformerLM

    cfg = LMConfig(vocab_size=24, width=16, depth=1, heads=2, max_len=16)
    model = TransformerLM(cfg)
    tokens = np.random.default_rng(0).integers(3, 24, (3, 16)).astype(np.int32)
    params = model.init(jax.random.key(0), jnp.asarray(tokens))["params"]
    targets = np.roll(tokens, -1, axis=1)
    answer = np.ones((3, 16), bool)
    twin = TransformerLM(ev.semi_twin(cfg))
    assert twin.cfg.embedding == "semi" and not twin.cfg.learned_logit_scale
    key = jax.random.key(0)
    plain = ev.correct_function(model, params)(tokens, targets, answer, key)
    none_random = ev.correct_function(twin, params, random_ids=np.array([], np.int32))
    assert [int(x) for x in none_random(tokens, targets, answer, key)] == [int(x) for x in plain]


def test_context_guess_is_one_over_the_distinct_symbols_seen():
    rows = {
        "inputs": np.array([[1, 100, 101, 6, 100, 0], [1, 102, 6, 0, 0, 0]]),
        "answer": np.array(
            [[False, False, False, True, True, False], [False, False, True] + [False] * 3]
        ),
    }
    # Row 0: two distinct symbols seen at positions 3 and 4; row 1: one symbol seen.
    assert ev.context_guess_accuracy(rows, SYMBOLS) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def fake_result(emb, p, acc, ppl):
    """What ``symbols_run`` records per run, with every accuracy ``acc``."""
    per = {t: acc for t in st.TASKS} | {"mean": acc}
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


def fake_findings():
    runs = {
        "standard": fake_result("learned", 0.0, 0.0, 5.0),
        "lexinvariant": fake_result("lexinvariant", 0, 0.4, 9),
    }
    for p in (0.1, 0.2, 0.5):
        runs[f"semi_p{p:g}"] = fake_result("semi", p, p / 2, 5 + p)
    return {
        "experiment": "symbols", "runs": runs, "tasks": list(st.TASKS),
        "semi_ps": [0.0, 0.1, 0.2, 0.5], "steps": 800, "mix_prob": 0.1, "seq_len": 128,
        "model": {"depth": 2, "width": 128, "heads": 4}, "unit": "char",
    }  # fmt: skip


def test_report_and_sweep_figure_come_from_the_findings(tmp_path):
    from lexlm.experiment.driver import Figures
    from lexlm.proj.lexinvariant.report import render

    figures = Figures(tmp_path / "figures")
    text = render(fake_findings(), {}, figures)
    assert "### Finding 3" in text and "### Finding 4" in text
    assert "| lexinvariant | 0.400 | 0.400 | 0.400 | 0.400 | 0.400 |" in text
    assert "| 0.5 | " in text and "unbounded" in text
    assert "test loss rises monotonically in p (1.6094 at p = 0, 1.7047 at p = 0.5)" in text
    assert (tmp_path / "figures" / "symbols_sweep.png").stat().st_size > 1000
    assert "](figures/symbols_sweep.png)" in text


# ----------------------------------------------------------------------------- config


def test_run_config_sets_the_embedding_per_run_on_a_locked_config():
    c = get_config("symbols")
    c.lock()  # as config_flags hands it over
    cfg = ls.run_config(c, "semi", 0.2, text_vocab=83)
    assert (cfg.model.embedding, cfg.model.semi_p) == ("semi", 0.2)
    assert (cfg.project, cfg.kind) == ("lm", "lm")  # an lm run, with extra vocabulary ids
    assert cfg.vocab_override == 83 + 64
    assert cfg.symbols.to_dict() == {
        "n_symbols": 64,
        "mix_prob": 0.1,
        "tasks": ",".join(st.TASKS),
        "lengths": {k: list(v) for k, v in st.DEFAULT_LENGTHS.items()},
    }
    assert ls.run_config(c, "lexinvariant", 0.0).eval.draws == 4
    assert ls.run_config(c, "semi", 0.2).eval.draws == 1  # p_eval = 0: deterministic
    assert (c.model.embedding, c.model.semi_p) == ("learned", 0.0)
    names = ["standard", "lexinvariant", "semi_p0.1", "semi_p0.2", "semi_p0.5"]
    assert list(ls.run_specs(c)) == names


@pytest.mark.parametrize(
    ("field", "value", "error_field"),
    [
        ("symbols.n_symbols", 7, "symbols.n_symbols"),
        # 4 symbols per set, but a lookup of up to 6 pairs takes 12 distinct symbols.
        ("symbols.n_symbols", 8, "symbols.lengths.lookup"),
        ("symbols.mix_prob", 1.5, "symbols.mix_prob"),
        ("symbols.tasks", "copy,sort", "symbols.tasks"),
        ("symbols.lengths.copy", (0, 3), "symbols.lengths.copy"),
        ("symbols.lengths.lookup", (2, 40), "symbols.lengths.lookup"),
        ("symbols.semi_ps", (0.1, 0.1), "symbols.semi_ps"),
        ("symbols.semi_ps", (0.0,), "symbols.semi_ps"),
        ("symbols.eval_draws", 0, "symbols.eval_draws"),
        ("model.embedding", "lexinvariant", "model.embedding"),
        ("model.semi_p", 0.2, "model.semi_p"),
        ("model.heads", 5, "model.heads"),
        ("train.steps", 0, "train.steps"),
        ("data.source", "web", "data.source"),
    ],
)
def test_validate_names_the_field(field, value, error_field):
    from lexlm.proj.lexinvariant.config import validate

    c = get_config("symbols")
    validate(c)
    *parents, leaf = field.split(".")
    node = c
    for name in parents:
        node = node[name]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        validate(c)
    assert info.value.field == error_field
    assert str(info.value).startswith(f"{error_field}: ")


def test_a_run_layout_must_match_its_recorded_vocabulary():
    tok = CharTokenizer.build(DOCS)
    c = get_config("symbols")
    c.symbols.n_symbols = 16
    cfg = ls.run_config(c, "learned", 0.0, text_vocab=tok.vocab_size)
    assert ls.layout_of(cfg, tok) == st.make_layout(tok, 16)
    cfg.vocab_override += 1
    with pytest.raises(ConfigError, match=r"^vocab_override: "):
        ls.layout_of(cfg, tok)
