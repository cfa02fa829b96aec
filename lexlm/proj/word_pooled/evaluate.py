"""Checkpoint evaluation of the word-pooled grid's runs, each from its own ``config.json``.

``evaluate_run(run_dir, split, step)`` evaluates the ``word_pooled`` and ``word`` run kinds
(what ``python -m lexlm.evaluate`` calls for them): bits per character and per UTF-8 byte over
the whole split (end-of-word included for the word-pooled LM; the spelled cost of unknown
words for the word LM) with the ``n_chars`` / ``n_bytes`` they divide by (the same text for
every model), and the greedy next word after each target's character-matched context
(``lexlm.eval.next_word``). ``lm_next_words`` gives the same predictions for an ``lm`` run
(a token LM or a byte-patching model, whose bits are ``lexlm.proj.lm.evaluate``'s), and
``model_result`` puts a grid model's numbers together. Every evaluation is saved in the run's
``evals/`` under its identity and settings (``store.evaluation``).
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from lexlm.errors import CheckpointError
from lexlm.eval import next_word as nw
from lexlm.eval.intervals import UNIT_BYTES
from lexlm.experiment import store
from lexlm.paths import as_path
from lexlm.proj.word_pooled import data
from lexlm.text.tokenizers import EOS_ID, PAD_ID, UNK_ID


def settings(cfg, token_lm: bool = False, seed: int = 0) -> dict:
    """The evaluation settings that change its numbers (with the run, split and step)."""
    out = {
        "targets": int(cfg.eval.targets),
        "context_chars": int(cfg.eval.context_chars),
        "max_units": int(cfg.eval.max_units),
        "batch_size": int(cfg.eval.batch_size),
        "units": f"blocks of {UNIT_BYTES} bytes",  # per-unit bits and bytes are in the result
    }
    if int(cfg.train.get("seeds", 1)) > 1:
        out["train_seed"] = int(seed)
    if token_lm:
        out.update(next_words=True, gen_units=int(cfg.eval.gen_units))
    return out


def _step_of(run_dir, step: int | None) -> int:
    from lexlm.proj.lm.run import latest_step

    step = step if step is not None else latest_step(run_dir)
    if step is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to evaluate")
    return int(step)


def restore(run_dir, step: int, seed: int = 0):
    """(config, tokenizer or vocabulary, model config, params, step) of a ``word_pooled`` or
    ``word`` run (copy ``seed`` of a run trained with ``train.seeds`` > 1)."""
    from lexlm.eval import restore_params
    from lexlm.proj.word_pooled import artifacts, kinds

    run_dir = as_path(run_dir)
    cfg = store.load_run_config(run_dir)
    units = artifacts.load(cfg, run_dir / artifacts.folder_name(cfg))
    task = kinds.make_task(cfg, units.vocab_size, name=str(cfg.name))
    index = seed if int(cfg.train.get("seeds", 1)) > 1 else None
    params, restored, _ = restore_params(task, cfg.train, run_dir, step, seed=index)
    return cfg, units, kinds.model_config(cfg, units.vocab_size), params, restored


def evaluate_run(
    run_dir: str | os.PathLike, split: str | None = None, step: int | None = None, seed: int = 0
) -> dict:
    """Bits and next-word predictions of a ``word_pooled`` or ``word`` run's checkpoint
    ``step`` (default: the newest) on ``split`` (default: the run's ``eval.split``), and the
    per-document bits and bytes (``units``) the intervals resample; ``seed`` is the copy of a
    run trained with ``train.seeds`` > 1."""
    run_dir = as_path(run_dir)
    cfg = store.load_run_config(run_dir)
    split = split or str(cfg.eval.split)
    step = _step_of(run_dir, step)

    def compute():
        from lexlm.data.word_windows import SpellingModel
        from lexlm.proj.word_pooled import artifacts

        cfg_, units, model_cfg, params, restored = restore(run_dir, step, seed)
        if str(cfg_.kind) == "word_pooled":
            result = _evaluate_word_pooled(cfg_, units, model_cfg, params, split)
        else:
            speller = SpellingModel.load(run_dir / artifacts.folder_name(cfg_))
            result = _evaluate_word(cfg_, units, speller, model_cfg, params, split)
        return {"split": split, "step": int(restored), "kind": str(cfg_.kind), **result}

    return store.evaluation(run_dir, split, step, settings(cfg, seed=seed), compute)


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) == rows:
        return x
    return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])


@functools.lru_cache(maxsize=16)
def _word_pooled_fns(model_cfg):
    """Jitted NLL and next-word functions per model config (one compile per shape)."""
    from lexlm.nn.word_pooled import WordPooledLM, decode_word
    from lexlm.train.word_pooled_task import word_pooled_nll

    model = WordPooledLM(model_cfg)
    c = model_cfg

    @jax.jit
    def nll(params, batch):  # [B, W]: nats of each target word piece
        return jnp.sum(word_pooled_nll(model, params, batch)[0], axis=-1)

    @jax.jit
    def predict(params, ctx, last):
        b, w, length = ctx.shape
        pooled = model.apply({"params": params}, ctx.reshape(b * w, length), method="encode")
        states, _ = model.apply(
            {"params": params}, pooled.reshape(b, w, c.prefix, -1), method="contextualise"
        )
        at = jnp.take_along_axis(states, last[:, None, None, None], axis=1)[:, 0]
        return decode_word(model, params, at, jax.random.key(0))

    return nll, predict


def _evaluate_word_pooled(cfg, tok, model_cfg, params, split: str) -> dict:
    from lexlm.data.word_windows import doc_sums, unit_of_pieces, word_eval_windows

    nll_fn, predict = _word_pooled_fns(model_cfg)
    stream = data.word_stream(cfg, tok, split)
    windows = word_eval_windows(stream, int(cfg.words))
    bs = int(cfg.eval.batch_size)
    doc = unit_of_pieces(stream.is_eos, stream.n_bytes)  # the test units
    n_docs = int(doc.max()) + 1
    doc_nats = np.zeros(n_docs)
    units, mask = windows["units"], windows["word_mask"]
    for s in range(0, len(units), bs):
        batch = {
            "units": _pad_rows(units[s : s + bs], bs),
            "word_mask": _pad_rows(mask[s : s + bs], bs),
        }
        nats = np.asarray(nll_fn(params, batch), np.float64)[: len(units[s : s + bs])]
        pieces = windows["target_pieces"][s : s + bs]
        real = mask[s : s + bs] > 0
        doc_nats += doc_sums(doc[pieces[real]], nats[real], n_docs)
    total = float(doc_nats.sum())
    doc_bytes = doc_sums(doc[1:], stream.n_bytes[1:], n_docs)
    result = {
        "loss": total / max(float(mask.sum()), 1.0),
        "bits_per_char": total / math.log(2) / float(windows["n_chars"]),
        "bits_per_byte": total / math.log(2) / float(windows["n_bytes"]),
        "n_chars": int(windows["n_chars"]),
        "n_bytes": int(windows["n_bytes"]),
        "units": {"bits": (doc_nats / math.log(2)).tolist(), "bytes": doc_bytes.tolist()},
    }
    # next words: context = the longest run of whole words within context_chars characters
    texts, _, chars, targets = data.targets_of(cfg, split)
    piece_of_word = np.flatnonzero(~stream.continued)  # whole word k starts at this piece
    preds = []
    w_max, length = model_cfg.max_words, model_cfg.max_units
    for s in range(0, len(targets), bs):
        chunk = targets[s : s + bs]
        ctx = np.zeros((bs, w_max, length), np.int32)
        last = np.zeros((bs,), np.int32)
        for r, i in enumerate(chunk):
            j = nw.context_start(chars, int(i), int(cfg.eval.context_chars), 1 << 30)
            a, b = piece_of_word[j], piece_of_word[i]
            a = max(a, b - w_max)
            ctx[r, : b - a] = stream.units[a:b]
            last[r] = b - a - 1
        out = np.asarray(predict(params, jnp.asarray(ctx), jnp.asarray(last)))
        preds += [nw.first_word(tok.decode(out[r])) for r in range(len(chunk))]
    return {**result, **_with_targets(texts, targets, preds)}


@functools.lru_cache(maxsize=16)
def _word_fns(model_cfg):
    from lexlm.nn import TransformerLM

    model = TransformerLM(model_cfg)

    @jax.jit
    def nll(params, x, y):
        return model.apply({"params": params}, x, y, method="nll")

    @jax.jit
    def predict(params, buf, last):
        logits = model.apply({"params": params}, buf, method="logits")
        at = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
        return jnp.argmax(at.at[:, PAD_ID].set(-jnp.inf), axis=-1)

    return nll, predict


def _evaluate_word(cfg, vocab, speller, model_cfg, params, split: str) -> dict:
    from lexlm.data.word_windows import back_to_back, doc_sums, unit_of_pieces

    nll_fn, predict = _word_fns(model_cfg)
    texts, is_eos, chars, targets = data.targets_of(cfg, split)
    ids = vocab.encode(texts, is_eos)
    seq = int(cfg.seq_len)
    idx, mask = back_to_back(len(ids), seq)
    windows = ids[idx] * np.concatenate([np.ones_like(mask[:, :1]), mask], 1).astype(np.int32)
    text_bytes = np.array([len(t.encode()) for t in texts], np.int64)
    doc = unit_of_pieces(is_eos, text_bytes)  # the test units
    n_docs = int(doc.max()) + 1
    doc_nats = np.zeros(n_docs)
    bs = int(cfg.eval.batch_size)
    for s in range(0, len(windows), bs):
        w, m = _pad_rows(windows[s : s + bs], bs), _pad_rows(mask[s : s + bs], bs)
        nll = np.asarray(nll_fn(params, w[:, :-1], w[:, 1:]), np.float64)
        rows = len(windows[s : s + bs])
        real = m[:rows] > 0
        doc_nats += doc_sums(doc[idx[s : s + bs, 1:][real]], nll[:rows][real], n_docs)
    unk = ids[1:] == UNK_ID
    spelled = np.array([speller.nats(t) if u else 0.0 for t, u in zip(texts[1:], unk)])
    doc_nats += doc_sums(doc[1:], spelled, n_docs)
    total = float(doc_nats.sum())
    word_bytes = np.array([len(t.encode()) for t in texts[1:]], np.float64)
    n_chars, n_bytes = int(chars[1:].sum()), int(word_bytes.sum())
    result = {
        "loss": total / max(len(ids) - 1, 1),
        "bits_per_char": total / math.log(2) / n_chars,
        "bits_per_byte": total / math.log(2) / n_bytes,
        "n_chars": n_chars,
        "n_bytes": n_bytes,
        "oov_rate": float(unk.mean()),
        "units": {
            "bits": (doc_nats / math.log(2)).tolist(),
            "bytes": doc_sums(doc[1:], word_bytes, n_docs).tolist(),
        },
    }
    preds = []
    for s in range(0, len(targets), bs):
        chunk = targets[s : s + bs]
        buf = np.zeros((bs, seq), np.int32)
        last = np.zeros((bs,), np.int32)
        for r, i in enumerate(chunk):
            j = nw.context_start(chars, int(i), int(cfg.eval.context_chars), seq)
            buf[r, : i - j] = ids[j:i]
            last[r] = i - j - 1
        out = np.asarray(predict(params, jnp.asarray(buf), jnp.asarray(last)))
        preds += [nw.first_word(vocab.words[k]) if k > UNK_ID else "" for k in out[: len(chunk)]]
    return {**result, **_with_targets(texts, targets, preds)}


def _with_targets(texts, targets, preds) -> dict:
    from lexlm.text.words import word_body

    return {"predictions": list(preds), "targets": [word_body(texts[i]) for i in targets]}


# -- token LMs (lm runs) -------------------------------------------------------------------
def encode_context(tok, words, is_eos) -> np.ndarray:
    """Token ids of consecutive words, eos words as ``EOS_ID``, the rest encoded jointly."""
    ids, run = [], []
    for w, e in zip(words, is_eos):
        if e:
            if run:
                ids.append(tok.encode("".join(run)))
                run = []
            ids.append(np.array([EOS_ID], np.int32))
        else:
            run.append(w)
    if run:
        ids.append(tok.encode("".join(run)))
    return np.concatenate(ids).astype(np.int32) if ids else np.zeros((0,), np.int32)


@functools.lru_cache(maxsize=16)
def _greedy_step(model):
    @jax.jit
    def step(params, buf, pos):
        logits = model.apply({"params": params}, buf, method="logits")
        last = jnp.take_along_axis(logits, (pos - 1)[:, None, None], axis=1)[:, 0]
        last = last.at[:, PAD_ID].set(-jnp.inf)
        nxt = jnp.argmax(last, axis=-1).astype(jnp.int32)
        buf = buf.at[jnp.arange(buf.shape[0]), pos].set(nxt)
        return buf, pos + 1

    return step


def token_lm_predictions(model, params, tok, contexts, gen: int, batch_size: int) -> list[str]:
    """Greedy continuation of each context -> its first word.

    Every generated token re-runs the model over the buffer (context + generated so far,
    trimmed to the longest row); a batch stops as soon as every row's text holds a complete
    first word (a second word has begun) or after ``gen`` tokens. Contexts longer than
    ``max_len - gen`` tokens keep their last tokens."""
    from lexlm.text.words import segment_words

    limit = model.cfg.max_len - gen
    contexts = [c[-limit:] for c in contexts]
    step = _greedy_step(model)
    out = []
    for s in range(0, len(contexts), batch_size):
        chunk = contexts[s : s + batch_size]
        width = max(max(len(c) for c in chunk), 1) + gen
        width = min(-(-width // 16) * 16, model.cfg.max_len)  # few distinct shapes to compile
        buf = np.zeros((batch_size, width), np.int32)
        pos = np.ones((batch_size,), np.int32)
        for r, ctx in enumerate(chunk):
            buf[r, : len(ctx)] = ctx
            pos[r] = max(len(ctx), 1)
        start = pos.copy()
        b, p = jnp.asarray(buf), jnp.asarray(pos)
        for g in range(gen):
            b, p = step(params, b, p)
            if g >= 2:
                host = np.asarray(b)
                texts = [
                    tok.decode(host[r, start[r] : start[r] + g + 1]) for r in range(len(chunk))
                ]
                if all(len(segment_words(t)) >= 2 for t in texts):
                    break
        b = np.asarray(b)
        out += [
            nw.first_word(tok.decode(b[r, start[r] : start[r] + gen])) for r in range(len(chunk))
        ]
    return out


def lm_next_words(
    run_dir, split: str | None = None, step: int | None = None, seed: int = 0
) -> dict:
    """An ``lm`` run's greedy next words on its ``eval.targets`` targets, and the characters
    and bytes of ``split`` its bits divide by (``n_chars``, ``n_bytes``)."""
    from lexlm.proj.lm.evaluate import eval_windows
    from lexlm.proj.lm.run import load_run, restore_lm

    run_dir = as_path(run_dir)
    cfg, tok = load_run(run_dir)
    split = split or str(cfg.eval.split)
    step = _step_of(run_dir, step)

    def compute():
        windows = eval_windows(cfg, tok, split)
        out = {"n_chars": int(windows["n_chars"]), "n_bytes": int(windows["n_bytes"])}
        texts, is_eos, chars, targets = data.targets_of(cfg, split)
        preds = []
        if len(targets):
            model, params, _, _, _ = restore_lm(run_dir, step, seed=seed)
            contexts = []
            for i in targets:
                j = nw.context_start(chars, int(i), int(cfg.eval.context_chars), 1 << 30)
                contexts.append(encode_context(tok, texts[j:i], is_eos[j:i]))
            gen, bs = int(cfg.eval.gen_units), int(cfg.eval.batch_size)
            preds = token_lm_predictions(model, params, tok, contexts, gen, bs)
        return {"split": split, "step": step, **out, **_with_targets(texts, targets, preds)}

    return store.evaluation(run_dir, split, step, settings(cfg, token_lm=True, seed=seed), compute)


def seed_result(run_dir, split: str, step: int, seed: int = 0) -> dict:
    """One trained copy's evaluation: bits per byte and per character, the text they divide
    by, the per-document bits and bytes, and (with targets) its next-word predictions."""
    cfg = store.load_run_config(run_dir)
    if str(cfg.kind) != "lm":
        return evaluate_run(run_dir, split, step, seed=seed)
    from lexlm.proj.lm.evaluate import evaluate_run as evaluate_lm

    bits = evaluate_lm(run_dir, split=split, step=step, seed=seed)
    out = {k: bits[k] for k in ("loss", "bits_per_char", "bits_per_byte", "step", "units")}
    return {**out, **lm_next_words(run_dir, split, step, seed=seed), "kind": "lm"}


def model_result(run_dir, split: str, step: int) -> dict:
    """One grid model's evaluation: seed 0's result (``seed_result``) and, under ``seeds``,
    every trained seed's bits per byte, their spread, and the per-document bits averaged
    over seeds (what the paired intervals resample)."""
    from lexlm.eval import intervals as iv

    cfg = store.load_run_config(run_dir)
    n = int(cfg.train.get("seeds", 1))
    per_seed = [seed_result(run_dir, split, step, s) for s in range(n)]
    out = dict(per_seed[0])
    units = iv.mean_over_seeds([r["units"] for r in per_seed])
    out["units"] = {k: v.tolist() for k, v in units.items()}
    out["seeds"] = {
        "n": n,
        "bits_per_byte": iv.seed_spread([r["bits_per_byte"] for r in per_seed]),
    }
    return out
