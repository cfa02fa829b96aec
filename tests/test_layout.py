"""The package's shape: one package per project with the same files, no top-level
experiments package in the wheel, no private imports across modules, an import order without
circles in the data package, and docstrings that say how to call the code (no measurements,
dates, machine details or paths of a development setup; layers never point into experiment
configs)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from lexlm.experiment.registry import PROJECTS, RUN_KINDS, project_dir

REPO = Path(__file__).resolve().parent.parent
LEXLM = REPO / "lexlm"
PROJECT_FILES = ("__init__.py", "config.py", "run.py", "evaluate.py", "report.py", "README.md")


def modules():
    return sorted(p for p in LEXLM.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("project", PROJECTS)
def test_every_project_has_the_same_files(project):
    folder = Path(project_dir(project))
    missing = [f for f in PROJECT_FILES if not (folder / f).exists()]
    assert not missing, (project, missing)


def test_every_run_kind_has_an_evaluator():
    import importlib

    for kind, project in RUN_KINDS.items():
        module = importlib.import_module(f"lexlm.proj.{project}.evaluate")
        assert callable(getattr(module, "evaluate_run", None)), kind


def test_the_wheel_holds_lexlm_only():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["lexlm*"]
    assert not (REPO / "experiments").exists()


def private_imports(path: Path) -> list[str]:
    """``from lexlm.x import _y`` and ``alias._y`` on an imported lexlm module alias."""
    tree = ast.parse(path.read_text())
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lexlm"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"from {node.module} import {a.name}")
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lexlm"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_private_imports_across_modules():
    bad = {str(p.relative_to(REPO)): private_imports(p) for p in modules()}
    bad.update(
        {str(p.relative_to(REPO)): private_imports(p) for p in (REPO / "bench").glob("*.py")}
    )
    assert not {k: v for k, v in bad.items() if v}


def imports_of(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_data_package_imports_in_one_direction():
    """config <- builders, code_corpus <- sources: the plain config module imports no builder
    or reader at module level, and no builder imports the sources module."""
    data = LEXLM / "data"
    top_level = {
        name: {
            n.module
            for n in ast.parse((data / f"{name}.py").read_text()).body
            if isinstance(n, ast.ImportFrom) and n.module
        }
        for name in ("config", "builders", "code_corpus", "sources")
    }
    assert not any(m.startswith("lexlm.data") for m in top_level["config"])
    for name in ("builders", "code_corpus"):
        assert "lexlm.data.sources" not in top_level[name], name
    assert not {"lexlm.data.builders", "lexlm.data.code_corpus"} & top_level["sources"]


LIBRARY = ("nn", "text", "train", "eval", "data")
SETUP_DETAILS = [
    (r"/work/|/tmp/|/home/", "a path of a development machine"),
    (r"\b20[12]\d-[01]\d-[0-3]\d\b", "a date"),
    (
        r"\bdevelopment machine\b|\b(?:measured|took|takes|ran)\b[^.]{0,60}\bthis machine\b",
        "a machine",
    ),
    (r"\b\d+(?:\.\d+)? ?(?:min|minutes|seconds)\b on", "a measured time"),
    (r"\bCPU cores\b", "machine details"),
]


def docstrings(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((getattr(node, "lineno", 1), doc))
    return out


def test_docstrings_carry_no_setup_details():
    bad = []
    for path in modules():
        for line, doc in docstrings(path):
            for pattern, what in SETUP_DETAILS:
                if re.search(pattern, doc):
                    bad.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not bad, "\n".join(bad)


def test_library_docstrings_do_not_point_into_experiments():
    bad = []
    for sub in LIBRARY:
        for path in sorted((LEXLM / sub).rglob("*.py")):
            for line, doc in docstrings(path):
                if re.search(r"experiments[./]|lexlm\.proj|lexlm/proj|README", doc):
                    bad.append(f"{path.relative_to(REPO)}:{line}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("project", PROJECTS)
def test_every_variant_builds_and_names_its_project(project):
    from lexlm.experiment import registry

    config = registry.module(project, "config")
    for variant in config.VARIANTS:
        assert config.get_config(variant).project == project, variant
    with pytest.raises(ValueError, match=r"^config: unknown variant 'nope'"):
        config.get_config("nope")


def test_compact_json_round_trips_and_keeps_unit_lists_on_one_line():
    import json

    from lexlm.paths import dumps_compact

    value = {"rows": {"a": {"correct": [1, 0, 1], "nested": [[1, 2], {"x": None}]}},
             "empty": [], "e": {}, "s": "é", 3: float("nan")}  # fmt: skip
    text = dumps_compact(value)
    back = json.loads(text)
    assert back["rows"] == value["rows"] and back["s"] == "é" and back["empty"] == []
    assert '"correct": [1, 0, 1]' in text
    assert json.dumps(back["3"]) == "NaN"
