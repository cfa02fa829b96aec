"""Runs one experiment into its workdir and writes what it found: the part of
``python -m lexlm.run`` after the command line is parsed.

``run_experiment`` validates the config (before anything is read, counted or trained), holds
the workdir (``lexlm.locks``), hands it to the project's ``run`` and then ``finish``es:
``findings.json``, ``provenance.json``, ``report.md`` and its figures, in that order, each
written whole. A user error (``LexlmError``) raised before the project wrote anything leaves
the workdir as it was.
"""

from __future__ import annotations

import time

from lexlm import faults
from lexlm.errors import LexlmError
from lexlm.experiment import registry
from lexlm.experiment.store import Workdir, is_writer, provenance
from lexlm.locks import WorkdirLock
from lexlm.paths import write_bytes


class Figures:
    """Where a report's PNGs go: ``save(name, png) -> path`` relative to the report."""

    def __init__(self, folder, relative_to: str = "figures", prefix: str = ""):
        from lexlm.paths import as_path

        self.folder = as_path(folder)
        self.relative_to = relative_to
        self.prefix = prefix
        self.saved: list[str] = []

    def save(self, name: str, png: bytes) -> str:
        filename = f"{self.prefix}{name}"
        if is_writer() and png:
            write_bytes(self.folder / filename, png)
        self.saved.append(filename)
        return f"{self.relative_to}/{filename}" if self.relative_to else filename


def validate(cfg) -> None:
    if "project" not in cfg:
        from lexlm.errors import ConfigError

        raise ConfigError("project", "this config names no project: not a lexlm experiment config")
    registry.module(cfg.project, "config").validate(cfg)


def render(cfg_project: str, findings: dict, record: dict, wd: Workdir) -> str:
    report = registry.module(cfg_project, "report")
    return report.render(findings, record, Figures(wd.root / "figures"))


def finish(cfg, wd: Workdir, findings: dict, started: float) -> dict:
    """Writes findings, provenance and the report of a finished experiment."""
    wd.write_config(cfg)
    wd.write_findings(findings)
    faults.point("report")
    record = provenance(started, wd.timings, wd.step_counts)
    record["project"] = str(cfg.project)
    wd.write_provenance(record)
    wd.write_report(render(str(cfg.project), findings, record, wd))
    return findings


def run_section(cfg, wd: Workdir, **kwargs) -> dict:
    """One experiment inside a workdir already held (the main job's sections); ``kwargs``
    reach the project's ``run`` (the lexinvariant section's ``reuse``)."""
    started = time.perf_counter()
    findings = registry.module(str(cfg.project), "run").run(cfg, wd, **kwargs)
    return finish(cfg, wd, findings, started)


def remove_temporaries(root) -> int:
    """Deletes what kills left half-written (``*.tmp-*`` files and folders) under a local
    ``root`` (an object store has none: its writes are single puts); call it only while
    holding the workdir's lock. Returns how many were removed."""
    import os
    import shutil

    from lexlm.paths import TMP_MARK, is_uri

    if is_uri(root) or not os.path.isdir(root):
        return 0
    removed = 0
    for folder, dirs, files in os.walk(os.fspath(root)):
        for name in [d for d in dirs if TMP_MARK in d]:
            shutil.rmtree(os.path.join(folder, name))
            dirs.remove(name)
            removed += 1
        for name in files:
            if TMP_MARK in name:
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def run_experiment(cfg, workdir) -> dict:
    """Validates ``cfg``, holds ``workdir``, runs the experiment and writes its results."""
    validate(cfg)
    lock = WorkdirLock(workdir)
    lock.acquire()
    if is_writer():
        remove_temporaries(workdir)
    try:
        findings = run_section(cfg, Workdir(workdir))
    except LexlmError:
        lock.release(discard=True)  # a workdir this command made and left empty goes again
        raise
    except BaseException:
        lock.release()
        raise
    lock.release()
    return findings
