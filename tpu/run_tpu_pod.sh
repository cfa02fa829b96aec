#!/usr/bin/env bash
# Run a lexlm experiment on every worker of a Cloud TPU VM or pod slice at once.
#
#   bash tpu/run_tpu_pod.sh NAME ZONE CONFIG WORKDIR [--config.a.b=value ...]
#   bash tpu/run_tpu_pod.sh my-v4-32 us-central2-b lm:150m gs://bucket/runs/lm150m \
#       --config.train.mesh='(4,4,1)' --config.data.source=tfds --config.data.tfds_name=wiki40b/en
#
# Copies this working tree to every worker (--worker=all), installs lexlm with jax[tpu] into a
# venv there, and starts lexlm.run on all workers with jax.distributed initialised
# (train.distributed=True: on a TPU pod JAX finds the coordinator and the process ids itself).
# Every argument after WORKDIR reaches lexlm.run unchanged (quoted with printf %q).
# WORKDIR should be a bucket (gs://...) so that every worker writes one run; prepared TFDS data
# is read from $LEXLM_DATA_DIR (default gs://<bucket of WORKDIR>/tfds when WORKDIR is a
# bucket), so the workers do not each prepare their own copy.
#
# Environment: LEXLM_DATA_DIR (see above), LEXLM_PIP_EXTRA (more pip requirements),
# LIBTPU_INIT_ARGS and XLA_FLAGS (passed through to every worker; see tpu/README.md).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[ $# -ge 4 ] || { echo "usage: $0 NAME ZONE CONFIG WORKDIR [--config.a.b=value ...]" >&2; exit 2; }
NAME=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
if [ -z "${LEXLM_DATA_DIR:-}" ] && [[ $WORKDIR == gs://* ]]; then
  BUCKET=${WORKDIR#gs://}; LEXLM_DATA_DIR="gs://${BUCKET%%/*}/tfds"
fi
TARBALL=$(mktemp /tmp/lexlm.XXXXXX.tgz)
trap 'rm -f "$TARBALL"' EXIT
tar czf "$TARBALL" -C "$REPO_ROOT" --exclude=.venv --exclude=.git --exclude=results \
  --exclude=runs --exclude='*.pyc' .
RUN_ARGS=$(quote_args -m lexlm.run --config "$CONFIG" --workdir "$WORKDIR" \
  --config.train.distributed=True "$@")
ENV_ARGS=$(quote_args "LEXLM_DATA_DIR=${LEXLM_DATA_DIR:-}" \
  "LIBTPU_INIT_ARGS=${LIBTPU_INIT_ARGS:-}" "XLA_FLAGS=${XLA_FLAGS:-}")
PIP_ARGS=$(quote_args -e '.[data]' 'jax[tpu]' ${LEXLM_PIP_EXTRA:-})
REMOTE="set -euo pipefail; mkdir -p lexlm && tar xzf lexlm.tgz -C lexlm && cd lexlm
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q $PIP_ARGS
env $ENV_ARGS .venv/bin/python $RUN_ARGS"
gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME":lexlm.tgz --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "$REMOTE"
