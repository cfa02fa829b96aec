"""The lexinvariant findings, computed from the checkpoints of trained ``lm`` runs (Huang et
al., NeurIPS 2023).

The runs are ``lm`` runs, so ``python -m lexlm.evaluate`` evaluates them through
``lexlm.proj.lm.evaluate``; this module computes what the findings add. Each function takes
a run directory, the run's config (as the experiment built it) and the checkpoint step, and
returns a JSON-able dict; ``lexlm.proj.lexinvariant.run`` stores each under the run's
``evals/`` (``lexlm.experiment.store.evaluation``), so a rerun reads it back:

* ``position_table`` and ``references``: finding 1, loss by position bucket, the lexinvariant
  / standard perplexity ratio and the no-training references of ``lexlm.eval.in_context``.
* ``mechanism_check``: the loss on the second copy of a repeated real span against the first.
* ``attention_patterns``: attention mass per head on the patterns of in-context prediction.
* ``cipher_losses`` and ``paired_difference``: finding 2, loss on plain vs enciphered text
  over paired draws.
* ``decipher_probe``: finding 2's probe, a softmax probe from hidden states to the plaintext id
  of the current token, trained under some ciphers on one split and tested under disjoint
  ciphers on another split, so neither the cipher nor the text is shared.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from lexlm.errors import ConfigError
from lexlm.eval import accumulate_nll
from lexlm.eval import in_context as ic
from lexlm.eval.probe import accuracy_by_position, fit_softmax_probe
from lexlm.proj.lm.evaluate import eval_windows, nll_function
from lexlm.proj.lm.run import restore_lm

SPECIAL_IDS = 3  # pad, eos, unk keep their ids under a cipher
MAX_REFERENCE_VOCAB = 4096


@contextlib.contextmanager
def params_context(params):
    """The mesh and logical rules of restored (sharded) parameters, for a jitted model call
    (as ``lexlm.proj.lm.evaluate.nll_function`` does); nothing for host parameters."""
    from flax import linen as nn

    from lexlm.eval import params_mesh
    from lexlm.train import sharding as shd

    mesh = params_mesh(params)
    if mesh is None:
        yield
        return
    with jax.set_mesh(mesh), nn.logical_axis_rules(shd.LOGICAL_RULES):
        yield


# ----------------------------------------------------------------------------- finding 1


def position_table(
    std: Float[np.ndarray, " T"] | Sequence[float],
    lex: Float[np.ndarray, " T"] | Sequence[float],
    buckets,
    references: dict | None = None,
) -> list[dict]:
    """Rows per position bucket: mean standard and lexinvariant loss, their perplexity ratio
    exp(lex - std), and the mean of every per-position reference curve in ``references``.

    ``std`` / ``lex``: per-position losses [T] (index 0 = position 1); every position lands in
    exactly one bucket (``lexlm.eval.in_context.bucket_ranges``).
    """
    s, x = np.asarray(std, np.float64), np.asarray(lex, np.float64)
    if s.shape != x.shape:
        raise ValueError(f"position_table: {s.shape} standard vs {x.shape} lexinvariant losses")
    ranges = ic.bucket_ranges(buckets, len(s))
    refs = {k: ic.bucket_means(v, ranges) for k, v in (references or {}).items()}
    rows = []
    for i, (ls, lx) in enumerate(zip(ic.bucket_means(s, ranges), ic.bucket_means(x, ranges))):
        lo, hi = ranges[i]
        row = {"positions": f"{lo}-{hi}", "standard": ls, "lexinvariant": lx}
        row["ppl_ratio"] = math.exp(lx - ls)
        row.update({k: v[i] for k, v in refs.items()})
        rows.append(row)
    return rows


# The models of finding 1: the standard LM, the standard LM with the copy readout (the
# control: the lexinvariant runs have it) and the lexinvariant LM. Keys of every table.
MODELS = ("learned", "learned_copy", "lexinvariant")
COLUMN = {"learned": "standard", "learned_copy": "standard_copy", "lexinvariant": "lexinvariant"}
RATIOS = {"ppl_ratio": "learned", "ppl_ratio_copy": "learned_copy"}  # lexinvariant / column


def eval_draws(cfg) -> int:
    """Embedding draws an evaluation averages: one for a learned embedding, else ``eval.draws``."""
    return 1 if str(cfg.model.get("embedding", "learned")) == "learned" else int(cfg.eval.draws)


def bucket_units(run_dir, cfg, step: int, buckets, seed: int = 0) -> dict:
    """Per test unit (a block of ``intervals.UNIT_BYTES`` bytes of a document) and position
    bucket: {'nats': [D, B] (averaged over the embedding
    draws, with the keys ``lexlm.proj.lm.evaluate.evaluate_run`` uses, so each document's row
    sums to its nats there), 'tokens': [D, B], 'positions': the B bucket labels}, for copy
    ``seed`` of a run trained with ``train.seeds``.

        units = bucket_units(run_dir, cfg, 600, (1, 4, 16, 32, 64))"""
    model, params, tok, _, _ = restore_lm(run_dir, step, seed=seed)
    windows = eval_windows(cfg, tok, "test", int(cfg.eval.max_windows))
    ranges = ic.bucket_ranges(buckets, windows["inputs"].shape[1])
    bucket_of = np.zeros(windows["inputs"].shape[1], np.int64)
    for i, (lo, hi) in enumerate(ranges):
        bucket_of[lo - 1 : hi] = i
    n_docs, n_b = len(windows["unit_bytes"]), len(ranges)
    doc_ids = np.asarray(windows["unit_ids"], np.int64)
    cells = np.where(doc_ids >= 0, doc_ids * n_b + bucket_of[None, :], -1)
    # accumulate_nll sums nats per test unit: here a (unit, bucket) cell
    cell_windows = {**windows, "unit_ids": cells, "unit_bytes": np.zeros(n_docs * n_b)}
    sums = accumulate_nll(
        nll_function(model, params), cell_windows, int(cfg.eval.batch_size),
        jax.random.key(int(cfg.eval.seed)), eval_draws(cfg),
    )  # fmt: skip
    real = (cells >= 0) & (np.asarray(windows["mask"]) > 0)
    tokens = np.bincount(cells[real], minlength=n_docs * n_b)
    nats = sums.unit_nats.reshape(n_docs, n_b)
    # the same pass is the run's test evaluation (lexlm.proj.lm.evaluate's metrics, per unit)
    summary = sums.summary()
    evaluation = {k: summary[k] for k in ("loss", "bits_per_byte", "loss_by_position")}
    evaluation["units"] = {
        "bits": (nats.sum(axis=1) / math.log(2)).tolist(),
        "bytes": np.asarray(windows["unit_bytes"], np.float64).tolist(),
    }
    return {
        "nats": nats.tolist(),
        "tokens": tokens.reshape(n_docs, n_b).tolist(),
        "positions": [f"{lo}-{hi}" for lo, hi in ranges],
        "evaluation": evaluation,
    }


def bucket_loss(units: dict, bucket: int | None) -> dict:
    """One bucket's column (all buckets summed for None) of ``bucket_units``: the per-document
    {'nats', 'tokens'} that ``intervals.ratio_of_sums('nats', 'tokens')`` turns into the loss."""
    nats, tokens = np.asarray(units["nats"], np.float64), np.asarray(units["tokens"], np.float64)
    if bucket is None:
        return {"nats": nats.sum(axis=1), "tokens": tokens.sum(axis=1)}
    return {"nats": nats[:, bucket], "tokens": tokens[:, bucket]}


def perplexity_ratio(a: dict, b: dict) -> dict:
    """exp(loss(a) - loss(b)) over the same test documents, with its paired bootstrap
    interval: the interval of the loss difference (``intervals.compare``, the same resampled
    documents for both) mapped through exp, which keeps percentiles. ``a``, ``b``: per-document
    {'nats', 'tokens'} (``bucket_loss``). {'value', 'lo', 'hi', 'diff', 'excludes_one', ...}."""
    from lexlm.eval import intervals as iv

    cmp = iv.compare(iv.ratio_of_sums("nats", "tokens"), a, b)
    return {**cmp, "value": math.exp(cmp["diff"]), "lo": math.exp(cmp["lo"]),
            "hi": math.exp(cmp["hi"]), "diff_lo": cmp["lo"], "diff_hi": cmp["hi"],
            "excludes_one": cmp["excludes_zero"]}  # fmt: skip


def interval_table(units: dict[str, dict], references: dict | None = None) -> list[dict]:
    """Rows per position bucket from the seed-averaged ``bucket_units`` of each model in
    ``units`` (keys of ``MODELS``; 'learned_copy' may be missing): each model's loss (nats per
    token) under its ``COLUMN`` name and its 95% bootstrap interval over documents under
    ``<name>_interval``, the
    lexinvariant / standard perplexity ratios of ``RATIOS`` with paired intervals
    (``perplexity_ratio``), and the mean of every per-position reference curve in
    ``references`` (no interval: they are not models)."""
    from lexlm.eval import intervals as iv

    labels = units["lexinvariant"]["positions"]
    t_len = int(labels[-1].split("-")[1])
    ranges = [tuple(int(x) for x in p.split("-")) for p in labels]
    refs = {k: ic.bucket_means(v[:t_len], ranges) for k, v in (references or {}).items()}
    rows = []
    for i, label in enumerate(labels):
        row: dict = {"positions": label}
        cols = {m: bucket_loss(units[m], i) for m in MODELS if m in units}
        for m, col in cols.items():
            b = iv.bootstrap_interval(iv.ratio_of_sums("nats", "tokens"), col)
            row[COLUMN[m]] = b["value"]
            row[f"{COLUMN[m]}_interval"] = [b["lo"], b["hi"]]
        for name, std in RATIOS.items():
            if std in cols:
                r = perplexity_ratio(cols["lexinvariant"], cols[std])
                row[name] = r["value"]
                row[f"{name}_interval"] = [r["lo"], r["hi"]]
        row.update({k: v[i] for k, v in refs.items()})
        rows.append(row)
    return rows


def references(test: dict, validation: dict, vocab_size: int, widths) -> dict[str, list]:
    """The no-training reference curves of finding 1 on the ``test`` windows: the in-context
    count model; the bag-of-tokens readout (scale chosen on ``validation``) with exact rows and
    with random rows of each width in ``widths``; and the count model's log-probabilities read
    out through random rows of each width (the crosstalk of a superposed log-unigram).

    The random-row references build a [V, V] Gram matrix per window, so they are skipped for
    vocabularies above ``MAX_REFERENCE_VOCAB``."""
    out = {"in_context_unigram": ic.in_context_unigram_nll(test, vocab_size)}
    if vocab_size <= MAX_REFERENCE_VOCAB:
        beta = ic.best_bag_scale(validation, vocab_size, None)
        out["bag_of_tokens"] = ic.bag_of_tokens_nll(test, vocab_size, beta)
        for d in widths:
            d = int(d)
            beta_d = ic.best_bag_scale(validation, vocab_size, d)
            out[f"bag_of_tokens_d{d}"] = ic.bag_of_tokens_nll(test, vocab_size, beta_d, d)
            out[f"unigram_readout_d{d}"] = ic.random_readout_unigram_nll(test, vocab_size, d)
    return {k: np.asarray(v, np.float64).tolist() for k, v in out.items()}


# ----------------------------------------------------------------------------- mechanism


def mechanism_check(run_dir, cfg, step: int, span: int, max_windows: int, draws: int) -> dict:
    """Loss on the first and second copy of repeated real test spans
    (``lexlm.eval.in_context``); random-embedding models average ``draws`` draws."""
    model, params, tok, _, _ = restore_lm(run_dir, step)
    windows = eval_windows(cfg, tok, "test", max_windows)
    rep = ic.repeated_span_windows(windows, span)
    bs = int(cfg.eval.batch_size)
    draws = draws if model.cfg.embedding != "learned" else 1
    sums = accumulate_nll(nll_function(model, params), rep, bs, jax.random.key(7), draws)
    per_pos = sums.by_position / np.maximum(sums.count_by_position, 1.0)
    out = ic.copy_gain(per_pos, span)
    out.update(span=int(span), windows=int(rep["inputs"].shape[0]))
    return out


def attention_patterns(run_dir, cfg, step: int, n_windows: int) -> dict:
    """Per layer and head: attention mass on self / previous / same-token-earlier / induction
    positions (``lexlm.eval.attention_stats``) on validation windows, one random-table draw."""
    from lexlm.eval.attention_stats import attention_pattern_stats
    from lexlm.train.lm_task import embedding_inputs

    model, params, tok, _, _ = restore_lm(run_dir, step)
    x = eval_windows(cfg, tok, "validation", n_windows)["inputs"]

    @jax.jit
    def weights_fn(params, tokens):
        extra = embedding_inputs(model.cfg, jax.random.key(0), tokens.shape[0], train=False)
        _, state = model.apply(
            {"params": params}, tokens, capture_intermediates=False, mutable=["intermediates"],
            **extra,
        )  # fmt: skip
        t_len = tokens.shape[1]
        causal = jnp.tril(jnp.ones((t_len, t_len), bool))
        out = []
        for i in range(model.cfg.depth):
            q, k = state["intermediates"][f"block_{i}"]["queries_keys"][0]
            scores = jnp.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
            out.append(jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1))
        return out

    with params_context(params):
        weights = weights_fn(params, jnp.asarray(x))
    out = {}
    for i, w in enumerate(weights):
        out[f"block_{i}"] = attention_pattern_stats(np.asarray(w), x)
    return out


# ----------------------------------------------------------------------------- finding 2


def random_cipher(key: jax.Array, vocab_size: int) -> np.ndarray:
    """A random bijection of the vocabulary that fixes the special ids (pad, eos, unk)."""
    perm = np.asarray(jax.random.permutation(key, vocab_size - SPECIAL_IDS)) + SPECIAL_IDS
    return np.concatenate([np.arange(SPECIAL_IDS), perm]).astype(np.int32)


def encipher(windows: dict, cipher: np.ndarray) -> dict:
    out = dict(windows)
    out["inputs"] = cipher[windows["inputs"]]
    out["targets"] = cipher[windows["targets"]]
    return out


def paired_difference(plain, ciphered) -> dict:
    """Mean plain and cipher loss and the mean paired difference with its standard error."""
    plain, ciphered = np.asarray(plain, np.float64), np.asarray(ciphered, np.float64)
    diff = ciphered - plain
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return {
        "plain_loss": float(plain.mean()),
        "cipher_loss": float(ciphered.mean()),
        "diff": float(diff.mean()),
        "diff_se": se,
        "draws": len(diff),
    }


def mean_loss(nll_fn, windows, batch_size: int, key) -> float:
    sums = accumulate_nll(nll_fn, windows, batch_size, key, draws=1)
    return float(sums.total_nats / max(sums.tokens, 1.0))


def cipher_losses(run_dir, cfg, step: int, draws: int) -> dict:
    """Loss on plain and on enciphered held-out test text for ``draws`` paired cipher /
    embedding draws, and their paired difference (``paired_difference``)."""
    model, params, tok, _, _ = restore_lm(run_dir, step)
    windows = eval_windows(cfg, tok, "test", int(cfg.eval.max_windows))
    nll_fn = nll_function(model, params)
    bs = int(cfg.eval.batch_size)
    plain, ciphered = [], []
    for d in range(draws):
        k_emb, k_cipher = jax.random.split(jax.random.key(1000 + d))
        cipher = random_cipher(k_cipher, tok.vocab_size)
        # Same embedding draw for plain and cipher text: the pairing removes draw noise.
        plain.append(mean_loss(nll_fn, windows, bs, k_emb))
        ciphered.append(mean_loss(nll_fn, encipher(windows, cipher), bs, k_emb))
    return paired_difference(plain, ciphered)


def layer_states(model, params, windows: dict, key, batch_size: int) -> list[np.ndarray]:
    """Hidden states [N, T, D] after each block and after the final LayerNorm (last entry),
    with fresh per-sequence random tables."""
    from lexlm.train.lm_task import embedding_inputs

    @jax.jit
    def fn(tokens, k):
        extra = embedding_inputs(model.cfg, k, tokens.shape[0], train=False)
        h, state = model.apply(
            {"params": params},
            tokens,
            capture_intermediates=True,
            mutable=["intermediates"],
            **extra,
        )
        inter = state["intermediates"]
        blocks = [inter[f"block_{i}"]["__call__"][0] for i in range(model.cfg.depth)]
        return [*blocks, h]

    outs = []
    n = windows["inputs"].shape[0]
    for start in range(0, n, batch_size):
        toks = windows["inputs"][start : start + batch_size]
        pad = batch_size - toks.shape[0]
        if pad:
            toks = np.concatenate([toks, np.zeros((pad, toks.shape[1]), toks.dtype)])
        with params_context(params):
            hs = fn(jnp.asarray(toks), jax.random.fold_in(key, start))
        outs.append([np.asarray(h, np.float32)[: batch_size - pad] for h in hs])
    return [np.concatenate(per_layer) for per_layer in zip(*outs)]


def probe_features(model, params, windows, ciphers, seed: int, batch_size: int):
    """Per layer: features of every real input token under each cipher; plus labels
    (plaintext ids) and 1-based positions, concatenated over ciphers."""
    mask = windows["mask"] > 0
    n, t = windows["inputs"].shape
    feats, labels, positions = [], [], []
    for i, cipher in enumerate(ciphers):
        states = layer_states(
            model, params, encipher(windows, cipher), jax.random.key(seed + i), batch_size
        )
        feats.append([h[mask] for h in states])
        labels.append(windows["inputs"][mask])
        positions.append(np.broadcast_to(np.arange(1, t + 1), (n, t))[mask])
    per_layer = [np.concatenate(f) for f in zip(*feats)]
    return per_layer, np.concatenate(labels), np.concatenate(positions)


def probe_l2_grid(l2) -> tuple[float, ...]:
    """The probe config's ``l2``: one strength, or a grid to choose from on the dev cipher;
    a ``ConfigError`` naming ``probe.l2`` unless every strength is finite and >= 0."""
    try:
        grid = tuple(float(a) for a in (l2 if isinstance(l2, (tuple, list)) else (l2,)))
    except (TypeError, ValueError):
        raise ConfigError("probe.l2", f"must be strengths >= 0, got {l2!r}") from None
    if not grid or not all(math.isfinite(a) and a >= 0 for a in grid):
        raise ConfigError("probe.l2", f"must be finite strengths >= 0, got {l2!r}")
    return grid


def decipher_probe(run_dir, cfg, step: int, pc, buckets) -> dict:
    """Softmax probe: hidden state at t (each layer) -> plaintext id of token t.

    ``pc``: the ``probe`` config (train_split, test_split, windows, train_ciphers,
    test_ciphers, steps, l2: one strength or a grid). Ciphers of the training and test sets are
    disjoint draws, and so are their texts (two splits). Each layer's L2 strength, and then
    ``best_layer``, are chosen by accuracy on the last training cipher held out of a first
    fit, never on the test set. Baselines: the majority plaintext id of the training set, and
    chance, one over the number of non-special types.
    """
    model, params, tok, _, _ = restore_lm(run_dir, step)
    bs = int(cfg.eval.batch_size)
    v = tok.vocab_size

    def ciphers(first, count):
        return [random_cipher(jax.random.key(first + i), v) for i in range(count)]

    train_w = eval_windows(cfg, tok, pc.train_split, int(pc.windows))
    test_w = eval_windows(cfg, tok, pc.test_split, int(pc.windows))
    x_tr, y_tr, _ = probe_features(
        model, params, train_w, ciphers(5000, int(pc.train_ciphers)), 6000, bs
    )
    x_te, y_te, pos_te = probe_features(
        model, params, test_w, ciphers(7000, int(pc.test_ciphers)), 8000, bs
    )
    majority_id = int(np.bincount(y_tr, minlength=v).argmax())
    majority = y_te == majority_id
    # The layer and the L2 strength are chosen on a dev set: the last training cipher, held
    # out of a first fit; the probe reported is then refit on every training cipher.
    n_dev = len(y_tr) // int(pc.train_ciphers)
    l2_grid = probe_l2_grid(pc.l2)
    layers = {}
    for li, (xtr, xte) in enumerate(zip(x_tr, x_te)):
        name = f"block_{li}" if li < len(x_tr) - 1 else "final"
        dev = {}
        for l2 in l2_grid:
            dev_probe = fit_softmax_probe(
                xtr[:-n_dev], y_tr[:-n_dev], v, l2=l2, steps=int(pc.steps)
            )
            dev[l2] = float(np.mean(dev_probe.predict(xtr[-n_dev:]) == y_tr[-n_dev:]))
        l2 = max(l2_grid, key=lambda a: dev[a])
        probe = fit_softmax_probe(xtr, y_tr, v, l2=l2, steps=int(pc.steps))
        correct = probe.predict(xte) == y_te
        layers[name] = {
            "dev": dev[l2],
            "l2": l2,
            "overall": float(correct.mean()),
            "by_position": accuracy_by_position(correct, pos_te, buckets, {"majority": majority}),
        }
    best = max(layers, key=lambda k: layers[k]["dev"])
    return {
        "layers": layers,
        "best_layer": best,
        "majority_baseline": float(majority.mean()),
        "chance": 1.0 / max(v - SPECIAL_IDS, 1),
        "train_tokens": len(y_tr),
        "test_tokens": len(y_te),
    }
