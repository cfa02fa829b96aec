"""Text -> integer units: bytes, characters or subwords, behind one interface.

Every tokenizer reserves the same three ids so that models, losses and packers never need to
know which kind they were given:

    0  pad  (never a target; masked out)
    1  eos  (document separator; stands for the text "\\n\\n" between two documents)
    2  unk  (a character outside the vocabulary; stands for one character, U+FFFD)

`token_bytes[i]` / `token_chars[i]` give how many UTF-8 bytes / characters id `i` stands for,
so bits per byte over a set of targets is `sum(nats) / ln 2 / token_bytes[targets].sum()` for
every kind of unit, which is what makes byte, character and subword models comparable.

Subwords are sentencepiece BPE (see `SubwordTokenizer` for why BPE and how it is made
deterministic).
"""

from __future__ import annotations

import abc
import collections
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from etils import epath
from jaxtyping import Int32

from lexlm.errors import ConfigError
from lexlm.paths import as_path

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
NUM_SPECIAL = 3
EOS_TEXT = "\n\n"
UNK_TEXT = "\ufffd"
UNIT_KINDS = ("byte", "char", "subword")
CONFIG_FILE = "tokenizer.json"
_FORMAT_VERSION = 1


def _special_lengths(table: np.ndarray) -> np.ndarray:
    # pad stands for nothing, eos for the "\n\n" that joins documents, unk for one character.
    table[PAD_ID] = 0
    table[EOS_ID] = len(EOS_TEXT)
    table[UNK_ID] = 1
    return table


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class Tokenizer(abc.ABC):
    """The interface all units share. Subclasses implement `_encode` and `_decode_segment`.

    Statistics: `last_unknown_count` is the number of characters of the last `encode` call
    that had no unit of their own (UNK for characters, byte fallback for subwords);
    `unknown_count` and `encoded_chars` are totals since construction or `reset_stats()`.
    They are plain per-process counters: a pipeline that encodes in worker processes keeps
    its counts there.
    """

    kind: ClassVar[str]
    pad_id: ClassVar[int] = PAD_ID
    eos_id: ClassVar[int] = EOS_ID
    unk_id: ClassVar[int] = UNK_ID

    token_bytes: Int32[np.ndarray, " V"]
    token_chars: Int32[np.ndarray, " V"]

    def __init__(self) -> None:
        self.reset_stats()

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @abc.abstractmethod
    def _encode(self, text: str) -> tuple[np.ndarray, int]:
        """Returns (ids, number of characters without a unit of their own)."""

    @abc.abstractmethod
    def _decode_segment(self, ids: np.ndarray) -> str:
        """Decodes ids that contain neither pad nor eos."""

    @abc.abstractmethod
    def _config(self, directory: epath.Path) -> dict[str, Any]:
        """Writes the kind's own files to `directory`; returns what `_from_config` needs."""

    @classmethod
    @abc.abstractmethod
    def _from_config(cls, config: dict[str, Any], directory: epath.Path) -> Tokenizer: ...

    def reset_stats(self) -> None:
        self.last_unknown_count = 0
        self.unknown_count = 0
        self.encoded_chars = 0

    def encode(self, text: str) -> Int32[np.ndarray, " T"]:
        """Text -> ids, without eos (the caller appends eos between documents)."""
        ids, unknown = self._encode(text)
        self.last_unknown_count = unknown
        self.unknown_count += unknown
        self.encoded_chars += len(text)
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Ids -> text: pad ids vanish, eos becomes "\\n\\n", unk becomes U+FFFD."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        ids = ids[ids != PAD_ID]
        cuts = np.flatnonzero(ids == EOS_ID)
        segments = np.split(ids, cuts)
        # np.split keeps each eos at the head of the following segment; drop it there.
        parts = [self._decode_segment(segments[0])]
        parts += [self._decode_segment(segment[1:]) for segment in segments[1:]]
        return EOS_TEXT.join(parts)

    def save(self, directory: str | os.PathLike) -> str:
        """Writes `tokenizer.json` (and the kind's files) into `directory` (an epath: local or
        a bucket); returns the path of `tokenizer.json`."""
        directory = as_path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, "format_version": _FORMAT_VERSION}
        config.update(self._config(directory))
        path = directory / CONFIG_FILE
        path.write_text(json.dumps(config, indent=1), encoding="utf-8")
        return os.fspath(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: id = byte + 3, so the vocabulary is 259 and nothing is ever unknown."""

    kind = "byte"

    def __init__(self) -> None:
        super().__init__()
        n_bytes = np.ones(self.vocab_size, np.int32)
        byte_values = np.arange(256)
        # A character is counted at its lead byte; continuation bytes (10xxxxxx) add none, so
        # token_chars sums to the character count of valid UTF-8.
        n_chars = np.zeros(self.vocab_size, np.int32)
        n_chars[NUM_SPECIAL:] = (byte_values & 0xC0) != 0x80
        self.token_bytes = _readonly(_special_lengths(n_bytes))
        self.token_chars = _readonly(_special_lengths(n_chars))

    @property
    def vocab_size(self) -> int:
        return 256 + NUM_SPECIAL

    def _encode(self, text: str) -> tuple[np.ndarray, int]:
        # A lone surrogate (possible in a Python str, impossible in UTF-8) becomes "?".
        raw = text.encode("utf-8", errors="replace")
        return np.frombuffer(raw, np.uint8).astype(np.int32) + NUM_SPECIAL, 0

    def _decode_segment(self, ids: np.ndarray) -> str:
        is_byte = (ids >= NUM_SPECIAL) & (ids < self.vocab_size)
        if is_byte.all():
            raw = (ids - NUM_SPECIAL).astype(np.uint8).tobytes()
        else:
            unk = UNK_TEXT.encode("utf-8")
            raw = b"".join(bytes([i - NUM_SPECIAL]) if ok else unk for i, ok in zip(ids, is_byte))
        return raw.decode("utf-8", errors="replace")

    def _config(self, directory: epath.Path) -> dict[str, Any]:
        return {}

    @classmethod
    def _from_config(cls, config: dict[str, Any], directory: epath.Path) -> ByteTokenizer:
        return cls()


class CharTokenizer(Tokenizer):
    """Unicode code points, with a vocabulary taken from training documents only.

    Ids 3.. are ordered by descending training frequency, ties by code point, so the same
    training text always gives the same ids. Characters outside the vocabulary map to unk.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        super().__init__()
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = list(chars)
        self._id_to_text = ["", EOS_TEXT, UNK_TEXT, *self.chars]
        code_points = np.array([ord(c) for c in self.chars], dtype=np.int64)
        order = np.argsort(code_points)
        # Sorted code points + searchsorted encode a whole document without a Python loop.
        self._sorted_code_points = code_points[order]
        self._sorted_ids = (order + NUM_SPECIAL).astype(np.int32)
        n_bytes = [0] * NUM_SPECIAL + [len(c.encode("utf-8", "surrogatepass")) for c in chars]
        self.token_bytes = _readonly(_special_lengths(np.array(n_bytes, np.int32)))
        self.token_chars = _readonly(_special_lengths(np.ones(self.vocab_size, np.int32)))

    @classmethod
    def build(
        cls, train_docs: Iterable[str], max_size: int | None = None, min_count: int = 1
    ) -> CharTokenizer:
        """Vocabulary of the characters in `train_docs` seen at least `min_count` times.

        `max_size` bounds the whole vocabulary, the 3 special ids included (None or 0: all).
        """
        counts: collections.Counter[str] = collections.Counter()
        for doc in train_docs:
            counts.update(doc)
        ranked = sorted(
            (c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], ord(c))
        )
        if max_size:
            if max_size <= NUM_SPECIAL:
                raise ConfigError("data.vocab_size", f"must exceed {NUM_SPECIAL}, got {max_size}")
            ranked = ranked[: max_size - NUM_SPECIAL]
        return cls(ranked)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + NUM_SPECIAL

    def _encode(self, text: str) -> tuple[np.ndarray, int]:
        code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")
        code_points = code_points.astype(np.int64)
        if not len(self._sorted_code_points):
            return np.full(len(code_points), UNK_ID, np.int32), len(code_points)
        pos = np.searchsorted(self._sorted_code_points, code_points)
        pos = np.minimum(pos, len(self._sorted_code_points) - 1)
        known = self._sorted_code_points[pos] == code_points
        ids = np.where(known, self._sorted_ids[pos], UNK_ID)
        return ids, int(len(known) - np.count_nonzero(known))

    def _decode_segment(self, ids: np.ndarray) -> str:
        table = self._id_to_text
        return "".join(table[i] if 0 <= i < len(table) else UNK_TEXT for i in ids.tolist())

    def _config(self, directory: epath.Path) -> dict[str, Any]:
        # Code points, not characters, so the JSON survives any editor or encoding.
        return {"code_points": [ord(c) for c in self.chars]}

    @classmethod
    def _from_config(cls, config: dict[str, Any], directory: epath.Path) -> CharTokenizer:
        return cls([chr(c) for c in config["code_points"]])


class SubwordTokenizer(Tokenizer):
    """sentencepiece BPE trained on the training split only.

    Choices, and why:
    - BPE rather than unigram: sentencepiece's BPE trainer gave the same vocabulary for 1, 2
      and 4 threads in our checks, while the unigram trainer's EM result changed with the
      thread count. We also pin `num_threads=1` (it is written into the model file, so the
      file is byte-identical across machines) and seed sentencepiece's global generator.
      Training reads every sentence (`input_sentence_size=0`), so no sampling is involved.
    - `byte_fallback=True`: a character outside the pieces becomes its UTF-8 byte pieces
      instead of unk, so encoding is lossless and bits per byte stay exact. Such characters
      are what `unknown_count` counts for this kind.
    - `normalization_rule_name='identity'`, `remove_extra_whitespaces=False` and
      `add_dummy_prefix=False`: the ids decode to exactly the input text, and `token_bytes`
      sums to its UTF-8 length (no invented leading space, no NFKC rewriting).
    - "\\n" is a user-defined piece so paragraph documents keep their line breaks as one id.
    - `character_coverage=0.9995` (sentencepiece's suggestion for large character sets):
      the rarest characters go to byte pieces instead of taking vocabulary slots.
    - pad=0, eos=1, unk=2 are set in the trainer, so no id remapping is needed.
    """

    kind = "subword"
    model_file: ClassVar[str] = "subword.model"
    # Documents are cut into training sentences of at most this many characters, at a line
    # break where possible, because sentencepiece silently drops longer sentences.
    max_sentence_chars: ClassVar[int] = 1 << 13

    def __init__(self, model_proto: bytes) -> None:
        super().__init__()
        import sentencepiece as spm

        self._model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._model_proto)
        if (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id()) != (PAD_ID, EOS_ID, UNK_ID):
            raise ValueError("sentencepiece model must use pad=0, eos=1, unk=2")
        n = self.vocab_size
        n_bytes = np.zeros(n, np.int32)
        n_chars = np.zeros(n, np.int32)
        self._is_lead_byte = np.zeros(n, bool)
        for i in range(NUM_SPECIAL, n):
            if self._sp.is_byte(i):
                value = int(self._sp.id_to_piece(i)[1:-1], 16)  # "<0xE4>"
                n_bytes[i] = 1
                n_chars[i] = (value & 0xC0) != 0x80
                self._is_lead_byte[i] = n_chars[i]
            elif not self._sp.is_control(i):
                text = self._sp.id_to_piece(i).replace("\u2581", " ")
                n_bytes[i] = len(text.encode("utf-8"))
                n_chars[i] = len(text)
        self.token_bytes = _readonly(_special_lengths(n_bytes))
        self.token_chars = _readonly(_special_lengths(n_chars))

    @classmethod
    def train(
        cls,
        train_docs: Iterable[str],
        vocab_size: int,
        workdir: str | os.PathLike | None = None,
        *,
        seed: int = 0,
    ) -> SubwordTokenizer:
        """Trains BPE on `train_docs` (in memory); saves into `workdir` when given."""
        import sentencepiece as spm

        if vocab_size <= NUM_SPECIAL + 256:
            raise ConfigError(
                "data.vocab_size",
                f"subword vocabulary needs more than {NUM_SPECIAL + 256} ids (3 special + 256 "
                f"byte pieces), got {vocab_size}",
            )
        spm.set_random_generator_seed(seed)
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=_training_sentences(train_docs, cls.max_sentence_chars),
                model_writer=model,
                model_type="bpe",
                vocab_size=vocab_size,
                pad_id=PAD_ID,
                eos_id=EOS_ID,
                unk_id=UNK_ID,
                bos_id=-1,
                byte_fallback=True,
                user_defined_symbols=["\n"],
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                character_coverage=0.9995,
                input_sentence_size=0,
                max_sentence_length=4 * cls.max_sentence_chars,
                num_threads=1,
                minloglevel=2,
            )
        except RuntimeError as e:
            # e.g. "Vocabulary size too high (2000). Please set it to a value <= 304."
            reason = str(e).rsplit("]", 1)[-1].strip()
            raise ConfigError("data.vocab_size", f"sentencepiece refused it: {reason}") from e
        tokenizer = cls(model.getvalue())
        if workdir is not None:
            tokenizer.save(workdir)
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def _encode(self, text: str) -> tuple[np.ndarray, int]:
        ids = np.asarray(self._sp.encode(text), np.int32)
        unknown = np.count_nonzero(self._is_lead_byte[ids]) + np.count_nonzero(ids == UNK_ID)
        return ids, int(unknown)

    def _decode_segment(self, ids: np.ndarray) -> str:
        return self._sp.decode([int(i) for i in ids])

    def _config(self, directory: epath.Path) -> dict[str, Any]:
        (directory / self.model_file).write_bytes(self._model_proto)
        sha256 = hashlib.sha256(self._model_proto).hexdigest()
        return {"model_file": self.model_file, "sha256": sha256}

    @classmethod
    def _from_config(cls, config: dict[str, Any], directory: epath.Path) -> SubwordTokenizer:
        proto = (directory / config["model_file"]).read_bytes()
        if hashlib.sha256(proto).hexdigest() != config.get("sha256", ""):
            raise ValueError(f"{directory}: {config['model_file']} does not match its sha256")
        return cls(proto)

    # The processor is a C++ object; pickle the model bytes so grain workers can rebuild it.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_sp"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import sentencepiece as spm

        self.__dict__.update(state)
        self._sp = spm.SentencePieceProcessor(model_proto=self._model_proto)


def _training_sentences(docs: Iterable[str], max_chars: int) -> Iterator[str]:
    for doc in docs:
        while len(doc) > max_chars:
            cut = doc.rfind("\n", 0, max_chars) + 1 or doc.rfind(" ", 0, max_chars) + 1
            cut = cut or max_chars
            yield doc[:cut]
            doc = doc[cut:]
        if doc:
            yield doc


_KINDS: dict[str, type[Tokenizer]] = {
    "byte": ByteTokenizer,
    "char": CharTokenizer,
    "subword": SubwordTokenizer,
}


def build_tokenizer(
    kind: str,
    train_docs: Sequence[str],
    vocab_size: int | None = None,
    workdir: str | os.PathLike | None = None,
) -> Tokenizer:
    """Builds the tokenizer a config's `data.unit` names, from training documents only.

    `vocab_size`: required for 'subword'; an upper bound for 'char' (None/0: every character);
    ignored for 'byte'. When `workdir` is given the tokenizer is saved there.
    """
    if kind == "byte":
        tokenizer: Tokenizer = ByteTokenizer()
    elif kind == "char":
        tokenizer = CharTokenizer.build(train_docs, max_size=vocab_size or None)
    elif kind == "subword":
        if not vocab_size:
            raise ConfigError("data.vocab_size", "must be set (> 259) for data.unit='subword'")
        tokenizer = SubwordTokenizer.train(train_docs, vocab_size)
    else:
        raise ConfigError("data.unit", f"unknown unit {kind!r}; allowed: {', '.join(UNIT_KINDS)}")
    if workdir is not None:
        tokenizer.save(workdir)
    return tokenizer


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Loads what `Tokenizer.save` wrote."""
    directory = as_path(directory)
    path = directory / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}")
    config = json.loads(path.read_text(encoding="utf-8"))
    kind = config.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; allowed: {UNIT_KINDS}")
    return _KINDS[kind]._from_config(config, directory)
