"""Running experiments the way a user does, for every project's tests.

* ``cli(argv)``: ``python -m lexlm.run`` / ``lexlm.evaluate`` / ``lexlm.report`` in this
  process (so coverage sees it), returning (status, stdout, stderr).
* ``run_subprocess(argv, fault=...)``: the same command in a child process, optionally with
  ``LEXLM_FAULT`` set so that it SIGKILLs itself at a named point (``lexlm.faults``). Children
  share one persistent compilation cache and compile with most XLA optimisations off, so a
  chain of killed and resumed runs compiles each program once and computes the same numbers.
* ``kill_chain``: a workdir run with a kill at each of several points, rerun after each, and
  finally to the end: what a user does after every crash.
* ``tree_state(path)``: every file under a folder with its size and hash, to show that a
  refused command changed nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD_ENV = {
    "JAX_PLATFORMS": "cpu",
    "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}
KILLED = -9


def cli(argv: Sequence[str], entry: str = "run") -> tuple[int, str, str]:
    """Runs ``lexlm.<entry>``'s main on ``argv`` (without the program name) in-process."""
    from lexlm.experiment import cli as lexlm_cli

    main = {"run": lexlm_cli.run_main, "evaluate": lexlm_cli.evaluate_main,
            "report": lexlm_cli.report_main}[entry]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([f"lexlm.{entry}", *argv])
    return code, out.getvalue(), err.getvalue()


def child_env(cache_dir, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "LEXLM_FAULT"))}
    env.update(CHILD_ENV, JAX_COMPILATION_CACHE_DIR=str(cache_dir))
    if fault:
        env["LEXLM_FAULT"] = fault
    return env


def run_subprocess(argv: Sequence[str], cache_dir, entry: str = "run", fault: str | None = None,
                   timeout: float = 400) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", f"lexlm.{entry}", *argv], cwd=REPO, env=child_env(cache_dir, fault),
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def findings(workdir) -> dict:
    return json.loads((Path(workdir) / "findings.json").read_text())


def kill_chain(argv: Sequence[str], cache_dir, faults: Sequence[str]) -> list[int]:
    """Runs ``argv`` with each fault in turn (the next run resumes what the last left), then
    once without; returns the exit statuses (killed runs are -9). The caller compares the
    workdir's findings with an uninterrupted run's."""
    codes = []
    for fault in [*faults, None]:
        out = run_subprocess(argv, cache_dir, fault=fault)
        codes.append(out.returncode)
        if fault is None and out.returncode != 0:
            raise AssertionError(f"final rerun failed:\n{out.stderr[-4000:]}")
        if fault is not None and out.returncode not in (KILLED, 0):
            raise AssertionError(f"run with {fault} failed:\n{out.stderr[-4000:]}")
    return codes


def tree_state(path) -> dict[str, str]:
    """{relative path: size and sha256} of every file under ``path`` ({} if it is absent)."""
    root = Path(path)
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".lock":  # a lock records its holder's pid
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def copy_workdir(src, dst) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return Path(dst)


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """A user error: status 2 and exactly one line on stderr that names every fragment."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
