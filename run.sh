#!/usr/bin/env bash
# Quickstart command 1: set up (a virtualenv in .venv) and run the main job on the embedded
# corpus; the report lands in results/report.md. Extra arguments go to experiments.main.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[data]'
# The embedded labelled set (LAMA): movie-review snippets with human sentiment ratings in the
# vaderSentiment 3.3.2 source archive (lexlm/data/labelled.py checks its SHA-256).
[ -f .venv/lexlm-data/vaderSentiment-3.3.2.tar.gz ] || .venv/bin/python -m pip download -q \
  --disable-pip-version-check --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .venv/lexlm-data
exec .venv/bin/python -m experiments.main --out results "$@"
