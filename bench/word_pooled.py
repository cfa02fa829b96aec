"""Word-pooled LM against a character LM: training characters/s at matched context in
characters, and cached generation words/s.

    python -m bench.word_pooled --size tiny
    python -m bench.word_pooled --size paper     # the paper's model, batch 2

Both models are trained by the trainer's own step (``common.TaskStep``: AdamW, clipping, the
non-finite guard) on one synthetic in-memory batch. Word lengths are drawn once, 1 + Poisson(4)
units clipped to L (leading space included; Tiny Shakespeare's mean is 4.4), and the
character LM's context is the word-pooled window's mean character count, so both see the same
text length per sequence. Characters/s counts the characters of the predicted words (word
pooled) or the predicted characters (character LM).

Generation: ``lexlm.nn.word_pooled.generate_fn`` (cached word LM and decoder), batch 1,
``--gen_words`` words after a context of ``--gen_context`` words, timed after compilation.

For scale: the official eTok code (PyTorch, CPU, 2 threads, this machine kind) trains its
e-char model at the paper config (38.3M parameters, batch 2, 192 words) at 183 characters/s
and generates 0.086 words/s (a full re-forward per character). Those two figures are quoted
from the issue, not measured here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from bench import common
from lexlm.eval.flops import train_step_flops
from lexlm.nn.transformer import LMConfig
from lexlm.nn.word_pooled import WordPooledConfig, WordPooledLM, generate_fn
from lexlm.train.lm_task import make_lm_task
from lexlm.train.word_pooled_task import make_word_pooled_task

ETOK_TRAIN_CHARS_S = 183.0
ETOK_GEN_WORDS_S = 0.086

SIZES = {
    # tiny: the word_pooled project's tiny variant's models
    "tiny": dict(
        wp=dict(width=64, prefix=4, enc_depth=1, enc_heads=2, lm_depth=2, lm_heads=4,
                dec_depth=1, dec_heads=2, max_units=12, max_words=32),
        char=dict(width=64, depth=2, heads=4), batch=16, vocab=80,
    ),
    # paper: width 512, encoder 2 x 4 heads, word LM 8 x 8 heads, decoder 2 layers, p = 4, 192
    # words; the character LM is the word LM's stack over characters
    "paper": dict(
        wp=dict(width=512, prefix=4, enc_depth=2, enc_heads=4, lm_depth=8, lm_heads=8,
                dec_depth=2, dec_heads=8, max_units=12, max_words=192),
        char=dict(width=512, depth=8, heads=8), batch=2, vocab=68,
    ),
}  # fmt: skip


def word_batch(cfg: WordPooledConfig, batch: int, seed: int = 0) -> tuple[dict, float]:
    """Synthetic windows of W+1 words and the mean characters per target word."""
    rng = np.random.default_rng(seed)
    shape = (batch, cfg.max_words + 1)
    lengths = np.clip(1 + rng.poisson(4.0, shape), 1, cfg.max_units)
    units = rng.integers(3, cfg.unit_vocab, (*shape, cfg.max_units)).astype(np.int32)
    units = np.where(np.arange(cfg.max_units) < lengths[..., None], units, 0).astype(np.int32)
    mask = np.ones((batch, cfg.max_words), np.float32)
    return {"units": units, "word_mask": mask}, float(lengths[:, 1:].mean())


def matmul_peak_flops_s(n: int = 2048, iters: int = 5) -> float:
    """This machine's float32 FLOP/s on one jitted n x n x n matmul: the ceiling a train step
    made of matmuls approaches (element-wise work and small matmuls only lower it)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    t = common.time_step(f, (a,), warmup=1, iters=iters)
    return 2 * n**3 / t.median


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("size", "tiny", list(SIZES), "model size", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "timed train steps", flag_values=fv)
    flags.DEFINE_integer("warmup", 1, "untimed train steps after compilation", flag_values=fv)
    flags.DEFINE_integer(
        "gen_context", None, "context words (default: a quarter of the window)", flag_values=fv
    )
    flags.DEFINE_integer(
        "gen_words", None, "generated words (default: half of the window)", flag_values=fv
    )
    flags.DEFINE_bool(
        "char", True, "also time the character LM (--nochar: skip it)", flag_values=fv
    )


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def main(argv=None):
    args = parse_args(argv)
    size = SIZES[args.size]
    mesh = common.make_mesh("all")
    wp_cfg = WordPooledConfig(unit_vocab=size["vocab"], **size["wp"])
    args.gen_context = args.gen_context or wp_cfg.max_words // 4
    args.gen_words = args.gen_words or wp_cfg.max_words // 2
    batch, chars_per_word = word_batch(wp_cfg, size["batch"])
    wp = common.TaskStep(make_word_pooled_task(wp_cfg), batch, mesh)
    wp.compile()
    t_wp = common.time_step(wp, warmup=args.warmup, iters=args.steps)
    chars_per_step = chars_per_word * size["batch"] * wp_cfg.max_words
    wp_chars_s = chars_per_step / t_wp.median
    print(
        f"word-pooled: {wp.param_count() / 1e6:.2f}M parameters, batch {size['batch']} x "
        f"{wp_cfg.max_words} words ({chars_per_step / size['batch']:.0f} characters), "
        f"{t_wp.median * 1e3:.0f} ms/step, {wp_chars_s:.0f} characters/s"
    )
    print("  " + common.contention_line(t_wp))
    flops = train_step_flops(wp.task.loss, wp.fns.abstract.params, wp.arrays, jax.random.key(0))
    peak = matmul_peak_flops_s()
    ceiling = chars_per_step / (flops / peak)
    print(
        f"  counted {flops / 1e9:.1f} GFLOP per step (forward + backward): "
        f"{flops / t_wp.median / 1e9:.1f} GFLOP/s against this machine's "
        f"{peak / 1e9:.1f} GFLOP/s float32 matmul peak ({flops / t_wp.median / peak:.0%}); at "
        f"that peak the step would run at {ceiling:.0f} characters/s "
        f"(x{ceiling / ETOK_TRAIN_CHARS_S:.1f} the quoted eTok figure)"
    )
    record = {
        "size": args.size,
        "word_pooled_params": wp.param_count(),
        "word_pooled_step_s": t_wp.median,
        "word_pooled_chars_s": wp_chars_s,
        "word_pooled_vs_etok_train": wp_chars_s / ETOK_TRAIN_CHARS_S,
        "word_pooled_step_flops": flops,
        "matmul_peak_flops_s": peak,
        "word_pooled_chars_s_at_peak": ceiling,
    }
    if args.char:
        seq = round(chars_per_word * wp_cfg.max_words)
        char_cfg = LMConfig(vocab_size=size["vocab"], max_len=seq, **size["char"])
        char = common.TaskStep(
            make_lm_task(char_cfg, seq),
            common.synthetic_batch(size["batch"], seq, size["vocab"]),
            mesh,
        )
        char.compile()
        t_char = common.time_step(char, warmup=args.warmup, iters=args.steps)
        char_chars_s = size["batch"] * seq / t_char.median
        print(
            f"character LM: {char.param_count() / 1e6:.2f}M parameters, context {seq}, "
            f"{t_char.median * 1e3:.0f} ms/step, {char_chars_s:.0f} characters/s"
        )
        print("  " + common.contention_line(t_char))
        ratio = wp_chars_s / char_chars_s
        print(f"training characters/s, word-pooled / character LM: {ratio:.2f}")
        record.update(char_step_s=t_char.median, char_chars_s=char_chars_s, train_ratio=ratio)
    # generation
    model = WordPooledLM(wp_cfg)
    params = jax.device_get(wp.state.params)
    context = batch["units"][:1, : args.gen_context]
    gen = generate_fn(model, args.gen_words)
    t_gen = common.time_step(lambda: gen(params, context, jax.random.key(0)), warmup=1, iters=3)
    words_s = args.gen_words / t_gen.median
    print(
        f"generation (cached, batch 1, {args.gen_words} words after {args.gen_context}): "
        f"{words_s:.1f} words/s"
    )
    print(
        f"against the official eTok code at the paper config (quoted: {ETOK_TRAIN_CHARS_S} "
        f"chars/s, {ETOK_GEN_WORDS_S} words/s): training x{wp_chars_s / ETOK_TRAIN_CHARS_S:.1f}, "
        f"generation x{words_s / ETOK_GEN_WORDS_S:.0f}"
        + ("" if args.size == "paper" else " (only meaningful with --size paper)")
    )
    record.update(gen_words_s=words_s, gen_vs_etok=words_s / ETOK_GEN_WORDS_S)
    common.print_json(record)


if __name__ == "__main__":
    main()
