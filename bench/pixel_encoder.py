"""Sentence-encoder throughput: the pixel encoder (rendered patches) against the subword-token
encoder of the same width, depth and sequence length, for training and for inference.

    python -m bench.pixel_encoder --size stsb     # the pixel project's stsb variant
    python -m bench.pixel_encoder --size tiny

Training: the trainer's own contrastive step (``common.TaskStep``: AdamW, clipping, the
non-finite guard) on one fixed batch of ``--batch`` pairs (two sentences each), sentences/s =
2 x batch / step time. Inference: ``lexlm.nn.vit.jit_embed`` on ``--batch`` sentences,
sentences/s = batch / call time. Both exclude input preparation, which is timed on its own
(``prepare``: rendering, or tokenizing, one batch of real sentences from the embedded corpus):
it runs on the host, overlapped with the device step by a data loader. The ratio pixel / token
is taken within one run. Patch embedding is a 256 x D matmul against the token encoder's
table lookup, so the two differ by that and by nothing else in the encoder.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags

from bench import common

SIZES = {
    "tiny": dict(width=64, depth=2, heads=4, max_len=64, batch=32, vocab=2000),
    # the tokenizer is trained on the embedded corpus, which caps its vocabulary; the table's
    # size does not change the step's cost (a lookup)
    "stsb": dict(width=128, depth=4, heads=4, max_len=64, batch=64, vocab=2000),
}


def corpus() -> list[str]:
    """The embedded corpus's training sentences (the pixel project's tiny variant's)."""
    from lexlm.data.config import default_data_config
    from lexlm.data.sentence_pairs import sentence_data

    return sentence_data(default_data_config("lee")).sentences


def _flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("size", "tiny", list(SIZES), "encoder size", flag_values=fv)
    flags.DEFINE_integer("batch", 0, "pairs per step (0: the size's)", flag_values=fv)
    flags.DEFINE_integer("iters", 10, "timed calls", flag_values=fv)


def parse_args(argv=None):
    """``argv``: the arguments after the program name (None: the command line's)."""
    return common.parse(None if argv is None else [__name__, *argv], _flags, __doc__)


def main(argv=None):
    args = parse_args(argv)
    from lexlm.data.sentence_pairs import PixelFeatures, TokenFeatures
    from lexlm.nn.vit import EncoderConfig, jit_embed
    from lexlm.text.render import RenderConfig
    from lexlm.text.tokenizers import build_tokenizer
    from lexlm.train.contrastive_task import init_params, make_contrastive_task, unbox

    s = SIZES[args.size]
    batch = args.batch or s["batch"]
    sents = corpus()
    texts = [sents[i % len(sents)] for i in range(2 * batch)]
    tok = build_tokenizer("subword", sents, s["vocab"])
    feats = {
        "pixel": PixelFeatures(RenderConfig(max_patches=s["max_len"])),
        "token": TokenFeatures(tok, s["max_len"]),
    }
    mesh = common.make_mesh("first")
    record = {"size": args.size, "batch_pairs": batch}
    for kind, f in feats.items():
        cfg = EncoderConfig(kind=kind, width=s["width"], depth=s["depth"], heads=s["heads"],
                            max_len=s["max_len"], vocab_size=tok.vocab_size)  # fmt: skip
        f(texts)  # the glyph cache / tokenizer warm-up is not part of the steady state
        t0 = time.perf_counter()
        for _ in range(3):
            xa, ma = f(texts[:batch])
            xb, mb = f(texts[batch:])
        prepare = (time.perf_counter() - t0) / 3
        pair = {"a": xa, "a_mask": ma, "b": xb, "b_mask": mb,
                "weight": np.ones(batch, np.float32)}  # fmt: skip
        step = common.TaskStep(make_contrastive_task(cfg), pair, mesh)
        step.compile()
        t_train = common.time_step(step, warmup=1, iters=args.iters)
        params = unbox(init_params(cfg, jax.random.key(0)))
        embed = jit_embed(cfg)
        t_inf = common.time_step(embed, (params, xa, ma), warmup=1, iters=args.iters)
        record[kind] = {
            "params": cfg.param_count(),
            "train_sentences_per_s": 2 * batch / t_train.median,
            "infer_sentences_per_s": batch / t_inf.median,
            "prepare_sentences_per_s": 2 * batch / prepare,
        }
        print(
            f"{kind:>5}: {cfg.param_count():,} parameters; train "
            f"{record[kind]['train_sentences_per_s']:,.0f} sentences/s, inference "
            f"{record[kind]['infer_sentences_per_s']:,.0f}/s, input preparation "
            f"{record[kind]['prepare_sentences_per_s']:,.0f}/s  ({common.contention_line(t_train)})"
        )
    for what in ("train", "infer"):
        key = f"{what}_sentences_per_s"
        record[f"{what}_ratio_pixel_over_token"] = record["pixel"][key] / record["token"][key]
    print(
        f"pixel / token: training x{record['train_ratio_pixel_over_token']:.2f}, inference "
        f"x{record['infer_ratio_pixel_over_token']:.2f} (one run, {jax.devices()[0].platform})"
    )
    common.print_json(record)
    return record


if __name__ == "__main__":
    main()
