"""Which package runs an experiment and which evaluates a run kind.

An experiment config names its project (``config.project``); the project is the package
``lexlm.proj.<project>`` with ``config`` (``get_config``, ``validate``), ``run``
(``run(config, workdir) -> findings``), ``evaluate`` and ``report``
(``render(findings, provenance, figures) -> markdown``). A run's config names its kind
(``config.kind``); ``RUN_KINDS`` maps it to the project whose ``evaluate.evaluate_run``
evaluates it.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from lexlm.errors import ConfigError

PROJECTS = ("lm", "lexinvariant", "word_pooled", "byte_patching", "lama", "pixel", "main")
RUN_KINDS = {
    "lm": "lm",
    "word_pooled": "word_pooled",
    "word": "word_pooled",
    "classifier": "lama",
    "encoder": "pixel",
}


def project_dir(project: str) -> str:
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "proj", project)


def config_file(project: str) -> str:
    """The config file of a project, as ``--config`` takes it."""
    return os.path.join(project_dir(project), "config.py")


def module(project: str, part: str) -> ModuleType:
    """``lexlm.proj.<project>.<part>``, e.g. ``module('lm', 'run')``."""
    if project not in PROJECTS:
        raise ConfigError(
            "project", f"unknown project {project!r}; projects: {', '.join(PROJECTS)}"
        )
    return importlib.import_module(f"lexlm.proj.{project}.{part}")


def evaluator(kind: str) -> ModuleType:
    """The ``evaluate`` module that evaluates runs of ``kind``."""
    if kind not in RUN_KINDS:
        raise ConfigError("kind", f"unknown run kind {kind!r}; kinds: {', '.join(RUN_KINDS)}")
    return module(RUN_KINDS[kind], "evaluate")
