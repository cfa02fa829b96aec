"""Tests for lexlm.text: UTF-8 repair, the three tokenizers, word segmentation."""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lexlm.errors import ConfigError
from lexlm.text import (
    EOS_ID,
    PAD_ID,
    UNK_ID,
    ByteTokenizer,
    CharTokenizer,
    SubwordTokenizer,
    build_tokenizer,
    clean_documents,
    decode_utf8,
    load_tokenizer,
    pad_words,
    segment_words,
)

# Several scripts and plenty of repetition, so a small BPE vocabulary has merges to learn.
TRAIN_DOCS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away!",
    "Language models read text as units: bytes, characters, or subwords.\nEach has a cost.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Собака спит.",
    "एक तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "敏捷的棕色狐狸跳过了懒狗。狐狸跑了。",
    "Numbers like 2023, 3.14 and 1,000,000 appear in news text (often).",
] * 4
MIXED_TEXT = "The fox — naïve, 東京 and собака!\nNew line,  two spaces."


def test_decode_utf8_replaces_and_counts_invalid_bytes():
    text, replaced = decode_utf8(b"ok \xff\xfe then \xe4\xb8 end")
    assert replaced == 3
    assert text.count("\ufffd") == 3
    assert text.startswith("ok ") and text.endswith(" end")
    assert decode_utf8("caf\u00e9".encode()) == ("café", 0)
    # A U+FFFD that was already in valid input is not a repair.
    assert decode_utf8("a\ufffdb".encode()) == ("a\ufffdb", 0)
    assert decode_utf8(b"") == ("", 0)


def test_clean_documents_skips_empty_counts_and_warns_once():
    docs = [b"  first doc \n", b"", b"   \n\t ", "second", b"bad \xc3\x28 byte"]
    with pytest.warns(UserWarning, match="skipped 2 empty") as record:
        kept, stats = clean_documents(docs, source="unit-test")
    assert len(record) == 1
    assert kept == ["first doc", "second", "bad \ufffd( byte"]
    assert (stats.documents, stats.empty_skipped, stats.replacement_chars) == (3, 2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept, stats = clean_documents(["clean", "text"])
    assert kept == ["clean", "text"] and not stats.anything_repaired


def test_byte_tokenizer_round_trip_and_lengths():
    tok = ByteTokenizer()
    assert tok.vocab_size == 259
    ids = tok.encode(MIXED_TEXT)
    assert ids.dtype == np.int32
    assert ids.min() >= 3 and ids.max() < 259
    assert tok.decode(ids) == MIXED_TEXT
    assert tok.token_bytes[ids].sum() == len(MIXED_TEXT.encode("utf-8"))
    assert tok.token_chars[ids].sum() == len(MIXED_TEXT)
    assert tok.unknown_count == 0
    assert list(tok.token_bytes[:3]) == [0, 2, 1]


def test_eos_and_pad_decode_as_document_separator():
    tok = ByteTokenizer()
    ids = np.concatenate([tok.encode("one"), [EOS_ID], tok.encode("two"), [PAD_ID, PAD_ID]])
    assert tok.decode(ids) == "one\n\ntwo"
    # eos stands for "\n\n": its byte count matches what decoding produces.
    assert tok.token_bytes[ids].sum() == len(b"one\n\ntwo")


def test_char_vocabulary_comes_from_training_docs_only():
    tok = CharTokenizer.build(["abba", "cab"])
    # Frequency order, ties by code point: a(3) b(3) c(1).
    assert tok.chars == ["a", "b", "c"]
    assert tok.vocab_size == 6
    ids = tok.encode("abcxyz")
    assert list(ids) == [3, 4, 5, UNK_ID, UNK_ID, UNK_ID]
    assert tok.last_unknown_count == 3
    tok.encode("zz")
    assert tok.last_unknown_count == 2 and tok.unknown_count == 5
    assert tok.decode(ids) == "abc\ufffd\ufffd\ufffd"


def test_char_tokenizer_max_size_min_count_and_round_trip():
    tok = CharTokenizer.build(TRAIN_DOCS)
    text = "The fox jumps over the dog."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.token_bytes[ids].sum() == len(text.encode())
    cyrillic = "собака"
    assert tok.token_bytes[tok.encode(cyrillic)].sum() == len(cyrillic.encode())
    small = CharTokenizer.build(TRAIN_DOCS, max_size=10)
    assert small.vocab_size == 10
    assert small.chars == tok.chars[:7]
    assert CharTokenizer.build(["aab"], min_count=2).chars == ["a"]


def test_tokenizers_save_and_load(tmp_path):
    for tok in (ByteTokenizer(), CharTokenizer.build(TRAIN_DOCS)):
        directory = tmp_path / tok.kind
        tok.save(directory)
        loaded = load_tokenizer(directory)
        assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
        np.testing.assert_array_equal(loaded.encode(MIXED_TEXT), tok.encode(MIXED_TEXT))
        np.testing.assert_array_equal(loaded.token_bytes, tok.token_bytes)


@pytest.fixture(scope="module")
def subword():
    return SubwordTokenizer.train(TRAIN_DOCS, vocab_size=400)


def test_subword_round_trip_is_lossless(subword):
    assert subword.vocab_size == 400
    assert (subword.pad_id, subword.eos_id, subword.unk_id) == (0, 1, 2)
    for text in (TRAIN_DOCS[0], TRAIN_DOCS[4], MIXED_TEXT, "  leading spaces", "\u00e9\u0301"):
        ids = subword.encode(text)
        assert ids.dtype == np.int32
        assert subword.decode(ids) == text
        assert subword.token_bytes[ids].sum() == len(text.encode("utf-8"))
        assert subword.token_chars[ids].sum() == len(text)
    assert len(subword.encode(TRAIN_DOCS[0])) < len(TRAIN_DOCS[0])  # it did learn merges


def test_subword_counts_characters_outside_the_vocabulary(subword):
    subword.encode("fox")
    assert subword.last_unknown_count == 0
    ids = subword.encode("fox ♞♞ 🦊")  # never seen: byte fallback, counted per character
    assert subword.last_unknown_count == 3
    assert UNK_ID not in ids
    assert subword.decode(ids) == "fox ♞♞ 🦊"


def test_subword_training_is_deterministic_and_save_load_keeps_ids(subword, tmp_path):
    again = SubwordTokenizer.train(TRAIN_DOCS, vocab_size=400)
    assert again._model_proto == subword._model_proto
    subword.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, SubwordTokenizer)
    for text in [*TRAIN_DOCS[:6], MIXED_TEXT]:
        np.testing.assert_array_equal(loaded.encode(text), subword.encode(text))
    unpickled = pickle.loads(pickle.dumps(subword))
    np.testing.assert_array_equal(unpickled.encode(MIXED_TEXT), subword.encode(MIXED_TEXT))


def test_subword_vocab_size_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^data\.vocab_size: .*<= \d+"):
        SubwordTokenizer.train(["tiny text"], vocab_size=5000)
    with pytest.raises(ConfigError, match=r"^data\.vocab_size"):
        SubwordTokenizer.train(TRAIN_DOCS, vocab_size=100)


def test_build_tokenizer_dispatch_and_unknown_unit(tmp_path):
    assert build_tokenizer("byte", [], None).vocab_size == 259
    char = build_tokenizer("char", ["abc"], 0, workdir=tmp_path / "char")
    assert load_tokenizer(tmp_path / "char").chars == char.chars
    with pytest.raises(ConfigError) as info:
        build_tokenizer("words", TRAIN_DOCS, None)
    assert info.value.field == "data.unit"
    assert str(info.value).startswith("data.unit:")
    assert "byte" in str(info.value) and "subword" in str(info.value)
    with pytest.raises(ConfigError, match=r"^data\.vocab_size"):
        build_tokenizer("subword", TRAIN_DOCS, None)


def test_segment_words_latin_and_punctuation():
    assert segment_words("Hello, world!! It's 3.14...") == [
        "Hello",
        ",",
        " world",
        "!!",
        " It",
        "'",
        "s",
        " 3",
        ".",
        "14",
        "...",
    ]
    # Whitespace runs go to the front of the next word; trailing whitespace is a word.
    assert segment_words("  a\n\tb  ") == ["  a", "\n\tb", "  "]
    assert segment_words("") == []
    assert segment_words("   ") == ["   "]


def test_segment_words_non_latin_scripts():
    assert segment_words("Привет, мир!") == ["Привет", ",", " мир", "!"]
    # Devanagari vowel signs are combining marks: they stay inside the word.
    assert segment_words("नमस्ते दुनिया।") == ["नमस्ते", " दुनिया", "।"]
    assert segment_words("مرحبا بالعالم") == ["مرحبا", " بالعالم"]
    # Each CJK ideograph is a word; punctuation runs still split off.
    assert segment_words("東京は晴れ。") == ["東", "京", "は", "晴", "れ", "。"]
    # A combining accent stays on its letter; a digit run stays whole.
    assert segment_words("cafe\u0301 2024") == ["cafe\u0301", " 2024"]
    # A mark right after whitespace starts a word of its own (and keeps the whitespace).
    assert segment_words("a \u0301b") == ["a", " \u0301b"]


def test_segment_words_join_is_exact():
    text = "  One  line,\nthen (another)\t\tline.  \n\n"
    assert "".join(segment_words(text)) == text


def test_pad_words_splits_over_long_words_into_continuation_pieces():
    codes, continued, stats = pad_words(["ab", " abcdefghi"], max_len=4)
    assert codes.shape == (4, 4) and codes.dtype == np.int32
    assert list(codes[0]) == [ord("a"), ord("b"), 0, 0]
    # " abcdefghi" (10 code points) -> " abc" "defg" "hi": nothing dropped, in order.
    assert ["".join(chr(c) for c in row if c) for row in codes[1:]] == [" abc", "defg", "hi"]
    assert list(continued) == [False, False, True, True]
    assert (stats.words, stats.split_words, stats.pieces) == (2, 1, 4)
    tok = ByteTokenizer()
    codes, continued, stats = pad_words(["é"], max_len=3, encode=tok.encode)
    assert list(codes[0]) == [0xC3 + 3, 0xA9 + 3, 0] and stats.split_words == 0


def test_text_package_imports_no_data_stack():
    code = (
        "import sys, lexlm.text; "
        "bad = [m for m in ('jax', 'grain', 'tensorflow_datasets', 'tensorflow') "
        "if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
