"""Choosing an encoder's checkpoint on the validation judgements, so that a kill at any point
and a rerun choose what an uninterrupted run chooses.

Every saved checkpoint of every stage but MAE is scored on validation (Spearman x 100); its
record is one file, ``<run>/selection/step-<global step>.json``, written whole. The best
candidate so far (``stages.is_candidate``: the soup and later; the earliest step on ties) is
kept in ``<run>/best/checkpoints``, one checkpoint numbered by its global step.

Order: a new best is saved *before* its record, so no record names a step that best/ lacks.
A kill between a stage's checkpoint and its record (or between the best's save and its
record) leaves a saved step without a record: the stage's hook says so (``pending``), and the
trainer calls it for that checkpoint on the rerun before training on. Its score is a function
of the saved parameters, so it is the same, and best/ already holding that step is kept. The
best is always re-derived from the records, never from what one process remembers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax

from lexlm import faults
from lexlm.errors import CheckpointError
from lexlm.experiment import store
from lexlm.paths import TMP_MARK, as_path, read_json, write_json


def select_on_dev(records: Sequence[dict]) -> dict | None:
    """The candidate with the best finite dev score (earliest global step on ties), or None;
    test never takes part."""
    cands = [r for r in records if r["candidate"] and math.isfinite(r["dev"])]
    if not cands:
        return None
    return max(cands, key=lambda r: (r["dev"], -r["global_step"]))


def read_records(run_dir) -> list[dict]:
    """Every selection record of a run, by global step."""
    folder = as_path(run_dir) / "selection"
    if not folder.is_dir():
        return []
    out = [read_json(p) for p in folder.glob("step-*.json") if TMP_MARK not in p.name]
    return sorted(out, key=lambda r: r["global_step"])


class Selection:
    """The records and best checkpoint of one run; ``score(params) -> dev Spearman``."""

    def __init__(self, run_dir, identity: dict, score: Callable[[dict], float]):
        from lexlm.train.checkpoint import Checkpointer

        self.run_dir = as_path(run_dir)
        self.score = score
        self.best_ckpt = Checkpointer(self.run_dir / "best" / "checkpoints", keep=1,
                                      identity_fields=identity)  # fmt: skip

    def path(self, global_step: int):
        return self.run_dir / "selection" / f"step-{int(global_step):07d}.json"

    def has(self, global_step: int) -> bool:
        return self.path(global_step).exists()

    def records(self) -> list[dict]:
        return read_records(self.run_dir)

    def consider(self, stage: str, step: int, global_step: int, candidate: bool, state) -> None:
        """Scores a saved checkpoint (once), keeps it as best/ if it beats every record."""
        from lexlm.train.contrastive_task import unbox

        if self.has(global_step):
            return
        faults.point("evaluate")
        dev = float(self.score(unbox(jax.device_get(state.params))))
        best = select_on_dev(self.records())
        if candidate and math.isfinite(dev) and (best is None or dev > best["dev"]):
            if self.best_ckpt.latest_step() != global_step:  # a rerun may find it saved
                self.best_ckpt.save(int(global_step), state, None)
                self.best_ckpt.wait()
        record = {"stage": stage, "step": int(step), "global_step": int(global_step),
                  "candidate": bool(candidate), "dev": dev}  # fmt: skip
        if store.is_writer():
            write_json(self.path(global_step), record)
        store.sync(f"select_{global_step}")

    def hook(self, stage: str, offset: int, candidate: bool) -> StageHook:
        return StageHook(self, stage, offset, candidate)

    def selected(self) -> dict:
        """The chosen record, checked against the best checkpoint."""
        best = select_on_dev(self.records())
        if best is None:
            raise CheckpointError(
                f"{self.run_dir}: no candidate checkpoint with a finite validation score"
            )
        saved = self.best_ckpt.latest_step()
        if saved != best["global_step"]:
            raise CheckpointError(
                f"{self.run_dir}/best holds step {saved}, but the selection records choose "
                f"{best['global_step']}; the run directory was changed by hand: use a new "
                "workdir"
            )
        return best

    def close(self) -> None:
        self.best_ckpt.close()


class StageHook:
    """The trainer hook of one stage: every saved checkpoint is considered, and one saved
    but not considered (a kill in between) is ``pending`` on the rerun."""

    def __init__(self, selection: Selection, stage: str, offset: int, candidate: bool):
        self.selection, self.stage = selection, stage
        self.offset, self.candidate = int(offset), candidate

    def pending(self, step: int) -> bool:
        # step 0 is a seed (the parameters a stage starts from), considered as what it was
        return int(step) > 0 and not self.selection.has(self.offset + int(step))

    def __call__(self, step: int, state, saved: bool) -> None:
        if saved:
            g = self.offset + int(step)
            self.selection.consider(self.stage, int(step), g, self.candidate, state)
