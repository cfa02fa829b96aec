"""Byte-patching peers: SpaceByte's patching rule against a transcription of its definition,
MegaByte / SpaceByte / window-attention causality, cached generation against the full forward,
8-device training, the count reference and the findings (known answers throughout)."""

import json
import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_helpers as th
from hypothesis import given, settings
from hypothesis import strategies as st

from lexlm.eval.byte_ngram import ByteNgram, bits_per_byte, select_and_score
from lexlm.nn import LMConfig, TransformerLM
from lexlm.nn.byte_decode import generate, generate_uncached
from lexlm.nn.megabyte import MegaByteConfig, MegaByteLM
from lexlm.nn.spacebyte import SpaceByteConfig, SpaceByteLM
from lexlm.text import patching
from lexlm.text.tokenizers import EOS_ID, NUM_SPECIAL, ByteTokenizer

TOK = ByteTokenizer()
MEGA = MegaByteConfig(
    vocab_size=259, max_len=24, patch=4, global_width=32, global_depth=1, global_heads=2,
    local_width=16, local_depth=1, local_heads=2,
)  # fmt: skip
SPACE = SpaceByteConfig(
    vocab_size=259, max_len=24, local_width=16, local_depth=2, local_heads=2, window=5,
    width=32, depth=1, heads=2, cap=4,
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def unoptimised_module():
    """Most XLA optimisations off for the whole module: compiling is nearly all of these
    tests' time, and the programs compute the same numbers (to float rounding)."""
    with th.unoptimised_xla():
        yield


def unbox(tree):
    return jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x, tree, is_leaf=lambda x: hasattr(x, "value")
    )


@pytest.fixture(scope="module")
def models():
    x = jnp.full((1, 24), 3 + 97, jnp.int32)
    window_lm = LMConfig(vocab_size=259, width=16, depth=1, heads=2, max_len=24, window=3)
    out = {}
    with th.unoptimised_xla():  # the inits only: the tests compile their own programs
        for name, m, seed in (
            ("megabyte", MegaByteLM(MEGA), 1),
            ("spacebyte", SpaceByteLM(SPACE), 1),
            ("window", TransformerLM(window_lm), 2),
        ):
            out[name] = (m, unbox(jax.jit(m.init)(jax.random.key(seed), x)["params"]))
    return out


def ids(text: str, length: int) -> np.ndarray:
    raw = TOK.encode(text)[:length]
    return np.pad(raw, (0, length - len(raw)), constant_values=3 + ord(" ")).astype(np.int32)


# -- the patching rule ----------------------------------------------------------------------------
def reference_spacelike(b: int) -> bool:
    """SpaceByte's definition, transcribed: not an ASCII letter or digit, not a UTF-8
    continuation byte."""
    return not (chr(b).isascii() and chr(b).isalnum()) and not 0x80 <= b <= 0xBF


def reference_global(raw: bytes) -> list[bool]:
    sp = [reference_spacelike(b) for b in raw]
    return [t == 0 or (sp[t] and not sp[t - 1]) for t in range(len(raw))]


TEXTS = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.text(min_size=1, max_size=20).map(lambda s: s.encode("utf-8", "replace") or b" "),
)


@given(TEXTS)
@settings(max_examples=200, deadline=None)
def test_spacelike_and_global_positions_match_the_definition(raw):
    b = np.frombuffer(raw, np.uint8).astype(np.int32)
    assert list(patching.spacelike(b)) == [reference_spacelike(int(v)) for v in b]
    x = (b + NUM_SPECIAL)[None]
    assert list(patching.spacebyte_global(x)[0]) == reference_global(raw)
    lengths = patching.patch_lengths(patching.spacebyte_global(x))
    assert lengths.sum() == len(raw) and (lengths >= 1).all()


def test_patch_boundaries_of_a_worked_example():
    text = "the cat,  sat ñu 42\n"
    x = TOK.encode(text)[None]
    starts = np.flatnonzero(patching.spacebyte_global(x)[0]).tolist()
    # 0 (window start); ' ' after "the"; ',' after "cat" (then ' ', ' ' follow spacelikes);
    # ' ' after "sat"; the lead byte 0xC3 of "ñ" is spacelike and follows ' ': no patch;
    # ' ' after "ñu" (the continuation byte 0xB1 and 'u' are not spacelike); '\n' after "42"
    assert starts == [0, 3, 7, 13, 17, 20]
    assert list(patching.spacelike(np.array([0xC3, 0xB1, ord("_"), ord("9")]))) == [
        True, False, True, False,
    ]  # fmt: skip
    # special ids (end-of-text between documents) always start a patch
    y = np.array([[3 + 97, EOS_ID, EOS_ID, 3 + 97, 3 + 98]])
    assert patching.spacebyte_global(y)[0].tolist() == [True, True, True, False, False]
    # the same on jax arrays (the model's path)
    assert np.asarray(patching.spacebyte_global(jnp.asarray(x)))[0].tolist() == (
        patching.spacebyte_global(x)[0].tolist()
    )


def test_global_slots_cap_and_overflow_known_answer():
    g = np.array([[1, 0, 1, 1, 0, 1, 0], [1, 0, 0, 0, 0, 0, 0]], bool)
    pos, valid = patching.global_slots(g, 3)
    assert pos.tolist() == [[0, 2, 3], [0, 0, 0]]
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    jpos, jvalid = patching.global_slots(jnp.asarray(g), 3)
    assert (
        np.asarray(jpos).tolist() == pos.tolist() and np.asarray(jvalid).tolist() == valid.tolist()
    )
    over = patching.overflow_mask(g, 3)
    assert over.tolist()[0] == [False] * 5 + [True, True] and not over[1].any()
    mask = np.ones((2, 7))
    mask[1, 5:] = 0
    # row 0 "a a a a": global at 0, 1, 3, 5 (cap 3: 5 and 6 overflow); row 1: only at 0
    x = np.stack([TOK.encode("a a a a"), TOK.encode("abcdefg")])
    stats = patching.window_stats(x, mask, 3)
    assert (stats["bytes"], stats["global"], stats["overflow"]) == (12, 5, 2)
    assert stats["bytes_per_patch"] == pytest.approx(12 / 5)


# -- causality ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["megabyte", "spacebyte", "window"])
def test_predictions_never_see_later_bytes_nor_other_rows(models, name):
    """Changing byte t+1 or later leaves every prediction of bytes up to t+1 (positions <= t)
    unchanged, across patch boundaries, and never changes another row; the change does reach
    the predictions from t+1 on (the test is not vacuous)."""
    model, params = models[name]
    fn = jax.jit(lambda x: model.apply({"params": params}, x, method="logits"))
    x = np.stack([ids("the cat sat on a mat, in a hat", 24), ids("uno dos tres cuatro cinco", 24)])
    base = np.asarray(fn(x))
    rng = np.random.default_rng(0)
    for j in (1, 3, 4, 5, 8, 12, 13, 23):  # patch ends/starts of P = 4 and of the spaces
        y = x.copy()
        y[0, j:] = rng.integers(3, 259, 24 - j)
        out = np.asarray(fn(y))
        np.testing.assert_array_equal(out[0, :j], base[0, :j])
        np.testing.assert_array_equal(out[1], base[1])
        assert np.abs(out[0, j:] - base[0, j:]).max() > 0


def test_window_attention_sees_only_its_window(models):
    model, params = models["window"]  # one layer, window 3: position t sees t-2..t
    fn = jax.jit(lambda x: model.apply({"params": params}, x, method="logits"))
    x = ids("abcdefghijklmnopqrstuvwx", 24)[None]
    y = x.copy()
    y[0, :10] = 3 + ord("z")
    diff = np.abs(np.asarray(fn(y)) - np.asarray(fn(x)))[0].max(-1)
    assert (diff[12:] == 0).all() and (diff[:12] > 0).all()


def test_spacebyte_overflow_bytes_get_no_global_update(models):
    """Past the cap (4 global positions) the global blocks contribute nothing: the output
    there equals the model with its global blocks' update removed."""
    model, params = models["spacebyte"]
    x = ids("a b c d e f g h i j k l", 24)[None]  # a global position every 2 bytes
    g = patching.spacebyte_global(x)
    over = patching.overflow_mask(g, SPACE.cap)[0]
    assert over.sum() > 0 and not over[:7].any()
    local_only = SpaceByteLM(SpaceByteConfig(**{**SPACE.__dict__, "depth": 0}))
    lp = {k: v for k, v in params.items() if not k.startswith("g")}
    a = np.asarray(model.apply({"params": params}, x, method="logits"))[0]
    # the same local blocks in the same order, with no global update anywhere
    b = np.asarray(local_only.apply({"params": lp}, x, method="logits"))[0]
    assert np.abs(a[~over] - b[~over]).max() > 0  # the global blocks matter before the cap
    # and after the cap the difference only comes from the window (5 bytes) of earlier updates
    first_over = int(np.flatnonzero(over)[0])
    np.testing.assert_allclose(
        a[first_over + 2 * SPACE.window :], b[first_over + 2 * SPACE.window :], atol=1e-5
    )


def test_too_long_or_unpatched_windows_and_bad_sizes_are_one_line_errors(models):
    model, params = models["megabyte"]
    with pytest.raises(ValueError, match=r"^model\.max_len: MegaByte needs"):
        model.apply({"params": params}, jnp.zeros((1, 22), jnp.int32), method="logits")
    with pytest.raises(ValueError, match=r"^model\.patch:"):
        MegaByteConfig(vocab_size=259, max_len=30, patch=4)
    with pytest.raises(ValueError, match=r"^model\.local_depth:"):
        SpaceByteConfig(vocab_size=259, local_depth=3)
    with pytest.raises(ValueError, match=r"^model\.width:"):
        SpaceByteConfig(vocab_size=259, local_width=64, width=32)
    sb, sp = models["spacebyte"]
    with pytest.raises(ValueError, match=r"^model\.max_len:"):
        sb.apply({"params": sp}, jnp.zeros((1, 25), jnp.int32), method="logits")
    with pytest.raises(ValueError, match=r"^generate:"):
        generate(sb, sp, np.zeros((1, 20), np.int32) + 100, 8)


# -- cached generation ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["megabyte", "spacebyte"])
def test_cached_generation_equals_uncached(models, name):
    model, params = models[name]
    prompt = np.stack([ids("to be, or n", 6), ids("a b c d", 6)])
    cached, logits = generate(model, params, prompt, 18)
    ref, ref_logits = generate_uncached(model, params, prompt, 18)
    np.testing.assert_array_equal(cached, ref)
    np.testing.assert_allclose(logits, ref_logits, atol=2e-5)
    assert len(np.unique(cached[:, 6:])) > 1  # a real continuation, not one repeated byte
    sampled, _ = generate(model, params, prompt, 18, temperature=1.0, seed=3)
    np.testing.assert_array_equal(sampled[:, :6], prompt)
    assert (sampled[:, 6:] != 0).all()  # pad is never generated


# -- training on the mesh -------------------------------------------------------------------------
MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from lexlm.nn import LMConfig
    from lexlm.nn.megabyte import MegaByteConfig
    from lexlm.nn.spacebyte import SpaceByteConfig
    from lexlm.train import default_train_config, make_lm_task, train

    # compiling is nearly all of this script's time; the partitioning is the same
    jax.config.update("jax_disable_most_optimizations", True)
    configs = {
        "megabyte": MegaByteConfig(vocab_size=259, max_len=32, patch=8, global_width=32,
                                   global_depth=1, global_heads=2, local_width=16,
                                   local_depth=1, local_heads=2),
        "spacebyte": SpaceByteConfig(vocab_size=259, max_len=32, local_width=16, local_depth=2,
                                     local_heads=2, window=8, width=32, depth=1, heads=2, cap=8),
        "window": LMConfig(vocab_size=259, width=16, depth=1, heads=2, max_len=32, window=8),
    }
    text = np.frombuffer(("the cat sat on the mat. " * 40).encode(), np.uint8) + 3

    class Batches:
        def __init__(self): self.i = 0
        def __iter__(self): return self
        def __next__(self):
            rows = [text[(self.i * 8 + r) * 3 % 500:][:33] for r in range(8)]
            self.i += 1
            x = np.stack(rows).astype(np.int32)
            return {"inputs": x[:, :-1], "targets": x[:, 1:], "mask": np.ones((8, 32), np.float32)}
        def get_state(self): return {"i": self.i}
        def set_state(self, s): self.i = s["i"]

    for name, cfg in configs.items():
        t = default_train_config()
        t.update(steps=8, batch_size=8, lr=1e-2, warmup_steps=1, log_every=1, ckpt_every=100,
                 tensorboard=False, progress=False, mesh=(2, 2, 2))
        result = train(t, make_lm_task(cfg, 32, name), Batches(), sys.argv[1] + "/" + name)
        leaves = [x for x in jax.tree.leaves(result.state.params) if x.ndim >= 2]
        devices = max(len(x.sharding.device_set) for x in leaves)
        print(name.upper(), json.dumps([devices, [h["loss"] for h in result.history]]))
    """
)


def test_every_hierarchical_model_trains_under_jit_on_an_8_device_mesh(tmp_path):
    lines = th.run_script(MESH_SCRIPT, tmp_path / "train_bp.py", [str(tmp_path)], 8)
    for name in ("MEGABYTE", "SPACEBYTE", "WINDOW"):
        devices, losses = json.loads(lines[name])
        assert devices == 8, name  # parameters spread over the 8 devices
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] - 0.3, name


# -- the count reference --------------------------------------------------------------------------
def test_byte_ngram_known_answers():
    # order 1 (no context), Witten-Bell over a uniform base: c(a) = 1, N = 2, u = 2
    assert bits_per_byte(["ab"], ["a"], 1)["bits_per_byte"] == pytest.approx(
        -math.log2((1 + 2 / 256) / 4)
    )
    m = ByteNgram(2).fit(["abab"])
    # p(b | a): c(a, b) = 2, c(a) = 2, one distinct follower; unigram p1(b) = (2 + 2/256)/6
    p1 = (2 + 2 / 256) / (4 + 2)
    assert m.prob(b"a", ord("b")) == pytest.approx((2 + 1 * p1) / (2 + 1))
    # probabilities over all 256 bytes sum to one, for a seen and an unseen context
    for ctx in (b"a", b"z"):
        assert sum(m.prob(ctx, b) for b in range(256)) == pytest.approx(1.0)
    # a repeated text is cheaper at higher order, and selection on validation picks it
    text = ["the cat sat on the mat. " * 20]
    r = select_and_score(text, text, text, 4, limit=4)
    assert r["order"] == 4 and r["bits_per_byte"] < 0.5 and r["n_bytes"] == len(text[0])
    assert not r["turned"]  # the best order is the grid's edge: said, not hidden
    by_order = r["test_bits_per_byte_by_order"]
    assert list(by_order) == ["1", "2", "3", "4"] and by_order["4"] == r["bits_per_byte"]
    assert by_order["1"] > by_order["2"] > by_order["4"]
    assert by_order["1"] == pytest.approx(bits_per_byte(text, text, 1)["bits_per_byte"])


def test_count_reference_grid_extends_until_validation_turns():
    """Text from a first-order Markov chain over 4 letters: one byte of context (order 2)
    captures all there is, and longer contexts only split the counts, so validation turns
    there. A grid of orders 1..1 is extended until it does."""
    rng = np.random.default_rng(0)
    letters = "abcd"
    nxt = rng.dirichlet(np.full(4, 0.3), size=4)

    def sample(n):
        out, cur = [], 0
        for _ in range(n):
            cur = rng.choice(4, p=nxt[cur])
            out.append(letters[cur])
        return "".join(out)

    train, dev, test = [sample(3000)], [sample(1000)], [sample(1000)]
    full = select_and_score(train, dev, test, 8)
    extended = select_and_score(train, dev, test, 1)
    assert full["turned"] and extended["turned"]
    assert extended["order"] == full["order"] == 2
    assert list(extended["validation_bits_per_byte_by_order"]) == ["1", "2", "3"]
    assert extended["bits_per_byte"] == pytest.approx(full["bits_per_byte"])


# -- the experiment's findings --------------------------------------------------------------------
def test_ordering_check_known_answers():
    from lexlm.proj.byte_patching.report import ordering

    bpb = {"subword": 1.0, "spacebyte": 1.1, "megabyte4": 1.3, "megabyte8": 1.2, "byte": 1.4}
    o = ordering({**bpb, "word_pooled": 1.15})
    assert o["holds"] is True and o["chain"] == ["subword", "spacebyte", "megabyte", "byte"]
    assert [p["holds"] for p in o["pairs"]] == [True, True, True]
    assert o["word_pooled_rank"] == 3 and o["ranked"][0] == "subword"
    o = ordering({**bpb, "spacebyte": 1.25})  # worse than the better MegaByte (P = 8: 1.2)
    assert o["holds"] is False
    assert [(p["better"], p["worse"], p["holds"]) for p in o["pairs"]] == [
        ("subword", "spacebyte", True), ("spacebyte", "megabyte", False),
        ("megabyte", "byte", True),
    ]  # fmt: skip
    o = ordering({"megabyte4": 2.0, "byte": 1.9})  # only two of the claim's models
    assert o["chain"] == ["megabyte", "byte"] and o["holds"] is False
    assert o["word_pooled_rank"] is None
    assert ordering({"byte": 1.0})["holds"] is None


def test_findings_table_and_verdicts_from_two_grids():
    from lexlm.proj.byte_patching import report as rep

    def grid(budget, bpb):
        rows = {
            k: {"bits_per_byte": v, "train_flops": budget, "train_flops_per_byte": 1e6,
                "infer_flops_per_byte": 3e5, "steps": int(budget / 1e9), "params": 1000,
                "n_bytes": 50}
            for k, v in bpb.items()
        }  # fmt: skip
        rows["bigram"] = {"bits_per_byte": None}
        return {"budget": budget, "rows": rows}

    grids = [
        grid(1e11, {"byte": 3.0, "spacebyte": 3.2, "subword": 2.5}),
        grid(3e11, {"byte": 2.8, "spacebyte": 2.6, "subword": 2.2}),
    ]
    ref = {"bits_per_byte": 2.9, "order": 3, "n_bytes": 50}
    ref["test_bits_per_byte_by_order"] = {"1": 4.5, "2": 3.4, "3": 2.9}
    f = rep.findings(grids, ref)
    assert f["budgets"] == [1e11, 3e11] and list(f["rows"]) == ["byte", "spacebyte", "subword"]
    assert [r["bits_per_byte"] for r in f["rows"]["spacebyte"]] == [3.2, 2.6]
    assert [o["holds"] for o in f["orderings"]] == [False, True]
    assert rep.bracket(3.0, ref["test_bits_per_byte_by_order"]).startswith("between the 2-gram")
    assert rep.bracket(5.0, ref["test_bits_per_byte_by_order"]).startswith("above every")
    assert rep.bracket(2.0, ref["test_bits_per_byte_by_order"]).startswith("below every")
    lines = rep.table(f) + rep.budget_lines(f)
    text = "\n".join(lines)
    assert "| SpaceByte | 1e+03 | 1e+06 | 3e+05 | 100 | 3.200 | 300 | 2.600 |" in text
    assert (
        "| count reference: byte 3-gram (Witten-Bell) | - | 0 | - | - | 2.900 | - | 2.900 |" in text
    )
    assert "At 1e+11 FLOPs, SpaceByte's ordering does not reproduce (subword < SpaceByte, " in text
    assert "models on the test split (diagnostic): 1-gram 4.500, 2-gram 3.400, 3-gram 2.900" in text
    assert (
        "SpaceByte NOT < byte" in text and "At 3e+11 FLOPs, SpaceByte's ordering reproduces" in text
    )
    assert "Best first: subword LM (2.200), SpaceByte (2.600), byte LM (2.800)." in text
    assert "Below the count reference (2.900): subword LM, SpaceByte, byte LM." in text
    assert "SpaceByte (2.600) lies below every count model, even the 3-gram (2.900)." in text


def test_configs_and_bad_budgets():
    from lexlm.errors import ConfigError
    from lexlm.proj.byte_patching import config

    for bad in ("", "1e11,-3", "lots", "1e11,nan"):
        c = config.get_config("tiny")
        c.budgets = bad
        with pytest.raises(ConfigError, match=r"^budgets:"):
            config.validate(c)
    with pytest.raises(ConfigError, match=r"unknown variant 'nope' of byte_patching"):
        config.get_config("nope")
    for arg in ("tiny", "main", "shakespeare", "spanish", "paper"):
        c = config.get_config(arg)
        if c.data.source == "files":
            c.data.files = (__file__,)
        config.validate(c)
        assert "budget" not in c  # one budget per grid entry: `budgets`
    assert config.budgets(config.get_config("shakespeare")) == [3e12, 9e12]
    # the paper config's MegaByte and SpaceByte are the paper's 201M + 50M parameters
    from bench.byte_patching import param_count
    from lexlm.proj.lm.run import lm_config
    from lexlm.proj.word_pooled.kinds import run_config

    c = config.get_config("paper")
    for kind in ("megabyte4", "spacebyte"):
        n = param_count(lm_config(run_config(c, kind, steps=1), 259))
        assert 2.4e8 < n < 2.6e8, (kind, n)


def test_budget_names_are_values():
    from lexlm.experiment.checks import flops_name

    assert [flops_name(b) for b in (3e12, 1.5e11, 2e8)] == [
        "budget_3e12", "budget_1.5e11", "budget_2e8",
    ]  # fmt: skip
