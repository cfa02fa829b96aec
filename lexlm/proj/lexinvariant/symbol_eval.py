"""Scoring of the symbol-task runs (``lexlm.proj.lexinvariant.symbols``) from their checkpoints.

How accuracy is scored:

* Teacher-forced exact match of the argmax next-token prediction at answer positions, the argmax
  over the *full* vocabulary (text characters and all symbols): stricter than restricting it to
  symbols, and the same rule for every model.
* Per task over all its answer tokens (a copy of n symbols gives n answers); the mean is the
  unweighted mean over tasks. On held-out symbols (the finding) and on training symbols (did
  the model learn the tasks at all).
* Every model sees the same task rows (``eval_task_rows``: a paired comparison). Lexinvariant
  models draw fresh random tables per sequence, averaged over ``eval_draws`` draws.
* ``context_guess_units`` is the non-learned reference: a uniform guess among the distinct
  symbols already in the row, what "copy something from the context" earns without solving
  the task.
* Learned-table models (standard and semi) are scored with their learned table (p_eval = 0, as
  in ``lexlm.nn.lexinvariant``), where held-out rows only ever received gradient as softmax
  negatives; and, as ``heldout_random_rows``, with the held-out symbols' rows replaced by
  per-sequence random rows (a semi mask True exactly on those ids), the way one would give such
  a model fresh symbols.

Natural-text metrics come from ``lexlm.proj.lm.evaluate`` like any ``lm`` run's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lexlm.data.symbol_tasks import SymbolLayout, as_lengths, task_rows
from lexlm.experiment import store


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
    """Jitted (tokens [B, T], targets [B, T], answer [B, T], key) -> (correct [B], answers [B]):
    per row, the argmax hits and the count of answer positions.

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
        return jnp.sum(hit, axis=1), jnp.sum(answer, axis=1)

    return fn


def symbol_units(correct_fn, rows: dict, key, draws: int, batch_size: int) -> dict:
    """{'correct': [N], 'total': [N]}: each row's hits and answer positions, summed over
    ``draws`` embedding draws (the bootstrap's units are the rows).

    ``correct_fn`` comes from ``correct_function``; the last batch is padded with rows that
    have no answer positions, so one compiled shape serves every batch and task.
    """
    n, t = rows["inputs"].shape
    correct = np.zeros(n, np.int64)
    total = np.zeros(n, np.int64)
    for d in range(draws):
        for start in range(0, n, batch_size):
            batch = [rows[k][start : start + batch_size] for k in ("inputs", "targets", "answer")]
            real = batch[0].shape[0]
            if real < batch_size:
                pad = batch_size - real
                batch = [np.concatenate([x, np.zeros((pad, t), x.dtype)]) for x in batch]
            k = jax.random.fold_in(jax.random.fold_in(key, d), start)
            c, n_ans = correct_fn(*batch, k)
            correct[start : start + real] += np.asarray(c)[:real]
            total[start : start + real] += np.asarray(n_ans)[:real]
    return {"correct": correct, "total": total}


def accuracy(units: dict) -> float:
    """Hits over answer positions of ``symbol_units`` (or ``context_guess_units``)."""
    return float(np.sum(units["correct"]) / max(float(np.sum(units["total"])), 1.0))


def task_mean_metric(tasks):
    """The metric of a set's units (``'<task>:correct'``, ``'<task>:total'`` per row): the
    unweighted mean over tasks of each task's accuracy."""
    from lexlm.eval import intervals as iv

    return iv.mean_of([iv.ratio_of_sums(f"{t}:correct", f"{t}:total") for t in tasks])


def eval_task_rows(
    sc, tasks, lengths, layout: SymbolLayout, seq_len: int
) -> dict[str, dict[str, dict]]:
    """{symbol set: {task: rows}}, seeded by ``sc.eval_seed`` alone: the same for every model."""
    out: dict[str, dict[str, dict]] = {}
    lengths = as_lengths(lengths)
    for s, (name, ids) in enumerate((("heldout", layout.heldout_ids), ("train", layout.train_ids))):
        out[name] = {}
        for t, task in enumerate(tasks):
            rng = np.random.default_rng([int(sc.eval_seed), s, t])
            out[name][task] = task_rows(
                rng, ids, seq_len, int(sc.eval_rows), layout.separators, (task,), lengths
            )
    return out


def context_guess_units(rows: dict, symbol_ids) -> dict:
    """{'correct': [N], 'total': [N]}: per row, the expected hits of guessing uniformly among
    the distinct symbols seen so far, and its answer positions.

    Every answer symbol occurs earlier in its instance, so a guess is right with probability 1/k
    at an answer position with k distinct symbols in ``inputs[:t + 1]``: the score of a model
    that knows the answer is "some symbol from the context" but not which one.
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
    answer = np.asarray(rows["answer"], bool)
    guess = np.where(answer, 1.0 / np.maximum(seen, 1), 0.0)
    return {"correct": guess.sum(axis=1), "total": answer.sum(axis=1).astype(np.int64)}


def set_result(per_task: dict[str, dict]) -> dict:
    """One symbol set's entry: {task: accuracy, 'mean': the task mean, 'units': the per-row
    ``'<task>:correct'`` and ``'<task>:total'`` that intervals resample}."""
    out = {task: accuracy(u) for task, u in per_task.items()}
    out["mean"] = float(np.mean(list(out.values())))
    out["units"] = {
        f"{task}:{k}": np.asarray(u[k]).tolist() for task, u in per_task.items() for k in u
    }
    return out


def settings(sc, cfg) -> dict:
    """The scoring settings that change its numbers (with the run and the step)."""
    return {
        "kind": "symbols",
        "per_row_units": True,  # what the saved result holds (older results had no units)
        "tasks": str(cfg.symbols.tasks),
        "lengths": {k: list(v) for k, v in as_lengths(cfg.symbols.lengths).items()},
        "eval_rows": int(sc.eval_rows),
        "eval_draws": int(sc.eval_draws),
        "eval_seed": int(sc.eval_seed),
        "batch_size": int(cfg.eval.batch_size),
    }


def score_seed(sc, run_dir, cfg, step: int, seed: int) -> dict:
    """{set: {task: symbol_units}} of copy ``seed`` of a run at checkpoint ``step``, and its
    restored step and layout: the sets 'heldout', 'train' and, for learned-table models,
    'heldout_random_rows'."""
    from lexlm.nn import TransformerLM
    from lexlm.proj.lexinvariant.symbols import layout_of
    from lexlm.proj.lm.run import restore_lm

    model, params, tok, _, restored = restore_lm(run_dir, step, seed=seed)
    layout = layout_of(cfg, tok)
    lexinv = model.cfg.embedding == "lexinvariant"
    bs = int(cfg.eval.batch_size)
    key = jax.random.key(int(sc.eval_seed))
    task_names = tuple(str(cfg.symbols.tasks).split(","))
    rows = eval_task_rows(sc, task_names, cfg.symbols.lengths, layout, int(cfg.seq_len))
    draws = int(sc.eval_draws) if lexinv else 1  # semi at p_eval = 0 is deterministic
    plain = correct_function(model, params)
    sets = {
        name: {task: symbol_units(plain, r, key, draws, bs) for task, r in per_task.items()}
        for name, per_task in rows.items()
    }
    if not lexinv:
        randomised = correct_function(
            TransformerLM(semi_twin(model.cfg)), params, random_ids=layout.heldout_ids
        )
        sets["heldout_random_rows"] = {
            task: symbol_units(randomised, r, key, int(sc.eval_draws), bs)
            for task, r in rows["heldout"].items()
        }
    ids = {"heldout": layout.heldout_ids, "train": layout.train_ids}
    guess = {
        name: {task: context_guess_units(r, ids[name]) for task, r in per_task.items()}
        for name, per_task in rows.items()
    }
    return {"sets": sets, "guess": guess, "step": int(restored), "draws": draws,
            "model": model.cfg, "layout": layout}  # fmt: skip


def score_symbol_run(sc, run_dir, cfg, step: int) -> dict:
    """Symbol-task accuracies of one run's checkpoint ``step`` (``sc``: the experiment's
    ``symbols`` block: eval_rows, eval_draws, eval_seed), over its ``train.seeds`` copies:
    each set's per-row units averaged over the copies (every copy sees the same rows), and the
    spread of its task mean over them."""
    from lexlm.eval import intervals as iv

    per_seed = [
        score_seed(sc, run_dir, cfg, step, s) for s in range(int(cfg.train.get("seeds", 1)))
    ]
    first = per_seed[0]
    symbols = {}
    for name in first["sets"]:
        per_task = {
            task: iv.mean_over_seeds([p["sets"][name][task] for p in per_seed])
            for task in first["sets"][name]
        }
        symbols[name] = set_result(per_task)
        symbols[name]["spread"] = iv.seed_spread(
            [set_result(p["sets"][name])["mean"] for p in per_seed]
        )
    symbols["context_guess"] = {name: set_result(g) for name, g in first["guess"].items()}
    m = first["model"]
    return {
        "embedding": m.embedding,
        "semi_p": float(m.semi_p) if m.embedding == "semi" else 0.0,
        "step": first["step"],
        "seeds": len(per_seed),
        "symbol_draws": first["draws"],
        "text_draws": int(cfg.eval.draws),
        "symbols": symbols,
        "layout": first["layout"].to_json(),
    }


def evaluate_symbol_run(sc, run_dir, cfg, step: int) -> dict:
    """``score_symbol_run``, saved in the run's ``evals/`` (read back when asked again)."""

    def compute():
        return score_symbol_run(sc, run_dir, cfg, step)

    return store.evaluation(run_dir, "symbols", step, settings(sc, cfg), compute)
