#!/usr/bin/env bash
# Launch a lexlm run on every worker of a Cloud TPU VM (single host or pod slice).
#
#   bash tpu/run_tpu_pod.sh NAME ZONE experiments/lm.py:150m gs://BUCKET/runs/lm150m \
#       --config.data.source=tfds --config.data.tfds_name=wiki40b/en
#
# Copies the working tree to all workers, installs lexlm with jax[tpu] in a venv there and
# starts `experiments.run` with jax.distributed initialised (train.distributed=True). The
# workdir should be a bucket path (orbax writes gs:// directly) so every host sees it.
set -euo pipefail
NAME=$1; ZONE=$2; CONFIG=$3; WORKDIR=$4; shift 4
tar czf /tmp/lexlm.tgz --exclude=.venv --exclude=results --exclude=runs .
gcloud compute tpus tpu-vm scp /tmp/lexlm.tgz "$NAME":~/lexlm.tgz --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "
  set -e; mkdir -p lexlm && tar xzf lexlm.tgz -C lexlm && cd lexlm
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q -e '.[data]' 'jax[tpu]'
  TFDS_DATA_DIR=\${TFDS_DATA_DIR:-~/tensorflow_datasets} .venv/bin/python -m experiments.run \
    --config $CONFIG --workdir $WORKDIR --config.train.distributed=True $*"
