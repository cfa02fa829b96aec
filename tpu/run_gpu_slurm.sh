#!/usr/bin/env bash
#SBATCH --job-name=lexlm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
# A lexlm run on a GPU cluster under SLURM: one process per node, all local GPUs per process.
#
#   sbatch tpu/run_gpu_slurm.sh lm:150m /shared/runs/lm150m \
#       --config.train.mesh='(2,8,1)' --config.data.source=files --config.data.files=/data/a.txt
#
# jax.distributed.initialize() reads the SLURM environment (coordinator = the first node,
# process count = tasks, process id = SLURM_PROCID), so train.distributed=True is the only
# switch. Install lexlm first into .venv on the shared filesystem:
#   python3 -m venv .venv && .venv/bin/pip install -e '.[data]' 'jax[cuda12]'
# Every argument after WORKDIR reaches lexlm.run unchanged. LEXLM_DATA_DIR should be on
# the shared filesystem so the nodes read one prepared copy of a TFDS dataset.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: sbatch $0 CONFIG WORKDIR [--config.a.b=value ...]" >&2; exit 2; }
CONFIG=$1; WORKDIR=$2; shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
# Overlap collectives with compute (the latency-hiding scheduler); see tpu/README.md.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export LEXLM_DATA_DIR="${LEXLM_DATA_DIR:-$PWD/data}"
srun --kill-on-bad-exit=1 .venv/bin/python -m lexlm.run --config "$CONFIG" \
  --workdir "$WORKDIR" --config.train.distributed=True "$@"
