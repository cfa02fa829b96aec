"""The language-model task: next-token loss of a ``TransformerLM`` for the trainer.

Batches are ``{'inputs': int32[B, T], 'targets': int32[B, T], 'mask': float32[B, T]}``. For the
lexinvariant and semi-lexinvariant embeddings every step draws fresh per-sequence keys (and the
semi mask) from the step key, so each training sequence sees a new random table.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lexlm.nn import lexinvariant as lexinv
from lexlm.nn.megabyte import MegaByteConfig
from lexlm.nn.spacebyte import SpaceByteConfig
from lexlm.nn.transformer import LMConfig, TransformerLM
from lexlm.train.loop import Task


def embedding_inputs(cfg: AnyLMConfig, key: jax.Array, batch_size: int, train: bool = True) -> dict:
    """Per-sequence randomness the model needs: seq_keys, and the semi mask when training."""
    if cfg.embedding == "learned":
        return {}
    seq_key, mask_key = jax.random.split(key)
    out = {"seq_keys": lexinv.sequence_keys(seq_key, batch_size)}
    if cfg.embedding == "semi" and train and cfg.semi_p > 0:
        out["semi_mask"] = lexinv.semi_lexinvariant_mask(
            mask_key, batch_size, cfg.vocab_size, cfg.semi_p
        )
    return out


# LMConfig fields that change how a model computes or initialises, not the shape of its state:
# a run may resume with other values of these (say, cudnn attention on a GPU).
RUNTIME_FIELDS = (
    "dtype",
    "attention",
    "vocab_chunk",
    "remat",
    "semi_p",
    "position_std",
    "qkv_std",
    "window",
)


def lm_identity(cfg: AnyLMConfig) -> dict:
    """The config fields that shape an LM's train state, under their config names."""
    names = {"vocab_size": "vocab_size", "max_len": "seq_len"}
    return {
        names.get(f.name, f"model.{f.name}"): getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name not in RUNTIME_FIELDS
    }


AnyLMConfig = LMConfig | MegaByteConfig | SpaceByteConfig


def lm_model(cfg: AnyLMConfig):
    """The LM module of a config: ``LMConfig`` -> ``TransformerLM``, ``MegaByteConfig`` ->
    ``MegaByteLM``, ``SpaceByteConfig`` -> ``SpaceByteLM`` (every one has ``nll`` and
    ``logits``, so the task, the evaluation and the next-word decoding serve all three)."""
    from lexlm.nn.megabyte import MegaByteLM
    from lexlm.nn.spacebyte import SpaceByteLM

    if isinstance(cfg, MegaByteConfig):
        return MegaByteLM(cfg)
    if isinstance(cfg, SpaceByteConfig):
        return SpaceByteLM(cfg)
    return TransformerLM(cfg)


def lm_nll(model, params, batch: dict, key: jax.Array, train: bool = True):
    """Per-token NLL [B, T] (nats) for a batch."""
    extra = embedding_inputs(model.cfg, key, batch["inputs"].shape[0], train)
    return model.apply({"params": params}, batch["inputs"], batch["targets"], method="nll", **extra)


def make_lm_task(cfg: AnyLMConfig, seq_len: int, name: str = "lm") -> Task:
    model = lm_model(cfg)

    def init(key):
        tokens = jnp.zeros((1, seq_len), jnp.int32)
        extra = embedding_inputs(cfg, key, 1, train=False)
        return model.init(key, tokens, **extra)["params"]

    def loss(params, batch, key):
        nll = lm_nll(model, params, batch, key, train=True)
        mask = batch["mask"].astype(jnp.float32)
        tokens = jnp.sum(mask)
        mean = jnp.sum(nll * mask) / jnp.maximum(tokens, 1.0)
        return mean, {"tokens": tokens}

    return Task(init=init, loss=loss, name=name, identity=lm_identity(cfg))
