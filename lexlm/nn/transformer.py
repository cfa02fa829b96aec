"""Decoder-only pre-LayerNorm Transformer LM with pluggable token embeddings.

The token embedding is tied to the output layer in all three modes, so the only difference
between them is where the [V, D] table comes from:

* ``'learned'``: one learned table E (the standard LM);
* ``'lexinvariant'``: a fresh Gaussian table per sequence (``lexlm.nn.lexinvariant``);
* ``'semi'``: E with a random [B, V] subset of rows replaced by random ones (probability p).

Escaping the readout trap (random rows). At initialisation the residual stream at t is
essentially the current token's own row g (norm 1; learned positions add ~0.23), and the final
LayerNorm scales it to norm sqrt(D), so the tied readout h . g_v scores the current token
about sqrt(D) above every other type: the model starts out predicting "next = current" with
p ~ 0.99, and a standard-init lexinvariant LM first spends its steps shrinking the final
LayerNorm towards a uniform output where gradients are small. ``logit_scale='learned'`` (the
default for ``'lexinvariant'`` and ``'semi'`` through ``'auto'``) multiplies the final hidden
state by a learned scalar initialised at 1/sqrt(D), so training starts from a near-uniform
prediction at ln V. The other options here (``final_ln_bias``, ``positions='rope'``,
``position_std``, ``qkv_std``, ``smear_keys``, and ``train.no_decay``) are each
type-agnostic, so every one keeps the LM lexinvariant.

The copy readout (``copy_readout=True``, ``lexlm.nn.copy_readout``). Even with the scale, a
readout through random rows can only superpose the context's rows, which at small widths
costs more crosstalk than an in-context count model pays in total. The copy readout mixes the
vocabulary softmax with a gated pointer over earlier positions whose score includes an
induction match [x_t = x_{j-1}]; it names positions, not types, so it has no crosstalk and
stays type-agnostic.

Every parameter carries logical axis names (``embed``, ``mlp``, ``heads``, ``kv``, ``vocab``)
that ``lexlm.train.sharding`` maps onto the mesh.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key

from lexlm.nn import copy_readout as copy_lib
from lexlm.nn import lexinvariant as lexinv
from lexlm.nn import low_rank_attention as lowrank
from lexlm.nn.attention import (
    banded_weighted_values,
    causal_allowed,
    dot_product_attention,
    weighted_values,
)
from lexlm.nn.layers import DTYPES, Projection, layer_norm

EMBEDDINGS = ("learned", "lexinvariant", "semi")
POSITIONS = ("learned", "rope")
LOGIT_SCALES = ("auto", "none", "learned")
ATTENTION_KINDS = ("standard", "low_rank")


@dataclasses.dataclass(frozen=True)
class LMConfig:
    vocab_size: int
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 4
    max_len: int = 256
    dtype: str = "float32"  # compute dtype; parameters stay float32
    attention: str = "xla"  # 'xla' | 'cudnn' | 'auto' (the kernel of standard attention)
    # 'standard' multi-head attention | 'low_rank': queries/keys from rank-qk_rank factors
    # shared by all heads (lexlm.nn.low_rank_attention), always on the xla path
    attention_kind: str = "standard"
    # > 0: sliding-window causal attention over the last `window` positions (SpaceByte's
    # "byte Transformer, window attention" baseline); 0: full causal attention
    window: int = 0
    qk_rank: int = 0  # low_rank: the shared rank r (0 = width // heads)
    embedding: str = "learned"  # 'learned' | 'lexinvariant' | 'semi'
    semi_p: float = 0.0
    vocab_chunk: int = 8192  # output-layer vocabulary chunk (see lexinvariant.chunked_tied_nll)
    remat: bool = False
    # Readout and position options (see the module docstring, "Escaping the readout trap").
    # 'auto' (learned for lexinvariant and semi, none for learned) | 'none' | 'learned': a
    # learned scalar on the final hidden state, initialised at 1/sqrt(D)
    logit_scale: str = "auto"
    final_ln_bias: bool = True
    positions: str = "learned"  # 'learned' table added to the input | 'rope' on queries/keys
    position_std: float = 0.02  # init std of the learned position table
    qkv_std: float = 0.02  # init std of the query/key/value projection
    smear_keys: bool = False  # k_t <- (1 - a_h) k_t + a_h k_{t-1}, a learned gate per head
    # mix the vocabulary softmax with a gated pointer over the context (lexlm.nn.copy_readout)
    copy_readout: bool = False

    def __post_init__(self):
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"model.embedding: {self.embedding!r} is not one of {EMBEDDINGS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype: {self.dtype!r} is not one of {tuple(DTYPES)}")
        if self.width % self.heads:
            raise ValueError(f"model.heads: width {self.width} is not divisible by {self.heads}")
        if not 0.0 <= self.semi_p <= 1.0:
            raise ValueError(f"model.semi_p: {self.semi_p} is not a probability")
        if self.positions not in POSITIONS:
            raise ValueError(f"model.positions: {self.positions!r} is not one of {POSITIONS}")
        if self.logit_scale not in LOGIT_SCALES:
            raise ValueError(
                f"model.logit_scale: {self.logit_scale!r} is not one of {LOGIT_SCALES}"
            )
        if self.positions == "rope" and (self.width // self.heads) % 2:
            head = self.width // self.heads
            raise ValueError(f"model.positions: 'rope' needs an even head width, got {head}")
        if self.attention_kind not in ATTENTION_KINDS:
            raise ValueError(
                f"model.attention_kind: {self.attention_kind!r} is not one of {ATTENTION_KINDS}"
            )
        if self.attention_kind == "low_rank":
            if not 0 < self.rank <= self.width:
                raise ValueError(
                    f"model.qk_rank: must be in 1..width={self.width}, got {self.rank}"
                )
            if self.smear_keys:
                raise ValueError("model.smear_keys: not available with attention_kind='low_rank'")
            if self.positions == "rope" and self.rank % 2:
                raise ValueError(f"model.positions: 'rope' needs an even qk_rank, got {self.rank}")
        if self.window < 0:
            raise ValueError(f"model.window: must be >= 0, got {self.window}")
        if self.position_std < 0:
            raise ValueError(f"model.position_std: must be >= 0, got {self.position_std}")

    @property
    def learned_logit_scale(self) -> bool:
        if self.logit_scale == "auto":
            return self.embedding != "learned"
        return self.logit_scale == "learned"

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def rank(self) -> int:
        """The low-rank attention's shared rank r (qk_rank, or width // heads when 0)."""
        return self.qk_rank or self.width // self.heads

    def attention_param_count(self) -> int:
        """Parameters of one block's attention (projections and biases)."""
        d = self.width
        if self.attention_kind == "low_rank":
            scores = lowrank.low_rank_score_params(d, self.heads, self.rank)
        else:
            scores = lowrank.standard_score_params(d)
        return scores + lowrank.value_output_params(d)

    def param_count(self) -> int:
        d, f = self.width, self.width * self.mlp_ratio
        per_block = self.attention_param_count() + 2 * d * f + f + d + 2 * 2 * d  # mlp, LNs
        table = self.vocab_size * d if self.embedding != "lexinvariant" else 0
        positions = self.max_len * d if self.positions == "learned" else 0
        final_ln = 2 * d if self.final_ln_bias else d
        # query, key, previous-position key (head width k), gate, recency, induction match
        k = d // self.heads
        copy = 3 * (d * k + k) + d + 1 + 2 if self.copy_readout else 0
        return (
            table + positions + self.depth * per_block + final_ln + self.learned_logit_scale + copy
        )


def rotary(x: Float[Array, "B T H K"], positions: Int[Array, " T"]) -> Float[Array, "B T H K"]:
    """Rotary position embedding (Su et al., 2021) on the last axis, pairs (i, i + K/2).

    Attention scores between rotated queries and keys depend on positions only through their
    difference, so a "look at the previous token" head is one fixed rotation, whatever t is.
    """
    half = x.shape[-1] // 2
    freqs = 10_000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[:, None] * freqs[None, :]  # [T, K/2]
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def smear_keys(k: Float[Array, "B T H K"], gate: Float[Array, " H"]) -> Float[Array, "B T H K"]:
    """Smeared keys (Olsson et al., 2022, "In-context Learning and Induction Heads", section
    on architectural variants): each key mixes in its predecessor's, k_t <- (1 - a) k_t +
    a k_{t-1} with a per-head gate a in (0, 1) (k_0 mixes with zeros).

    A query matching the key at s then also matches token s - 1, so one layer can implement
    an induction head ("find where the current token occurred before, copy what followed")
    that otherwise needs a previous-token head in an earlier layer. It is type-agnostic, so a
    lexinvariant LM stays lexinvariant.
    """
    prev = jnp.pad(k, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    a = gate[None, None, :, None]
    return (1 - a) * k + a * prev


class Block(nn.Module):
    cfg: LMConfig

    def _standard_attention(self, y: Float[Array, "B T D"]) -> Float[Array, "B T H K"]:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        h, k, d = cfg.heads, cfg.width // cfg.heads, cfg.width
        qkv = Projection(
            (d,), (3, h, k), ("embed", "qkv", "heads", "kv"), cfg.qkv_std, dt, name="qkv"
        )(y)
        q, kk, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if cfg.smear_keys:
            gate = self.param(
                "smear", nn.with_logical_partitioning(nn.initializers.zeros, ("heads",)), (h,)
            )
            kk = smear_keys(kk, jax.nn.sigmoid(gate).astype(kk.dtype))
        if cfg.positions == "rope":
            pos = jnp.arange(y.shape[1])
            q, kk = rotary(q, pos), rotary(kk, pos)
        # Kept only when a caller asks for intermediates (attention-pattern analysis).
        self.sow("intermediates", "queries_keys", (q, kk))
        return dot_product_attention(q, kk, v, causal=True, impl=cfg.attention, window=cfg.window)

    def _low_rank_attention(self, y: Float[Array, "B T D"]) -> Float[Array, "B T H K"]:
        """Queries and keys from shared rank-r factors (``lexlm.nn.low_rank_attention``)."""
        cfg, dt = self.cfg, self.cfg.compute_dtype
        h, k, d, r = cfg.heads, cfg.width // cfg.heads, cfg.width, cfg.rank
        a = Projection((d,), (r,), ("embed", "kv"), cfg.qkv_std, dt, name="q_factor")(y)
        b = Projection((d,), (r,), ("embed", "kv"), cfg.qkv_std, dt, name="k_factor")(y)
        v = Projection((d,), (h, k), ("embed", "heads", "kv"), cfg.qkv_std, dt, name="v")(y)
        gains = self.param(
            "gains",
            nn.with_logical_partitioning(
                lambda key, shape, dtype: (1.0 + jax.random.normal(key, shape, dtype)) / r**0.5,
                ("heads", "kv"),
            ),
            (h, r),
            jnp.float32,
        )
        if cfg.positions == "rope":
            pos = jnp.arange(y.shape[1])
            a, b = rotary(a[:, :, None], pos)[:, :, 0], rotary(b[:, :, None], pos)[:, :, 0]
        q = a[:, :, None, :] * gains.astype(dt)
        self.sow("intermediates", "queries_keys", (q, jnp.broadcast_to(b[:, :, None], q.shape)))
        t = y.shape[1]
        if 0 < cfg.window < t:  # only the band of scores is computed
            return banded_weighted_values(
                lambda qa, kb: lowrank.low_rank_scores(qa, kb, gains), a, b, v, cfg.window
            )
        scores = lowrank.low_rank_scores(a, b, gains)
        return weighted_values(scores, v, causal_allowed(t, t, cfg.window))

    @nn.compact
    def __call__(self, x: Float[Array, "B T D"]) -> Float[Array, "B T D"]:
        cfg, dt = self.cfg, self.cfg.compute_dtype
        h, k, d = cfg.heads, cfg.width // cfg.heads, cfg.width
        out_std = 0.02 / math.sqrt(2 * cfg.depth)
        y = layer_norm("ln_attn", dt)(x)
        if cfg.attention_kind == "low_rank":
            y = self._low_rank_attention(y)
        else:
            y = self._standard_attention(y)
        y = Projection((h, k), (d,), ("heads", "kv", "embed"), out_std, dt, name="attn_out")(y)
        x = x + y
        y = layer_norm("ln_mlp", dt)(x)
        f = d * cfg.mlp_ratio
        y = Projection((d,), (f,), ("embed", "mlp"), 0.02, dt, name="mlp_in")(y)
        y = nn.gelu(y)
        y = Projection((f,), (d,), ("mlp", "embed"), out_std, dt, name="mlp_out")(y)
        x = x + y
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class TransformerLM(nn.Module):
    """Causal LM. ``__call__`` returns final hidden states; ``nll`` the per-token loss.

    Lexinvariant and semi modes need ``seq_keys`` (one typed key per sequence); a caller may
    instead pass an explicit per-sequence ``table`` [B, V, D] of random rows (tests, probes).
    Semi mode takes ``semi_mask`` [B, V]; without one it uses the learned table only.
    """

    cfg: LMConfig

    def setup(self):
        cfg = self.cfg
        if cfg.embedding != "lexinvariant":
            self.table = self.param(
                "embedding",
                nn.with_logical_partitioning(
                    nn.initializers.normal(1.0 / math.sqrt(cfg.width)), ("vocab", "embed")
                ),
                (cfg.vocab_size, cfg.width),
                jnp.float32,
            )
        if cfg.positions == "learned":
            self.positions = self.param(
                "positions",
                nn.with_logical_partitioning(
                    nn.initializers.normal(cfg.position_std), (None, "embed")
                ),
                (cfg.max_len, cfg.width),
                jnp.float32,
            )
        block = nn.remat(Block) if cfg.remat else Block
        self.blocks = [block(cfg, name=f"block_{i}") for i in range(cfg.depth)]
        self.ln_final = layer_norm("ln_final", cfg.compute_dtype, cfg.final_ln_bias)
        if cfg.learned_logit_scale:
            self.logit_scale = self.param(
                "logit_scale",
                nn.with_logical_partitioning(
                    nn.initializers.constant(1.0 / math.sqrt(cfg.width)), ()
                ),
                (),
                jnp.float32,
            )
        if cfg.copy_readout:
            # one pointer head of the attention's head width: ~3 D^2 / H extra MACs per token
            d, dt, k = cfg.width, cfg.compute_dtype, cfg.width // cfg.heads
            self.copy_query = Projection((d,), (k,), ("embed", "kv"), 0.02, dt, name="copy_query")
            self.copy_key = Projection((d,), (k,), ("embed", "kv"), 0.02, dt, name="copy_key")
            self.copy_key_prev = Projection(
                (d,), (k,), ("embed", "kv"), 0.02, dt, name="copy_key_prev"
            )
            self.copy_gate = Projection((d,), (), ("embed",), 0.02, dt, name="copy_gate")
            self.copy_recency = self.param(
                "copy_recency",
                nn.with_logical_partitioning(nn.initializers.zeros, ()),
                (),
                jnp.float32,
            )
            # weight of the induction match, in units of sqrt(D) so that Adam moves it fast
            self.copy_match = self.param(
                "copy_match",
                nn.with_logical_partitioning(nn.initializers.zeros, ()),
                (),
                jnp.float32,
            )

    def _rows_fn(self, seq_keys, table, semi_mask):
        """Returns rows_fn(ids) giving output/input rows for the embedding mode."""
        cfg, dt = self.cfg, self.cfg.compute_dtype
        if cfg.embedding == "lexinvariant":
            if table is not None:
                return lambda ids: jnp.take(table, ids, axis=1).astype(dt)
            if seq_keys is None:
                raise ValueError("lexinvariant embedding needs seq_keys (or an explicit table)")
            return lambda ids: lexinv.random_rows(seq_keys, ids, cfg.width, dt)
        if cfg.embedding == "semi" and semi_mask is not None:
            if seq_keys is None:
                raise ValueError("semi-lexinvariant embedding with a mask needs seq_keys")
            return lambda ids: lexinv.mixed_rows(self.table, seq_keys, semi_mask, ids, dt)
        return lambda ids: jnp.take(self.table, ids, axis=0).astype(dt)

    def _normed(
        self,
        tokens: Int[ArrayLike, "B T"],
        seq_keys: Key[Array, " B"] | None,
        table: Float[ArrayLike, "B V D"] | None,
        semi_mask: Bool[ArrayLike, "B V"] | None,
    ) -> Float[Array, "B T D"]:
        """Final-LayerNorm output, before the logit scale."""
        cfg = self.cfg
        if tokens.shape[1] > cfg.max_len:
            raise ValueError(
                f"model.max_len: sequence of {tokens.shape[1]} tokens exceeds {cfg.max_len}"
            )
        rows_fn = self._rows_fn(seq_keys, table, semi_mask)
        if cfg.embedding == "learned" or (cfg.embedding == "semi" and semi_mask is None):
            x = jnp.take(self.table, tokens, axis=0).astype(cfg.compute_dtype)
        elif cfg.embedding == "lexinvariant" and table is not None:
            x = jnp.take_along_axis(table, tokens[..., None], axis=1).astype(cfg.compute_dtype)
        else:
            x = rows_fn(tokens)
        if cfg.positions == "learned":
            x = x + self.positions[None, : tokens.shape[1]].astype(cfg.compute_dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x)

    def _scaled(self, z: Float[Array, "B T D"]) -> Float[Array, "B T D"]:
        if self.cfg.learned_logit_scale:
            return z * self.logit_scale.astype(z.dtype)
        return z

    def _copy_terms(
        self, z: Float[Array, "B T D"], tokens: Int[ArrayLike, "B T"]
    ) -> tuple[Float[Array, "B T T"], Float[Array, "B T"]]:
        """Pointer attention over the context and the gate logit (copy readout only)."""
        keys = self.copy_key(z) + self.copy_key_prev(copy_lib.shift_right(z))
        match = copy_lib.induction_match(tokens)
        attn = copy_lib.causal_attention(
            self.copy_query(z),
            keys,
            jax.nn.softplus(self.copy_recency),
            match * (self.copy_match * math.sqrt(self.cfg.width)),
        )
        return attn, self.copy_gate(z)

    def __call__(
        self,
        tokens: Int[ArrayLike, "B T"],
        *,
        seq_keys: Key[Array, " B"] | None = None,
        table: Float[ArrayLike, "B V D"] | None = None,
        semi_mask: Bool[ArrayLike, "B V"] | None = None,
    ) -> Float[Array, "B T D"]:
        """Final hidden states (after the logit scale), the vocabulary readout's input."""
        z = self._normed(tokens, seq_keys, table, semi_mask)
        if self.cfg.copy_readout and self.is_initializing():
            self._copy_terms(z, tokens)  # creates the copy readout's parameters under ``init``
        return self._scaled(z)

    def nll(
        self,
        tokens: Int[ArrayLike, "B T"],
        targets: Int[ArrayLike, "B T"],
        *,
        seq_keys: Key[Array, " B"] | None = None,
        table: Float[ArrayLike, "B V D"] | None = None,
        semi_mask: Bool[ArrayLike, "B V"] | None = None,
    ) -> Float[Array, "B T"]:
        """Per-token negative log-likelihood (nats) of ``targets`` given ``tokens``."""
        z = self._normed(tokens, seq_keys, table, semi_mask)
        rows_fn = self._rows_fn(seq_keys, table, semi_mask)
        nll = lexinv.chunked_tied_nll(
            self._scaled(z), targets, rows_fn, self.cfg.vocab_size, self.cfg.vocab_chunk
        )
        if not self.cfg.copy_readout:
            return nll
        attn, gate = self._copy_terms(z, tokens)
        return copy_lib.mixed_nll(nll, attn, gate, jnp.asarray(tokens), jnp.asarray(targets))

    def logits(self, tokens, *, seq_keys=None, table=None, semi_mask=None):
        """Full [B, T, V] logits (small vocabularies only); log-probabilities with the copy
        readout (so softmax and cross-entropy on them are unchanged)."""
        z = self._normed(tokens, seq_keys, table, semi_mask)
        rows = self._rows_fn(seq_keys, table, semi_mask)(jnp.arange(self.cfg.vocab_size))
        logits = lexinv.tied_logits(self._scaled(z), rows)
        if not self.cfg.copy_readout:
            return logits
        attn, gate = self._copy_terms(z, tokens)
        return copy_lib.mixed_log_probs(logits, attn, gate, jnp.asarray(tokens))
