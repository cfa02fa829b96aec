"""grain pipelines: records -> packed language-model windows, and deterministic eval windows.

Training (`lm_train_dataset`):

    MapDataset.source(records)
    -> this host's documents: records[process_index::process_count] (disjoint across hosts)
    -> shuffle(seed) -> repeat() (infinite; each epoch reshuffled, deterministically)
    -> map: decode + strip + tokenize + append eos (an empty document gives no tokens)
    -> to_iter_dataset(ReadOptions(num_threads=read_threads))
    -> pack: concatenate documents and cut windows of T + 1 tokens (no token dropped)
    -> batch(B, drop_remainder=True) -> [mp_prefetch(worker_count) when worker_count > 0]

Each window gives `inputs = w[:-1]`, `targets = w[1:]`, so every window boundary costs one
target, as in the usual concat-then-split packing. The iterator's `get_state()` is small (the
upstream state at the start of the document being cut, plus an offset into it), so a resumed
run continues exactly where it stopped.

Evaluation (`lm_eval_windows`): the split's documents in order, each followed by eos, after a
leading eos that gives the first token a context; cut into back-to-back windows of T targets
so every token is a target exactly once; the last window is padded and masked.

Read-ahead: by default (`read_threads=0`) documents are read and tokenized in the training
thread, between two asynchronous step dispatches. grain's own default (16 read-ahead threads)
fights the step's compute threads for the cores on a small host. Raise `read_threads` for
slow storage (a bucket) on hosts with cores to spare.

We use the `IterDataset` API rather than `DataLoader`; with `worker_count > 0` the pipeline
runs in `mp_prefetch` worker processes (grain's workers read absl flags, so we mark them parsed
when the caller did not parse any). The counters (`ds.pack_stats`, `ds.text_stats`, the
tokenizer's unknown characters) live in the process that tokenizes and packs, so they are
complete only with `worker_count=0`; `text_stats` also counts documents read ahead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jaxtyping import Float32, Int32

from lexlm.text.decode import TextStats, clean_document, clean_documents
from lexlm.text.tokenizers import EOS_ID, PAD_ID, Tokenizer

Record = Mapping[str, Any]


def read_documents(
    source: Sequence[Record], limit: int | None = None, *, name: str = "split"
) -> list[str]:
    """The first `limit` (default: all) records' texts, decoded, stripped, empty ones dropped.

    Used to build tokenizers from the training split; one warning summarises any repairs.
    """
    n = len(source) if limit is None else min(limit, len(source))
    docs, _ = clean_documents((source[i]["text"] for i in range(n)), source=name)
    return docs


class _Tokenize:
    """Record -> int32 token ids of its cleaned text followed by eos (none if it is empty)."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.text_stats = TextStats()

    def __call__(self, record: Record) -> Int32[np.ndarray, " N"]:
        text = clean_document(record["text"], self.text_stats)
        if not text:
            return np.zeros((0,), np.int32)
        return np.append(self.tokenizer.encode(text), np.int32(EOS_ID)).astype(np.int32)


def _host(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # only here: the pipeline itself needs no jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def lm_train_dataset(
    source: Sequence[Record],
    tokenizer: Tokenizer,
    seq_len: int,
    batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
    *,
    worker_count: int = 0,
    read_threads: int = 0,
):
    """An infinite grain `IterDataset` of packed batches for this host.

    Yields `{'inputs': int32[B, T], 'targets': int32[B, T], 'mask': float32[B, T]}` with
    B = `batch_size` (per host) and T = `seq_len`. Hosts (default: jax's process index and
    count) read disjoint documents. `iter(ds)` supports `get_state()` / `set_state()`.
    The dataset's `.pack_stats` (a `PackStats`) and `.text_stats` count skipped documents.
    """
    import grain

    from lexlm.data.packing import PackIterDataset

    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
    process_index, process_count = _host(process_index, process_count)
    records = grain.MapDataset.source(source)[process_index::process_count]
    if len(records) == 0:
        raise ValueError(
            f"host {process_index} of {process_count} gets no documents from {len(source)}"
        )
    tokenize = _Tokenize(tokenizer)
    docs = records.shuffle(seed=seed).repeat().map(tokenize)
    # A run of 2n + 1 empty documents spans a whole epoch, so then every document is empty.
    read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=4 * read_threads)
    packed = PackIterDataset(
        docs.to_iter_dataset(read), seq_len + 1, max_empty_run=2 * len(records)
    )
    ds = packed.batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        from absl import flags

        # grain's worker processes read absl flags; a script without absl.app has none parsed.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    ds.pack_stats = packed.pack_stats
    ds.text_stats = tokenize.text_stats
    return ds


def lm_eval_documents(source: Sequence[Record], tokenizer: Tokenizer) -> list[np.ndarray]:
    """Each non-empty document's token ids followed by eos, in split order."""
    docs = read_documents(source)
    eos = np.array([EOS_ID], np.int32)
    return [np.concatenate([tokenizer.encode(doc), eos]) for doc in docs]


def lm_eval_windows(
    source: Sequence[Record],
    tokenizer: Tokenizer,
    seq_len: int,
    max_windows: int | None = None,
) -> dict[str, np.ndarray]:
    """Back-to-back windows over the whole split; every token is a target exactly once.

    Returns `inputs`, `targets` (int32 [N, T]), `mask` (float32 [N, T]) and the totals over
    real targets `n_tokens`, `n_bytes`, `n_chars` (int64 scalars; eos counts as "\\n\\n"), so
    bits per byte = sum(nats * mask) / ln 2 / n_bytes. `max_windows` keeps the first windows.

    The test units of the paired bootstrap (``lexlm.eval.intervals``) are blocks of
    ``UNIT_BYTES`` bytes within documents (``block_units``; a document's closing eos is its
    own): `unit_ids` (int32 [N, T]) is the unit of each target (-1 on padding) and
    `unit_bytes` (int64 [U]) the bytes of each unit's targets, so a unit's bits per byte is
    the sum of its targets' nats / ln 2 / its bytes.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    docs = lm_eval_documents(source, tokenizer)
    stream = np.concatenate([np.array([EOS_ID], np.int32), *docs])
    n_targets = len(stream) - 1
    n_windows = max(1, -(-n_targets // seq_len))
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
        n_targets = min(n_targets, n_windows * seq_len)
    padded = np.full(n_windows * seq_len + 1, PAD_ID, np.int32)
    used = min(len(stream), len(padded))
    padded[:used] = stream[:used]
    inputs: Int32[np.ndarray, "N T"] = padded[:-1].reshape(n_windows, seq_len)
    targets: Int32[np.ndarray, "N T"] = padded[1:].reshape(n_windows, seq_len)
    mask: Float32[np.ndarray, "N T"] = (
        (np.arange(n_windows * seq_len) < n_targets).reshape(n_windows, seq_len).astype(np.float32)
    )
    real = targets[mask > 0]
    # stream position p >= 1 belongs to the document whose tokens span it
    from lexlm.eval.intervals import block_units

    owner = np.concatenate([[-1], np.repeat(np.arange(len(docs)), [len(d) for d in docs])])
    doc_of_target = np.full(n_windows * seq_len, -1, np.int64)
    doc_of_target[:n_targets] = owner[1 : n_targets + 1]
    every_target = np.concatenate(docs) if docs else np.zeros(0, np.int32)
    target_bytes = np.zeros(n_windows * seq_len, np.int64)
    target_bytes[:n_targets] = tokenizer.token_bytes[every_target[:n_targets]]
    full_doc_bytes = np.array([tokenizer.token_bytes[d].sum() for d in docs], np.int64)
    unit_of_target = block_units(doc_of_target, target_bytes, full_doc_bytes)
    unit_ids: Int32[np.ndarray, "N T"] = unit_of_target.reshape(n_windows, seq_len).astype(np.int32)
    n_units = int(unit_of_target.max()) + 1 if n_targets else 0
    kept = unit_of_target >= 0
    unit_bytes = np.bincount(
        unit_of_target[kept], weights=target_bytes[kept].astype(np.float64), minlength=n_units
    ).astype(np.int64)
    return {
        "inputs": inputs,
        "targets": targets,
        "mask": mask,
        "unit_ids": unit_ids,
        "unit_bytes": unit_bytes,
        "n_tokens": np.int64(n_targets),
        "n_bytes": np.int64(tokenizer.token_bytes[real].sum()),
        "n_chars": np.int64(tokenizer.token_chars[real].sum()),
    }
