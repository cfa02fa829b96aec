#!/usr/bin/env bash
# Create a Cloud TPU VM or pod slice.
#
#   bash tpu/create_tpu_vm.sh NAME ZONE ACCELERATOR_TYPE [RUNTIME_VERSION] [extra gcloud flags]
#   bash tpu/create_tpu_vm.sh my-v4-32 us-central2-b v4-32 tpu-ubuntu2204-base --spot
#
# A pod slice (v4-32: 4 workers x 4 chips) is one VM name with several workers; every launcher
# here addresses all of them with --worker=all.
set -euo pipefail
NAME=$1; ZONE=$2; TYPE=$3; VERSION=${4:-tpu-ubuntu2204-base}; shift $(( $# < 4 ? $# : 4 ))
gcloud compute tpus tpu-vm create "$NAME" --zone "$ZONE" --accelerator-type "$TYPE" \
  --version "$VERSION" "$@"
