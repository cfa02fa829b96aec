"""Evaluation of the symbol-task runs of ``experiments.lexinv_symbols``, from their checkpoints.

How accuracy is scored:

* Teacher-forced exact match of the argmax next-token prediction at answer positions, the argmax
  over the *full* vocabulary (text characters and all symbols): stricter than restricting it to
  symbols, and the same rule for every model.
* Per task over all its answer tokens (a copy of n symbols gives n answers); the mean is the
  unweighted mean over tasks. On held-out symbols (the finding) and on training symbols (did
  the model learn the tasks at all).
* Every model sees the same task rows (``eval_task_rows``: a paired comparison). Lexinvariant
  models draw fresh random tables per sequence, averaged over ``eval_draws`` draws.
* ``context_guess_accuracy`` is the non-learned reference: a uniform guess among the distinct
  symbols already in the row, what "copy something from the context" earns without solving
  the task.
* Learned-table models (standard and semi) are scored with their learned table (p_eval = 0, as
  in ``lexlm.nn.lexinvariant``), where held-out rows only ever received gradient as softmax
  negatives; and, as ``heldout_random_rows``, with the held-out symbols' rows replaced by
  per-sequence random rows (a semi mask True exactly on those ids), the way one would give such
  a model fresh symbols.
* Natural text: test-split loss and perplexity through ``lexlm.eval.accumulate_nll`` over
  ``lm_eval_windows``, as ``experiments.lm_runs.evaluate_run`` computes them for other runs.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lm_runs import load_run, restore_lm
from lexlm.data.symbol_tasks import SymbolLayout, as_lengths, task_rows
from lexlm.errors import CheckpointError
from lexlm.paths import as_path

LAYOUT_FILE = "symbols.json"  # the run's SymbolLayout, written when it starts training


def restore_symbol_lm(workdir: str | os.PathLike, step: int | None = None):
    """(model, params, tokenizer, layout, cfg, step). The model vocabulary is the tokenizer's
    plus the symbols, read from the run's ``symbols.json``."""
    workdir = as_path(workdir)
    _, tok = load_run(workdir)
    path = workdir / LAYOUT_FILE
    if not path.exists():
        raise CheckpointError(f"{workdir}: no {LAYOUT_FILE} (not a symbol-task run)")
    layout = SymbolLayout.from_json(json.loads(path.read_text()))
    if layout.text_vocab != tok.vocab_size:
        raise CheckpointError(f"{workdir}: {LAYOUT_FILE} does not match the tokenizer")
    model, params, tok, cfg, restored = restore_lm(workdir, step, vocab_size=layout.vocab_size)
    return model, params, tok, layout, cfg, restored


def semi_twin(cfg):
    """The same model as a 'semi' one, so that chosen ids can get random rows at evaluation.

    It takes the trained model's parameters as they are: the logit scale is pinned to what the
    trained model had ('auto' resolves differently for 'learned' and 'semi')."""
    scale = "learned" if cfg.learned_logit_scale else "none"
    return dataclasses.replace(cfg, embedding="semi", logit_scale=scale)


def answer_accuracy(logits, targets, answer) -> tuple[int, int]:
    """(correct, total) of argmax(logits) == targets over answer positions (full vocabulary)."""
    pred = np.argmax(np.asarray(logits), axis=-1)
    answer = np.asarray(answer, bool)
    return int(((pred == np.asarray(targets)) & answer).sum()), int(answer.sum())


def correct_function(model, params, random_ids=None):
    """Jitted (tokens, targets, answer, key) -> (correct, total) at answer positions.

    ``random_ids``: vocabulary ids whose rows are replaced by per-sequence random rows (a semi
    mask; the model must then be a 'semi' model); None: the model's own evaluation embedding.
    """
    from lexlm.train.lm_task import embedding_inputs

    cfg = model.cfg
    vocab_mask = None
    if random_ids is not None:
        vocab_mask = np.zeros(cfg.vocab_size, bool)
        vocab_mask[np.asarray(random_ids)] = True

    @jax.jit
    def fn(tokens, targets, answer, key):
        b = tokens.shape[0]
        if vocab_mask is not None:
            extra = {
                "seq_keys": jax.random.split(key, b),
                "semi_mask": jnp.broadcast_to(jnp.asarray(vocab_mask), (b, cfg.vocab_size)),
            }
        else:
            extra = embedding_inputs(cfg, key, b, train=False)
        logits = model.apply({"params": params}, tokens, method="logits", **extra)
        hit = (jnp.argmax(logits, axis=-1) == targets) & answer
        return jnp.sum(hit), jnp.sum(answer)

    return fn


def symbol_accuracy(correct_fn, rows: dict, key, draws: int, batch_size: int) -> float:
    """Accuracy over all answer positions of ``rows``, averaged over embedding draws.

    ``correct_fn`` comes from ``correct_function``; the last batch is padded with rows that
    have no answer positions, so one compiled shape serves every batch and task.
    """
    n, t = rows["inputs"].shape
    correct = total = 0
    for d in range(draws):
        for start in range(0, n, batch_size):
            batch = [rows[k][start : start + batch_size] for k in ("inputs", "targets", "answer")]
            pad = batch_size - batch[0].shape[0]
            if pad:
                batch = [np.concatenate([x, np.zeros((pad, t), x.dtype)]) for x in batch]
            k = jax.random.fold_in(jax.random.fold_in(key, d), start)
            c, n_ans = correct_fn(*batch, k)
            correct += int(c)
            total += int(n_ans)
    return correct / max(total, 1)


def eval_task_rows(c, layout: SymbolLayout, seq_len: int) -> dict[str, dict[str, dict]]:
    """{symbol set: {task: rows}}, seeded by ``c.eval_seed`` alone: the same for every model."""
    out: dict[str, dict[str, dict]] = {}
    lengths = as_lengths(c.lengths)
    for s, (name, ids) in enumerate((("heldout", layout.heldout_ids), ("train", layout.train_ids))):
        out[name] = {}
        for t, task in enumerate(c.tasks):
            rng = np.random.default_rng([int(c.eval_seed), s, t])
            out[name][task] = task_rows(
                rng, ids, seq_len, int(c.eval_rows), layout.separators, (task,), lengths
            )
    return out


def context_guess_accuracy(rows: dict, symbol_ids) -> float:
    """Expected accuracy of guessing uniformly among the distinct symbols seen so far in the row.

    Every answer symbol occurs earlier in its instance, so this is 1/k at an answer position
    with k distinct symbols in ``inputs[:t + 1]``: the score of a model that knows the answer
    is "some symbol from the context" but not which one.
    """
    is_symbol = np.isin(rows["inputs"], np.asarray(symbol_ids))
    n, t = rows["inputs"].shape
    seen = np.zeros((n, t), np.int64)
    for b in range(n):
        first = {}
        for i in np.flatnonzero(is_symbol[b]):
            first.setdefault(int(rows["inputs"][b, i]), int(i))
        firsts = np.sort(np.fromiter(first.values(), np.int64, len(first)))
        seen[b] = np.searchsorted(firsts, np.arange(t), side="right")
    answer = rows["answer"]
    return float(np.mean(1.0 / np.maximum(seen[answer], 1))) if answer.any() else 0.0


def _summary(per_task: dict[str, float]) -> dict[str, float]:
    return {**per_task, "mean": float(np.mean(list(per_task.values())))}


def evaluate_symbol_run(c, workdir: str | os.PathLike) -> dict:
    """Symbol-task accuracies and natural-text test metrics of one run, from its checkpoint.

    Writes ``eval_symbols.json`` into the run directory and returns the same dict.
    """
    from experiments.lm_runs import eval_windows, nll_function
    from lexlm.eval import accumulate_nll
    from lexlm.nn import TransformerLM

    workdir = as_path(workdir)
    model, params, tok, layout, cfg, step = restore_symbol_lm(workdir)
    random_model = model.cfg.embedding != "learned" or model.cfg.semi_p > 0
    lexinv = model.cfg.embedding == "lexinvariant"
    bs = int(cfg.eval.batch_size)
    key = jax.random.key(int(c.eval_seed))
    rows = eval_task_rows(c, layout, int(cfg.seq_len))
    draws = int(c.eval_draws) if lexinv else 1  # semi at p_eval = 0 is deterministic
    plain = correct_function(model, params)
    ids = {"heldout": layout.heldout_ids, "train": layout.train_ids}
    symbols = {
        name: _summary(
            {task: symbol_accuracy(plain, r, key, draws, bs) for task, r in sets.items()}
        )
        for name, sets in rows.items()
    }
    symbols["context_guess"] = {
        name: _summary({task: context_guess_accuracy(r, ids[name]) for task, r in sets.items()})
        for name, sets in rows.items()
    }
    if not lexinv:
        randomised = correct_function(
            TransformerLM(semi_twin(model.cfg)), params, random_ids=layout.heldout_ids
        )
        symbols["heldout_random_rows"] = _summary(
            {
                task: symbol_accuracy(randomised, r, key, int(c.eval_draws), bs)
                for task, r in rows["heldout"].items()
            }
        )
    windows = eval_windows(cfg, tok, "test", int(cfg.eval.max_windows))
    text_draws = max(int(cfg.eval.draws), 1) if lexinv else 1
    sums = accumulate_nll(nll_function(model, params), windows, bs, key, draws=text_draws)
    text = sums.summary()
    text.pop("loss_by_position")
    result = {
        "embedding": model.cfg.embedding,
        "semi_p": model.cfg.semi_p if model.cfg.embedding == "semi" else 0.0,
        "random_embedding_model": random_model,
        "step": step,
        "symbol_draws": draws,
        "text_draws": text_draws,
        "symbols": symbols,
        "test": text,
        "layout": layout.to_json(),
    }
    (workdir / "eval_symbols.json").write_text(json.dumps(result, indent=1))
    return result
