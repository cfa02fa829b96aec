"""Text classifier for the LAMA comparison: embeddings -> BiGRU -> attention pooling -> MLP.

    tokens [B, T] (0 = padding) -> embed [B, T, E] -> BiGRU states H [B, T, 2h]
      -> pooling (one of POOLINGS) -> head vectors [B, m, 2h] -> flatten -> MLP -> logits [B, C]

The BiGRU runs over each sequence's real length only (``seq_lengths``), so the backward
direction starts at the last real token, not at the padding, and a sequence's outputs do not
depend on how much padding follows it. Poolings (``lexlm.nn.lama``, ``lexlm.nn.pooling``):

* ``'lama'``: LAMA with a learned context vector; ``'lama_ctx'``: LAMA+CTX (masked mean);
* ``'additive'``: HAN's single-head additive attention;
* ``'structured'``: Lin et al.'s structured self-attention (train with its penalty,
  ``penalty`` times ||AA^T - I||_F^2, in ``lexlm.train.classifier_task``);
* ``'self_attention'``: standard multi-head self-attention, then a masked mean;
* ``'mean'``: the masked mean of the states (no attention: the control).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from lexlm.nn import lama as lama_lib
from lexlm.nn import pooling

POOLINGS = ("lama", "lama_ctx", "additive", "structured", "self_attention", "mean")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    vocab_size: int
    classes: int
    pooling: str = "lama"
    embed: int = 100
    hidden: int = 50  # GRU units per direction; the states are 2 * hidden wide
    heads: int = 8  # LAMA's m, structured's r, self-attention's heads
    attn_hidden: int = 64  # structured self-attention's d_a
    key_mlp: bool = True  # LAMA: u_t = tanh(W h_t + b) (else the states themselves)
    mlp_hidden: int = 128
    dropout: float = 0.2  # on the embeddings and the pooled vector, training only
    penalty: float = 0.0  # structured: coefficient of ||AA^T - I||_F^2

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"model.pooling: {self.pooling!r} is not one of {POOLINGS}")
        for name in ("vocab_size", "classes", "embed", "hidden", "heads", "mlp_hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        if self.classes < 2:
            raise ValueError(f"model.classes: need at least 2 classes, got {self.classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout: {self.dropout} is not in [0, 1)")
        if self.pooling == "self_attention" and (2 * self.hidden) % self.heads:
            raise ValueError(
                f"model.heads: the states' width {2 * self.hidden} is not divisible by {self.heads}"
            )

    @property
    def state_width(self) -> int:
        return 2 * self.hidden

    @property
    def pooled_heads(self) -> int:
        """Head vectors the pooling returns (flattened into the MLP's input)."""
        if self.pooling in ("lama", "lama_ctx", "structured"):
            return self.heads
        return 1

    def attention_param_count(self) -> int:
        d = self.state_width
        if self.pooling in ("lama", "lama_ctx"):
            context = "learned" if self.pooling == "lama" else "mean"
            return lama_lib.lama_param_count(d, self.heads, context, self.key_mlp)
        if self.pooling == "additive":
            return pooling.additive_param_count(d)
        if self.pooling == "structured":
            return pooling.structured_param_count(d, self.heads, self.attn_hidden)
        if self.pooling == "mean":
            return 0
        return pooling.self_attention_param_count(d)

    def param_count(self) -> int:
        e, h, d = self.embed, self.hidden, self.state_width
        gru = 2 * (3 * (e * h + h * h) + 4 * h)  # flax GRUCell: 3 input, 3 hidden kernels, 4 biases
        mlp_in = self.pooled_heads * d
        mlp = mlp_in * self.mlp_hidden + self.mlp_hidden + self.mlp_hidden * self.classes
        return self.vocab_size * e + gru + self.attention_param_count() + mlp + self.classes


class TextClassifier(nn.Module):
    """``(logits [B, C], attention [B, m, T]) = TextClassifier(cfg)(tokens, train=False)``."""

    cfg: ClassifierConfig

    def setup(self):
        c = self.cfg
        self.embed = nn.Embed(c.vocab_size, c.embed, embedding_init=nn.initializers.normal(0.1))
        self.bigru = nn.Bidirectional(
            nn.RNN(nn.GRUCell(c.hidden), name="forward"),
            nn.RNN(nn.GRUCell(c.hidden), name="backward"),
        )
        if c.pooling in ("lama", "lama_ctx"):
            context = "learned" if c.pooling == "lama" else "mean"
            self.pool = lama_lib.LAMA(c.heads, context, c.key_mlp)
        elif c.pooling == "additive":
            self.pool = pooling.AdditiveAttention()
        elif c.pooling == "structured":
            self.pool = pooling.StructuredSelfAttention(c.heads, c.attn_hidden)
        elif c.pooling == "mean":
            self.pool = pooling.MeanPooling()
        else:
            self.pool = pooling.SelfAttentionPooling(c.heads)
        self.mlp_hidden = nn.Dense(c.mlp_hidden)
        self.mlp_out = nn.Dense(c.classes)
        self.drop = nn.Dropout(c.dropout)

    def states(self, tokens: Int[ArrayLike, "B T"], train: bool = False) -> Float[Array, "B T S"]:
        tokens = jnp.asarray(tokens)
        lengths = jnp.sum(tokens != 0, axis=1)
        x = self.drop(self.embed(tokens), deterministic=not train)
        return self.bigru(x, seq_lengths=lengths)

    def __call__(
        self, tokens: Int[ArrayLike, "B T"], train: bool = False
    ) -> tuple[Float[Array, "B C"], Float[Array, "B M T"]]:
        tokens = jnp.asarray(tokens)
        mask = tokens != 0
        h = self.states(tokens, train)
        pooled, weights = self.pool(h, mask)
        x = self.drop(pooled.reshape(pooled.shape[0], -1), deterministic=not train)
        x = nn.relu(self.mlp_hidden(x))
        return self.mlp_out(x), weights
