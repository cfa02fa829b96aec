#!/usr/bin/env bash
# Quickstart command 1: set up (a virtualenv in .venv) and run the main job on the embedded
# corpus; the report lands in results/report.md. Extra arguments go to experiments.main.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[data]'
exec .venv/bin/python -m experiments.main --out results "$@"
