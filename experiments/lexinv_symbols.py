"""Lexinvariant LMs on in-context symbol tasks (Huang et al., NeurIPS 2023): findings 3 and 4.

Paper 1 of ``/work/shared/papers/lexinvariant_and_word_pooled.md``:

* Finding 3, "Synthetic in-context reasoning" (laptop experiment 3, "Symbol ICL"): pure symbol
  manipulation tasks in the spirit of Wu et al. 2022 (lookup, copy, and a permutation:
  reversal) written with symbols the model never saw in training. The paper reports the
  lexinvariant LM about 4x more accurate than the standard LM on average.
* Finding 4, "Regularising toward lexinvariance" (laptop experiment 4): the semi-lexinvariant
  LM (``model.embedding='semi'``, a type's learned row replaced by a random one with
  probability p, per sequence and per type) for p in {0, 0.1, 0.2, 0.5}, p = 0 being the
  standard LM: natural-text test perplexity against symbol-task accuracy.

Design (and why):

* **Symbols.** The character tokenizer of the run covers the natural text (ids 0..V_text-1);
  S extra ids V_text..V_text+S-1 are symbols, so the model's vocabulary is V_text + S. The
  first half is the *training* set, mixed into the training data; the second half is *held
  out*: it never occurs in any training batch. Natural text never contains a symbol id.
* **Task formats.** Symbols of one instance are distinct (drawn without replacement), so every
  answer is determined by the context. Instances are separated by eos (each is a small
  "document"); a row starts with eos so the first instance has a context start, as in the
  evaluation windows of ``lexlm.data.pipeline``. Markers are characters of the run's
  vocabulary (looked up with ``tok.encode``; first available of a candidate list), one per
  role, so the query marker names the task (``_`` = pair separator):

  - lookup: ``k1 v1 _ k2 v2 _ ... kn vn | kj`` -> ``vj``
  - copy:   ``s1 s2 ... sn =``                  -> ``s1 s2 ... sn``
  - reverse:``s1 s2 ... sn <``                  -> ``sn ... s2 s1``

  Keys sit directly before their values, and listed symbols are not separated, so each answer
  needs one-token matching (an induction head for lookup and copy, a "look back to the
  predecessor" head for reverse), which a 2-layer model can implement; a ``k:v`` separator
  would require matching a two-token pattern. Copy and reverse had one shared marker in a
  first version, which made their first answer a coin flip; distinct markers fix that.
* **Few-shot rows.** A task row holds instances of *one* task. For the lexinvariant model
  every marker is a fresh random vector in every sequence, so it can only tell copy from
  reverse by the earlier instances in its context; a row of one task is a few-shot prompt,
  the setting the paper's in-context tasks are posed in. The first instance of a row is
  therefore zero-shot for the lexinvariant model and counts like the others.
* **Training mix.** ``SymbolMix`` wraps the natural-text batch iterator of
  ``lm_train_dataset``: each row is replaced, with probability ``mix_prob`` (seeded per batch
  index), by a task row over *training* symbols, its task drawn uniformly. The whole row is
  ordinary LM training data (loss on every real token, pad masked), as in the paper's mixing
  of tasks into text. Its state is the inner iterator's state plus its batch index, so
  checkpoints resume exactly.
* **Accuracy.** Teacher-forced exact match of the argmax next-token prediction at answer
  positions, argmax over the *full* vocabulary (text characters and all symbols; stricter
  than restricting to symbols, and the same rule for every model). Per task over all answer
  tokens of that task (a copy of n symbols gives n answers); the mean is the unweighted mean
  over tasks. Evaluated on held-out symbols (the finding) and on training symbols (sanity
  check: a model that learned the tasks does well there). Lexinvariant models draw fresh
  random tables per sequence, averaged over ``draws`` draws; every model sees the same task
  rows. A non-learned reference, ``context_guess_accuracy``, guesses uniformly among the
  distinct symbols already in the row: what "copy something from the context" earns without
  solving the task.
* **Semi models at evaluation** use the learned table (p_eval = 0, as documented in
  ``lexlm.nn.lexinvariant``): held-out symbols then keep their learned rows, which only ever
  received gradient as softmax negatives. As an extra column we also evaluate every
  learned-table model (p = 0 included) with the held-out symbols' rows replaced by per-sequence
  random rows (a semi mask that is True exactly on the held-out ids), which is how one would
  give a semi-lexinvariant model fresh symbols; the lexinvariant model needs no such variant.
* **Natural text** is evaluated on the test split through ``lexlm.eval.accumulate_nll`` over
  ``lm_eval_windows``, exactly as ``experiments.lm_runs.evaluate_run`` does for other runs.

Configs (``get_config(arg)``):

* ``tiny``: the embedded corpus, character units, the 2 x 128 model and context 128 of
  ``experiments/lm.py:tiny``, 10% task rows, 800 steps; the five runs (standard = p 0,
  lexinvariant, semi p 0.1 / 0.2 / 0.5) and their evaluation take about ten minutes on two
  CPU cores. ``python -m experiments.lexinv_symbols --config tiny --out results``

  At this scale no model learns the tasks (accuracy near the context-guess reference), so the
  tiny run checks the pipeline and the structural part of finding 3 (the standard LM cannot
  emit a symbol it never saw; the lexinvariant LM scores the same on held-out and training
  symbols), not the paper's 4x. What we measured while choosing it (2 x 128 model, CPU):
  with 10%, 30% or 50% task rows and 800-1500 steps, neither the standard nor the
  lexinvariant LM rose above ~6% on *training* symbols; trained on task rows alone, the
  lexinvariant LM reached ~24% on copy or ~18% on lookup after 800 steps when trained on that
  one task, and ~6% with the three tasks mixed. The induction circuit these tasks need
  forms after a plateau that the natural-text mix lengthens, and the lexinvariant LM's
  natural-text loss is itself still on its "bag of context" plateau at this budget (its loss
  by position is flat in ``experiments/lexinvariant.py:tiny`` too).
* ``paper``: 12 x 1024 (~150M parameters), character units (~130 symbols), context 512,
  wiki40b/en through TFDS, 250k steps: for TPU/GPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import lexinvariant
from experiments import lm as lm_experiment
from experiments.lm_runs import (
    load_run,
    restore_lm,
    save_config,
    tokenizer_for,
    train_run,
    validate,
)
from lexlm.text.tokenizers import EOS_ID, PAD_ID, UNK_ID

log = logging.getLogger(__name__)

TASKS = ("lookup", "copy", "reverse")
# Separator candidates in order of preference; the first one in the run's vocabulary is used.
# Each role gets its own character, so a task is identified by its query marker.
SEPARATOR_CANDIDATES = {
    "pair": (" ", ",", ";"),
    "lookup": ("|", ":", "?", "/"),
    "copy": ("=", ">", "]", "&"),
    "reverse": ("<", "[", "$", "("),
}
LAYOUT_FILE = "symbols.json"


# ----------------------------------------------------------------------------- symbol layout


@dataclasses.dataclass(frozen=True)
class Separators:
    """Character ids that structure the instances; the three query markers are distinct."""

    pair: int  # between the key/value pairs of a lookup
    lookup: int  # query marker of each task: ends the context, the answer part follows
    copy: int
    reverse: int


@dataclasses.dataclass(frozen=True)
class SymbolLayout:
    """Where the symbols live in the model's vocabulary; saved with every run."""

    text_vocab: int
    n_symbols: int
    train_ids: tuple[int, ...]
    heldout_ids: tuple[int, ...]
    separators: Separators
    separator_chars: dict[str, str]  # role -> character, for the report

    @property
    def vocab_size(self) -> int:
        return self.text_vocab + self.n_symbols

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["vocab_size"] = self.vocab_size
        return d

    @classmethod
    def from_json(cls, d: dict) -> SymbolLayout:
        return cls(
            text_vocab=int(d["text_vocab"]),
            n_symbols=int(d["n_symbols"]),
            train_ids=tuple(int(i) for i in d["train_ids"]),
            heldout_ids=tuple(int(i) for i in d["heldout_ids"]),
            separators=Separators(**{k: int(v) for k, v in d["separators"].items()}),
            separator_chars=dict(d["separator_chars"]),
        )


def _char_id(tok, candidates, taken) -> tuple[int, str]:
    for ch in candidates:
        ids = tok.encode(ch)
        if len(ids) == 1 and int(ids[0]) not in (UNK_ID, PAD_ID, EOS_ID, *taken):
            return int(ids[0]), ch
    raise ValueError(f"none of the separator characters {candidates!r} is in the vocabulary")


def make_layout(tok, n_symbols: int) -> SymbolLayout:
    """Symbols after the text vocabulary; the first half trains, the second half is held out."""
    if n_symbols < 4 or n_symbols % 2:
        raise ValueError(f"symbols.n_symbols must be even and >= 4, got {n_symbols}")
    v = int(tok.vocab_size)
    ids = list(range(v, v + n_symbols))
    half = n_symbols // 2
    seps: dict[str, int] = {}
    chars: dict[str, str] = {}
    for role, candidates in SEPARATOR_CANDIDATES.items():
        seps[role], chars[role] = _char_id(tok, candidates, seps.values())
    return SymbolLayout(
        v, n_symbols, tuple(ids[:half]), tuple(ids[half:]), Separators(**seps), chars
    )


# ----------------------------------------------------------------------------- task generators
#
# Each generator returns (tokens int32 [L], answer bool [L]); answer[t] marks the positions
# whose *next*-token prediction is an answer token, i.e. tokens[t + 1] is part of the answer.


def _distinct(rng: np.random.Generator, symbols, n: int) -> np.ndarray:
    symbols = np.asarray(symbols, np.int32)
    if n > len(symbols):
        raise ValueError(f"an instance needs {n} distinct symbols, only {len(symbols)} given")
    return rng.choice(symbols, size=n, replace=False).astype(np.int32)


def _with_answer(context: list[int], answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.concatenate([np.asarray(context, np.int32), answer.astype(np.int32)])
    mask = np.zeros(len(tokens), bool)
    # The position before each answer token predicts it: the last context token and all answer
    # tokens but the last.
    mask[len(context) - 1 : len(tokens) - 1] = True
    return tokens, mask


def lookup_task(rng: np.random.Generator, symbols, n_pairs: int, seps: Separators):
    """``k1 v1 _ ... kn vn | kj`` -> ``vj`` (keys and values all distinct)."""
    s = _distinct(rng, symbols, 2 * n_pairs)
    keys, values = s[:n_pairs], s[n_pairs:]
    context: list[int] = []
    for i in range(n_pairs):
        if i:
            context.append(seps.pair)
        context += [int(keys[i]), int(values[i])]
    j = int(rng.integers(n_pairs))
    context += [seps.lookup, int(keys[j])]
    return _with_answer(context, values[j : j + 1])


def copy_task(rng: np.random.Generator, symbols, length: int, seps: Separators):
    """``s1 .. sn = `` -> ``s1 .. sn``."""
    s = _distinct(rng, symbols, length)
    return _with_answer([*s.tolist(), seps.copy], s)


def reverse_task(rng: np.random.Generator, symbols, length: int, seps: Separators):
    """``s1 .. sn < `` -> ``sn .. s1`` (a fixed permutation of the list)."""
    s = _distinct(rng, symbols, length)
    return _with_answer([*s.tolist(), seps.reverse], s[::-1].copy())


GENERATORS = {"lookup": lookup_task, "copy": copy_task, "reverse": reverse_task}


DEFAULT_LENGTHS = {"lookup": (2, 6), "copy": (2, 8), "reverse": (2, 8)}


def pack_tasks(
    rng: np.random.Generator,
    symbols,
    length: int,
    seps: Separators,
    task: str,
    lengths: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One few-shot row of ``length`` tokens: eos, instance, eos, instance, eos, ..., pad.

    All instances of a row are of one task, so a model that cannot tell the query markers
    apart by identity (the lexinvariant one) can still infer the task from the earlier
    instances in its context. Instances are added while they fit whole (the first is truncated
    if even it does not), so no answer is cut off; each instance's size is drawn uniformly from
    ``lengths[task] = (lo, hi)`` inclusive.
    """
    lo, hi = (lengths or DEFAULT_LENGTHS)[task]
    tokens = np.full(length, PAD_ID, np.int32)
    answer = np.zeros(length, bool)
    tokens[0] = EOS_ID
    used = 1
    while True:
        inst, ans = GENERATORS[task](rng, symbols, int(rng.integers(lo, hi + 1)), seps)
        need = len(inst) + 1  # the instance and its closing eos
        if used + need > length:
            if used == 1:  # nothing fits: keep what does, answers beyond the cut are lost
                n = length - used
                tokens[used:] = inst[:n]
                answer[used : length - 1] = ans[: n - 1]
            break
        tokens[used : used + len(inst)] = inst
        answer[used : used + len(inst)] = ans
        tokens[used + len(inst)] = EOS_ID
        used += need
    return tokens, answer


def task_rows(rng, symbols, seq_len: int, n_rows: int, seps, tasks=TASKS, lengths=None) -> dict:
    """``n_rows`` packed rows as LM windows: inputs/targets/mask [N, T] and answer [N, T].

    Each row's task is drawn uniformly from ``tasks``.
    """
    packed = []
    for _ in range(n_rows):
        task = tasks[int(rng.integers(len(tasks)))]
        packed.append(pack_tasks(rng, symbols, seq_len + 1, seps, task, lengths))
    rows = np.stack([r for r, _ in packed])
    answers = np.stack([a for _, a in packed])
    targets = rows[:, 1:]
    return {
        "inputs": rows[:, :-1],
        "targets": targets,
        "mask": (targets != PAD_ID).astype(np.float32),
        "answer": answers[:, :-1],
    }


# ----------------------------------------------------------------------------- training mix


class SymbolMix:
    """Natural-text batches with some rows replaced by task rows over training symbols.

    Batch i's replacement draws come from ``default_rng([seed, i])`` alone, so the state is
    the inner iterator's state plus i: ``set_state(get_state())`` resumes exactly.
    """

    def __init__(
        self,
        inner,
        layout: SymbolLayout,
        seq_len: int,
        mix_prob: float,
        seed: int,
        tasks=TASKS,
        lengths: dict | None = None,
    ):
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"symbols.mix_prob: {mix_prob} is not a probability")
        self.inner, self.layout, self.seq_len = inner, layout, seq_len
        self.mix_prob, self.seed, self.tasks = mix_prob, seed, tuple(tasks)
        self.lengths = dict(lengths or DEFAULT_LENGTHS)
        self.index = 0
        self.rows_replaced = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = {k: np.array(v, copy=True) for k, v in next(self.inner).items()}
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        replace = rng.random(batch["inputs"].shape[0]) < self.mix_prob
        for b in np.flatnonzero(replace):
            row = task_rows(
                rng,
                self.layout.train_ids,
                self.seq_len,
                1,
                self.layout.separators,
                self.tasks,
                self.lengths,
            )
            for k in ("inputs", "targets", "mask"):
                batch[k][b] = row[k][0].astype(batch[k].dtype)
        self.rows_replaced += int(replace.sum())
        return batch

    def get_state(self) -> dict:
        return {"inner": self.inner.get_state(), "index": int(self.index)}

    def set_state(self, state: dict) -> None:
        self.inner.set_state(state["inner"])
        self.index = int(state["index"])


# ----------------------------------------------------------------------------- configs


def get_config(arg: str | None = "tiny") -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = ml_collections.ConfigDict()
    if arg == "tiny":
        base = lm_experiment.get_config("tiny")
        base.train.steps = 800  # five runs + evaluation in about ten minutes on 2 CPU cores
        base.train.ckpt_every = 400
        base.train.progress = False
        base.eval.draws = 4
        c.n_symbols = 64
        c.mix_prob = 0.1
        c.lengths = {"lookup": (2, 6), "copy": (2, 8), "reverse": (2, 8)}
        c.eval_rows = 64  # task rows per (task, symbol set)
        c.eval_draws = 4
    elif arg == "paper":
        base = lexinvariant.paper_base()
        base.data.unit = "char"
        base.data.vocab_size = 130
        base.eval.draws = 8
        c.n_symbols = 128
        c.mix_prob = 0.05
        c.lengths = {"lookup": (4, 16), "copy": (4, 24), "reverse": (4, 24)}
        c.eval_rows = 512
        c.eval_draws = 8
    else:
        raise ValueError(f"experiments/lexinv_symbols.py: unknown config {arg!r}; use tiny|paper")
    c.semi_ps = (0.1, 0.2, 0.5)
    c.tasks = TASKS
    c.eval_seed = 1234
    c.base = base
    return c


def run_specs(c) -> dict[str, tuple[str, float]]:
    """Run name -> (embedding, semi_p). The standard LM is the p = 0 point of the sweep."""
    specs = {"standard": ("learned", 0.0), "lexinvariant": ("lexinvariant", 0.0)}
    for p in c.semi_ps:
        specs[f"semi_p{p:g}"] = ("semi", float(p))
    return specs


def run_config(c, embedding: str, semi_p: float) -> ml_collections.ConfigDict:
    cfg = c.base.copy_and_resolve_references()
    cfg.experiment = "lexinv_symbols"
    cfg.model.embedding = embedding
    cfg.model.semi_p = semi_p
    cfg.symbols = ml_collections.ConfigDict(
        {"n_symbols": int(c.n_symbols), "mix_prob": float(c.mix_prob), "tasks": tuple(c.tasks)}
    )
    cfg.symbols.lengths = _as_lengths(c.lengths)
    return cfg


def _as_lengths(raw) -> dict[str, tuple[int, int]]:
    raw = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    return {k: (int(v[0]), int(v[1])) for k, v in raw.items()}


# ----------------------------------------------------------------------------- train / restore


def layout_for(cfg, tok, workdir: Path) -> SymbolLayout:
    """The run's symbol layout: loaded if saved (so evaluation rebuilds the same tasks)."""
    path = workdir / LAYOUT_FILE
    layout = make_layout(tok, int(cfg.symbols.n_symbols))
    if path.exists():
        saved = SymbolLayout.from_json(json.loads(path.read_text()))
        if saved != layout:
            raise ValueError(f"{path} does not match the run's tokenizer and config")
        return saved
    path.write_text(json.dumps(layout.to_json(), indent=1))
    return layout


def train_symbol_run(cfg, workdir: str | Path):
    """Trains (or resumes) one run on natural text mixed with training-symbol tasks."""
    workdir = Path(workdir)
    validate(cfg)
    save_config(cfg, workdir)
    layout = layout_for(cfg, tokenizer_for(cfg, workdir), workdir)

    def mix(batches):
        return SymbolMix(
            batches,
            layout,
            int(cfg.seq_len),
            float(cfg.symbols.mix_prob),
            seed=int(cfg.data.seed) * 1000 + jax.process_index(),
            tasks=tuple(cfg.symbols.tasks),
            lengths=_as_lengths(cfg.symbols.lengths),
        )

    return train_run(cfg, workdir, vocab_size=layout.vocab_size, wrap=mix)


def restore_symbol_lm(workdir: str | Path, step: int | None = None):
    """(model, params, tokenizer, layout, cfg, step). The model vocabulary is the tokenizer's
    plus the symbols, read from the run's ``symbols.json``."""
    workdir = Path(workdir)
    _, tok = load_run(workdir)
    layout = SymbolLayout.from_json(json.loads((workdir / LAYOUT_FILE).read_text()))
    if layout.text_vocab != tok.vocab_size:
        raise ValueError(f"{workdir}: {LAYOUT_FILE} does not match the tokenizer")
    model, params, tok, cfg, restored = restore_lm(workdir, step, vocab_size=layout.vocab_size)
    return model, params, tok, layout, cfg, restored


# ----------------------------------------------------------------------------- evaluation


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
    """{symbol set: {task: rows}}; the same rows for every model (paired comparison)."""
    out: dict[str, dict[str, dict]] = {}
    lengths = _as_lengths(c.lengths)
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


def evaluate_symbol_run(c, workdir: Path) -> dict:
    """Symbol-task accuracies and natural-text test metrics of one run, from its checkpoint."""
    from experiments.lm_runs import eval_windows, nll_function
    from lexlm.eval import accumulate_nll
    from lexlm.nn import TransformerLM

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
        # Held-out symbols with fresh random rows (a semi mask on exactly those ids).
        semi = TransformerLM(dataclasses.replace(model.cfg, embedding="semi"))
        randomised = correct_function(semi, params, random_ids=layout.heldout_ids)
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


# ----------------------------------------------------------------------------- orchestration


def run(c, out: Path) -> dict:
    """Trains every run (resuming any that exist), evaluates them, writes lexinv_symbols.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    findings: dict = {"runs": {}, "timing_s": {}}
    started = time.perf_counter()
    for name, (embedding, p) in run_specs(c).items():
        wd = out / "runs" / f"symbols_{name}"
        t0 = time.perf_counter()
        result = train_symbol_run(run_config(c, embedding, p), wd)
        if result.stopped_by != "steps":
            raise RuntimeError(f"{wd}: training was interrupted ({result.stopped_by})")
        t1 = time.perf_counter()
        findings["runs"][name] = evaluate_symbol_run(c, wd)
        t2 = time.perf_counter()
        findings["timing_s"][name] = {"train": t1 - t0, "eval": t2 - t1}
        log.warning("%s: trained in %.0f s, evaluated in %.0f s", name, t1 - t0, t2 - t1)
    findings["timing_s"]["total"] = time.perf_counter() - started
    findings["tasks"] = list(c.tasks)
    findings["semi_ps"] = [0.0, *[float(p) for p in c.semi_ps]]
    findings["config"] = json.loads(c.to_json_best_effort())
    (out / "lexinv_symbols.json").write_text(json.dumps(findings, indent=1))
    plot_sweep(findings, out / "lexinv_symbols_sweep.png")
    return findings


def _sweep_points(f: dict) -> list[tuple[float, str, dict]]:
    pts = [(0.0, "standard", f["runs"]["standard"])]
    for name, r in f["runs"].items():
        if r["embedding"] == "semi":
            pts.append((float(r["semi_p"]), name, r))
    return sorted(pts, key=lambda x: x[0])


def plot_sweep(f: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _sweep_points(f)
    ps = [p for p, _, _ in pts]
    lex = f["runs"].get("lexinvariant")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ps, [r["test"]["perplexity"] for _, _, r in pts], "o-", label="semi-lexinvariant")
    b.plot(ps, [r["symbols"]["heldout"]["mean"] for *_, r in pts], "o-", label="held-out")
    b.plot(
        ps,
        [r["symbols"]["heldout_random_rows"]["mean"] for *_, r in pts],
        "s--",
        label="held-out, random rows",
    )
    b.plot(ps, [r["symbols"]["train"]["mean"] for *_, r in pts], "^:", label="training symbols")
    guess = pts[0][2]["symbols"]["context_guess"]["heldout"]["mean"]
    b.axhline(guess, color="k", ls=":", lw=1, label="context guess")
    top = [guess, *(r["symbols"][k]["mean"] for *_, r in pts for k in ("heldout", "train"))]
    if lex:
        a.axhline(lex["test"]["perplexity"], color="gray", ls="--", label="lexinvariant")
        b.axhline(
            lex["symbols"]["heldout"]["mean"], color="gray", ls="--", label="lexinv. held-out"
        )
        top.append(lex["symbols"]["heldout"]["mean"])
    a.set_xlabel("semi-lexinvariance p")
    a.set_ylabel("test perplexity (per char)")
    b.set_xlabel("semi-lexinvariance p")
    b.set_ylabel("symbol-task accuracy (mean)")
    # Small accuracies stay readable; a sweep that learned the tasks gets the full range.
    b.set_ylim(-0.01, max(0.1, min(1.02, 1.2 * max(top))))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_section(f: dict) -> str:
    tasks = f["tasks"]
    runs = f["runs"]
    any_run = next(iter(runs.values()))
    lay = any_run["layout"]
    ch = lay["separator_chars"]
    pair, lk, cp, rv = ch["pair"], ch["lookup"], ch["copy"], ch["reverse"]
    lines = [
        "## Lexinvariant LMs on in-context symbol tasks (Huang et al., 2023, findings 3-4)",
        "",
        f"{lay['n_symbols']} symbol ids appended to the {lay['text_vocab']}-character "
        f"vocabulary; half are mixed into training as task rows, half are never seen in "
        f"training. Tasks (symbols written without spaces, markers are characters): lookup "
        f"`k1v1{pair}k2v2{pair}...{lk}kj` -> `vj`, copy `s1...sn{cp}` -> `s1...sn`, reverse "
        f"`s1...sn{rv}` -> `sn...s1`; each row is a few-shot run of one task, instances "
        "separated by eos. Teacher-forced argmax accuracy over the full vocabulary at answer "
        "positions; random-embedding models averaged over draws; all "
        "models see the same evaluation rows.",
        "",
        "### Finding 3: symbols never seen in training",
        "",
        "| model | " + " | ".join(tasks) + " | mean (held-out) | mean (training symbols) |",
        "|---|" + "---|" * (len(tasks) + 2),
    ]
    for name, r in runs.items():
        h, t = r["symbols"]["heldout"], r["symbols"]["train"]
        cells = " | ".join(f"{h[k]:.3f}" for k in tasks)
        lines.append(f"| {name} | {cells} | {h['mean']:.3f} | {t['mean']:.3f} |")
    g = any_run["symbols"]["context_guess"]
    cells = " | ".join(f"{g['heldout'][k]:.3f}" for k in tasks)
    lines.append(
        f"| *context guess (reference)* | {cells} | {g['heldout']['mean']:.3f} | "
        f"{g['train']['mean']:.3f} |"
    )
    lines += [
        "",
        "*Context guess*: uniform guess among the distinct symbols already in the row, the "
        "score of copying some symbol from the context without solving the task.",
        "",
        "Training symbols, per task:",
        "",
        "| model | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for name, r in runs.items():
        t = r["symbols"]["train"]
        lines.append(f"| {name} | " + " | ".join(f"{t[k]:.3f}" for k in tasks) + " |")
    std, lex = runs.get("standard"), runs.get("lexinvariant")
    if std and lex:
        s, x = std["symbols"]["heldout"]["mean"], lex["symbols"]["heldout"]["mean"]
        ratio = f"{x / s:.1f}x" if s > 0 else "unbounded (standard is at 0)"
        lines += ["", f"Held-out mean accuracy, lexinvariant / standard: {ratio} (paper: ~4x)."]
        best_train = max(r["symbols"]["train"]["mean"] for r in runs.values())
        if best_train <= g["train"]["mean"]:
            lines += [
                "",
                "**No model learned the tasks at this budget**: every model's accuracy on "
                "*training* symbols is at or below the context-guess reference, so the ratio "
                "above says only that the standard LM cannot emit a symbol it never saw, not "
                "that the lexinvariant LM reasons in context.",
            ]
    lines += [
        "",
        "### Finding 4: semi-lexinvariance sweep",
        "",
        "Semi models are evaluated with their learned table (p_eval = 0); the 'random rows' "
        "column instead gives the held-out symbols fresh per-sequence random rows.",
        "",
        "| p | test loss (nats/char) | test perplexity | held-out acc | held-out acc, random "
        "rows | training-symbol acc |",
        "|---|---|---|---|---|---|",
    ]
    for p, _name, r in _sweep_points(f):
        s = r["symbols"]
        lines.append(
            f"| {p:g} | {r['test']['loss']:.4f} | {r['test']['perplexity']:.3f} | "
            f"{s['heldout']['mean']:.3f} | {s['heldout_random_rows']['mean']:.3f} | "
            f"{s['train']['mean']:.3f} |"
        )
    if lex:
        s = lex["symbols"]
        lines.append(
            f"| lexinvariant | {lex['test']['loss']:.4f} | {lex['test']['perplexity']:.3f} | "
            f"{s['heldout']['mean']:.3f} | n/a | {s['train']['mean']:.3f} |"
        )
    total = f.get("timing_s", {}).get("total")
    lines += ["", "![semi-lexinvariance sweep](lexinv_symbols_sweep.png)", ""]
    if total:
        lines += [f"This invocation took {total:.0f} s (finished runs are not retrained).", ""]
    return "\n".join(lines)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="tiny | paper")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    c = get_config(args.config.split(":")[-1])
    out = Path(args.out)
    findings = run(c, out)
    section = report_section(findings)
    (out / "lexinv_symbols.md").write_text(section)
    print(section)


if __name__ == "__main__":
    main()
