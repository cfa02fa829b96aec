"""Training and checkpoint evaluation of each model kind in the word-pooled experiment.

Kinds: ``word_pooled`` (``lexlm.nn.word_pooled``), ``word`` (a closed-vocabulary word-level
TransformerLM whose unknown words are spelled by ``SpellingModel``), the token LMs
``byte``, ``char`` and ``subword`` (``experiments.lm_runs``, the foundation's TransformerLM),
and the byte-patching peers on UTF-8 bytes (``PATCH_KINDS``, also through ``lm_runs``, whose
``arch`` picks the module): ``byte_window`` (the byte LM with sliding-window attention),
``megabyte4`` / ``megabyte8`` (``lexlm.nn.megabyte``) and ``spacebyte``
(``lexlm.nn.spacebyte``), sized by the experiment config's ``patching`` fields.
Every run is a workdir with its own ``config.json``, so it is evaluated from its checkpoint
by ``evaluate_kind`` alone. What the evaluation returns, for every kind:

* ``bits_per_char`` / ``bits_per_byte`` over the whole split (end-of-word included for the
  word-pooled model; the spelled cost of unknown words for the word model) and the
  ``n_chars`` / ``n_bytes`` they divide by (the same text for every kind);
* ``predictions``: the greedy next word after each target's character-matched context
  (``lexlm.eval.next_word``).
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import lm_runs
from lexlm.errors import ConfigError
from lexlm.eval import next_word as nw
from lexlm.eval import restore_params
from lexlm.eval.flops import counted_flops, train_step_flops
from lexlm.paths import as_path
from lexlm.text.tokenizers import EOS_ID, PAD_ID, UNK_ID

TOKEN_KINDS = ("byte", "char", "subword")
# byte-level runs of another architecture (the byte-patching peers, ``experiments.byte_patching``):
# name -> (lm_runs arch, patch size or None)
PATCH_KINDS = {
    "byte_window": ("transformer", None),
    "megabyte4": ("megabyte", 4),
    "megabyte8": ("megabyte", 8),
    "spacebyte": ("spacebyte", None),
}
LM_KINDS = (*TOKEN_KINDS, *PATCH_KINDS)  # trained and evaluated through experiments.lm_runs
KINDS = ("word_pooled", "word", *LM_KINDS)


# -- configs -------------------------------------------------------------------------------
def word_pooled_config(c):
    from lexlm.nn.word_pooled import WordPooledConfig

    return WordPooledConfig(
        unit_vocab=int(c.unit_vocab),
        max_units=int(c.max_units),
        max_words=int(c.words),
        **c.model.to_dict(),
    )


def kind_config(c, kind: str) -> ml_collections.ConfigDict:
    """The run config of one model of experiment config ``c`` (steps set later)."""
    if kind not in KINDS:
        raise ConfigError("models", f"unknown model {kind!r}; allowed: {', '.join(KINDS)}")
    if kind in LM_KINDS:
        from experiments import lm

        r = lm.base_config()
        r.data = ml_collections.ConfigDict(c.data.to_dict())
        unit = "byte" if kind in PATCH_KINDS else kind
        r.data.unit = unit
        r.data.vocab_size = int(c.baseline.subword_vocab) if kind == "subword" else 0
        r.seq_len = int(c.baseline.seq_len[unit])
        r.model.update(c.baseline.model.to_dict())
        if kind in PATCH_KINDS:
            r.name = kind
            arch, patch = PATCH_KINDS[kind]
            r.arch = arch
            if kind == "byte_window":
                r.model.window = int(c.patching.window)
            else:
                sizes = c.patching[arch].to_dict()
                if patch is not None:
                    sizes["patch"] = patch
                r.model = ml_collections.ConfigDict(sizes)
        r.train = ml_collections.ConfigDict(c.train.to_dict())
        r.train.batch_size = int(c.baseline.batch_size)
        r.eval.batch_size = int(c.eval.batch_size)
        return r
    r = ml_collections.ConfigDict(c.to_dict())
    r.kind = kind
    r.data.unit = c.data.unit if kind == "word_pooled" else "char"
    if kind == "word":
        r.train.batch_size = int(c.baseline.batch_size)
    return r


# -- word streams --------------------------------------------------------------------------
def split_docs(cfg, split: str) -> list[str]:
    from lexlm.data import open_split, read_documents

    return read_documents(open_split(cfg.data, split), name=split)


_CACHE: dict = {}


def _cached(key, make):
    """In-process memo for splits and streams (the grid reads each split several times)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _data_key(cfg, split: str) -> str:
    return json.dumps([cfg.data.to_dict(), split], sort_keys=True, default=str)


def split_words(cfg, split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The split's whole words, model-independent: (texts, is_eos, characters per word), in
    the word-stream order (an eos word first and after every document)."""
    return _cached(("words", _data_key(cfg, split)), lambda: _split_words(cfg, split))


def _split_words(cfg, split: str):
    from lexlm.text.tokenizers import EOS_TEXT
    from lexlm.text.words import segment_words

    texts, is_eos = [EOS_TEXT], [True]
    for doc in split_docs(cfg, split):
        words = segment_words(doc)
        texts += [*words, EOS_TEXT]
        is_eos += [False] * len(words) + [True]
    chars = np.array([len(t) for t in texts], np.int64)
    return texts, np.asarray(is_eos, bool), chars


def eval_targets(texts, is_eos, max_units: int, n: int) -> np.ndarray:
    """Up to n target word indices, the same for every model: not eos, not the first word,
    and at most ``max_units`` UTF-8 bytes (so one piece whether units are bytes or chars)."""
    fits = np.array([len(t.encode("utf-8")) <= max_units for t in texts], bool)
    eligible = fits & ~is_eos & (np.arange(len(texts)) > 0)
    return nw.select_targets(texts, eligible, n)


def word_stream(cfg, tok, split: str):
    from lexlm.data.word_windows import build_word_stream

    key = ("stream", _data_key(cfg, split), tok.kind, tok.vocab_size, int(cfg.max_units))
    return _cached(key, lambda: build_word_stream(split_docs(cfg, split), tok, int(cfg.max_units)))


def _word_lm_config(cfg, vocab_size: int):
    from lexlm.nn import LMConfig

    return LMConfig(
        vocab_size=vocab_size,
        max_len=int(cfg.baseline.word_seq_len),
        **cfg.baseline.model.to_dict(),
    )


class _TokenWindows:
    """Word-id windows as ``{'inputs', 'targets', 'mask'}`` LM batches (resumable)."""

    def __init__(self, windows):
        self.windows = windows

    def __iter__(self):
        return self

    def __next__(self):
        b = next(self.windows)
        ids = b["ids"]
        return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "mask": b["word_mask"]}

    def get_state(self):
        return self.windows.get_state()

    def set_state(self, state):
        self.windows.set_state(state)


@dataclasses.dataclass
class Prepared:
    """What a run needs besides its config: task, batches, units per batch, bytes per unit."""

    task: object
    batches: object
    units_per_batch: int
    bytes_per_unit: float
    tokenizer: object


def prepare(cfg, workdir) -> Prepared:
    """Tokenizer (saved in the workdir), task and training batches of one run."""
    from lexlm.data.word_windows import SpellingModel, WordVocab, WordWindowBatches
    from lexlm.train import make_lm_task
    from lexlm.train.word_pooled_task import make_word_pooled_task

    workdir = as_path(workdir)
    host_batch = int(cfg.train.batch_size) // jax.process_count()
    seed = int(cfg.data.seed)
    if cfg.get("kind") is None:  # token LM
        from lexlm.data import lm_train_dataset, open_split

        tok = lm_runs.tokenizer_for(cfg, workdir)
        model_cfg = lm_runs.lm_config(cfg, tok.vocab_size)
        train = open_split(cfg.data, "train")
        dataset = lm_train_dataset(
            train, tok, seq_len=int(cfg.seq_len), batch_size=host_batch, seed=seed
        )
        ids = np.concatenate([tok.encode(d) for d in split_docs(cfg, "train")])
        return Prepared(
            make_lm_task(model_cfg, int(cfg.seq_len), name=workdir.name),
            iter(dataset),
            int(cfg.train.batch_size) * int(cfg.seq_len),
            float(tok.token_bytes[ids].mean()),
            tok,
        )
    tok = lm_runs.tokenizer_for(cfg, workdir)
    if cfg.kind == "word_pooled":
        stream = word_stream(cfg, tok, "train")
        bytes_per_piece = float(stream.n_bytes.mean())
        cfg.unit_vocab = tok.vocab_size
        task = make_word_pooled_task(word_pooled_config(cfg), name=workdir.name)
        batches = WordWindowBatches(
            stream.units, int(cfg.words), host_batch, seed, jax.process_index()
        )
        return Prepared(
            task, batches, int(cfg.train.batch_size) * int(cfg.words), bytes_per_piece, tok
        )
    words, is_eos, _ = split_words(cfg, "train")
    vocab_dir = workdir / "word_vocab"
    if (vocab_dir / "word_vocab.json").exists():
        vocab = WordVocab.load(vocab_dir)
    else:
        vocab = WordVocab.build(
            words, int(cfg.baseline.word_min_count), int(cfg.baseline.word_max_vocab)
        )
        vocab.save(vocab_dir)
        SpellingModel.build(words).save(vocab_dir)
    ids = vocab.encode(words, is_eos)
    seq = int(cfg.baseline.word_seq_len)
    task = make_lm_task(_word_lm_config(cfg, vocab.vocab_size), seq, name=workdir.name)
    batches = _TokenWindows(
        WordWindowBatches(ids, seq, host_batch, seed, jax.process_index(), key="ids")
    )
    n_bytes = sum(len(w.encode("utf-8")) for w in words) / max(len(ids), 1)
    return Prepared(task, batches, int(cfg.train.batch_size) * seq, n_bytes, vocab)


def _abstract_inputs(prep: Prepared):
    """Abstract parameters and batch of a run: FLOP counts need shapes, not values."""
    batch = next(iter_peek(prep.batches))
    params = jax.eval_shape(prep.task.init, jax.random.key(0))
    params = jax.tree.map(
        lambda x: x.value if hasattr(x, "value") else x,
        params,
        is_leaf=lambda x: hasattr(x, "value"),
    )
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    return params, spec


def step_flops(prep: Prepared) -> float:
    """Training FLOPs of one step (forward + backward), counted by XLA on this batch shape."""
    params, spec = _abstract_inputs(prep)
    return train_step_flops(prep.task.loss, params, spec, jax.random.key(0))


def forward_flops(prep: Prepared) -> float:
    """Inference FLOPs of one batch: the loss's forward pass, counted by XLA."""
    params, spec = _abstract_inputs(prep)
    return counted_flops(lambda p, b: prep.task.loss(p, b, jax.random.key(0))[0], params, spec)


def iter_peek(batches):
    """One batch without advancing a resumable iterator's state."""
    state = batches.get_state() if hasattr(batches, "get_state") else None
    batch = next(batches)
    if state is not None:
        batches.set_state(state)
    yield batch


def train_kind(cfg, workdir, steps: int):
    from lexlm.train import train

    workdir = as_path(workdir)
    cfg.train.steps = int(steps)
    if cfg.get("kind") is None:
        lm_runs.validate(cfg)
    lm_runs.save_config(cfg, workdir)
    prep = prepare(cfg, workdir)
    lm_runs.save_config(cfg, workdir)  # now with the unit vocabulary
    return train(cfg.train, prep.task, prep.batches, workdir)


# -- evaluation ----------------------------------------------------------------------------
def _restore(workdir):
    cfg = lm_runs.load_config(workdir)
    kind = cfg.get("kind")
    prep = prepare(cfg, workdir)
    params, step, _ = restore_params(prep.task, cfg.train, workdir)
    return cfg, kind, prep, params, step


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


def token_lm_predictions(model, params, tok, contexts, gen: int, batch_size: int) -> list[str]:
    """Greedy continuation of each context -> its first word.

    The TransformerLM has no key/value cache, so every generated token re-runs the model over
    the buffer (context + generated so far, trimmed to the longest row); a batch stops as soon
    as every row's text holds a complete first word (a second word has begun) or after
    ``gen`` tokens. Contexts longer than ``max_len - gen`` tokens keep their last tokens."""
    from lexlm.text.words import segment_words

    limit = model.cfg.max_len - gen
    contexts = [c[-limit:] for c in contexts]

    @jax.jit
    def step(params, buf, pos):
        logits = model.apply({"params": params}, buf, method="logits")
        last = jnp.take_along_axis(logits, (pos - 1)[:, None, None], axis=1)[:, 0]
        last = last.at[:, PAD_ID].set(-jnp.inf)
        nxt = jnp.argmax(last, axis=-1).astype(jnp.int32)
        buf = buf.at[jnp.arange(buf.shape[0]), pos].set(nxt)
        return buf, pos + 1

    def complete(text: str) -> bool:
        return len(segment_words(text)) >= 2

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
                if all(complete(t) for t in texts):
                    break
        b = np.asarray(b)
        for r in range(len(chunk)):
            out.append(nw.first_word(tok.decode(b[r, start[r] : start[r] + gen])))
    return out


def evaluate_kind(workdir, split: str = "test") -> dict:
    """Bits per character/byte and next-word predictions of a run from its checkpoint."""
    workdir = as_path(workdir)
    cfg = lm_runs.load_config(workdir)
    kind = cfg.get("kind") or cfg.get("name") or cfg.data.unit
    exp = lm_runs.load_config(workdir / "..")  # the experiment config of the grid
    n_targets, context_chars = int(exp.eval.targets), int(exp.eval.context_chars)
    if kind in LM_KINDS:
        metrics = lm_runs.evaluate_run(workdir, split=split)
        model, params, tok, _, _step = lm_runs.restore_lm(workdir)
        texts, is_eos, chars = split_words(exp, split)
        targets = eval_targets(texts, is_eos, int(exp.max_units), n_targets)
        contexts = []
        for i in targets:
            j = nw.context_start(chars, int(i), context_chars, 1 << 30)
            contexts.append(encode_context(tok, texts[j:i], is_eos[j:i]))
        gen = int(exp.eval.gen_units[cfg.data.unit])
        preds = token_lm_predictions(model, params, tok, contexts, gen, int(exp.eval.batch_size))
        result = {k: metrics[k] for k in ("bits_per_char", "bits_per_byte", "loss", "step")}
        result.update(zip(("n_chars", "n_bytes"), _token_text_size(cfg, tok, split)))
    elif kind == "word_pooled":
        result, preds, targets, texts = _evaluate_word_pooled(workdir, cfg, split, exp)
    else:
        result, preds, targets, texts = _evaluate_word(workdir, cfg, split, exp)
    from lexlm.text.words import word_body

    result.update(
        kind=kind,
        split=split,
        predictions=preds,
        targets=[word_body(texts[i]) for i in targets],
    )
    return result


def _token_text_size(cfg, tok, split):
    w = lm_runs.eval_windows(cfg, tok, split)
    return int(w["n_chars"]), int(w["n_bytes"])


def _evaluate_word_pooled(workdir, cfg, split, exp):
    from lexlm.data.word_windows import word_eval_windows
    from lexlm.nn.word_pooled import WordPooledLM, decode_word
    from lexlm.train.word_pooled_task import word_pooled_nll

    cfg, _, prep, params, step = _restore(workdir)
    model = WordPooledLM(word_pooled_config(cfg))
    tok = prep.tokenizer
    stream = word_stream(cfg, tok, split)
    windows = word_eval_windows(stream, int(cfg.words))
    nll_fn = jax.jit(lambda p, b: jnp.sum(word_pooled_nll(model, p, b)[0]))
    bs = int(exp.eval.batch_size)
    total = 0.0
    units, mask = windows["units"], windows["word_mask"]
    for s in range(0, len(units), bs):
        u, m = units[s : s + bs], mask[s : s + bs]
        pad = bs - len(u)
        if pad:
            u = np.concatenate([u, np.zeros((pad, *u.shape[1:]), u.dtype)])
            m = np.concatenate([m, np.zeros((pad, m.shape[1]), m.dtype)])
        total += float(nll_fn(params, {"units": u, "word_mask": m}))
    result = {
        "step": step,
        "loss": total / max(float(mask.sum()), 1.0),
        "bits_per_char": total / math.log(2) / float(windows["n_chars"]),
        "bits_per_byte": total / math.log(2) / float(windows["n_bytes"]),
        "n_chars": int(windows["n_chars"]),
        "n_bytes": int(windows["n_bytes"]),
    }
    # next words: context = the longest run of whole words within context_chars characters
    texts, is_eos, chars = split_words(cfg, split)
    targets = eval_targets(texts, is_eos, int(cfg.max_units), int(exp.eval.targets))
    piece_of_word = np.flatnonzero(~stream.continued)  # whole word k starts at this piece
    c = model.cfg

    @jax.jit
    def predict(params, ctx, last):
        b, w, length = ctx.shape
        pooled = model.apply({"params": params}, ctx.reshape(b * w, length), method="encode")
        states, _ = model.apply(
            {"params": params}, pooled.reshape(b, w, c.prefix, -1), method="contextualise"
        )
        at = jnp.take_along_axis(states, last[:, None, None, None], axis=1)[:, 0]
        return decode_word(model, params, at, jax.random.key(0))

    preds = []
    w_max = c.max_words
    for s in range(0, len(targets), bs):
        chunk = targets[s : s + bs]
        ctx = np.zeros((bs, w_max, c.max_units), np.int32)
        last = np.zeros((bs,), np.int32)
        for r, i in enumerate(chunk):
            j = nw.context_start(chars, int(i), int(exp.eval.context_chars), 1 << 30)
            a, b = piece_of_word[j], piece_of_word[i]
            a = max(a, b - w_max)
            ctx[r, : b - a] = stream.units[a:b]
            last[r] = b - a - 1
        out = np.asarray(predict(params, jnp.asarray(ctx), jnp.asarray(last)))
        for r in range(len(chunk)):
            preds.append(nw.first_word(tok.decode(out[r])))
    return result, preds, targets, texts


def _evaluate_word(workdir, cfg, split, exp):
    from lexlm.data.word_windows import SpellingModel, WordVocab, back_to_back
    from lexlm.nn import TransformerLM

    cfg, _, _prep, params, step = _restore(workdir)
    vocab = WordVocab.load(as_path(workdir) / "word_vocab")
    speller = SpellingModel.load(as_path(workdir) / "word_vocab")
    model = TransformerLM(_word_lm_config(cfg, vocab.vocab_size))
    texts, is_eos, chars = split_words(cfg, split)
    ids = vocab.encode(texts, is_eos)
    seq = int(cfg.baseline.word_seq_len)
    idx, mask = back_to_back(len(ids), seq)
    windows = ids[idx] * np.concatenate([np.ones_like(mask[:, :1]), mask], 1).astype(np.int32)
    nll_fn = jax.jit(lambda p, x, y: model.apply({"params": p}, x, y, method="nll"))
    total = 0.0
    bs = int(exp.eval.batch_size)
    for s in range(0, len(windows), bs):
        w = windows[s : s + bs]
        m = mask[s : s + bs]
        pad = bs - len(w)
        if pad:
            w = np.concatenate([w, np.zeros((pad, w.shape[1]), w.dtype)])
            m = np.concatenate([m, np.zeros((pad, m.shape[1]), m.dtype)])
        nll = np.asarray(nll_fn(params, w[:, :-1], w[:, 1:]))
        total += float((nll * m).sum())
    unk = ids[1:] == UNK_ID
    spelled = sum(speller.nats(t) for t, u in zip(texts[1:], unk) if u)
    total += spelled
    n_chars, n_bytes = int(chars[1:].sum()), int(sum(len(t.encode()) for t in texts[1:]))
    result = {
        "step": step,
        "loss": total / max(len(ids) - 1, 1),
        "bits_per_char": total / math.log(2) / n_chars,
        "bits_per_byte": total / math.log(2) / n_bytes,
        "n_chars": n_chars,
        "n_bytes": n_bytes,
        "oov_rate": float(unk.mean()),
    }
    targets = eval_targets(texts, is_eos, int(cfg.max_units), int(exp.eval.targets))

    @jax.jit
    def predict(params, buf, last):
        logits = model.apply({"params": params}, buf, method="logits")
        at = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
        return jnp.argmax(at.at[:, PAD_ID].set(-jnp.inf), axis=-1)

    preds = []
    for s in range(0, len(targets), bs):
        chunk = targets[s : s + bs]
        buf = np.zeros((bs, seq), np.int32)
        last = np.zeros((bs,), np.int32)
        for r, i in enumerate(chunk):
            j = nw.context_start(chars, int(i), int(exp.eval.context_chars), seq)
            buf[r, : i - j] = ids[j:i]
            last[r] = i - j - 1
        out = np.asarray(predict(params, jnp.asarray(buf), jnp.asarray(last)))
        preds += [nw.first_word(vocab.words[k]) if k > UNK_ID else "" for k in out[: len(chunk)]]
    return result, preds, targets, texts


def bigram_reference(cfg, train_texts, train_eos, like: dict) -> dict:
    """Next-word predictions of the count reference (``next_word.bigram_predictions``) for the
    same targets as the models (``like``: any model's evaluation)."""
    from lexlm.text.words import word_body

    split = str(cfg.eval.split)
    texts, is_eos, _ = split_words(cfg, split)
    targets = eval_targets(texts, is_eos, int(cfg.max_units), int(cfg.eval.targets))
    bodies = ["" if e else word_body(t) for t, e in zip(train_texts, train_eos)]
    previous = ["" if is_eos[i - 1] else word_body(texts[i - 1]) for i in targets]
    preds = nw.bigram_predictions(bodies, previous)
    truth = [word_body(texts[i]) for i in targets]
    if truth != list(like["targets"]):
        raise AssertionError("the reference and the models must share their targets")
    return {"kind": "bigram", "predictions": preds, "targets": truth}


__all__ = [
    "KINDS",
    "LM_KINDS",
    "PATCH_KINDS",
    "TOKEN_KINDS",
    "evaluate_kind",
    "forward_flops",
    "kind_config",
    "prepare",
    "step_flops",
    "train_kind",
]
