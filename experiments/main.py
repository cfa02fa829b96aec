"""The main job: every tiny experiment on the embedded corpus, evaluated from checkpoints,
written up as ``<out>/report.md`` with PNG plots.

    python -m experiments.main --out results

1. Baseline LM (``experiments/lm.py:tiny``): train, evaluate validation and test from the
   checkpoint, loss by position.
2. Lexinvariant LMs (``experiments/lexinvariant.py:tiny``): findings 1 and 2, reusing the
   baseline as the standard character LM.
3. Word-pooled tokenization (``experiments/word_pooled.py:tiny``): the word-pooled LM against a
   character LM and a word-level LM at equal training FLOPs (the byte and subword LMs join in
   the ``shakespeare`` config, outside the main job's budget).
4. Byte-patching peers (``experiments/byte_patching.py:main``): the byte Transformer,
   MegaByte (P = 4) and SpaceByte at two matched training-FLOP budgets, in bits per byte,
   with a byte n-gram count reference (the other peers join in the ``tiny``,
   ``shakespeare`` and ``spanish`` configs).
5. LAMA (``experiments/lama.py:tiny``): attention-pooling classifiers (LAMA, LAMA+CTX and
   three baselines) on the embedded movie-review sentiment ratings.
6. Pixel sentence encoders (``experiments/pixel_sentence.py:tiny``): a ViT over rendered text
   against a subword-token encoder, contrastive stages on the Lee background corpus, scored on
   the Lee documents' human similarity ratings, clean and under character typos.
7. With ``--extra symbols``: lexinvariant findings 3 and 4 (``experiments/lexinv_symbols.py``).

Re-running resumes: finished runs are evaluated again from their checkpoints, not retrained.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time

import jax

from lexlm.paths import as_path


def baseline_section(metrics: dict[str, dict], history: list[dict], train_s: float) -> str:
    test, val = metrics["test"], metrics["validation"]
    tok_s = [h["tokens_per_s"] for h in history[1:]] or [float("nan")]
    lines = [
        "## Baseline Transformer LM (character units)",
        "",
        "Decoder-only, pre-LayerNorm, tied learned embedding; trained on the training split of "
        "the embedded Lee news corpus, evaluated from its final checkpoint.",
        "",
        "| split | loss (nats/char) | bits/char | bits/byte | perplexity |",
        "|---|---|---|---|---|",
    ]
    for name, m in (("validation", val), ("test", test)):
        lines.append(
            f"| {name} | {m['loss']:.4f} | {m['bits_per_char']:.4f} | {m['bits_per_byte']:.4f} "
            f"| {m['perplexity']:.3f} |"
        )
    lines += [
        "",
        f"Training: {test['step']} steps in {train_s:.0f} s of wall time "
        f"(median {sorted(tok_s)[len(tok_s) // 2]:.0f} tokens/s after the first log window, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)).",
        "",
        "![baseline loss by position](runs/learned_char/loss_by_position_test.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="lexlm main job")
    parser.add_argument("--out", default="results", help="report and run directories")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: lexinv, word_pooled, byte_patching, lama, pixel",
    )
    parser.add_argument(
        "--extra",
        default="",
        help="comma-separated longer sections to add: symbols (lexinvariant findings 3-4, "
        "10 to 25 more minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--compile-cache",
        default="",
        help="JAX persistent compilation cache folder ('' = <out>/jax_cache, 'none' = off): "
        "the many runs of one model shape compile once",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from experiments import lexinvariant, lm
    from experiments.lm_runs import evaluate_run, train_run

    out = as_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.compile_cache != "none":
        jax.config.update("jax_compilation_cache_dir", args.compile_cache or str(out / "jax_cache"))
        # only programs that take a while to compile: writing thousands of tiny ones costs more
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    started = time.perf_counter()

    base_dir = out / "runs" / "learned_char"
    cfg = lm.get_config("tiny")
    t0 = time.perf_counter()
    result = train_run(cfg, base_dir)
    train_s = time.perf_counter() - t0
    if result.stopped_by != "steps":
        raise SystemExit(f"baseline training interrupted at step {result.final_step}")
    metrics = {split: evaluate_run(base_dir, split=split) for split in ("validation", "test")}
    history = [json.loads(line) for line in (base_dir / "metrics.jsonl").read_text().splitlines()]
    sections = [baseline_section(metrics, history, train_s)]

    skip = set(filter(None, args.skip.split(",")))
    if "lexinv" not in skip:
        c = lexinvariant.get_config("tiny")
        findings = lexinvariant.run(c, out, reuse={"learned_char": base_dir})
        sections.append(lexinvariant.report_section(findings))

    if "word_pooled" not in skip:
        from experiments import word_pooled

        findings = word_pooled.run(word_pooled.get_config("main"), out)
        sections.append(word_pooled.report_section(findings))

    if "byte_patching" not in skip:
        from experiments import byte_patching

        findings = byte_patching.run(byte_patching.get_config("main"), out)
        sections.append(byte_patching.report_section(findings))

    if "lama" not in skip:
        from experiments import lama

        lama_out = out / "lama"
        findings = lama.run(lama.get_config("tiny"), lama_out)
        sections.append(lama.report_section(findings, image_dir="lama"))

    if "pixel" not in skip:
        from experiments import pixel_sentence

        pixel_out = out / "pixel"
        findings = pixel_sentence.run(pixel_sentence.get_config("tiny"), pixel_out)
        sections.append(pixel_sentence.report_section(findings, image_dir="pixel"))

    extra = set(filter(None, args.extra.split(",")))
    if "symbols" in extra:
        from experiments import lexinv_symbols

        findings = lexinv_symbols.run(lexinv_symbols.get_config("tiny"), out)
        sections.append(lexinv_symbols.report_section(findings))

    elapsed = time.perf_counter() - started
    header = [
        "# lexlm report",
        "",
        f"Produced by `python -m experiments.main --out {args.out}` in {elapsed:.0f} s "
        f"on {platform.machine()} with {jax.device_count()} {jax.devices()[0].platform} "
        f"device(s), jax {jax.__version__}.",
        "",
    ]
    (out / "report.md").write_text("\n".join(header + sections))
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.md'} ({elapsed:.0f} s)")


if __name__ == "__main__":
    main()
