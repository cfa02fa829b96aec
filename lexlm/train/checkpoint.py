"""Orbax checkpoints of the train state and the data iterator state, with an identity record.

Each step directory holds three items:

* ``state``: params, optimizer state, step;
* ``data``: the input iterator's state as JSON, so a resumed run continues on exactly the
  batches it would have seen;
* ``identity``: JSON ``{"fingerprint", "fields", "leaves"}``. ``leaves`` maps every leaf path of
  the train state to its shape and dtype, ``fingerprint`` is a hash of ``leaves``, and
  ``fields`` holds the config fields the task declares as shaping its state (``Task.identity``:
  for an LM the model's fields, the vocabulary size and the context length).

Restoring targets the shardings of the *current* mesh (taken from an abstract state), never
those recorded in the checkpoint, so a checkpoint written on 8 devices loads on 1 and the
reverse. Paths are ``etils.epath`` paths: ``gs://bucket/run`` stays a bucket path.

What restore does with a checkpoint it cannot use, in order:

1. **Another train state** (its fingerprint differs from the current state's, say after
   ``--config.model.depth=4`` on an old workdir): ``CheckpointError`` naming the differing
   fields (or, when the fields agree, the differing leaves). Nothing is moved or deleted.
2. **A retryable storage error** (a timeout, a dropped connection, an object store's
   UNAVAILABLE or DEADLINE_EXCEEDED): retried ``retries`` times with exponential back-off, then
   ``CheckpointError``. Nothing is moved. Saves are retried the same way.
3. **A read or decode failure** (truncated arrays, damaged metadata, a missing file): the step
   counts as corrupt; it is moved to ``<workdir>/corrupt_checkpoints/`` with a warning and the
   previous step is tried. When none is readable the run stops with ``CheckpointError`` instead
   of silently starting from scratch, and keeps stopping while ``corrupt_checkpoints/`` is there.

A step written without an identity record (by lexlm before identity records) is restored if it
fits the current state; if it does not, the error says so and nothing is moved, because a
mismatch and damage cannot be told apart without the record.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from lexlm.errors import CheckpointError
from lexlm.paths import as_path

log = logging.getLogger(__name__)

ITEMS = ("state", "data", "identity")
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    }
)
# Status codes that tensorstore and the cloud storage clients put at the start of messages.
TRANSIENT_CODES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")


def state_leaves(tree: Any) -> dict[str, str]:
    """``{leaf path: "shape dtype"}`` of a tree of arrays or ``ShapeDtypeStruct``s."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {
        jax.tree_util.keystr(path): f"{tuple(leaf.shape)} {jax.numpy.dtype(leaf.dtype).name}"
        for path, leaf in flat
    }


def fingerprint(leaves: Mapping[str, str]) -> str:
    text = "\n".join(f"{k}: {v}" for k, v in sorted(leaves.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_record(state: Any, fields: Mapping[str, Any]) -> dict:
    leaves = state_leaves(state)
    return {
        "fingerprint": fingerprint(leaves),
        "fields": json.loads(json.dumps(dict(fields), default=str)),
        "leaves": leaves,
    }


def describe_mismatch(saved: Mapping, current: Mapping, limit: int = 4) -> str:
    """The differing fields (``model.depth 2 -> 4``), else the differing state leaves."""
    old, new = saved.get("fields", {}), current.get("fields", {})
    diffs = [
        f"{k} {json.dumps(old.get(k, '<absent>'))} -> {json.dumps(new.get(k, '<absent>'))}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if not diffs:
        old, new = saved.get("leaves", {}), current.get("leaves", {})
        diffs = [
            f"{k} {old.get(k, '<absent>')} -> {new.get(k, '<absent>')}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
    more = f" and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return ", ".join(diffs[:limit]) + more


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) is a retryable storage error."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, TimeoutError | ConnectionError):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        if str(e).lstrip().startswith(TRANSIENT_CODES):
            return True
        e = e.__cause__ or e.__context__
    return False


class IdentityMismatch(CheckpointError):
    """A checkpoint holds a train state of another shape than the current run's."""


class Checkpointer:
    """Saves and restores ``(state, data_state)`` per step under ``directory``.

    ``identity_fields``: the config fields that shape the state (recorded with every save and
    named when a restore finds another state). ``retries``/``backoff_s``: how often and how
    patiently a retryable storage error is retried.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int = 3,
        async_save: bool = False,
        *,
        identity_fields: Mapping[str, Any] | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
    ):
        self.directory = as_path(directory)
        self.keep = keep
        self.async_save = async_save
        self.identity_fields = dict(identity_fields or {})
        self.retries = retries
        self.backoff_s = backoff_s
        self._manager = self._open()

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.keep,
            create=True,
            enable_async_checkpointing=self.async_save,
        )
        return ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, data_state: dict | None) -> None:
        """Saves ``step``; a retryable storage error is retried like a restore's."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state or {}),
            identity=ocp.args.JsonSave(identity_record(state, self.identity_fields)),
        )
        where = f"saving checkpoint {self.directory / str(step)}"
        self._retrying(where, lambda: self._manager.save(step, args=args, force=True))

    def reached_preemption(self, step: int) -> bool:
        """Whether all processes agreed to save and stop at ``step`` after a preemption notice
        (orbax, through JAX's coordination service; needs ``jax.distributed``)."""
        return bool(self._manager.reached_preemption(step))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except Exception as e:
                if not is_transient(e):
                    raise
                if attempt == self.retries:
                    raise CheckpointError(
                        f"{what}: storage error after {attempt + 1} tries ({_short(e)}); "
                        "nothing was moved, rerun when the storage is reachable"
                    ) from e
                delay = self.backoff_s * 2**attempt
                log.warning("%s: %s; retrying in %.1f s", what, _short(e), delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _saved_identity(self, step: int) -> dict | None:
        if not (self.directory / str(step) / "identity").exists():
            return None
        args = ocp.args.Composite(identity=ocp.args.JsonRestore())
        identity = dict(self._manager.restore(step, args=args)["identity"] or {})
        if "fingerprint" not in identity:
            raise ValueError(f"identity record of step {step} has no fingerprint")
        return identity

    def _restore_step(self, step: int, abstract_state: Any):
        """(state, data_state) of ``step``; ``IdentityMismatch`` when it holds another state."""
        where = f"checkpoint {self.directory / str(step)}"
        current = identity_record(abstract_state, self.identity_fields)
        saved = self._retrying(where, lambda: self._saved_identity(step))
        if saved is not None and saved["fingerprint"] != current["fingerprint"]:
            raise IdentityMismatch(
                f"{where} holds the train state of another config "
                f"({describe_mismatch(saved, current)}); nothing was moved: use a new workdir, "
                "or rerun with the checkpoint's values"
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
        )
        try:
            restored = self._retrying(where, lambda: self._manager.restore(step, args=args))
        except CheckpointError:
            raise
        except Exception as e:
            if saved is None:  # no record: damage and another config look alike
                raise CheckpointError(
                    f"{where} has no identity record and does not restore into this run's "
                    f"train state ({_short(e)}); nothing was moved: use a new workdir, or "
                    "rerun with the config that wrote it"
                ) from e
            raise
        return restored["state"], dict(restored["data"] or {})

    def restore(self, abstract_state: Any, step: int | None = None):
        """Returns (state, data_state, step), or None when there is no checkpoint at all.

        ``abstract_state``: a tree of ``jax.ShapeDtypeStruct`` carrying the target shardings.
        With ``step=None`` the newest readable checkpoint is used, falling back past corrupt
        ones (see the module docstring for what counts as corrupt).
        """
        steps = self._retrying(f"checkpoints in {self.directory}", self.all_steps)
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint for step {step} in {self.directory}")
            try:
                return (*self._restore_step(step, abstract_state), step)
            except CheckpointError:
                raise
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
            except CheckpointError:
                raise  # another config, or storage that stays unreachable: move nothing
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
                dst.rmtree()
            src.rename(dst)
            log.warning("checkpoint step %d is unreadable; moved it to %s", step, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"lexlm_move_aside_{step}")
        self._manager.close()
        self._manager = self._open()


def _short(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    first = text.splitlines()[0] if text else type(e).__name__
    return first[:300]
