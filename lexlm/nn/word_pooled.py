"""Word-pooled LM ("Learn Your Tokens", Thawani et al., 2023): encode each word's units into p
vectors, run a causal word-level LM over them, decode the next word's units in parallel.

Shapes: a window of words is ``units`` int32 [B, W, L] (unit ids from a byte or character
tokenizer, 0 = padding, ``lexlm.text.words``). With V the tokenizer's vocabulary:

* ids 0 .. V-1 are units (0 = pad, never attended to and never a target);
* ``eow_id = V`` is the end-of-word unit, a decoder target only;
* ``prefix_ids = V+1 .. V+p`` are the p learned prefix tokens, encoder inputs only. They lie
  outside the unit vocabulary by construction (the paper's code uses ids L..L+p-1, which
  collide with real characters).

Three stacks of pre-LayerNorm Transformer blocks (``CachedBlock``), width D:

1. ``encoder`` (bidirectional, per word): [p prefix tokens ; the word's L units] + in-word
   positions. Keys at padding are masked out (the paper's mask only blocks pad->pad), so a
   word's vectors do not depend on how much padding follows it. Its outputs at the p prefix
   slots are the word's representation, [B, W, p, D].
2. ``word_lm`` (causal over W*p positions, learned positions): the p slots of every word are
   positions of their own, so slot j of word w sees all slots of words < w and slots <= j of
   word w.
3. ``decoder`` (causal, per word, all words in parallel): the canvas [the LM's p outputs at
   word w ; the units of word w+1] + canvas positions. The output at canvas position p-1+i
   predicts unit i of word w+1 (i = 0..L), where unit len(word) is ``eow_id``: L+1 targets,
   the loss masked to the real units plus end-of-word (the paper averages over padding too).

Generation (``generate``) is word by word: the word LM keeps a key/value cache of its W*p
positions and appends the p slots of each new word; the decoder keeps a cache of its p+L
canvas positions and emits one unit per step. Nothing is re-run over the whole context per
unit (the paper's code re-runs everything per character). ``generate(..., cached=False)`` is
the re-forward reference the tests compare against.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from lexlm.nn.attention import NEG_INF
from lexlm.nn.blocks import CachedBlock
from lexlm.nn.blocks import logical_param as _param
from lexlm.nn.layers import DTYPES, layer_norm


@dataclasses.dataclass(frozen=True)
class WordPooledConfig:
    unit_vocab: int  # V: the unit tokenizer's vocabulary (ids 0..V-1, 0 = pad)
    max_units: int = 12  # L: units per word (longer words are split into pieces)
    max_words: int = 64  # W: words of context the word LM sees
    prefix: int = 4  # p: prefix tokens (and word-LM positions) per word
    width: int = 128
    enc_depth: int = 1
    enc_heads: int = 4
    lm_depth: int = 2
    lm_heads: int = 4
    dec_depth: int = 1
    dec_heads: int = 4
    mlp_ratio: int = 4
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("unit_vocab", "max_units", "max_words", "prefix", "width", "mlp_ratio"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        for stack in ("enc", "lm", "dec"):
            depth, heads = getattr(self, f"{stack}_depth"), getattr(self, f"{stack}_heads")
            if depth < 1 or heads < 1:
                raise ValueError(f"model.{stack}_depth/{stack}_heads: must be >= 1")
            if self.width % heads:
                raise ValueError(f"model.{stack}_heads: width {self.width} % {heads} != 0")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")

    @property
    def eow_id(self) -> int:
        return self.unit_vocab

    @property
    def out_vocab(self) -> int:
        return self.unit_vocab + 1

    @property
    def prefix_ids(self) -> tuple[int, ...]:
        return tuple(range(self.unit_vocab + 1, self.unit_vocab + 1 + self.prefix))

    @property
    def in_vocab(self) -> int:
        return self.unit_vocab + 1 + self.prefix

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    def param_count(self) -> int:
        d, f, p, L = self.width, self.width * self.mlp_ratio, self.prefix, self.max_units
        block = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
        enc = self.in_vocab * d + (p + L) * d + self.enc_depth * block + 2 * d
        lm = self.max_words * p * d + self.lm_depth * block + 2 * d
        dec = self.out_vocab * d + (p + L) * d + self.dec_depth * block + 2 * d + d * self.out_vocab
        return enc + lm + dec


def with_eow(units: Int[ArrayLike, "... L"], eow_id: int) -> Int[Array, "... L1"]:
    """Decoder targets: each word's units, then ``eow_id`` at its length, then 0 (padding)."""
    units = jnp.asarray(units)
    length = jnp.sum(units != 0, axis=-1, keepdims=True)
    padded = jnp.concatenate([units, jnp.zeros_like(units[..., :1])], axis=-1)
    slots = jnp.arange(padded.shape[-1])
    return jnp.where(slots == length, eow_id, padded)


def causal_mask(batch: int, t: int, s: int, offset: Int[ArrayLike, ""] = 0) -> Bool[Array, "B T S"]:
    """Query i (at absolute position offset + i) may see keys 0 .. offset + i."""
    allowed = jnp.arange(s)[None, :] <= jnp.arange(t)[:, None] + offset
    return jnp.broadcast_to(allowed[None], (batch, t, s))


class Stack(nn.Module):
    """``depth`` CachedBlocks and a final LayerNorm."""

    cfg: WordPooledConfig
    depth: int
    heads: int

    def setup(self):
        c = self.cfg
        self.blocks = [
            CachedBlock(
                c.width, self.heads, c.mlp_ratio, self.depth, c.compute_dtype, name=f"block_{i}"
            )
            for i in range(self.depth)
        ]
        self.ln_final = layer_norm("ln_final", c.compute_dtype)

    def __call__(self, x, allowed, caches=None, index=0):
        new = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, allowed, None if caches is None else caches[i], index)
            new.append(c)
        return self.ln_final(x), (None if caches is None else new)


class WordPooledLM(nn.Module):
    """Encoder -> word LM -> decoder. ``nll`` is the training loss; see the module docstring."""

    cfg: WordPooledConfig

    def setup(self):
        c = self.cfg
        d, p, L = c.width, c.prefix, c.max_units
        self.enc_embed = _param(self, "enc_embed", (c.in_vocab, d), 0.02, ("vocab", "embed"))
        self.enc_pos = _param(self, "enc_positions", (p + L, d), 0.02, (None, "embed"))
        self.lm_pos = _param(self, "lm_positions", (c.max_words * p, d), 0.02, (None, "embed"))
        self.dec_embed = _param(self, "dec_embed", (c.out_vocab, d), 0.02, ("vocab", "embed"))
        self.dec_pos = _param(self, "dec_positions", (p + L, d), 0.02, (None, "embed"))
        self.head = _param(self, "head", (d, c.out_vocab), 0.02, ("embed", "vocab"))
        self.encoder = Stack(c, c.enc_depth, c.enc_heads)
        self.word_lm = Stack(c, c.lm_depth, c.lm_heads)
        self.decoder = Stack(c, c.dec_depth, c.dec_heads)

    # -- the three stages -------------------------------------------------------------------
    def encode(self, units: Int[ArrayLike, "N L"]) -> Float[Array, "N P D"]:
        """Each word's p prefix outputs (bidirectional encoder, padding keys masked)."""
        c, dt = self.cfg, self.cfg.compute_dtype
        units = jnp.asarray(units)
        n = units.shape[0]
        prefix = jnp.broadcast_to(jnp.asarray(c.prefix_ids, jnp.int32), (n, c.prefix))
        tokens = jnp.concatenate([prefix, units], axis=1)
        valid = jnp.concatenate([jnp.ones((n, c.prefix), bool), units != 0], axis=1)
        x = jnp.take(self.enc_embed, tokens, axis=0).astype(dt) + self.enc_pos.astype(dt)[None]
        allowed = jnp.broadcast_to(valid[:, None, :], (n, tokens.shape[1], tokens.shape[1]))
        x, _ = self.encoder(x, allowed)
        return x[:, : c.prefix]

    def contextualise(self, pooled: Float[Array, "B W P D"], caches=None, index=0):
        """Word-LM outputs [B, W, p, D] for W words placed at word position ``index // p``."""
        c, dt = self.cfg, self.cfg.compute_dtype
        b, w = pooled.shape[:2]
        x = pooled.reshape(b, w * c.prefix, c.width)
        pos = jax.lax.dynamic_slice_in_dim(self.lm_pos, index, w * c.prefix, axis=0)
        x = x + pos.astype(dt)[None]
        s = w * c.prefix if caches is None else caches[0][0].shape[1]
        x, caches = self.word_lm(x, causal_mask(b, w * c.prefix, s, index), caches, index)
        return x.reshape(b, w, c.prefix, c.width), caches

    def decode_logits(
        self, states: Float[Array, "N P D"], units: Int[ArrayLike, "N L"]
    ) -> Float[Array, "N L1 V1"]:
        """Teacher-forced logits for units 0..L of the next word (unit L = end-of-word slot)."""
        c, dt = self.cfg, self.cfg.compute_dtype
        n = states.shape[0]
        emb = jnp.take(self.dec_embed, jnp.asarray(units), axis=0).astype(dt)
        x = jnp.concatenate([states.astype(dt), emb], axis=1) + self.dec_pos.astype(dt)[None]
        t = x.shape[1]
        x, _ = self.decoder(x, causal_mask(n, t, t))
        return self._head(x[:, c.prefix - 1 :])

    def _head(self, x):
        return jnp.einsum("...d,dv->...v", x, self.head.astype(x.dtype)).astype(jnp.float32)

    # -- training / evaluation -----------------------------------------------------------------
    def __call__(self, units: Int[ArrayLike, "B W1 L"]) -> Float[Array, "B W L1 V1"]:
        """Logits for words 1..W of a window of W+1 words, each given the words before it."""
        units = jnp.asarray(units)
        b, w1, length = units.shape
        w = w1 - 1
        if w > self.cfg.max_words:
            raise ValueError(f"model.max_words: window of {w} words > {self.cfg.max_words}")
        pooled = self.encode(units[:, :w].reshape(b * w, length)).reshape(b, w, self.cfg.prefix, -1)
        states, _ = self.contextualise(pooled)
        logits = self.decode_logits(
            states.reshape(b * w, self.cfg.prefix, -1), units[:, 1:].reshape(b * w, length)
        )
        return logits.reshape(b, w, length + 1, -1)

    def nll(
        self, units: Int[ArrayLike, "B W1 L"]
    ) -> tuple[Float[Array, "B W L1"], Int[Array, "B W L1"]]:
        """Per-unit NLL (nats) of words 1..W and the targets (0 where masked)."""
        logits = self(units)
        targets = with_eow(jnp.asarray(units)[:, 1:], self.cfg.eow_id)
        logp = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        return jnp.where(targets != 0, nll, 0.0), targets

    # -- generation -------------------------------------------------------------------------
    def init_caches(self, stack: str, batch: int, length: int):
        c = self.cfg
        depth, heads = {"lm": (c.lm_depth, c.lm_heads), "dec": (c.dec_depth, c.dec_heads)}[stack]
        shape = (batch, length, heads, c.width // heads)
        zeros = jnp.zeros(shape, c.compute_dtype)
        return [(zeros, zeros) for _ in range(depth)]

    def decode_step(self, x_in: Float[Array, "N T D"], caches, index):
        """Decoder over canvas positions index .. index+T-1 with its cache; last logits."""
        dt = self.cfg.compute_dtype
        n, t = x_in.shape[:2]
        pos = jax.lax.dynamic_slice_in_dim(self.dec_pos, index, t, axis=0)
        x = x_in.astype(dt) + pos.astype(dt)[None]
        s = caches[0][0].shape[1]
        x, caches = self.decoder(x, causal_mask(n, t, s, index), caches, index)
        return self._head(x[:, -1]), caches

    def embed_units(self, units: Int[ArrayLike, "N T"]) -> Float[Array, "N T D"]:
        return jnp.take(self.dec_embed, jnp.asarray(units), axis=0)


@functools.lru_cache(maxsize=64)
def _jitted_apply(cfg: WordPooledConfig, method: str):
    """``WordPooledLM(cfg).apply`` for one method, jitted; the re-forward reference path calls
    the same few shapes many times."""
    model = WordPooledLM(cfg)
    return jax.jit(lambda params, *args: model.apply({"params": params}, *args, method=method))


def _choose(logits, key, temperature: float):
    logits = logits.at[:, 0].set(NEG_INF)  # pad is never a unit
    if temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


def decode_word(
    model: WordPooledLM,
    params,
    states: Float[Array, "N P D"],
    key: jax.Array,
    temperature: float = 0.0,
    cached: bool = True,
) -> Int[Array, "N L"]:
    """Units of the next word for each of N rows (greedy at temperature 0, else sampled),
    0-padded after end-of-word. A word that reaches L units ends there (its end-of-word slot
    is not sampled). ``cached=False`` re-runs the decoder over the canvas per unit."""
    c = model.cfg
    n, p, L = states.shape[0], c.prefix, c.max_units
    keys = jax.random.split(key, L)

    def apply(*args, method):
        return model.apply({"params": params}, *args, method=method)

    def emit(i, units, done, logits):
        unit = _choose(logits, keys[i], temperature)
        done = done | (unit == c.eow_id)
        col = jnp.where(done, 0, unit)[:, None]
        return jax.lax.dynamic_update_slice_in_dim(units, col, i, axis=1), done

    units = jnp.zeros((n, L), jnp.int32)
    done = jnp.zeros((n,), bool)
    if not cached:
        decode_logits = _jitted_apply(c, "decode_logits")
        for i in range(L):
            logits = decode_logits(params, states, units)[:, i]
            units, done = emit(i, units, done, logits)
        return units

    caches = apply("dec", n, p + L, method="init_caches")
    logits, caches = apply(states, caches, 0, method="decode_step")

    def body(i, carry):
        units, done, logits, caches = carry
        units, done = emit(i, units, done, logits)
        emb = apply(jax.lax.dynamic_slice_in_dim(units, i, 1, axis=1), method="embed_units")
        logits, caches = apply(emb, caches, p + i, method="decode_step")
        return units, done, logits, caches

    units, done, logits, caches = jax.lax.fori_loop(0, L - 1, body, (units, done, logits, caches))
    units, _ = emit(L - 1, units, done, logits)
    return units


def generate(
    model: WordPooledLM,
    params,
    context: Int[ArrayLike, "B N L"],
    n_words: int,
    key: jax.Array,
    temperature: float = 0.0,
    cached: bool = True,
) -> Int[Array, "B G L"]:
    """``n_words`` new words after ``context`` (N real words per row, N >= 1), word by word.

    The word LM's cache holds N + n_words words, which must fit ``max_words``. With
    ``cached=False`` every new word re-runs the word LM over the whole context and the decoder
    over the canvas per unit (the reference the tests compare with). Jit it with
    ``n_words``, ``temperature`` and ``cached`` static (``generate_fn``)."""
    c = model.cfg
    context = jnp.asarray(context)
    b, n, _ = context.shape
    if n < 1 or n + n_words > c.max_words:
        raise ValueError(
            f"generate: context of {n} words + {n_words} new must be in 1..model.max_words"
            f" = {c.max_words}"
        )

    def apply(*args, method):
        return model.apply({"params": params}, *args, method=method)

    def encode(words):  # [B, K, L] -> [B, K, p, D]
        k = words.shape[1]
        return apply(words.reshape(b * k, -1), method="encode").reshape(b, k, c.prefix, -1)

    if not cached:
        words, new = context, []
        enc, ctx = _jitted_apply(c, "encode"), _jitted_apply(c, "contextualise")
        for g in range(n_words):
            k = words.shape[1]
            pooled = enc(params, words.reshape(b * k, -1)).reshape(b, k, c.prefix, -1)
            states, _ = ctx(params, pooled)
            word = decode_word(
                model, params, states[:, -1], jax.random.fold_in(key, g), temperature, False
            )
            new.append(word)
            words = jnp.concatenate([words, word[:, None]], axis=1)
        return jnp.stack(new, axis=1)

    caches = apply("lm", b, c.max_words * c.prefix, method="init_caches")
    states, caches = apply(encode(context), caches, 0, method="contextualise")

    def step(carry, g):
        last, caches = carry
        word = decode_word(model, params, last, jax.random.fold_in(key, g), temperature, True)
        out, caches = apply(
            encode(word[:, None]), caches, (n + g) * c.prefix, method="contextualise"
        )
        return (out[:, -1], caches), word

    _, words = jax.lax.scan(step, (states[:, -1], caches), jnp.arange(n_words))
    return jnp.swapaxes(words, 0, 1)


def generate_fn(model: WordPooledLM, n_words: int, temperature: float = 0.0, cached: bool = True):
    """A jitted ``(params, context, key) -> new words`` for one generation setting."""
    return jax.jit(
        lambda params, context, key: generate(
            model, params, context, n_words, key, temperature, cached
        )
    )
