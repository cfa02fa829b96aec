#!/usr/bin/env bash
# Quickstart command 2: set up (a virtualenv in .venv), lint and format check, the test suite
# with line coverage, and the API reference built from the docstrings (.venv/api/index.html).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The embedded labelled set (LAMA): movie-review snippets with human sentiment ratings in the
# vaderSentiment 3.3.2 source archive (lexlm/data/labelled.py checks its SHA-256).
[ -f .venv/lexlm-data/vaderSentiment-3.3.2.tar.gz ] || .venv/bin/python -m pip download -q \
  --disable-pip-version-check --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .venv/lexlm-data
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Line coverage of the library (findings code included), per file.
.venv/bin/python -m pytest -q -n 2 --cov --cov-report=term:skip-covered "$@"
# The API reference: every public module's docstrings; any warning fails the build.
.venv/bin/python -W error -m pdoc -o .venv/api lexlm
echo "API reference: .venv/api/index.html"
