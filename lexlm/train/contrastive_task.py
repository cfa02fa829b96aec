"""Sentence-encoder tasks for the trainer (``lexlm.nn.vit.SentenceEncoder``).

Contrastive batches (``lexlm.data.sentence_pairs``): ``{'a': inputs [B, P, ...], 'a_mask': bool
[B, P], 'b': ..., 'b_mask': ..., 'weight': float32 [B]}``, row i of ``a`` and row i of ``b`` a
positive pair, every other row of the other side a negative. ``weight`` 0 marks filler rows: they
are neither a positive nor a negative for anyone. Optional ``'a_id'``, ``'b_id'``: int32 [B, 2],
each row's text identity (``sentence_pairs.text_ids``, a 64-bit hash in two halves): a candidate
that is the same sentence as the anchor or its positive is then no negative
(``duplicate_mask``), and the step's metrics count the masked candidates
(``duplicate_negatives``) and the positives identical to their anchor (``unchanged_positives``:
in a perturbation stage, the perturbations that left the text as it was).

MAE batches: ``{'a': patches uint8 [B, P, X], 'a_mask', 'hidden': bool [B, P] (the span mask,
``span_mask``), 'text': bool [B, P] (text patches, the end patch excluded)}``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Int, UInt8

from lexlm.nn.vit import EncoderConfig, SentenceEncoder
from lexlm.train.loop import Task

TEMPERATURE = 0.05  # Pixel-Linguist's


def _same(x: Int[Array, "B K"], y: Int[Array, "B K"]) -> Bool[Array, "B B"]:
    return jnp.all(x[:, None, :] == y[None, :, :], axis=-1)


def duplicate_mask(a_ids: Int[Array, "B K"], b_ids: Int[Array, "B K"]) -> Bool[Array, "B B"]:
    """[i, j] (i != j): whether b_j is no negative for a_i, nor a_i for b_j, because the texts
    repeat: b_j is the same sentence as a_i or as a_i's positive b_i, or a_j is the same
    sentence as a_i (b_j is then a positive of a_i's text). One matrix serves both directions
    of ``info_nce`` (row i's candidate b_j is column j's candidate a_i)."""
    dup = _same(a_ids, a_ids) | _same(b_ids, b_ids) | _same(a_ids, b_ids)
    return dup & ~jnp.eye(a_ids.shape[0], dtype=bool)


def info_nce(
    a: Float[Array, "B D"],
    b: Float[Array, "B D"],
    temperature: float = TEMPERATURE,
    weight: Float[Array, " B"] | None = None,
    duplicates: Bool[Array, "B B"] | None = None,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Symmetric in-batch InfoNCE on unit vectors: S = a b^T / t, the mean of the cross-entropy
    of S's rows and of its columns against the diagonal. Returns (loss, the fraction of rows and
    columns whose positive scores highest). Rows with weight 0 take no part; the off-diagonal
    pairs where ``duplicates`` ([B, B] bool, ``duplicate_mask``) is True leave the
    denominators (a repeated sentence is not its own negative)."""
    n = a.shape[0]
    w = jnp.ones((n,), jnp.float32) if weight is None else weight.astype(jnp.float32)
    s = (a @ b.T).astype(jnp.float32) / temperature
    keep = (w[None, :] > 0) & (w[:, None] > 0)
    if duplicates is not None:
        keep &= ~duplicates
    s = jnp.where(keep | jnp.eye(n, dtype=bool), s, -1e9)
    labels = jnp.arange(n)
    rows = optax.softmax_cross_entropy_with_integer_labels(s, labels)
    cols = optax.softmax_cross_entropy_with_integer_labels(s.T, labels)
    total = jnp.maximum(jnp.sum(w), 1.0)
    loss = 0.5 * (jnp.sum(rows * w) + jnp.sum(cols * w)) / total
    hit = 0.5 * (
        (jnp.argmax(s, 1) == labels).astype(jnp.float32)
        + (jnp.argmax(s, 0) == labels).astype(jnp.float32)
    )
    return loss, jnp.sum(hit * w) / total


def normalised_pixels(patches: Float[Array, "... X"], eps: float = 1e-6) -> Float[Array, "... X"]:
    """PIXEL's ``norm_pix_loss`` targets: each patch's pixels minus their mean, over their
    standard deviation (variance + eps, square-rooted)."""
    mean = jnp.mean(patches, axis=-1, keepdims=True)
    var = jnp.var(patches, axis=-1, keepdims=True)
    return (patches - mean) / jnp.sqrt(var + eps)


def mae_loss(
    pred: Float[Array, "B P X"],
    patches: UInt8[Array, "B P X"],
    hidden: Bool[Array, "B P"],
    text: Bool[Array, "B P"],
) -> Float[Array, ""]:
    """Mean squared error against the normalised pixels over the hidden text patches."""
    target = normalised_pixels(1.0 - patches.astype(jnp.float32) / 255.0)
    per_patch = jnp.mean((pred - target) ** 2, axis=-1)
    keep = (hidden & text).astype(jnp.float32)
    return jnp.sum(per_patch * keep) / jnp.maximum(jnp.sum(keep), 1.0)


def encoder_identity(cfg: EncoderConfig, objective: str) -> dict:
    fields = {f"model.{f.name}": getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return {**fields, "objective": objective}


def example_inputs(cfg: EncoderConfig, n: int = 1):
    if cfg.kind == "pixel":
        return jnp.zeros((n, cfg.max_len, cfg.pixels), jnp.uint8)
    return jnp.ones((n, cfg.max_len), jnp.int32)


def init_params(cfg: EncoderConfig, key: jax.Array, objective: str = "contrastive"):
    """Boxed (logically partitioned) parameters; the MAE decoder only for ``objective='mae'``."""
    model = SentenceEncoder(cfg)
    x, m = example_inputs(cfg), jnp.ones((1, cfg.max_len), bool)
    if objective == "mae":
        return model.init(key, x, m, m, method="reconstruct")["params"]
    return model.init(key, x, m)["params"]


def make_contrastive_task(
    cfg: EncoderConfig, temperature: float = TEMPERATURE, name: str = "contrastive"
) -> Task:
    """A fresh start; a stage that continues from earlier parameters begins from a step-0
    checkpoint of them instead (``seed_checkpoint``)."""
    model = SentenceEncoder(cfg)

    def init(key):
        return init_params(cfg, key)

    def loss(params, batch, key):
        del key
        ea = model.apply({"params": params}, batch["a"], batch["a_mask"])
        eb = model.apply({"params": params}, batch["b"], batch["b_mask"])
        metrics, dup = {}, None
        if "a_id" in batch:
            real = batch["weight"] > 0
            dup = duplicate_mask(batch["a_id"], batch["b_id"])
            both = real[:, None] & real[None, :]
            metrics["duplicate_negatives"] = jnp.sum(dup & both).astype(jnp.float32)
            same = jnp.all(batch["a_id"] == batch["b_id"], axis=-1) & real
            metrics["unchanged_positives"] = jnp.sum(same).astype(jnp.float32)
        total, acc = info_nce(ea, eb, temperature, batch["weight"], dup)
        tokens = 2 * jnp.sum(batch["weight"]).astype(jnp.float32)  # sentences encoded
        return total, {"pair_accuracy": acc, "tokens": tokens, **metrics}

    return Task(init=init, loss=loss, name=name,
                identity=encoder_identity(cfg, "contrastive"))  # fmt: skip


def make_mae_task(cfg: EncoderConfig, name: str = "mae") -> Task:
    model = SentenceEncoder(cfg)

    def init(key):
        return init_params(cfg, key, "mae")

    def loss(params, batch, key):
        del key
        pred = model.apply(
            {"params": params}, batch["a"], batch["a_mask"], batch["hidden"], method="reconstruct"
        )
        total = mae_loss(pred, batch["a"], batch["hidden"], batch["text"])
        return total, {"tokens": jnp.sum(batch["hidden"] & batch["text"]).astype(jnp.float32)}

    return Task(init=init, loss=loss, name=name, identity=encoder_identity(cfg, "mae"))


def seed_checkpoint(task: Task, train_cfg, workdir, params) -> bool:
    """Writes ``params`` (a plain tree of the task's structure) with a fresh optimizer state as
    the step-0 checkpoint of ``workdir``, so that ``train`` on it starts from them (the
    trainer resumes from the newest checkpoint). Does nothing where a checkpoint exists;
    returns whether it wrote one. Passing the parameters this way, not through ``task.init``,
    keeps them out of the compiled programs (jit would embed captured arrays as constants)."""
    from lexlm.paths import as_path
    from lexlm.train import sharding as shd
    from lexlm.train.checkpoint import Checkpointer
    from lexlm.train.loop import TrainState, build_state

    ckpt = Checkpointer(as_path(workdir) / "checkpoints", keep=int(train_cfg.keep),
                        identity_fields=task.identity)  # fmt: skip
    try:
        if ckpt.latest_step() is not None:
            return False
        mesh = shd.make_mesh(shd.resolve_mesh_shape(train_cfg.mesh, jax.device_count()))
        fns = build_state(task, train_cfg, mesh)
        placed = jax.device_put(unbox(params), fns.shardings.params)
        # a fresh optimizer state for these parameters (compiling only the optimizer's init,
        # not the model's)
        with jax.set_mesh(mesh):
            opt_state = jax.jit(fns.tx.init, out_shardings=fns.shardings.opt_state)(placed)
        step = jax.device_put(jnp.zeros((), jnp.int32), fns.shardings.step)
        ckpt.save(0, TrainState(step=step, params=placed, opt_state=opt_state), None)
        ckpt.wait()
        return True
    finally:
        ckpt.close()


def unbox(tree):
    import flax.linen as nn

    return nn.meta.unbox(tree)


def soup(trees: list) -> dict:
    """The uniform average (float32, numpy) of parameter trees of one structure (a model
    soup)."""
    if not trees:
        raise ValueError("soup: no parameter trees to average")
    trees = [jax.device_get(unbox(t)) for t in trees]  # on the host: no per-shape compiles
    return jax.tree.map(lambda *xs: np.mean(np.stack(xs).astype(np.float32), axis=0), *trees)
