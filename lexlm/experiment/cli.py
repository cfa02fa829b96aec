"""The one command line of every experiment: run, evaluate, report.

    python -m lexlm.run --config <file or project>:<variant> --workdir W [--config.a.b=v ...]
    python -m lexlm.evaluate --workdir W [--step N] [--split S]
    python -m lexlm.report --workdir W | --pages [--check] | --workdir W --save NAME

``--config`` is an ml_collections config file with ``get_config(variant)`` (a project's name,
``lm:tiny``, stands for ``lexlm/proj/lm/config.py:tiny``), so ``--config.a.b=value`` reaches
every field, the data source included. Every error a user can fix (a bad flag, an unknown
variant, a misspelt override, a bad config value, unusable data, a stale result, a busy
workdir) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from absl import flags
from absl import logging as absl_logging

from lexlm.errors import LexlmError
from lexlm.experiment import registry


class CommandLineError(LexlmError):
    """A flag that cannot be parsed."""


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO


def expand_config_arg(argv: Sequence[str]) -> list[str]:
    """``--config lm:tiny`` -> ``--config <lexlm>/proj/lm/config.py:tiny``."""
    out, i = [], 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        value, joined = None, False
        if arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value, joined = arg[len("--config=") :], True
        if value is None:
            out.append(arg)
            i += 1
            continue
        name, sep, variant = value.partition(":")
        if name in registry.PROJECTS and not os.path.isfile(name):
            value = registry.config_file(name) + (sep + variant if sep else "")
        out += [f"--config={value}"]
        i += 1 if joined else 2
    return out


def _last_line(text: str) -> str:
    lines = [x.strip() for x in str(text).splitlines() if x.strip()]
    line = lines[-1] if lines else str(text)
    head, sep, rest = line.partition(": ")
    # "lexlm.errors.ConfigError: config: ..." -> "config: ..."
    if sep and head.replace(".", "").replace("_", "").isalnum() and head[:1].isalpha():
        if head.split(".")[-1].endswith(("Error", "Exception")):
            return rest
    return line


def _config_overrides(argv: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for arg in argv:
        if arg.startswith("--config.") and "=" in arg:
            key, _, _ = arg[len("--config.") :].partition("=")
            out.append((key, arg))
    return out


def _check_override_keys(cfg, argv: Sequence[str]) -> None:
    """A misspelt ``--config.a.b`` is one line with the closest existing field."""
    for key, arg in _config_overrides(argv):
        node, walked = cfg, []
        for part in key.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                close = difflib.get_close_matches(part, [str(k) for k in keys], n=1)
                where = ".".join(walked) or "the config"
                hint = f"; did you mean --config.{'.'.join([*walked, close[0]])}?" if close else ""
                raise CommandLineError(f"{arg.split('=')[0]}: {where} has no field {part!r}{hint}")
            node = node[part]
            walked.append(part)


def _config_spec(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if arg.startswith("--config="):
            return arg[len("--config=") :]
    return None


def _new_flags(define: Callable[[flags.FlagValues], None], need_config: bool):
    from ml_collections import config_flags

    fv = flags.FlagValues()
    if need_config:
        config_flags.DEFINE_config_file(
            "config", None, "experiment config file[:variant], or <project>:<variant>",
            flag_values=fv,
        )  # fmt: skip
    define(fv)
    return fv


def _parse_into(fv: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    # config_flags reads the --config.* overrides from sys.argv itself: give it these
    saved, sys.argv = sys.argv, list(argv)
    try:
        return fv(list(argv))
    except flags.Error as e:
        raise CommandLineError(_last_line(str(e))) from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # overrides config_flags rejects
        raise CommandLineError(_last_line(str(e))) from None
    finally:
        sys.argv = saved


def parse(argv: Sequence[str], define: Callable[[flags.FlagValues], None], need_config: bool):
    """Parses ``argv`` (``argv[0]`` is the program) into fresh flag values; every parse error
    is a ``CommandLineError`` with one line."""
    argv = expand_config_arg(argv)
    if need_config:
        spec = _config_spec(argv)
        if not spec:
            raise CommandLineError("--config is required (a config file[:variant])")
        path = spec.split(":")[0]
        if not os.path.isfile(path):
            raise CommandLineError(f"--config: no such config file: {path}")
        fv = _new_flags(define, need_config)
        # the config file alone first: its own errors, then every override's field name
        _parse_into(fv, [a for a in argv if not a.startswith("--config.")])
        _check_override_keys(fv.config, argv)
    fv = _new_flags(define, need_config)
    positional = _parse_into(fv, argv)
    if len(positional) > 1:
        raise CommandLineError(f"unexpected arguments: {' '.join(positional[1:])}")
    return fv


def guarded(fn: Callable[[], object]) -> int:
    """Runs ``fn``; a ``LexlmError`` becomes one line on stderr and exit status 2."""
    _setup_logging()
    try:
        fn()
    except LexlmError as e:
        print(f"error: {_last_line(str(e))}", file=sys.stderr)
        return 2
    return 0


# -- run -----------------------------------------------------------------------------------------
def _run_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "experiment directory (runs, findings, report)",
                        flag_values=fv)  # fmt: skip


def run_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)

    def go():
        from lexlm.experiment.driver import run_experiment

        fv = parse(argv, _run_flags, need_config=True)
        if fv.config is None or not hasattr(fv.config, "keys"):
            raise CommandLineError("--config: get_config returned no config")
        if not fv.workdir:
            raise CommandLineError("--workdir is required")
        run_experiment(fv.config, fv.workdir)
        print(f"findings: {os.path.join(fv.workdir, 'findings.json')}")
        print(f"report: {os.path.join(fv.workdir, 'report.md')}")

    return guarded(go)


# -- evaluate ------------------------------------------------------------------------------------
def _evaluate_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "a run directory, or an experiment holding runs",
                        flag_values=fv)  # fmt: skip
    flags.DEFINE_integer(
        "step", None, "checkpoint step (default: the run's newest, or the one it selected)",
        flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_string("split", None, "data split (default: the run's evaluation split)",
                        flag_values=fv)  # fmt: skip


def summary(metrics: dict) -> dict:
    """The scalar entries of an evaluation, for one printed line."""
    return {
        k: (round(v, 6) if isinstance(v, float) else v)
        for k, v in metrics.items()
        if isinstance(v, (int, float, str, bool)) or v is None
    }


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)

    def go():
        from lexlm.experiment.store import find_runs, load_run_config, relative
        from lexlm.locks import WorkdirLock
        from lexlm.paths import as_path

        fv = parse(argv, _evaluate_flags, need_config=False)
        if not fv.workdir:
            raise CommandLineError("--workdir is required")
        root = as_path(fv.workdir)
        if not root.exists():
            raise CommandLineError(f"--workdir: no such directory: {fv.workdir}")
        runs = find_runs(root)
        if not runs:
            raise CommandLineError(f"--workdir: {fv.workdir} holds no lexlm run")
        with WorkdirLock(root):
            for run_dir in runs:
                kind = str(load_run_config(run_dir).get("kind", ""))
                metrics = registry.evaluator(kind).evaluate_run(run_dir, fv.split, fv.step)
                line = {"run": relative(run_dir, root) if run_dir != root else ".", "kind": kind}
                print(json.dumps({**line, **summary(metrics)}))

    return guarded(go)


# -- report --------------------------------------------------------------------------------------
def _report_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "experiment directory: rewrite its report.md",
                        flag_values=fv)  # fmt: skip
    flags.DEFINE_string("save", None, "with --workdir: copy its findings into the project's "
                        "committed findings as <name>.json", flag_values=fv)  # fmt: skip
    flags.DEFINE_bool("pages", False, "render every project's results page", flag_values=fv)
    flags.DEFINE_bool("check", False, "with --pages: fail if a committed page differs",
                      flag_values=fv)  # fmt: skip


def report_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    status = {"code": 0}

    def go():
        from lexlm.experiment import pages

        fv = parse(argv, _report_flags, need_config=False)
        if fv.pages:
            stale = pages.write_pages(check=fv.check)
            for page in stale:
                print(f"{'differs' if fv.check else 'wrote'}: {page}")
            if fv.check and stale:
                print("error: results pages differ from their findings; rerun "
                      "python -m lexlm.report --pages", file=sys.stderr)  # fmt: skip
                status["code"] = 1
            return
        if not fv.workdir:
            raise CommandLineError("give --workdir W (optionally --save NAME) or --pages")
        if fv.save:
            print(f"saved: {pages.save_findings(fv.workdir, fv.save)}")
        else:
            print(f"report: {pages.rerender_workdir(fv.workdir)}")

    code = guarded(go)
    return code or status["code"]
