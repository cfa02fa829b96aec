"""Word-pooled LM against a character LM: training characters/s and words/s at matched context
in characters, and cached generation words/s.

    python -m bench.word_pooled --size tiny
    python -m bench.word_pooled --size paper     # the paper's model, batch 2
    python -m bench.word_pooled --size paper --words_from $DATA/tinyshakespeare/input.txt

Both models are trained by the trainer's own step (``common.TaskStep``: AdamW, clipping, the
non-finite guard) on one synthetic in-memory batch whose word lengths follow a real corpus's
segmentation (``lexlm.text.segment_words``, words cut into pieces of at most ``max_units`` as
``word_pieces`` cuts them): by default the embedded corpus's training split (the Lee news
corpus that the data stack ships), or ``--words_from FILE``. Without the data stack the
default is ``LEE_TRAIN_LENGTHS``, the same corpus's length counts frozen here (a test checks
them against ``length_counts`` wherever the data stack is installed). Unit ids are random.
The character LM's context is the word-pooled window's mean character count, so both see the
same text length per sequence.

Characters are counted as the units of the predicted words, padding excluded; a lexlm word
carries the whitespace before it, so these are the characters of the text. (eTok's notes do
not record how its own characters/s were counted.) Words/s counts predicted word slots (a
word longer than ``max_units`` is several pieces, each a word to the model); the character
LM's words/s is its characters/s over the batch's characters per word.

Each model's steps are timed alternately with a matmul probe of its compute dtype
(``common.time_interleaved``), and its counted FLOP/s is printed as a fraction of that
interleaved peak. Ratios are printed only between the two models timed here.

Generation: ``lexlm.nn.word_pooled.generate_fn`` (cached word LM and decoder), batch 1,
``--gen_words`` words after a context of ``--gen_context`` words, timed after compilation.

The official eTok code's CPU figures are printed labelled quoted and are never divided by:
they were not measured in this run.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import numpy as np
from absl import flags
from etils import epath

from bench import common
from lexlm.errors import ConfigError
from lexlm.eval.flops import train_step_flops
from lexlm.nn.transformer import LMConfig
from lexlm.nn.word_pooled import WordPooledConfig, WordPooledLM, generate_fn
from lexlm.text.decode import decode_utf8
from lexlm.text.words import segment_words
from lexlm.train.lm_task import make_lm_task
from lexlm.train.word_pooled_task import make_word_pooled_task

ETOK_QUOTED = (
    "official eTok code, e-char model at the paper config (PyTorch, CPU, 2 threads)",
    "training 183 and 241 characters/s in its two measured passes, generation 0.086 words/s",
    "lexlm's issues",
)

# length_counts(lee_train_documents()): counts[k] = words of k characters (leading whitespace
# included) in the Lee corpus's training split, the default when the data stack is missing.
LEE_TRAIN_LENGTHS = (0, 6160, 2676, 8999, 9998, 8351, 6062, 5016, 4606, 3263, 2574, 1422, 824,
                     338, 182, 73, 18, 0, 2, 1)  # fmt: skip

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


def length_counts(texts: Iterable[str]) -> np.ndarray:
    """``counts[k]`` = words of k characters over ``segment_words`` of every text.

    A word's characters include the whitespace before it (``"".join(words)`` is the text), so
    ``(counts * arange).sum()`` is the texts' character count.

        length_counts(["To be, or"])  # words "To" " be" "," " or": [0, 1, 2, 1]
    """
    lengths = [len(w) for text in texts for w in segment_words(text)]
    return np.bincount(np.asarray(lengths, np.int64), minlength=1)


def piece_counts(counts: np.ndarray | Iterable[int], max_units: int) -> np.ndarray:
    """Word-length counts -> piece-length counts [max_units + 1], cutting each word into
    pieces of at most ``max_units`` as ``lexlm.text.word_pieces`` does (a 13-unit word at
    max_units 12 is a 12-unit piece and a 1-unit piece)."""
    counts = np.asarray(counts, np.int64)
    if max_units < 1:
        raise ConfigError("max_units", f"must be >= 1, got {max_units}")
    out = np.zeros(max_units + 1, np.int64)
    lengths = np.arange(len(counts))
    np.add.at(out, np.full(len(counts), max_units), counts * (lengths // max_units))
    rest = lengths % max_units
    np.add.at(out, rest[rest > 0], counts[rest > 0])
    return out


def quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """``n`` slots shared out in proportion to ``counts`` (largest remainders), so that a batch
    of n words has the corpus's length distribution up to rounding, not up to sampling noise.

        quotas(np.array([1, 1, 2]), 5)  # [1, 1, 3]: shares 1.25, 1.25, 2.5
    """
    share = np.asarray(counts, np.float64) * n / np.sum(counts)
    out = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: n - out.sum()]] += 1
    return out


def lee_train_documents() -> list[str]:
    """The embedded corpus's training documents, as the data stack builds them (decoded,
    stripped). Needs the data stack (lexlm.data.builders imports tensorflow-datasets)."""
    from lexlm.data.builders import lee_split_indices, read_lee_lines

    lines = read_lee_lines()
    return [decode_utf8(lines[i])[0].strip() for i in lee_split_indices(lines)["train"]]


def corpus_lengths(words_from: str | None = None) -> tuple[np.ndarray, str]:
    """(word-length counts, where they come from): ``words_from`` (a UTF-8 text file), else
    the embedded corpus's training split, else ``LEE_TRAIN_LENGTHS`` without the data stack."""
    if words_from:
        path = epath.Path(words_from)
        if not path.is_file():
            raise ConfigError("words_from", f"no such file: {words_from}")
        return length_counts([decode_utf8(path.read_bytes())[0]]), str(path)
    try:
        return length_counts(lee_train_documents()), "the Lee corpus's training split"
    except (ImportError, ConfigError) as e:
        why = f"{type(e).__name__}: {e}".split("\n")[0]
        return np.asarray(LEE_TRAIN_LENGTHS), (
            f"the Lee corpus's training split, frozen in bench/word_pooled.py ({why})"
        )


def word_batch(
    cfg: WordPooledConfig, batch: int, counts: np.ndarray | Iterable[int], seed: int = 0
) -> tuple[dict, float]:
    """Synthetic windows of W+1 words whose piece lengths follow ``counts`` (word-length counts,
    ``length_counts``): each length fills its share of the slots (``quotas``), in a random
    order. Returns the batch and the mean characters per target word (padding excluded)."""
    pieces = piece_counts(counts, cfg.max_units)
    if pieces[1:].sum() == 0:
        raise ConfigError("words_from", "the text has no words")
    rng = np.random.default_rng(seed)
    shape = (batch, cfg.max_words + 1)
    lengths = rng.permutation(np.repeat(np.arange(len(pieces)), quotas(pieces, np.prod(shape))))
    lengths = lengths.reshape(shape)
    units = rng.integers(3, cfg.unit_vocab, (*shape, cfg.max_units)).astype(np.int32)
    units = np.where(np.arange(cfg.max_units) < lengths[..., None], units, 0).astype(np.int32)
    mask = np.ones((batch, cfg.max_words), np.float32)
    return {"units": units, "word_mask": mask}, float(lengths[:, 1:].mean())


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("size", "tiny", list(SIZES), "model size", flag_values=fv)
    flags.DEFINE_integer("steps", 5, "timed train steps", flag_values=fv)
    flags.DEFINE_integer("warmup", 1, "untimed train steps after compilation", flag_values=fv)
    flags.DEFINE_string(
        "words_from", None, "a UTF-8 text file whose word lengths the batch follows "
        "(default: the embedded corpus's training split)", flag_values=fv,
    )  # fmt: skip
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


def _timed_model(name, step, flops, chars_per_step, words_per_step, args, dtype) -> dict:
    t = common.time_interleaved(step, dtype=dtype, warmup=args.warmup, iters=args.steps)
    chars_s = chars_per_step / t.model.median
    words_s = words_per_step / t.model.median
    ceiling = chars_per_step / (flops / t.peak)
    print(
        f"{name}: {step.param_count() / 1e6:.2f}M parameters, {t.model.median * 1e3:.0f} "
        f"ms/step, {chars_s:.0f} characters/s, {words_s:.1f} words/s"
    )
    print(f"  counted {flops / 1e9:.2f} GFLOP per step (forward + backward): {t.line(flops)}")
    print(f"  at that peak the step would run at {ceiling:.0f} characters/s")
    if not common.on_accelerator():
        print("  " + common.contention_line(t.model))
    return {
        "params": step.param_count(),
        "step_s": t.model.median,
        "step_s_all": t.model.times,
        "chars_s": chars_s,
        "words_s": words_s,
        "step_flops": flops,
        "flops_s": flops / t.model.median,
        "interleaved_peak_flops_s": t.peak,
        "probe_flops_s": t.probe_flops_s,
        "fraction_of_peak": t.fraction(flops),
        "chars_s_at_peak": ceiling,
    }


def main(argv=None):
    args = parse_args(argv)
    size = SIZES[args.size]
    mesh = common.make_mesh("all")
    wp_cfg = WordPooledConfig(unit_vocab=size["vocab"], **size["wp"])
    args.gen_context = args.gen_context or wp_cfg.max_words // 4
    args.gen_words = args.gen_words or wp_cfg.max_words // 2
    counts, source = corpus_lengths(args.words_from)
    pieces = piece_counts(counts, wp_cfg.max_units)
    n_words = int(counts[1:].sum())
    print(
        f"word lengths from {source}: {n_words:,} words, "
        f"{(counts * np.arange(len(counts))).sum() / n_words:.2f} characters/word; "
        f"{(pieces * np.arange(len(pieces))).sum() / pieces.sum():.2f} characters/piece at "
        f"max_units {wp_cfg.max_units} ({pieces.sum() - n_words:,} extra pieces)"
    )
    batch, chars_per_word = word_batch(wp_cfg, size["batch"], counts)
    words_per_step = size["batch"] * wp_cfg.max_words
    chars_per_step = chars_per_word * words_per_step
    print(
        f"batch {size['batch']} x {wp_cfg.max_words} words, {chars_per_word:.2f} characters per "
        f"target word drawn ({chars_per_step / size['batch']:.0f} characters per window)"
    )
    wp = common.TaskStep(make_word_pooled_task(wp_cfg), batch, mesh)
    wp.compile()
    flops = train_step_flops(wp.task.loss, wp.fns.abstract.params, wp.arrays, jax.random.key(0))
    record = {
        "size": args.size,
        "words_from": source,
        "chars_per_word": chars_per_word,
        "word_pooled": _timed_model(
            "word-pooled", wp, flops, chars_per_step, words_per_step, args, wp_cfg.dtype
        ),
    }
    if args.char:
        seq = round(chars_per_step / size["batch"])
        char_cfg = LMConfig(vocab_size=size["vocab"], max_len=seq, **size["char"])
        char = common.TaskStep(
            make_lm_task(char_cfg, seq),
            common.synthetic_batch(size["batch"], seq, size["vocab"]),
            mesh,
        )
        char.compile()
        char_flops = train_step_flops(
            char.task.loss, char.fns.abstract.params, char.arrays, jax.random.key(0)
        )
        record["char"] = _timed_model(
            f"character LM (context {seq})", char, char_flops, size["batch"] * seq,
            size["batch"] * seq / chars_per_word, args, char_cfg.dtype,
        )  # fmt: skip
        ratio = record["word_pooled"]["chars_s"] / record["char"]["chars_s"]
        print(f"training characters/s, word-pooled / character LM, this run: {ratio:.2f}")
        record["train_ratio"] = ratio
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
    print(common.quoted_line(*ETOK_QUOTED))
    record["gen_words_s"] = words_s
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
