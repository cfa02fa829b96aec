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


def test_symbol_units_pad_batches_and_count_answers_per_row():
    calls = []

    def fake_correct(tokens, targets, answer, key):
        calls.append(tokens.shape)
        pred = tokens  # "predicts" its input: right wherever target == input
        return ((pred == targets) & answer).sum(axis=1), answer.sum(axis=1)

    rows = {
        "inputs": np.array([[1, 7], [7, 7], [3, 4]]),
        "targets": np.array([[7, 7], [7, 2], [3, 9]]),
        "answer": np.array([[True, True], [True, True], [False, True]]),
    }
    import jax

    units = ev.symbol_units(fake_correct, rows, jax.random.key(0), draws=2, batch_size=2)
    # Answer positions: (0,0) miss, (0,1) hit, (1,0) hit, (1,1) miss, (2,1) miss, each draw.
    np.testing.assert_array_equal(units["correct"], [2, 2, 0])
    np.testing.assert_array_equal(units["total"], [4, 4, 2])
    assert ev.accuracy(units) == pytest.approx(2 / 5)
    assert calls == [(2, 2)] * 4  # the last batch is padded to the batch size


def test_task_mean_is_the_unweighted_mean_of_task_accuracies():
    per_task = {
        "copy": {"correct": np.array([1, 1]), "total": np.array([1, 3])},  # 2 / 4
        "lookup": {"correct": np.array([1, 0]), "total": np.array([1, 1])},  # 1 / 2
        "reverse": {"correct": np.array([0, 0]), "total": np.array([2, 2])},  # 0
    }
    entry = ev.set_result(per_task)
    assert entry["mean"] == pytest.approx(1 / 3)
    assert ev.task_mean_metric(list(per_task))(entry["units"]) == pytest.approx(1 / 3)
    assert entry["units"]["copy:total"] == [1, 3]


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
    assert got[0].shape == got[1].shape == (3,)  # per row
    assert (int(got[0].sum()), int(got[1].sum())) == want
    np.testing.assert_array_equal(got[1], answer.sum(axis=1))
    # Random rows for some ids change the predictions but not the count of answer positions.
    rnd = ev.correct_function(model, params, random_ids=np.arange(12, 24))
    np.testing.assert_array_equal(rnd(tokens, targets, answer, jax.random.key(0))[1], got[1])


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
    for got, want in zip(none_random(tokens, targets, answer, key), plain, strict=True):
        np.testing.assert_array_equal(got, want)


def test_context_guess_is_one_over_the_distinct_symbols_seen():
    rows = {
        "inputs": np.array([[1, 100, 101, 6, 100, 0], [1, 102, 6, 0, 0, 0]]),
        "answer": np.array(
            [[False, False, False, True, True, False], [False, False, True] + [False] * 3]
        ),
    }
    # Row 0: two distinct symbols seen at positions 3 and 4; row 1: one symbol seen.
    units = ev.context_guess_units(rows, SYMBOLS)
    np.testing.assert_allclose(units["correct"], [0.5 + 0.5, 1.0])
    np.testing.assert_array_equal(units["total"], [2, 1])
    assert ev.accuracy(units) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


ROWS = 50  # evaluation rows per task in the fake findings


def fake_set(acc: float, answers: int = 5) -> dict:
    """A symbol set with accuracy ``acc`` in every task: the first acc * ROWS rows all right."""
    right = round(acc * ROWS)
    rows = {"correct": np.r_[np.full(right, answers), np.zeros(ROWS - right, int)],
            "total": np.full(ROWS, answers)}  # fmt: skip
    return ev.set_result({t: rows for t in st.TASKS})


def fake_result(emb, p, acc, bits_shift, guess=0.2, train=None):
    """What ``symbols_run`` records per run: accuracy ``acc`` on held-out symbols (``train``
    on training symbols, default ``acc``), text bits per 1-byte block 2 + noise + shift."""
    from lexlm.eval import intervals as iv

    guess_set = ev.set_result(
        {t: {"correct": np.full(ROWS, 5 * guess), "total": np.full(ROWS, 5)} for t in st.TASKS}
    )
    symbols = {"heldout": fake_set(acc), "train": fake_set(acc if train is None else train),
               "context_guess": {"heldout": guess_set, "train": guess_set}}  # fmt: skip
    if emb != "lexinvariant":
        symbols["heldout_random_rows"] = fake_set(acc)
    layout = {
        "n_symbols": 16,
        "text_vocab": 40,
        "separator_chars": {"pair": " ", "lookup": "|", "copy": "=", "reverse": "<"},
    }
    noise = np.random.default_rng(0).normal(0, 0.3, 40)
    bits = 2.0 + noise + np.asarray(bits_shift)
    units = {"bits": bits.tolist(), "bytes": [1.0] * 40}
    loss = float(bits.mean() * np.log(2))
    interval = iv.bootstrap_interval(iv.ratio_of_sums("bits", "bytes"), units)
    test = {"loss": loss, "perplexity": float(np.exp(loss)), "units": units, "interval": interval}
    return {"embedding": emb, "semi_p": p, "symbols": symbols, "test": test, "layout": layout}


def fake_findings(lex_train=None):
    wobble = 0.05 * np.where(np.arange(40) % 2, 1.0, -1.0)  # mean 0: a tie with the standard LM
    runs = {
        "standard": fake_result("learned", 0.0, 0.0, 0.0),
        "lexinvariant": fake_result("lexinvariant", 0, 0.4, 0.3, train=lex_train),
        "semi_p0.1": fake_result("semi", 0.1, 0.04, wobble),
        "semi_p0.2": fake_result("semi", 0.2, 0.1, 0.05),
        "semi_p0.5": fake_result("semi", 0.5, 0.2, 0.1),
    }
    return {
        "experiment": "symbols", "runs": runs, "tasks": list(st.TASKS),
        "comparisons": ls.symbol_comparisons(runs, list(st.TASKS)),
        "train_seeds": 1, "one_seed_reason": "too slow here", "eval_rows": ROWS,
        "semi_ps": [0.0, 0.1, 0.2, 0.5], "steps": 800, "mix_prob": 0.1, "seq_len": 128,
        "model": {"depth": 2, "width": 128, "heads": 4}, "unit": "char",
    }  # fmt: skip


def test_symbol_comparisons_are_paired_differences_with_known_answers():
    c = fake_findings()["comparisons"]
    lex = c["lexinvariant_vs_standard"]
    assert lex["diff"] == pytest.approx(0.4) and lex["units"] == ROWS and lex["excludes_zero"]
    assert c["vs_guess"]["standard"]["heldout"]["diff"] == pytest.approx(-0.2)
    sweep = c["sweep"]
    assert list(sweep) == ["semi_p0.1", "semi_p0.2", "semi_p0.5"]
    # a constant shift per block: a degenerate interval at the shift
    assert sweep["semi_p0.2"]["text_bpb"]["lo"] == pytest.approx(0.05)
    assert sweep["semi_p0.2"]["text_bpb"]["hi"] == pytest.approx(0.05)
    assert not sweep["semi_p0.1"]["text_bpb"]["excludes_zero"]
    assert sweep["semi_p0.5"]["heldout_random_rows"]["diff"] == pytest.approx(0.2)


def test_report_and_sweep_figure_come_from_the_findings(tmp_path):
    from lexlm.experiment.driver import Figures
    from lexlm.proj.lexinvariant.report import render

    figures = Figures(tmp_path / "figures")
    text = render(fake_findings(), {}, figures)
    assert "### Finding 3" in text and "### Finding 4" in text
    assert "| lexinvariant | 0.400 | 0.400 | 0.400 | 0.400 ± 0." in text
    assert "One training seed per run (too slow here); ± is half the 95% bootstrap" in text
    assert "the lexinvariant LM is better than the standard LM (difference +0.400" in text
    # lexinvariant 0.4 on training symbols against a 0.2 guess: above it; the rest are not
    assert "Above the context guess on training symbols" in text and ": lexinvariant." in text
    assert "No model learned" not in text
    assert "semi_p0.1 and the standard LM are tied at this budget" in text
    assert "the standard LM is better than semi_p0.2 (difference +0.0500 [+0.0500, +0.0500]" in text
    assert "| 0.5 | " in text and "monoton" not in text
    assert (tmp_path / "figures" / "symbols_sweep.png").stat().st_size > 1000
    assert "](figures/symbols_sweep.png)" in text


def test_report_says_no_model_learned_when_none_beats_the_guess_on_training_symbols(tmp_path):
    from lexlm.experiment.driver import Figures
    from lexlm.proj.lexinvariant.report import render

    f = fake_findings(lex_train=0.2)
    for r in f["runs"].values():  # a test split of one block: no text interval to state
        r["test"]["units"] = {"bits": [2.0], "bytes": [1.0]}
    f["comparisons"] = ls.symbol_comparisons(f["runs"], f["tasks"])
    assert "text_bpb" not in f["comparisons"]["sweep"]["semi_p0.1"]
    text = render(f, {}, Figures(tmp_path / "figures"))
    assert "**No model learned the tasks at this budget**" in text
    assert "(the highest is 0.200)" in text
    assert "test bits per byte: no interval (one test block)" in text


def test_report_gives_the_seed_spread_of_several_seeds(tmp_path):
    from lexlm.eval import intervals as iv
    from lexlm.experiment.driver import Figures
    from lexlm.proj.lexinvariant.report import render

    f = fake_findings()
    f["train_seeds"] = 3
    f["runs"]["lexinvariant"]["symbols"]["heldout"]["spread"] = iv.seed_spread([0.3, 0.4, 0.5])
    text = render(f, {}, Figures(tmp_path / "figures"))
    assert "3 training seeds per run (`train.seeds=3`, trained in one program)" in text
    assert "| lexinvariant | 0.400 | 0.400 | 0.400 | 0.400 ± 0.140 (sd 0.100) |" in text


def test_report_of_a_finding_without_units_states_no_ordering(tmp_path):
    from lexlm.experiment.driver import Figures
    from lexlm.proj.lexinvariant.report import render

    f = fake_findings()
    for key in ("comparisons", "train_seeds", "one_seed_reason"):
        del f[key]
    for r in f["runs"].values():
        for entry in (*r["symbols"].values(), *r["symbols"]["context_guess"].values()):
            entry.pop("units", None)
        del r["test"]["interval"]
    text = render(f, {}, Figures(tmp_path / "figures"))
    assert "one seed; no interval recorded in this finding" in text
    assert "no ordering is stated" in text and "±" not in text and "better than" not in text


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
