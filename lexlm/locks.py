"""One process per workdir: ``WorkdirLock`` refuses a second one with one line.

On a local disk the lock is ``flock`` on ``<workdir>/.lock``, which the kernel releases when
the process ends in any way (SIGKILL included), so a killed run never leaves a stale lock. An
object store has no such lock: there ``<workdir>/.lock`` holds the owner and a heartbeat that a
thread renews every ``HEARTBEAT_S`` seconds, and a lock whose heartbeat is older than
``STALE_S`` is taken over. Only process 0 of a multi-host run takes the lock; the others
write nothing that it protects.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from lexlm.errors import WorkdirBusyError
from lexlm.paths import as_path, is_uri

LOCK_NAME = ".lock"
HEARTBEAT_S = 60.0
STALE_S = 600.0


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


class WorkdirLock:
    """``with WorkdirLock(workdir):`` holds the workdir for this process.

    ``release(discard=True)`` also removes the lock file, and the workdir if this lock made
    it and it holds nothing else, so a command that stopped on bad input leaves no trace.
    """

    def __init__(self, workdir, *, enabled: bool | None = None):
        self.workdir = as_path(workdir)
        self.path = self.workdir / LOCK_NAME
        if enabled is None:
            import jax

            enabled = jax.process_index() == 0
        self.enabled = enabled
        self._fd: int | None = None
        self._created_dirs: list = []
        self._created_file = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()

    def _make_dirs(self) -> None:
        missing, p = [], self.workdir
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._created_dirs = missing  # deepest first

    def acquire(self) -> None:
        if not self.enabled:
            return
        self._make_dirs()
        if is_uri(self.path):
            self._acquire_object()
        else:
            self._acquire_flock()

    def _acquire_flock(self) -> None:
        import fcntl

        path = os.fspath(self.path)
        self._created_file = not os.path.exists(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 4096).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise WorkdirBusyError(
                f"{self.workdir} is in use by another process ({holder or 'unknown'}); wait for "
                "it to finish or choose another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_owner()).encode())
        self._fd = fd

    def _acquire_object(self) -> None:
        if self.path.exists():
            try:
                holder = json.loads(self.path.read_text())
            except (ValueError, OSError):
                holder = {}
            if time.time() - float(holder.get("time", 0)) < STALE_S:
                raise WorkdirBusyError(
                    f"{self.workdir} is in use by {holder.get('host')} pid {holder.get('pid')} "
                    f"(heartbeat {time.time() - float(holder['time']):.0f} s ago); wait for it "
                    f"or choose another --workdir"
                )
        else:
            self._created_file = True
        self.path.write_text(json.dumps(_owner()))
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.path.write_text(json.dumps(_owner()))

    def release(self, discard: bool = False) -> None:
        if not self.enabled:
            return
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if discard and self._created_file and self.path.exists():
            self.path.unlink()
            for d in self._created_dirs:
                if d.exists() and not any(d.iterdir()):
                    d.rmdir()
        elif is_uri(self.path) and self.path.exists():
            self.path.unlink()  # an object lock is released by removing it
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
