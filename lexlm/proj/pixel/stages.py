"""The stages one encoder trains through, each from the one before (Pixel-Linguist's recipe):

1. ``mae`` (pixel only, ``stages.mae_steps`` > 0): PIXEL's masked-patch reconstruction.
2. ``unsup_<kind>``: one contrastive run per perturbation kind in ``stages.unsup``
   (``lexlm.text.perturb``: typo, word_shuffle, conditional_shuffle, combined), every run from
   the same start, the positive of a sentence its perturbed copy at ``stages.rate``; then
   ``soup``, their uniform parameter average (Pixel-Linguist's ``ensemble.py``).
3. ``stages.rounds`` times: ``topical`` (neighbouring sentences of one document, where the
   data has documents) and ``sup`` (scored train pairs, where the data has them).

Loss: symmetric in-batch InfoNCE at ``temperature``. Every stage trains in
``<run>/stages/<stage>`` through the one trainer; a stage that continues from earlier
parameters starts from a step-0 checkpoint of them. Checkpoints are numbered by a global
step that runs on over the stages (``offsets``), which is what selection records and
``python -m lexlm.evaluate --step`` name.
"""

from __future__ import annotations

import ml_collections

from lexlm.errors import ConfigError

SOUP = "soup"


def plan(c, kind: str) -> list[tuple[str, int]]:
    """(stage, steps) in order; ``soup`` has 0 steps (it averages the unsup runs)."""
    from lexlm.proj.pixel.config import has_documents, has_labels, unsup_kinds

    s = c.stages
    out = []
    if kind == "pixel" and int(s.get("mae_steps", 0)) > 0:
        out.append(("mae", int(s.mae_steps)))
    kinds = unsup_kinds(c) if int(s.unsup_steps) > 0 else []
    out += [(f"unsup_{k}", int(s.unsup_steps)) for k in kinds]
    if kinds:
        out.append((SOUP, 0))
    for r in range(int(s.rounds)):
        if int(s.topical_steps) > 0 and has_documents(c):
            out.append((f"topical_{r}", int(s.topical_steps)))
        if int(s.sup_steps) > 0 and has_labels(c):
            out.append((f"sup_{r}", int(s.sup_steps)))
    return out


def offsets(c, kind: str) -> list[tuple[str, int, int]]:
    """(stage, steps, offset): the stage's step k is global step offset + k; the soup, which
    trains no step, is global step offset + 1 (its own number: not the last unsup run's)."""
    out, offset = [], 0
    for stage, steps in plan(c, kind):
        out.append((stage, steps, offset))
        offset += 1 if stage == SOUP else steps
    return out


def is_candidate(stage: str) -> bool:
    """Whether a stage's checkpoints may be selected: from the soup on (an unsup run alone is
    one perturbation's model, the MAE stage has no sentence objective)."""
    return stage != "mae" and not stage.startswith("unsup_")


def locate(c, kind: str, global_step: int) -> tuple[str, int] | None:
    """(stage, checkpoint step in the stage's folder) of a global step, or None (the soup's
    parameters are its folder's step 0)."""
    for stage, steps, offset in offsets(c, kind):
        if stage == SOUP and global_step == offset + 1:
            return stage, 0
        if stage != SOUP and offset < global_step <= offset + steps:
            return stage, global_step - offset
    return None


def encoder_config(c, kind: str, vocab_size: int = 0):
    from lexlm.nn.vit import EncoderConfig

    try:
        return EncoderConfig(kind=kind, vocab_size=vocab_size if kind == "token" else 0,
                             **c.model.to_dict())  # fmt: skip
    except TypeError as e:
        raise ConfigError("model", str(e)) from None
    except ValueError as e:  # EncoderConfig names the field: "model.width: ..."
        field, _, message = str(e).partition(": ")
        raise ConfigError(field if message else "model", message or str(e)) from None


def render_config(c):
    from lexlm.text.render import RenderConfig

    try:
        return RenderConfig(max_patches=int(c.model.max_len), font_px=float(c.render.font_px),
                            font_path=str(c.render.font_path))  # fmt: skip
    except ValueError as e:
        field, _, message = str(e).partition(": ")
        if not field.startswith("render"):
            field, message = "render", str(e)
        raise ConfigError(field, message) from None


def features_for(c, kind: str, tokenizer=None):
    """The featurizer of ``kind``: rendered patches, or subword ids."""
    from lexlm.data.sentence_pairs import PixelFeatures, TokenFeatures

    if kind == "pixel":
        return PixelFeatures(render_config(c))
    return TokenFeatures(tokenizer, int(c.model.max_len))


def stage_train_config(c, steps: int) -> ml_collections.ConfigDict:
    """The ``train`` section of a stage of ``steps`` steps (warm-up and checkpoint spacing cut
    to fit a short stage)."""
    t = ml_collections.ConfigDict(c.train.to_dict())
    t.steps = int(steps)
    t.ckpt_every = min(int(t.ckpt_every), int(steps))
    t.warmup_steps = min(int(t.warmup_steps), max(int(steps) // 4, 1))
    return t
