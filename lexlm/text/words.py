"""Word segmentation for word-pooled models (Thawani et al., "Learn Your Tokens", 2023, Sec. 3).

The paper pools the units of each whitespace-delimited word into one vector. Its code replaces
newlines with spaces and then drops the spaces, so its text cannot be put back together. Our
rule is explicit, Unicode-aware and **exact**: ``"".join(segment_words(t)) == t`` for every
string ``t``.

1. A word's *body* is one of:
   - a maximal run of letters, digits, marks and format characters (Unicode categories L*,
     N*, M*, Cf, Co, Cn): "naïve", "2023", "देवनागरी" are one body each;
   - a maximal run of punctuation or symbol characters (P*, S*, other controls):
     "Hello, world!!" has the bodies "Hello" "," "world" "!!";
   - one CJK ideograph (as in BERT's basic tokenizer), because Chinese and Japanese kanji use
     no spaces and a sentence would otherwise be one word. Other scripts written without
     spaces (Thai, kana) stay in runs; over-long runs are split into pieces (below).
   Combining marks never start a body after a letter run ends: they stay on the character
   before them (after whitespace or at the start of the text they begin a letter run).
2. Whitespace (anything ``str.isspace``) is *attached to the front* of the body that follows
   it, like GPT-2's "Ġ" and sentencepiece's "▁" but keeping the exact characters: "a  b\\n\\nc"
   is "a" "  b" "\\n\\nc". Whitespace at the end of the text, after the last body, is a word of
   its own. So the unit decoder sees line breaks and indentation, and nothing is lost.

Units and over-long words (``word_pieces``): each word becomes unit ids through a tokenizer
(bytes or characters; ``lexlm.text.tokenizers``). A word with more than ``max_units`` units is
cut into consecutive pieces of at most ``max_units`` units. Every piece is a word of its own for
the model (it ends with its own end-of-word); pieces after the first are flagged as
*continuations*, and ``PieceStats`` counts the words that were split. Because pieces are
consecutive slices, concatenating them gives the word back, so the text still round-trips and
every unit is predicted and scored. (The paper's code truncates at the longest word, or maps
words over 9 characters to "@".)
"""

from __future__ import annotations

import dataclasses
import itertools
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Bool, Int32

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


_CLASS_CACHE: dict[int, int] = {}


def _classes(text: str) -> np.ndarray:
    """Class of every character (one dictionary lookup per distinct code point)."""
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
    uniq, inverse = np.unique(cp, return_inverse=True)
    table = np.empty(len(uniq), np.int8)
    for k, code in enumerate(uniq.tolist()):
        cls = _CLASS_CACHE.get(code)
        if cls is None:
            cls = _CLASS_CACHE[code] = _char_class(chr(code))
        table[k] = cls
    return table[inverse.reshape(-1)]


def segment_words(text: str) -> list[str]:
    """Splits text into words by the rule in the module docstring; ``"".join`` inverts it.

    Vectorised: a word starts at i > 0 where whitespace follows a body, or where a body
    character that is not a mark follows a body character of another effective class (the
    class of the last non-mark character of its body; letters after a leading mark), or of an
    ideograph."""
    if not text:
        return []
    c = _classes(text)
    n = len(c)
    idx = np.arange(n)
    # effective class: a mark takes the class of the nearest non-mark before it in its body,
    # or _WORD when the body starts with it
    last = np.maximum.accumulate(np.where(c != _MARK, idx, -1))
    src = c[np.maximum(last, 0)]
    eff = np.where(c != _MARK, c, np.where((last >= 0) & (src != _SPACE), src, _WORD))
    prev, cur = c[:-1], c[1:]
    space_after_body = (cur == _SPACE) & (prev != _SPACE)
    joins = (eff[1:] == eff[:-1]) & ((eff[1:] == _WORD) | (eff[1:] == _PUNCT))
    body_break = (cur != _SPACE) & (prev != _SPACE) & (cur != _MARK) & ~joins
    starts = np.flatnonzero(space_after_body | body_break) + 1
    bounds = [0, *starts.tolist(), n]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def word_body(word: str) -> str:
    """The word without its leading whitespace: what accuracy and frequencies compare."""
    return word.lstrip()


@dataclasses.dataclass
class PieceStats:
    """What ``word_pieces`` did: words seen, words split into pieces, pieces made."""

    words: int = 0
    split_words: int = 0
    pieces: int = 0

    def add(self, other: PieceStats) -> None:
        self.words += other.words
        self.split_words += other.split_words
        self.pieces += other.pieces


def word_pieces(
    words: Sequence[str],
    max_units: int,
    encode: Callable[[str], Sequence[int] | np.ndarray] | None = None,
    encoded: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[bool], PieceStats]:
    """Words -> unit-id arrays of at most ``max_units`` each, with over-long words split.

    ``encode`` maps a word to unit ids (a tokenizer's ``encode``); by default code points.
    ``encoded`` gives the words' ids directly (one array per word) instead.
    Returns (pieces, continued, stats): ``continued[i]`` is True when piece i continues the
    word before it. A word with no units (an encoder that drops everything) is kept as one
    empty piece so that word counts stay aligned; callers that need units skip it.
    """
    if max_units < 1:
        raise ValueError(f"max_units must be >= 1, got {max_units}")
    pieces: list[np.ndarray] = []
    continued: list[bool] = []
    stats = PieceStats()
    for k_word, word in enumerate(words):
        if encoded is not None:
            ids = np.asarray(encoded[k_word], np.int32)
        elif encode is not None:
            ids = np.asarray(encode(word), np.int32)
        else:
            ids = np.asarray([ord(c) for c in word], np.int32)
        stats.words += 1
        n = max(1, -(-len(ids) // max_units))
        if n > 1:
            stats.split_words += 1
        for k in range(n):
            pieces.append(ids[k * max_units : (k + 1) * max_units])
            continued.append(k > 0)
        stats.pieces += n
    return pieces, continued, stats


def pad_pieces(pieces: Sequence[np.ndarray], max_units: int) -> Int32[np.ndarray, "W L"]:
    """Unit-id arrays (each at most ``max_units`` long) -> int32 [W, L], padded with 0."""
    out = np.zeros((len(pieces), max_units), np.int32)
    for row, ids in enumerate(pieces):
        if len(ids) > max_units:
            raise ValueError(f"piece {row} has {len(ids)} units > max_units={max_units}")
        out[row, : len(ids)] = ids
    return out


def pad_words(
    words: Sequence[str],
    max_len: int,
    encode: Callable[[str], Sequence[int] | np.ndarray] | None = None,
) -> tuple[Int32[np.ndarray, "W L"], Bool[np.ndarray, " W"], PieceStats]:
    """Words -> an int32 [W', L] array (W' >= W: over-long words become several rows),
    the continuation flags and the counts. See ``word_pieces``."""
    pieces, continued, stats = word_pieces(words, max_len, encode)
    return pad_pieces(pieces, max_len), np.asarray(continued, bool), stats
