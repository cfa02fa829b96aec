#!/usr/bin/env bash
# Quickstart command 1: set up (a virtualenv in .venv) and run the main job on the embedded
# corpora; the report lands in results/report.md. Extra arguments go to lexlm.run
# (e.g. --config.sections=lm,lama).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[data]'
# The embedded labelled set (LAMA): movie-review snippets with human sentiment ratings in the
# vaderSentiment 3.3.2 source archive (lexlm/data/labelled.py checks its SHA-256).
[ -f .venv/lexlm-data/vaderSentiment-3.3.2.tar.gz ] || .venv/bin/python -m pip download -q \
  --disable-pip-version-check --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .venv/lexlm-data
# JAX's persistent compilation cache: the many runs of one model shape compile once (only
# programs that take over half a second to compile are kept).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$PWD/results/jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0.5}
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
exec .venv/bin/python -m lexlm.run --config main --workdir results "$@"
