"""AdamW with linear warm-up, cosine decay and global-norm clipping."""

from __future__ import annotations

import jax
import optax


def learning_rate_schedule(cfg) -> optax.Schedule:
    warmup = max(0, min(int(cfg.warmup_steps), int(cfg.steps) - 1))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=float(cfg.lr),
        warmup_steps=warmup,
        decay_steps=max(int(cfg.steps), warmup + 1),
        end_value=float(cfg.lr) * float(cfg.final_lr_fraction),
    )


def decay_mask(params):
    """Weight decay on matrices only: no decay on biases, LayerNorm scales and offsets."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg) -> optax.GradientTransformation:
    """``cfg``: the ``train`` section (lr, warmup_steps, steps, final_lr_fraction, b1, b2,
    weight_decay, clip_norm)."""
    return optax.chain(
        optax.clip_by_global_norm(float(cfg.clip_norm)),
        optax.adamw(
            learning_rate_schedule(cfg),
            b1=float(cfg.b1),
            b2=float(cfg.b2),
            weight_decay=float(cfg.weight_decay),
            mask=decay_mask,
        ),
    )
