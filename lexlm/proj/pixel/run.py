"""Pixel sentence encoders (Pixel-Linguist, Xiao et al., 2024, on PIXEL, Rust et al., 2023)
against a subword-token encoder of the same size, trained the same way.

    python -m experiments.pixel_sentence --config experiments/pixel_sentence.py:tiny \\
        --out results/pixel
    python -m experiments.pixel_sentence --config experiments/pixel_sentence.py:stsb \\
        --out results/pixel_stsb \\
        --config.data.files.train=../shared/data/stsb/sts-train.csv \\
        --config.data.files.validation=../shared/data/stsb/sts-dev.csv \\
        --config.data.files.test=../shared/data/stsb/sts-test.csv

Each model in ``models`` (``pixel``: rendered text, ``lexlm.text.render``; ``token``: a
sentencepiece BPE tokenizer trained on the training sentences) is a ``SentenceEncoder``
(``lexlm.nn.vit``) of the same width, depth, heads and sequence length, trained through these
stages, each from the one before (``stages``):

1. ``mae`` (pixel only, ``stages.mae_steps`` > 0): PIXEL's masked-patch reconstruction.
2. ``unsup_<kind>``: one contrastive run per perturbation kind in ``stages.unsup``
   (``lexlm.text.perturb``: typo, word_shuffle, conditional_shuffle, combined), every run from
   the same start; then ``soup``, their uniform parameter average (Pixel-Linguist's
   ``ensemble.py``).
3. ``stages.rounds`` times: ``topical`` (neighbouring sentences of one document, where the data
   has documents) and ``sup`` (labelled positive pairs, where the data has them).

Loss: symmetric in-batch InfoNCE at ``temperature`` (0.05). Every checkpoint from the soup on
is scored on the dev judgments (Spearman x 100 of cosine similarity); the best is kept in
``runs/<model>/best``. The report restores that checkpoint and scores the test judgments with
and without the pooling head, clean and at ``eval.typo_rates`` character typos (both sides of
every pair perturbed). Test never chooses anything.
"""

from __future__ import annotations

import json
import math
import time

import jax
import ml_collections
import numpy as np

from experiments import pixel_report as report
from experiments.pixel_data import default_data_config, load_data
from lexlm.errors import ConfigError
from lexlm.paths import as_path
from lexlm.train import default_train_config

MODELS = ("pixel", "token")


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = ml_collections.ConfigDict()
    c.experiment = "pixel_sentence"
    c.data = default_data_config()
    c.models = ",".join(MODELS)
    c.model = ml_collections.ConfigDict(
        dict(width=64, depth=2, heads=4, mlp_ratio=4, max_len=64, dec_width=64, dec_depth=1,
             dec_heads=4, dtype="float32")
    )  # fmt: skip
    c.render = ml_collections.ConfigDict(dict(font_px=8 * 120 / 72, font_path=""))
    c.tokenizer = ml_collections.ConfigDict(dict(vocab_size=2000))
    c.stages = ml_collections.ConfigDict(
        dict(mae_steps=0, mae_ratio=0.25, unsup="typo,word_shuffle,conditional_shuffle,combined",
             unsup_steps=12, rate=0.1, topical_steps=0, sup_steps=0, rounds=1)
    )  # fmt: skip
    c.temperature = 0.05
    c.train = default_train_config()
    c.train.update(batch_size=32, lr=2e-3, warmup_steps=10, log_every=10, ckpt_every=50, keep=1)
    c.train.update(progress=False, tensorboard=False, weight_decay=0.0)
    c.eval = ml_collections.ConfigDict(
        dict(typo_rates=(0.05, 0.1, 0.2), seed=0, batch=128, examples=3)
    )
    if arg == "tiny":
        pass
    elif arg == "stsb":
        c.data.source = "stsb"
        c.model.update(width=128, depth=4, heads=4, dec_width=128)
        c.tokenizer.vocab_size = 8000
        c.stages.update(unsup_steps=100, topical_steps=0, sup_steps=400)
        c.train.update(batch_size=64, lr=1e-3, warmup_steps=50, log_every=50, ckpt_every=100)
    else:
        raise ValueError(f"experiments/pixel_sentence.py: unknown config {arg!r}")
    return c


def model_names(c) -> list[str]:
    from experiments.cli import parse_names

    return parse_names(c.models, MODELS, "models")


def unsup_kinds(c) -> list[str]:
    from experiments.cli import parse_names
    from lexlm.text.perturb import PERTURBATIONS

    if not str(c.stages.unsup).strip():
        return []
    return parse_names(c.stages.unsup, PERTURBATIONS, "stages.unsup")


def stage_plan(c, data, kind: str) -> list[tuple[str, int]]:
    """(stage, steps) in order; ``soup`` has 0 steps (it averages the unsup runs)."""
    s = c.stages
    plan = []
    if kind == "pixel" and int(s.mae_steps) > 0:
        plan.append(("mae", int(s.mae_steps)))
    kinds = unsup_kinds(c) if int(s.unsup_steps) > 0 else []
    plan += [(f"unsup_{k}", int(s.unsup_steps)) for k in kinds]
    if kinds:
        plan.append(("soup", 0))
    for r in range(int(s.rounds)):
        if data.docs and int(s.topical_steps) > 0:
            plan.append((f"topical_{r}", int(s.topical_steps)))
        if data.sup and int(s.sup_steps) > 0:
            plan.append((f"sup_{r}", int(s.sup_steps)))
    if not any(name != "mae" for name, _ in plan):
        raise ConfigError("stages", "no contrastive stage: set unsup, topical or sup steps")
    return plan


def encoder_config(c, kind: str, vocab_size: int = 0):
    from lexlm.nn.vit import EncoderConfig

    try:
        return EncoderConfig(kind=kind, vocab_size=vocab_size if kind == "token" else 0,
                             **c.model.to_dict())  # fmt: skip
    except (TypeError, ValueError) as e:
        raise ConfigError("model", str(e)) from None


def features_for(c, kind: str, tokenizer=None):
    from lexlm.data.sentence_pairs import PixelFeatures, TokenFeatures
    from lexlm.text.render import RenderConfig

    if kind == "pixel":
        try:
            rc = RenderConfig(max_patches=int(c.model.max_len), font_px=float(c.render.font_px),
                              font_path=str(c.render.font_path))  # fmt: skip
        except ValueError as e:
            raise ConfigError("render", str(e)) from None
        return PixelFeatures(rc)
    return TokenFeatures(tokenizer, int(c.model.max_len))


def embedder(cfg, params, features, batch: int, head: bool = True):
    """texts -> [N, D] float32 unit vectors, in fixed-size batches (one compilation)."""
    from lexlm.nn.vit import jit_embed

    f = jit_embed(cfg, head)

    def embed(texts):
        texts = list(texts)
        out = []
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            x, m = features(chunk)  # filler rows are added after, so no count includes them
            pad = batch - len(chunk)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            m = np.concatenate([m, np.zeros((pad, m.shape[1]), bool)])
            out.append(np.asarray(f(params, x, m))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, cfg.width), np.float32)

    return embed


def _stage_train_cfg(c, steps: int):
    t = ml_collections.ConfigDict(c.train.to_dict())
    t.steps = steps
    t.ckpt_every = min(int(t.ckpt_every), steps)
    t.warmup_steps = min(int(t.warmup_steps), max(steps // 4, 1))
    return t


def _final_params(result):
    from lexlm.train.contrastive_task import unbox

    return jax.device_get(unbox(result.state.params))


def restore_state(task, train_cfg, workdir):
    """The full train state of ``workdir``'s newest checkpoint."""
    from lexlm.train import sharding as shd
    from lexlm.train.checkpoint import Checkpointer
    from lexlm.train.loop import build_state

    mesh = shd.make_mesh(shd.resolve_mesh_shape(train_cfg.mesh, jax.device_count()))
    fns = build_state(task, train_cfg, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", keep=int(train_cfg.keep),
                        identity_fields=task.identity)  # fmt: skip
    try:
        state, _, _ = ckpt.restore(fns.abstract)
    finally:
        ckpt.close()
    return state


class Selection:
    """Dev scores of every candidate checkpoint (``evals.jsonl``) and the best one's saved
    state (``best/checkpoints``, a step counter that grows over the stages)."""

    def __init__(self, workdir, identity):
        from lexlm.train.checkpoint import Checkpointer

        self.path = workdir / "evals.jsonl"
        self.records = (
            [json.loads(x) for x in self.path.read_text().splitlines()]
            if self.path.exists()
            else []
        )
        self.ckpt = Checkpointer(workdir / "best" / "checkpoints", keep=1, identity_fields=identity)

    def best_dev(self) -> float:
        dev = [r["dev"] for r in self.records if r["candidate"] and math.isfinite(r["dev"])]
        return max(dev, default=-math.inf)

    def add(self, record: dict, state) -> None:
        is_best = record["candidate"] and record["dev"] > self.best_dev()
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if is_best:
            self.ckpt.save(int(record["global_step"]), state, None)
            self.ckpt.wait()

    def close(self):
        self.ckpt.close()


def train_model(c, kind: str, data, features, vocab_size: int, workdir) -> dict:
    """Runs (or resumes) every stage of one encoder; returns the selected checkpoint's row."""
    from lexlm.data.sentence_pairs import MAEBatches, PairBatches, adjacent_pairs
    from lexlm.eval.checkpoint_eval import restore_params
    from lexlm.train import train
    from lexlm.train.contrastive_task import (
        make_contrastive_task,
        make_mae_task,
        seed_checkpoint,
        soup,
    )

    cfg = encoder_config(c, kind, vocab_size)
    workdir.mkdir(parents=True, exist_ok=True)
    base = make_contrastive_task(cfg, float(c.temperature), name=kind)
    select = Selection(workdir, base.identity)
    batch, seed = int(c.train.batch_size), int(c.train.seed)

    def dev_score(params) -> float:
        embed = embedder(cfg, params, features, int(c.eval.batch))
        return report.score(embed, data.dev, int(c.data.max_chars))["spearman"]

    start, unsup_params, offset, timings = None, [], 0, {}
    topical = adjacent_pairs(data.docs) if data.docs else None
    for stage, steps in stage_plan(c, data, kind):
        stage_dir = workdir / stage
        if stage == "soup":
            start = soup(unsup_params)
            seed_checkpoint(base, c.train, stage_dir, start)
            if not any(r["stage"] == "soup" for r in select.records):
                record = {"stage": "soup", "step": 0, "global_step": offset, "candidate": True,
                          "dev": dev_score(start)}  # fmt: skip
                select.add(record, restore_state(base, c.train, stage_dir))
            continue
        t_cfg = _stage_train_cfg(c, steps)
        if stage == "mae":
            task = make_mae_task(cfg)
            batches = MAEBatches(features, data.sentences, batch, seed, float(c.stages.mae_ratio))
        else:
            task = make_contrastive_task(cfg, float(c.temperature), name=stage)
            if start is not None:
                seed_checkpoint(task, t_cfg, stage_dir, start)
            if stage.startswith("unsup_"):
                left, right = data.sentences, None
                pkind = stage[len("unsup_") :]
            elif stage.startswith("topical_"):
                (left, right), pkind = topical, "typo"
            else:
                (left, right), pkind = data.sup, "typo"
            batches = PairBatches(features, left, right, batch, seed, pkind, float(c.stages.rate))
        candidate = not (stage == "mae" or stage.startswith("unsup_"))
        stage_offset = offset

        def hook(step, state, saved, stage=stage, candidate=candidate, base_step=stage_offset):
            if not saved or stage == "mae":
                return
            params = jax.device_get(state.params)
            select.add({"stage": stage, "step": int(step), "global_step": base_step + int(step),
                        "candidate": candidate, "dev": dev_score(params)}, state)  # fmt: skip

        t0 = time.perf_counter()
        result = train(t_cfg, task, batches, stage_dir, hooks=[hook])
        if result.stopped_by != "steps":
            select.close()
            raise SystemExit(f"{kind}/{stage}: training interrupted at step {result.final_step}")
        if result.history:
            rates = [h["tokens_per_s"] for h in result.history[1:]] or [
                h["tokens_per_s"] for h in result.history
            ]
            timings[stage] = {"sentences_per_s": float(np.median(rates)),
                              "wall_s": time.perf_counter() - t0}  # fmt: skip
        params = _final_params(result)
        if stage == "mae":
            params = {k: v for k, v in params.items() if k != "mae"}
            start = params
        elif stage.startswith("unsup_"):
            unsup_params.append(params)
        else:
            start = params
        offset += steps
    select.close()
    timing_path = workdir / "timings.json"
    if timings:
        timing_path.write_text(json.dumps(timings))
    timings = json.loads(timing_path.read_text()) if timing_path.exists() else {}

    chosen = report.select_on_dev(select.records)
    params, best_step, _ = restore_params(base, c.train, workdir / "best")
    if best_step != chosen["global_step"]:
        raise RuntimeError(
            f"{kind}: best checkpoint is step {best_step}, evals.jsonl chose "
            f"{chosen['global_step']}"
        )
    params = jax.device_get(params)
    embed = embedder(cfg, params, features, int(c.eval.batch))
    no_head = embedder(cfg, params, features, int(c.eval.batch), head=False)
    max_chars = int(c.data.max_chars)
    rows = report.robustness(embed, data.test, tuple(c.eval.typo_rates), int(c.eval.seed),
                             max_chars)  # fmt: skip
    return {
        "model": kind,
        "stage": chosen["stage"],
        "step": chosen["step"],
        "dev": chosen["dev"],
        "test": rows[0]["spearman"],
        "test_no_head": report.score(no_head, data.test, max_chars)["spearman"],
        "robustness": rows,
        "params": cfg.param_count(),
        "timings": timings,
        "features": features.stats(),
        "evals": select.records,
        "_embed": embed,
    }


def reference_row(c, data) -> dict:
    """Bag-of-words TF-IDF (idf from the training text; no training, no parameters): the
    reference that shows what the similarity judgments reward without any learning."""
    from lexlm.eval.sts import tfidf_embedder

    texts = [" ".join(d) for d in data.docs] if data.docs else data.sentences
    embed = tfidf_embedder(texts)
    max_chars = int(c.data.max_chars)
    rows = report.robustness(embed, data.test, tuple(c.eval.typo_rates), int(c.eval.seed),
                             max_chars)  # fmt: skip
    dev = report.score(embed, data.dev, max_chars)["spearman"]
    return {"model": "tfidf", "reference": True, "stage": "-", "step": 0, "dev": dev,
            "test": rows[0]["spearman"], "test_no_head": float("nan"), "robustness": rows,
            "params": 0}  # fmt: skip


def run(c, out) -> dict:
    from lexlm.text.tokenizers import build_tokenizer, load_tokenizer

    names = model_names(c)
    data = load_data(c.data)
    out = as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = None
    if "token" in names:
        tok_dir = out / "tokenizer"
        if tok_dir.exists() and any(tok_dir.iterdir()):
            tokenizer = load_tokenizer(tok_dir)
        else:
            try:
                tokenizer = build_tokenizer("subword", data.sentences,
                                            int(c.tokenizer.vocab_size), tok_dir)  # fmt: skip
            except ConfigError as e:  # the tokenizer names its LM config's field
                raise ConfigError("tokenizer.vocab_size", str(e).split(": ", 1)[1]) from None
    rows, pixel_features = [], None
    for name in names:
        features = features_for(c, name, tokenizer)
        pixel_features = features if name == "pixel" else pixel_features
        vocab = tokenizer.vocab_size if name == "token" else 0
        rows.append(train_model(c, name, data, features, vocab, out / "runs" / name))
    rows.append(reference_row(c, data))
    figures = {}
    curve = report.plot_robustness({r["model"]: r["robustness"] for r in rows})
    (out / "robustness.png").write_bytes(curve)
    figures["robustness"] = "robustness.png"
    if pixel_features is not None:
        examples = report.example_texts(data.sentences, int(c.eval.examples), int(c.eval.seed))
        png = report.plot_rendered(pixel_features.renderer, examples, int(c.eval.seed))
        (out / "rendered_examples.png").write_bytes(png)
        figures["rendered"] = "rendered_examples.png"
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    findings = {
        "source": c.data.source,
        "data": data.stats,
        "dev_pairs": report.target_size(data.dev),
        "test_pairs": report.target_size(data.test),
        "rows": clean,
        "typo_gap": report.typo_gap(clean, 0.1),
        "stages": [s for s, _ in stage_plan(c, data, names[0])],
        "figures": figures,
        "model": c.model.to_dict(),
        "batch": int(c.train.batch_size),
    }
    (out / "findings_pixel.json").write_text(json.dumps(findings, indent=2))
    return findings


def report_section(f: dict, image_dir: str = "") -> str:
    """Markdown for the report; ``image_dir`` is the figures' folder relative to the report."""
    m = f["model"]
    target = (
        "the 50-document Lee set's human similarity ratings (documents split in two halves: "
        "dev and test)"
        if f["source"] == "lee"
        else f"{f['source']} sentence pairs"
    )
    lines = [
        f"## Pixel sentence encoders against a subword encoder ({f['source']})",
        "",
        f"Width {m['width']}, depth {m['depth']}, {m['heads']} heads, {m['max_len']} patches "
        f"or tokens, batch {f['batch']} pairs; stages {' -> '.join(f['stages'])}. Scored on "
        f"{target}: Spearman x100 of cosine similarity, {f['dev_pairs']} dev and "
        f"{f['test_pairs']} test pairs; each model's checkpoint is chosen on dev, test reported.",
        "",
        *report.table(f["rows"]),
        "",
    ]
    gap = f["typo_gap"]
    if gap is not None:
        lines += [
            f"At 10% character typos the pixel encoder loses {gap['pixel']:.1f} points and the "
            f"subword encoder {gap['token']:.1f}"
            + (" (the pixel encoder loses less)." if gap["pixel"] < gap["token"] else "."),
            "",
        ]
    for key, name in (("robustness", "robustness curve"), ("rendered", "rendered examples")):
        if key in f["figures"]:
            png = f["figures"][key]
            lines += [f"![{name}]({image_dir}/{png})" if image_dir else f"![{name}]({png})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from experiments.cli import launch

    launch(run, report_section, "report_pixel.md", "experiments/pixel_sentence.py:tiny")
