"""Tests for lexlm.text.perturb: character typos, word shuffles, dispatch and counted fallbacks."""

import math
import os
import string
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from lexlm.text.perturb import (
    PERTURBATIONS,
    TYPO_OPS,
    PerturbStats,
    conditional_shuffle,
    perturb,
    perturb_many,
    typo,
    word_shuffle,
)

SENTENCE = "The quick brown fox jumps over the lazy dog, twice in 2024!"  # 42 letters
N_LETTERS = sum(c.isalpha() for c in SENTENCE)
GREEK = "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο."
CYRILLIC = "Быстрая коричневая лиса прыгает через ленивую собаку."
SEEDS = range(12)


def rng(seed=0):
    return np.random.default_rng(seed)


def is_subsequence(short, long):
    it = iter(long)
    return all(char in it for char in short)


def test_sentence_letter_count():
    assert N_LETTERS == 42  # the known answers below depend on it


def test_rate_zero_returns_the_text_and_draws_nothing():
    g = rng()
    stats = PerturbStats()
    assert typo(SENTENCE, 0.0, g, stats=stats) == SENTENCE
    assert stats == PerturbStats(texts=1)
    assert g.integers(1 << 30) == rng().integers(1 << 30)  # the generator was not advanced


def test_typo_is_deterministic_and_depends_on_the_seed():
    outs = [typo(SENTENCE, 0.2, rng(seed)) for seed in (0, 0, 1)]
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    assert outs[0] != SENTENCE


def test_typo_does_not_depend_on_string_hashing():
    code = (
        "import numpy as np; from lexlm.text.perturb import perturb_many; "
        f"print(perturb_many([{GREEK!r}, {SENTENCE!r}], 'combined', 0.3, 5))"
    )
    outs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        outs.append(run.stdout)
    assert outs[0] == outs[1]
    assert outs[0].strip() == str(perturb_many([GREEK, SENTENCE], "combined", 0.3, 5))


@pytest.mark.parametrize(
    ("text", "rate", "k"),
    [
        (SENTENCE, 0.1, 4),  # 4.2 -> 4
        (SENTENCE, 0.25, 10),  # 10.5 -> 10 (half to even)
        (SENTENCE, 0.01, 1),  # 0.42 rounds to 0, raised to 1
        (SENTENCE, 1.0, 42),
        ("hello", 0.5, 2),  # 2.5 -> 2 (half to even)
        ("hello", 0.3, 2),  # 1.5 -> 2
        ("a", 0.001, 1),
    ],
)
def test_number_of_edits(text, rate, k):
    stats = PerturbStats()
    typo(text, rate, rng(3), stats=stats)
    assert stats.edits == k
    assert sum(stats.by_op.values()) == k
    assert stats.texts == 1 and stats.unchanged == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_delete_removes_exactly_k_letters(seed):
    stats = PerturbStats()
    out = typo(SENTENCE, 0.2, rng(seed), ops=("delete",), stats=stats)
    k = round(0.2 * N_LETTERS)
    assert stats.edits == stats.by_op["delete"] == k == 8
    assert len(out) == len(SENTENCE) - k
    assert is_subsequence(out, SENTENCE)
    removed = Counter(SENTENCE) - Counter(out)
    assert sum(removed.values()) == k and all(c.isalpha() for c in removed)


@pytest.mark.parametrize("seed", SEEDS)
def test_insert_adds_exactly_k_letters(seed):
    out = typo(SENTENCE, 0.2, rng(seed), ops=("insert",))
    assert len(out) == len(SENTENCE) + 8
    assert is_subsequence(SENTENCE, out)
    added = Counter(out) - Counter(SENTENCE)
    assert sum(added.values()) == 8 and all(c.isalpha() for c in added)


@pytest.mark.parametrize("seed", SEEDS)
def test_substitute_changes_exactly_k_letter_positions(seed):
    out = typo(SENTENCE, 0.2, rng(seed), ops=("substitute",))
    assert len(out) == len(SENTENCE)
    diff = [i for i, (a, b) in enumerate(zip(SENTENCE, out)) if a != b]
    assert len(diff) == 8
    assert all(SENTENCE[i].isalpha() and out[i].isalpha() for i in diff)
    # Lower case is kept; the lone capital "T" has no other capital, so it may become lower case.
    assert all(out[i].islower() for i in diff if SENTENCE[i].islower())


def test_substitute_keeps_case_when_the_alphabet_allows():
    text = "Hello World From Athens"
    for seed in SEEDS:
        out = typo(text, 1.0, rng(seed), ops=("substitute",))
        assert all(a != b and a.isupper() == b.isupper() for a, b in zip(text, out) if a != " ")
        assert set(out) <= set(text)
    # "T" is the only capital: its substitute is another letter of the text, here lower case.
    out = {typo("Tea", 1.0, rng(seed), ops=("substitute",))[0] for seed in SEEDS}
    assert out == {"e", "a"}


def test_positions_refer_to_the_original_text():
    # Inserting after every letter: each new letter follows its original, never an inserted one.
    out = typo("ab", 1.0, rng(), ops=("insert",))
    assert len(out) == 4 and out[0] == "a" and out[2] == "b"
    assert typo("ab1cd", 1.0, rng(), ops=("delete",)) == "1"
    sub = typo("ab-c", 1.0, rng(), ops=("substitute",))
    assert [a != b for a, b in zip("ab-c", sub)] == [True, True, False, True]


@pytest.mark.parametrize("seed", SEEDS)
def test_swap_keeps_the_characters(seed):
    text = "hello world quick brown jumps"
    stats = PerturbStats()
    out = typo(text, 0.25, rng(seed), ops=("swap",), stats=stats)
    assert stats.by_op == {"insert": 0, "delete": 0, "substitute": 0, "swap": 6}
    assert len(out) == len(text) and sorted(out) == sorted(text)
    assert [i for i, c in enumerate(out) if c == " "] == [i for i, c in enumerate(text) if c == " "]


def test_swap_known_answers():
    # One edit on "xy": the first letter swaps with the next, the last with the previous.
    assert {typo("xy", 0.5, rng(seed), ops=("swap",)) for seed in SEEDS} == {"yx"}
    assert typo("ab, cd", 0.25, rng(0), ops=("swap",)) in ("ba, cd", "ab, dc")


def test_swap_without_a_neighbouring_letter_falls_back_to_substitute():
    text = "a b c d"
    stats = PerturbStats()
    out = typo(text, 1.0, rng(), ops=("swap",), stats=stats)
    assert stats.by_op["swap"] == 0 and stats.by_op["substitute"] == stats.edits == 4
    assert out[1::2] == "   "
    assert all(o != t and o in "abcd" for o, t in zip(out[::2], text[::2]))


@pytest.mark.parametrize("text", [GREEK, CYRILLIC])
@pytest.mark.parametrize("seed", SEEDS)
def test_new_letters_come_from_the_texts_own_alphabet(text, seed):
    sub = typo(text, 0.5, rng(seed), ops=("substitute",))
    assert sub != text and set(sub) <= set(text)
    ins = typo(text, 0.5, rng(seed), ops=("insert",))
    assert len(ins) > len(text) and set(ins) <= set(text)
    mixed = typo(text, 0.5, rng(seed))
    assert set(mixed) <= set(text)


def test_single_letter_alphabet_substitutes_ascii_letters_in_the_same_case():
    lower = typo("aaaa", 1.0, rng(), ops=("substitute",))
    assert len(lower) == 4 and all(c in string.ascii_lowercase and c != "a" for c in lower)
    upper = typo("ZZ ZZ", 1.0, rng(), ops=("substitute",))
    assert upper[2] == " "
    assert all(c in string.ascii_uppercase and c != "Z" for c in upper.replace(" ", ""))


def test_text_without_letters_is_unchanged_and_counted():
    stats = PerturbStats()
    assert typo("123 !!", 0.5, rng(), stats=stats) == "123 !!"
    assert typo("", 0.5, rng(), stats=stats) == ""
    assert stats == PerturbStats(texts=2, unchanged=2)


@pytest.mark.parametrize("seed", SEEDS)
def test_word_shuffle_permutes_the_words(seed):
    words = SENTENCE.split()
    out = word_shuffle("  " + "\t ".join(words) + "\n", rng(seed))
    assert Counter(out.split(" ")) == Counter(words)  # single spaces, same multiset
    assert out.split(" ") == [words[i] for i in rng(seed).permutation(len(words))]


@pytest.mark.parametrize("seed", SEEDS)
def test_conditional_shuffle_keeps_the_ends(seed):
    words = SENTENCE.split()
    out = conditional_shuffle(SENTENCE, rng(seed)).split(" ")
    assert out[0] == words[0] and out[-1] == words[-1]
    assert Counter(out) == Counter(words)
    assert out[1:-1] == [words[1:-1][i] for i in rng(seed).permutation(len(words) - 2)]


def test_conditional_shuffle_of_four_words_permutes_the_middle_two():
    outs = {conditional_shuffle("a b c d", rng(seed)) for seed in SEEDS}
    assert outs == {"a b c d", "a c b d"}


def test_short_texts_are_unchanged_and_counted_by_the_shuffles():
    stats = PerturbStats()
    assert word_shuffle("  solo\t", rng(), stats) == "  solo\t"
    assert word_shuffle("", rng(), stats) == ""
    assert conditional_shuffle("one  two three", rng(), stats) == "one  two three"
    assert stats == PerturbStats(texts=3, unchanged=3)
    stats = PerturbStats()
    word_shuffle("two words", rng(), stats)
    conditional_shuffle("now four words here", rng(), stats)
    assert stats == PerturbStats(texts=2)


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan])
def test_invalid_rate_raises(rate):
    with pytest.raises(ValueError, match=r"^rate must be in \[0, 1\]"):
        typo(SENTENCE, rate, rng())
    with pytest.raises(ValueError, match=r"^rate"):
        perturb(SENTENCE, "word_shuffle", rng(), rate)
    with pytest.raises(ValueError, match=r"^rate"):
        perturb_many([SENTENCE], "typo", rate, 0)


def test_unknown_kind_raises_one_line_listing_the_kinds():
    with pytest.raises(ValueError) as info:
        perturb(SENTENCE, "blur", rng())
    message = str(info.value)
    assert "\n" not in message and "'blur'" in message
    assert all(kind in message for kind in PERTURBATIONS)
    with pytest.raises(ValueError, match="blur"):
        perturb_many([], "blur", 0.1, 0)


@pytest.mark.parametrize("ops", [("delete", "transpose"), (), "swap"])
def test_unknown_ops_raise(ops):
    with pytest.raises(ValueError, match=r"^ops"):
        typo(SENTENCE, 0.1, rng(), ops=ops)


def test_perturb_many_rejects_a_single_string():
    with pytest.raises(ValueError, match=r"^texts"):
        perturb_many(SENTENCE, "typo", 0.1, 0)


def test_perturb_dispatches_with_the_same_draws():
    for kind, direct in [
        ("typo", lambda g: typo(SENTENCE, 0.1, g)),
        ("word_shuffle", lambda g: word_shuffle(SENTENCE, g)),
        ("conditional_shuffle", lambda g: conditional_shuffle(SENTENCE, g)),
    ]:
        assert perturb(SENTENCE, kind, rng(4), 0.1) == direct(rng(4))


@pytest.mark.parametrize("seed", SEEDS)
def test_combined_shuffles_then_adds_typos(seed):
    stats = PerturbStats()
    out = perturb(SENTENCE, "combined", rng(seed), 0.1, stats)
    assert out != SENTENCE
    assert stats.texts == 1 and stats.edits == 4 and stats.unchanged == 0
    # The shuffle joined the words with single spaces and typos never touch spaces.
    assert out.count(" ") == SENTENCE.count(" ")


def test_combined_counts_a_fallback_only_when_neither_step_applies():
    stats = PerturbStats()
    assert perturb("123", "combined", rng(), 0.5, stats) == "123"
    assert stats == PerturbStats(texts=1, unchanged=1)
    stats = PerturbStats()
    assert perturb("hello", "combined", rng(), 0.5, stats) != "hello"
    assert stats.texts == 1 and stats.edits == 2 and stats.unchanged == 0


def test_perturb_many_is_deterministic_and_uses_one_generator():
    texts = [SENTENCE, GREEK, CYRILLIC, "x", "123 !!"]
    for kind in PERTURBATIONS:
        stats = PerturbStats()
        out = perturb_many(texts, kind, 0.2, 7, stats)
        assert out == perturb_many(texts, kind, 0.2, 7)
        g = rng(7)
        assert out == [perturb(t, kind, g, 0.2) for t in texts]
        assert stats.texts == len(texts)
    assert perturb_many(texts, "typo", 0.2, 7) != perturb_many(texts, "typo", 0.2, 8)
    assert perturb_many((), "typo", 0.2, 7) == []


def test_constants():
    assert TYPO_OPS == ("insert", "delete", "substitute", "swap")
    assert PERTURBATIONS == ("typo", "word_shuffle", "conditional_shuffle", "combined")
    assert PerturbStats().by_op == dict.fromkeys(TYPO_OPS, 0)
    assert PerturbStats().by_op is not PerturbStats().by_op
