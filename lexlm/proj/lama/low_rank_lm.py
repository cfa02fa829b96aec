"""The ``lm`` variant: LAMA's shared low-rank factors inside the Transformer LM's attention
(``lexlm.nn.low_rank_attention``), against standard attention.

Three ``lm`` runs (``lexlm.proj.lm.run.train_to_end``), each built from the variant's
``lm_base`` block with only the attention changed: ``standard``; ``low_rank`` (rank
``qk_rank``, the same width and steps); ``low_rank_equal_params`` (the width, a multiple of the
heads, at which the low-rank model's parameter count is closest to the standard one's, with
the rank scaled by the same factor). The parameter match counts the embedding too, so it uses
the vocabulary the runs' tokenizer will have, built here from the training split in memory
(nothing is written before every run is checked).
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import ml_collections

from lexlm.errors import ConfigError, StaleResultError
from lexlm.experiment import checks, store

LM_MODELS = ("standard", "low_rank", "low_rank_equal_params")


def _prefixed(e: ConfigError) -> ConfigError:
    return ConfigError(f"lm_base.{e.field}", str(e)[len(e.field) + 2 :])


def validate_lm(c) -> None:
    from lexlm.proj.lm.run import lm_config, validate_run

    try:
        validate_run(c.lm_base)
    except ConfigError as e:
        raise _prefixed(e) from None
    if str(c.lm_base.get("arch", "transformer")) != "transformer":
        raise ConfigError("lm_base.arch", "low-rank attention is an option of the Transformer LM")
    rank = checks.integer(c.qk_rank, "qk_rank", 1)
    width = int(c.lm_base.model.width)
    if rank > width:
        raise ConfigError("qk_rank", f"must be at most lm_base.model.width = {width}, got {rank}")
    for cfg in base_run_configs(c).values():
        try:
            lm_config(cfg, vocab_size=2)
        except ConfigError as e:
            if e.field == "model.qk_rank":
                raise ConfigError("qk_rank", str(e)[len(e.field) + 2 :]) from None
            raise _prefixed(e) from None


def equal_param_width(std, low) -> int:
    """The width (a multiple of the heads) at which ``low``'s parameter count is closest to
    ``std``'s; ``low``'s rank scales with the width (the same r / D)."""
    target = std.param_count()
    best, best_gap = low.width, math.inf
    for width in range(low.heads, 4 * std.width + 1, low.heads):
        cfg = dataclasses.replace(low, width=width, qk_rank=scaled_rank(low, width))
        gap = abs(cfg.param_count() - target)
        if gap < best_gap:
            best, best_gap = width, gap
    return best


def scaled_rank(low, width: int) -> int:
    return max(1, round(low.rank * width / low.width))


def _with_attention(base, **model) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(base.to_dict())
    for key, value in model.items():
        cfg.model[key] = value
    return cfg


def base_run_configs(c) -> dict[str, ml_collections.ConfigDict]:
    """The standard and the same-width low-rank run configs (no vocabulary needed)."""
    return {
        "standard": _with_attention(c.lm_base, attention_kind="standard", qk_rank=0),
        "low_rank": _with_attention(c.lm_base, attention_kind="low_rank", qk_rank=int(c.qk_rank)),
    }


def lm_run_configs(c, vocab_size: int) -> dict[str, ml_collections.ConfigDict]:
    """The three run configs; the equal-parameter width is matched at ``vocab_size``."""
    from lexlm.proj.lm.run import lm_config

    configs = base_run_configs(c)
    std = lm_config(configs["standard"], vocab_size)
    low = lm_config(configs["low_rank"], vocab_size)
    width = equal_param_width(std, low)
    configs["low_rank_equal_params"] = _with_attention(
        c.lm_base, attention_kind="low_rank", qk_rank=scaled_rank(low, width), width=width
    )
    return configs


def lm_vocab_size(cfg) -> int:
    """The vocabulary size the run's tokenizer will have (built in memory, written nowhere)."""
    from lexlm.data import open_split, read_documents
    from lexlm.text import build_tokenizer

    unit = str(cfg.data.unit)
    docs = [] if unit == "byte" else read_documents(open_split(cfg.data, "train"))
    return build_tokenizer(unit, docs, int(cfg.data.vocab_size) or None).vocab_size


def forward_flops_per_token(cfg) -> float:
    from lexlm.eval.flops import counted_flops
    from lexlm.nn.transformer import TransformerLM

    model = TransformerLM(cfg)
    tokens = jax.ShapeDtypeStruct((1, cfg.max_len), jnp.int32)
    params = jax.eval_shape(lambda k, t: model.init(k, t)["params"], jax.random.key(0), tokens)
    return counted_flops(lambda p, t: model.apply({"params": p}, t), params, tokens) / cfg.max_len


def run_lm(c, wd: store.Workdir) -> dict:
    """Trains (resuming) ``W/runs/lm_<variant>`` for the three variants; test bits per
    character from each final checkpoint, parameters and forward FLOPs per token."""
    from lexlm.proj.lm.evaluate import evaluate_run
    from lexlm.proj.lm.run import check_lm_run, lm_config, load_run, train_to_end

    vocab_size = lm_vocab_size(c.lm_base)
    configs = lm_run_configs(c, vocab_size)
    for name, cfg in configs.items():  # every run checked before anything is written
        check_lm_run(cfg, wd.run(f"lm_{name}"))
    rows = []
    for name, cfg in configs.items():
        run_dir = wd.run(f"lm_{name}")
        t0 = time.perf_counter()
        result = train_to_end(cfg, run_dir)
        if result.history:
            rates = sorted(h["tokens_per_s"] for h in result.history[1:]) or [float("nan")]
            wd.timings[f"lm_{name}"] = {"train_s": round(time.perf_counter() - t0, 1),
                                        "tokens_per_s": rates[len(rates) // 2]}  # fmt: skip
        tok = load_run(run_dir)[1]
        if tok.vocab_size != vocab_size:
            raise StaleResultError(
                f"{run_dir}/tokenizer has {tok.vocab_size} types, but the widths were matched "
                f"for {vocab_size}; nothing was changed: choose another --workdir"
            )
        final = int(cfg.train.steps)
        test = evaluate_run(run_dir, split="test", step=final)
        model_cfg = lm_config(cfg, vocab_size)
        rows.append({
            "model": name,
            "bits_per_char": test["bits_per_char"],
            "attention_params": model_cfg.attention_param_count() * model_cfg.depth,
            "params": model_cfg.param_count(),
            "width": model_cfg.width,
            "rank": model_cfg.rank if model_cfg.attention_kind == "low_rank" else None,
            "flops_per_token": forward_flops_per_token(model_cfg),
            "step": test["step"],
        })  # fmt: skip
    base = c.lm_base
    return {
        "task": "lm",
        "rows": rows,
        "source": str(base.data.source),
        "unit": str(base.data.unit),
        "vocab_size": vocab_size,
        "depth": int(base.model.depth),
        "heads": int(base.model.heads),
        "seq_len": int(base.seq_len),
        "steps": int(base.train.steps),
        "batch_size": int(base.train.batch_size),
    }
