"""The one command line of every experiment module: a config file plus overrides.

    python -m experiments.<name> --config experiments/<name>.py[:arg] --out DIR \\
        [--config.a.b=value ...]

``--config`` is an ml_collections config file (``get_config(arg)``), so ``--config.a.b=value``
reaches every field, the data source included. Errors a user can fix (a bad config value, a
failed run, an unreadable checkpoint) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from absl import app, flags
from absl import logging as absl_logging
from etils import epath
from ml_collections import config_flags

from lexlm.errors import CheckpointError, ConfigError, TrainingError

USER_ERRORS = (ConfigError, TrainingError, CheckpointError)


def parse_names(value, allowed: tuple[str, ...], field: str) -> list[str]:
    """A comma-separated config value as a list of names from ``allowed`` (at least one);
    anything else is a one-line ``ConfigError`` naming ``field``."""
    names = [m.strip() for m in str(value).split(",") if m.strip()]
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise ConfigError(field, f"unknown {bad}; choose from {allowed}")
    return names


def define_flags(default_config: str) -> None:
    """``--config`` (config file[:arg], overridable) and ``--out`` (report directory)."""
    config_flags.DEFINE_config_file("config", default_config, "experiment config file[:arg]")
    flags.DEFINE_string("out", "results", "directory for the runs, findings and report")


def run_experiment(run: Callable, report: Callable[[dict], str], report_name: str) -> int:
    """Runs ``run(config, out) -> findings`` with the parsed flags and writes
    ``<out>/<report_name>`` from ``report(findings)``. Returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    cfg, out = flags.FLAGS.config, epath.Path(flags.FLAGS.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        findings = run(cfg, out)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = report(findings)
    (out / report_name).write_text(text)
    print(text)
    return 0


def launch(run: Callable, report: Callable[[dict], str], report_name: str, default: str):
    """The ``if __name__ == '__main__'`` body of an experiment module."""
    define_flags(default)

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        sys.exit(run_experiment(run, report, report_name))

    app.run(main)
