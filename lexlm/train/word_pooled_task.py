"""The word-pooled LM task for the trainer (``lexlm.nn.word_pooled``).

Batches are ``{'units': int32 [B, W+1, L], 'word_mask': float32 [B, W]}``
(``lexlm.data.word_windows``). The loss is the mean NLL over the real units and end-of-word
slots of the target words (words 1..W of each window) that ``word_mask`` keeps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lexlm.nn.word_pooled import WordPooledConfig, WordPooledLM
from lexlm.train.loop import Task

RUNTIME_FIELDS = ("dtype",)


def word_pooled_identity(cfg: WordPooledConfig) -> dict:
    return {
        f"model.{f.name}": getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name not in RUNTIME_FIELDS
    }


def word_pooled_nll(model: WordPooledLM, params, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(per-unit NLL [B, W, L+1] in nats, zero where not a target; target mask [B, W, L+1])."""
    nll, targets = model.apply({"params": params}, batch["units"], method="nll")
    mask = (targets != 0) & (batch["word_mask"][..., None] > 0)
    return jnp.where(mask, nll, 0.0), mask


def make_word_pooled_task(cfg: WordPooledConfig, name: str = "word_pooled") -> Task:
    model = WordPooledLM(cfg)

    def init(key):
        units = jnp.zeros((1, cfg.max_words + 1, cfg.max_units), jnp.int32)
        return model.init(key, units, method="nll")["params"]

    def loss(params, batch, key):
        del key
        nll, mask = word_pooled_nll(model, params, batch)
        units = jnp.sum(mask.astype(jnp.float32))
        return jnp.sum(nll) / jnp.maximum(units, 1.0), {"tokens": units}

    return Task(init=init, loss=loss, name=name, identity=word_pooled_identity(cfg))
