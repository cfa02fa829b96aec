"""The text-classification task for the trainer (``lexlm.nn.classifier``).

Batches are ``{'tokens': int32 [B, T] (0 = padding), 'label': int32 [B], 'weight': float32
[B]}``; ``weight`` 0 marks filler rows of a short last batch. The loss is the weighted mean
cross-entropy, plus ``penalty`` times the mean ||AA^T - I||_F^2 for structured self-attention.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lexlm.nn.classifier import ClassifierConfig, TextClassifier
from lexlm.nn.pooling import diversity_penalty
from lexlm.train.loop import Task


def classifier_identity(cfg: ClassifierConfig) -> dict:
    return {f"model.{f.name}": getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def classifier_logits(model: TextClassifier, params, tokens) -> jax.Array:
    logits, _ = model.apply({"params": params}, tokens)
    return logits


def make_classifier_task(cfg: ClassifierConfig, name: str = "classifier") -> Task:
    model = TextClassifier(cfg)

    def init(key):
        return model.init(key, jnp.ones((1, 4), jnp.int32))["params"]

    def loss(params, batch, key):
        logits, weights = model.apply(
            {"params": params}, batch["tokens"], train=True, rngs={"dropout": key}
        )
        w = batch["weight"].astype(jnp.float32)
        n = jnp.maximum(jnp.sum(w), 1.0)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        total = jnp.sum(ce * w) / n
        metrics = {
            "accuracy": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * w) / n,
            "tokens": jnp.sum((batch["tokens"] != 0) * w[:, None]).astype(jnp.float32),
        }
        if cfg.pooling == "structured" and cfg.penalty > 0:
            pen = jnp.sum(diversity_penalty(weights) * w) / n
            total = total + cfg.penalty * pen
            metrics["penalty"] = pen
        return total, metrics

    return Task(init=init, loss=loss, name=name, identity=classifier_identity(cfg))
