#!/usr/bin/env bash
# Copy a run's results off the TPU VM (worker 0 holds everything a local workdir got; a gs://
# workdir needs no copy: read it with gcloud storage cp -r).
#
#   bash tpu/copy_results.sh NAME ZONE REMOTE_DIR LOCAL_DIR
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 NAME ZONE REMOTE_DIR LOCAL_DIR" >&2; exit 2; }
NAME=$1; ZONE=$2; REMOTE=$3; LOCAL=$4
mkdir -p "$LOCAL"
if [[ $REMOTE == gs://* ]]; then
  gcloud storage cp -r "$REMOTE" "$LOCAL"
else
  gcloud compute tpus tpu-vm scp --recurse "$NAME":"$REMOTE" "$LOCAL" --zone "$ZONE" --worker=0
fi
