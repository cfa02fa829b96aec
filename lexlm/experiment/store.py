"""The result store: one workdir layout, results reused only when the config that made them is
equal, every file written whole, only process 0 writing.

    W/config.json          the experiment's resolved config (written after every check passed)
    W/runs/<name>/         one run each: identity.json, config.json, checkpoints/, metrics.jsonl,
                           evals/<split>-<step>-<hash>.json, and what the run kind adds
    W/cache/<name>-<hash>.json   values computed once per config (counts, references)
    W/findings.json        what the experiment found (deterministic: no timings)
    W/provenance.json      command, versions, machine, date, timings
    W/report.md, W/figures/

Identity (``lexlm.experiment.identity``): a run's ``identity.json`` holds the fields of its
config that shape its result (all but the volatile ones and ``eval.*``) and fingerprints of
its input files. ``open_run`` compares them with the current config *before* anything is
written and refuses a mismatch with one line naming the fields (``StaleResultError``);
nothing is moved or overwritten. Evaluations are stored under a hash of the run's identity,
the split, the step and the evaluation settings, so a changed setting is a new file, never a
stale reuse. Folders (tokenizers, vocabularies) are built under a temporary name and carry
``.identity.json``, written last; one without it was torn by a kill and is rebuilt.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from etils import epath

from lexlm import faults
from lexlm.errors import StaleResultError
from lexlm.experiment import identity as ident
from lexlm.paths import (
    TMP_MARK,
    as_path,
    is_uri,
    publish_dir,
    read_json,
    temporary_sibling,
    write_json,
    write_text,
)

RUN_IDENTITY = "identity.json"
RUN_CONFIG = "config.json"
DIR_MARK = ".identity.json"


def is_writer() -> bool:
    """Only process 0 writes results, findings and reports."""
    import jax

    return jax.process_index() == 0


def sync(name: str) -> None:
    """All processes wait here (no-op on one process), e.g. until process 0 has published."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"lexlm_{name}")


def relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    p, r = os.fspath(path), os.fspath(root).rstrip("/")
    return p[len(r) + 1 :] if p.startswith(r + "/") else p


# -- runs --------------------------------------------------------------------------------------
def run_identity(cfg: Any, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The identity fields of a run config (without ``eval.*``), plus ``inputs.<name>``
    fingerprints of the data it reads (``lexlm.data.config.input_fingerprints``)."""
    out = ident.fields(cfg, exclude=("eval",))
    out.update({f"inputs.{k}": v for k, v in (inputs or {}).items()})
    return out


def saved_identity(run_dir: epath.Path) -> dict[str, Any] | None:
    path = as_path(run_dir) / RUN_IDENTITY
    return read_json(path)["fields"] if path.exists() else None


def check_run(run_dir, cfg: Any, inputs: Mapping[str, Any] | None = None) -> bool:
    """True if ``run_dir`` holds a run of this config, False if it holds none; a run of
    another config is a ``StaleResultError`` naming the differing fields. Writes nothing."""
    run_dir = as_path(run_dir)
    saved = saved_identity(run_dir)
    if saved is None:
        if (run_dir / "checkpoints").exists():
            raise StaleResultError(
                f"{run_dir} has checkpoints but no {RUN_IDENTITY}, so what made them is "
                "unknown; nothing was changed: choose another --workdir"
            )
        return False
    current = run_identity(cfg, inputs)
    if saved != current:
        raise StaleResultError(
            f"{run_dir} holds a run of another config ({ident.differences(saved, current)}); "
            "nothing was changed: choose another --workdir, or rerun with the saved values"
        )
    return True


def open_run(run_dir, cfg: Any, inputs: Mapping[str, Any] | None = None) -> epath.Path:
    """Checks ``run_dir`` (``check_run``), then records the run's identity and its resolved
    ``config.json`` (refreshed: evaluation settings may have changed). Returns the path."""
    run_dir = as_path(run_dir)
    check_run(run_dir, cfg, inputs)
    if is_writer():
        fields = run_identity(cfg, inputs)
        if not (run_dir / RUN_IDENTITY).exists():
            write_json(run_dir / RUN_IDENTITY, {"digest": ident.digest(fields), "fields": fields})
        write_text(run_dir / RUN_CONFIG, cfg.to_json_best_effort(indent=2) + "\n")
    sync("open_run")
    return run_dir


def load_run_config(run_dir):
    """The resolved config a run directory was trained with (``config.json``)."""
    import json

    import ml_collections

    from lexlm.errors import ConfigError

    path = as_path(run_dir) / RUN_CONFIG
    if not path.exists():
        raise ConfigError("workdir", f"{run_dir} has no {RUN_CONFIG} (not a lexlm run directory)")
    cfg = ml_collections.ConfigDict(json.loads(path.read_text()))
    if "train" in cfg and "mesh" in cfg.train:
        cfg.train.mesh = tuple(cfg.train.mesh)
    return cfg


def find_runs(root) -> list[epath.Path]:
    """Every run directory under ``root`` (itself included), sorted by path."""
    root = as_path(root)
    if (root / RUN_IDENTITY).exists():
        return [root]
    found = []
    runs = root / "runs"
    if runs.is_dir():
        for child in sorted(runs.iterdir(), key=lambda p: p.name):
            if child.is_dir() and TMP_MARK not in child.name:
                found += find_runs(child)
    else:
        for child in sorted(root.iterdir(), key=lambda p: p.name) if root.is_dir() else []:
            if child.is_dir() and (child / RUN_IDENTITY).exists():
                found.append(child)
    return found


# -- evaluations -------------------------------------------------------------------------------
def evaluation(
    run_dir,
    split: str,
    step: int,
    settings: Mapping[str, Any],
    compute: Callable[[], dict],
) -> dict:
    """The metrics of ``run_dir``'s checkpoint ``step`` on ``split`` under evaluation
    ``settings``: read if this exact evaluation was saved, else computed and saved."""
    run_dir = as_path(run_dir)
    key = {
        "run": ident.digest(saved_identity(run_dir) or {}),
        "split": split,
        "step": int(step),
        **ident.flatten(dict(settings)),
    }
    path = run_dir / "evals" / f"{split}-{int(step)}-{ident.digest(key)[:8]}.json"
    if path.exists():
        return read_json(path)["metrics"]
    faults.point("evaluate")
    metrics = compute()
    if is_writer():
        write_json(path, {"identity": key, "metrics": metrics})
    return metrics


def saved_evaluations(run_dir, split: str | None = None) -> list[dict]:
    """Every saved evaluation of a run ({'identity', 'metrics'}), by step."""
    evals = as_path(run_dir) / "evals"
    out = []
    if evals.is_dir():
        for p in evals.glob("*.json"):
            if TMP_MARK in p.name:
                continue
            record = read_json(p)
            if split is None or record["identity"]["split"] == split:
                out.append(record)
    return sorted(out, key=lambda r: (r["identity"]["step"], r["identity"]["split"]))


# -- artifacts -------------------------------------------------------------------------------
def artifact_dir(path, fields: Mapping[str, Any], build: Callable[[epath.Path], None]):
    """A folder made by ``build(folder)`` from ``fields`` (say a tokenizer from the data and
    unit fields): reused when its recorded fields are equal, a ``StaleResultError`` when they
    differ, rebuilt when a kill left it without its identity record. Only process 0 builds
    and publishes; the others wait for it. Returns the path."""
    path = as_path(path)
    fields = ident.flatten(dict(fields))
    marker = path / DIR_MARK
    if marker.exists():
        saved = read_json(marker)["fields"]
        if saved != fields:
            raise StaleResultError(
                f"{path} was built from another config ({ident.differences(saved, fields)}); "
                "nothing was changed: choose another --workdir, or rerun with the saved values"
            )
        return path
    if is_writer():
        if path.exists():  # torn by a kill before its identity record: never complete
            path.rmtree()
        tmp = path if is_uri(path) else temporary_sibling(path)
        tmp.mkdir(parents=True, exist_ok=True)
        build(tmp)
        write_json(tmp / DIR_MARK, {"digest": ident.digest(fields), "fields": fields})
        publish_dir(tmp, path)
    sync(f"artifact_{path.name}")
    return path


def cached(root, name: str, fields: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    """A JSON value computed once per ``fields``: ``<root>/cache/<name>-<hash>.json``."""
    fields = ident.flatten(dict(fields))
    path = as_path(root) / "cache" / f"{name}-{ident.digest(fields)[:12]}.json"
    if path.exists():
        return read_json(path)["value"]
    value = compute()
    if is_writer():
        write_json(path, {"fields": fields, "value": value})
    return value


# -- the experiment workdir ------------------------------------------------------------------
class Workdir:
    """An experiment's workdir (see the module docstring for its layout)."""

    def __init__(self, root):
        from lexlm.train.loop import STEP_COUNTS

        self.root = as_path(root)
        self.timings: dict[str, Any] = {}  # wall times of this process's work: provenance
        self.step_counts = dict(STEP_COUNTS)  # the process's counts when this work began

    def run(self, name: str) -> epath.Path:
        """``W/runs/<name>``; names are grid entries such as ``budget_3e12/megabyte4``."""
        parts = name.split("/")
        if not name or any(p in ("", ".", "..") or TMP_MARK in p for p in parts):
            raise ValueError(f"bad run name {name!r}")
        return self.root / "runs" / name

    def sub(self, name: str) -> Workdir:
        """A section's own workdir inside this one (the main job's ``W/runs/<section>``)."""
        return Workdir(self.run(name))

    @property
    def findings_path(self) -> epath.Path:
        return self.root / "findings.json"

    def write_config(self, cfg: Any) -> None:
        if is_writer():
            write_text(self.root / "config.json", cfg.to_json_best_effort(indent=2) + "\n")

    def write_findings(self, findings: dict) -> None:
        if is_writer():
            write_json(self.findings_path, findings)

    def write_provenance(self, record: dict) -> None:
        if is_writer():
            write_json(self.root / "provenance.json", record)

    def write_report(self, text: str) -> None:
        if is_writer():
            write_text(self.root / "report.md", text)

    def cached(self, name: str, fields: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
        return cached(self.root, name, fields, compute)


def provenance(
    started: float, timings: Mapping[str, Any] | None = None, since: Mapping | None = None
) -> dict:
    """Where and how a findings file was made: the command, versions, machine, wall time, and
    the training steps this work trained and resumed from checkpoints (counted from ``since``,
    the process's ``loop.STEP_COUNTS`` when the work began)."""
    import jax

    from lexlm.train.loop import STEP_COUNTS

    since = since or {}
    return {
        "steps_trained": STEP_COUNTS["trained"] - int(since.get("trained", 0)),
        "steps_resumed": STEP_COUNTS["resumed"] - int(since.get("resumed", 0)),
        "command": " ".join(["python", "-m", "lexlm.run", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)",
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "wall_s": round(time.perf_counter() - started, 1),
        "timings": dict(timings or {}),
    }
