#!/usr/bin/env bash
# Delete a Cloud TPU VM or pod slice (billing stops here).
#
#   bash tpu/delete_tpu_vm.sh NAME ZONE
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME ZONE" >&2; exit 2; }
gcloud compute tpus tpu-vm delete "$1" --zone "$2" --quiet
