"""Word segmentation for word-pooled models (Thawani et al., "Learn Your Tokens", 2023, Sec. 3).

The paper pools the units of each whitespace-delimited word into one vector. We make the rule
explicit and Unicode-aware:

1. Whitespace (anything `str.isspace`) separates words and belongs to no word.
2. Letters, digits, marks and format characters (Unicode categories L*, N*, M*, Cf, Co, Cn)
   stay together: "naïve", "2023", "देवनागरी" and "ZWJ-joined" emoji are one word each.
3. Each maximal run of punctuation or symbol characters (P*, S*, other controls) is a word of
   its own: "Hello, world!!" -> "Hello" "," " world" "!!".
4. Each CJK ideograph is a word of its own (as in BERT's basic tokenizer), because Chinese and
   Japanese kanji use no spaces and one sentence would otherwise be one word. Other scripts
   written without spaces (Thai, kana) stay in runs; `pad_words` truncates over-long words.
5. Combining marks never start a word: they stay on the character before them.

Leading-space convention (`leading_space=True`, the default): a word that follows whitespace
starts with one " ", like GPT-2 and sentencepiece's "▁". So word boundaries that came from
spaces are visible to the unit decoder, and `"".join(segment_words(t))` equals `t` with every
whitespace run replaced by a single space and trailing whitespace removed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Int32

_SPACE, _WORD, _PUNCT, _IDEOGRAPH, _MARK = range(5)


def _char_class(char: str) -> int:
    if char.isspace():
        return _SPACE
    category = unicodedata.category(char)
    if category[0] == "M":
        return _MARK
    if category[0] in "PS" or category in ("Cc", "Cs"):
        return _PUNCT
    if category == "Lo" and unicodedata.name(char, "").startswith("CJK "):
        return _IDEOGRAPH
    return _WORD


def segment_words(text: str, leading_space: bool = True) -> list[str]:
    """Splits text into words by the rule in the module docstring."""
    words: list[str] = []
    current: list[str] = []
    current_class = _SPACE
    after_space = False
    for char in text:
        cls = _char_class(char)
        if cls == _SPACE:
            if current:
                words.append("".join(current))
                current = []
            current_class = _SPACE
            after_space = bool(words)
            continue
        joins = current and (cls == _MARK or (cls == current_class and cls in (_WORD, _PUNCT)))
        if not joins:
            if current:
                words.append("".join(current))
            current = [" "] if (after_space and leading_space) else []
            # A mark at the start of a word (after a space) behaves like a letter.
            current_class = _WORD if cls == _MARK else cls
        current.append(char)
        after_space = False
    if current:
        words.append("".join(current))
    return words


def pad_words(
    words: Sequence[str],
    max_len: int,
    encode: Callable[[str], Sequence[int] | np.ndarray] | None = None,
) -> tuple[Int32[np.ndarray, "W L"], int]:
    """Words -> an int32 [W, L] array padded with 0, and how many words were truncated.

    `encode` maps a word to unit ids (e.g. a tokenizer's `encode`); by default code points.
    """
    codes = np.zeros((len(words), max_len), np.int32)
    truncated = 0
    for row, word in enumerate(words):
        ids = encode(word) if encode is not None else [ord(c) for c in word]
        ids = np.asarray(ids, np.int32)
        if len(ids) > max_len:
            truncated += 1
            ids = ids[:max_len]
        codes[row, : len(ids)] = ids
    return codes, truncated
