"""Orbax checkpoints of the train state and the data iterator state.

Each step directory holds two items: ``state`` (params, optimizer state, step) and ``data``
(the input iterator's state as JSON), so a resumed run continues on exactly the batches it would
have seen. Restoring always targets the shardings of the *current* mesh (taken from an abstract
state), never those recorded in the checkpoint, so a checkpoint written on 8 devices loads on 1
and the reverse.

A latest checkpoint that cannot be read is moved aside to ``<workdir>/corrupt_checkpoints/`` with
a warning naming it, and the previous one is tried; if none can be read the run stops with
``CheckpointError`` instead of silently starting from scratch.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from lexlm.errors import CheckpointError

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int = 3, async_save: bool = False):
        self.directory = Path(directory).absolute()
        self.keep = keep
        self.async_save = async_save
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep,
            create=True,
            enable_async_checkpointing=self.async_save,
        )
        return ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, data_state: dict | None) -> None:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state or {})
        )
        self._manager.save(step, args=args, force=True)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def _restore_step(self, step: int, abstract_state: Any):
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
        )
        restored = self._manager.restore(step, args=args)
        return restored["state"], dict(restored["data"] or {})

    def restore(self, abstract_state: Any, step: int | None = None):
        """Returns (state, data_state, step), or None when there is no checkpoint at all.

        ``abstract_state``: a tree of ``jax.ShapeDtypeStruct`` carrying the target shardings.
        With ``step=None`` the newest readable checkpoint is used, falling back past corrupt ones.
        """
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint for step {step} in {self.directory}")
            try:
                return (*self._restore_step(step, abstract_state), step)
            except Exception as e:
                raise CheckpointError(
                    f"checkpoint step {step} in {self.directory} is unreadable: {_short(e)}"
                ) from e
        if not steps:
            corrupt = self.directory.parent / "corrupt_checkpoints"
            if corrupt.is_dir() and any(corrupt.iterdir()):
                # An earlier attempt found only unreadable checkpoints: do not start over.
                raise CheckpointError(
                    f"no checkpoint in {self.directory}, but unreadable ones were moved to "
                    f"{corrupt}; delete them to start over"
                )
            return None
        errors = []
        for s in reversed(steps):
            try:
                state, data_state = self._restore_step(s, abstract_state)
            except Exception as e:  # orbax raises many kinds for damaged files
                errors.append(f"step {s}: {_short(e)}")
                self._move_aside(s)
                continue
            if errors:
                log.warning("restored step %d after unreadable checkpoints: %s", s, errors)
            return state, data_state, s
        raise CheckpointError(
            f"every checkpoint in {self.directory} is unreadable ({'; '.join(errors)}); "
            "they were moved to corrupt_checkpoints/; delete them to start over"
        )

    def _move_aside(self, step: int) -> None:
        src = self.directory / str(step)
        dst = self.directory.parent / "corrupt_checkpoints" / str(step)
        if jax.process_index() == 0 and src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():
                shutil.rmtree(dst)
            shutil.move(str(src), str(dst))
            log.warning("checkpoint step %d is unreadable; moved it to %s", step, dst)
        self._manager.close()
        self._manager = self._open()


def _short(e: Exception) -> str:
    text = f"{type(e).__name__}: {e}"
    first = text.splitlines()[0] if text else type(e).__name__
    return first[:300]
