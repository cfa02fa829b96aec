"""Text -> units: UTF-8 repair, byte / character / subword tokenizers, word segmentation.

Pure Python + numpy (sentencepiece is imported only when a subword tokenizer is used), so this
package imports on any machine, including ones without the data stack.
"""

from lexlm.text.decode import TextStats, clean_document, clean_documents, decode_utf8
from lexlm.text.tokenizers import (
    EOS_ID,
    EOS_TEXT,
    NUM_SPECIAL,
    PAD_ID,
    UNIT_KINDS,
    UNK_ID,
    ByteTokenizer,
    CharTokenizer,
    SubwordTokenizer,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
)
from lexlm.text.words import pad_words, segment_words

__all__ = [
    "EOS_ID",
    "EOS_TEXT",
    "NUM_SPECIAL",
    "PAD_ID",
    "UNIT_KINDS",
    "UNK_ID",
    "ByteTokenizer",
    "CharTokenizer",
    "SubwordTokenizer",
    "TextStats",
    "Tokenizer",
    "build_tokenizer",
    "clean_document",
    "clean_documents",
    "decode_utf8",
    "load_tokenizer",
    "pad_words",
    "segment_words",
]
