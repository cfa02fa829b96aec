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


def decay_mask(params, no_decay: tuple[str, ...] = ()):
    """Weight decay on matrices only: no decay on biases, LayerNorm scales and offsets, nor on
    any parameter whose path names one of ``no_decay`` (e.g. ``'positions'``: decaying a
    position table pulls the only positional signal of a lexinvariant LM toward zero)."""

    def decays(path, p):
        names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        return p.ndim >= 2 and not names.intersection(no_decay)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg) -> optax.GradientTransformation:
    """``cfg``: the ``train`` section (lr, warmup_steps, steps, final_lr_fraction, b1, b2,
    weight_decay, no_decay, clip_norm)."""
    return optax.chain(
        optax.clip_by_global_norm(float(cfg.clip_norm)),
        optax.adamw(
            learning_rate_schedule(cfg),
            b1=float(cfg.b1),
            b2=float(cfg.b2),
            weight_decay=float(cfg.weight_decay),
            mask=lambda params: decay_mask(params, tuple(cfg.get("no_decay", ()))),
        ),
    )
