"""Seeds as a batch axis: the data side and the evaluation side of ``train.seeds``.

The loop (``lexlm.train.loop``) trains S copies of a task in one program when
``train.seeds = S > 1``. It wants batches with a leading axis of S, copy s's batch drawn in
copy s's own data order: ``SeedBatches`` stacks one iterator per seed and keeps their states
together, so a resumed run continues every copy exactly. ``seed_params`` takes copy s out of
a stacked parameter tree for evaluation; ``seed_offsets`` lists the seeds a run trained.

    its = [make_batches(seed=cfg.data.seed + s) for s in range(S)]
    result = train(cfg.train, task, SeedBatches(its), workdir)
    params_s = seed_params(result.state.params, s, S)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np


class SeedBatches:
    """One batch iterator per seed, stacked: ``next`` gives {name: [S, B, ...]}.

    ``get_state``/``set_state`` hold every iterator's state (each must have them for exact
    resumption; an iterator without them resumes from its start)."""

    def __init__(self, iterators: Sequence[Iterator[dict[str, np.ndarray]]]):
        if not iterators:
            raise ValueError("SeedBatches needs at least one iterator")
        self.iterators = list(iterators)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batches = [next(it) for it in self.iterators]
        return {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}

    def get_state(self) -> dict:
        return {"seeds": [it.get_state() if hasattr(it, "get_state") else None
                          for it in self.iterators]}  # fmt: skip

    def set_state(self, state: dict) -> None:
        saved = state["seeds"]
        if len(saved) != len(self.iterators):
            raise ValueError(
                f"a data state of {len(saved)} seeds cannot resume {len(self.iterators)} seeds"
            )
        for it, s in zip(self.iterators, saved):
            if s is not None and hasattr(it, "set_state"):
                it.set_state(s)


def seed_batches(make: Any, seeds: int, base_seed: int):
    """``make(seed)`` for one seed, else ``SeedBatches`` of ``make(base_seed + s)``."""
    if seeds == 1:
        return make(base_seed)
    return SeedBatches([make(base_seed + s) for s in range(seeds)])


def seed_params(params: Any, seed_index: int | None, seeds: int) -> Any:
    """Copy ``seed_index`` of a tree trained with ``seeds`` copies (the tree itself when 1)."""
    if seeds == 1:
        if seed_index not in (None, 0):
            raise ValueError(f"seed index {seed_index}: this run trained one seed")
        return params
    if seed_index is None or not 0 <= seed_index < seeds:
        raise ValueError(f"seed index {seed_index}: this run trained seeds 0..{seeds - 1}")
    return jax.tree.map(lambda x: x[seed_index], params)
