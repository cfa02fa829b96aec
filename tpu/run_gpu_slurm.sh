#!/usr/bin/env bash
#SBATCH --job-name=lexlm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
# A lexlm run on a GPU cluster under SLURM: one process per node, all local GPUs per process.
#
#   sbatch tpu/run_gpu_slurm.sh experiments/lm.py:150m /shared/runs/lm150m \
#       --config.train.mesh='(2,8,1)' --config.data.source=files --config.data.files=/data/a.txt
#
# jax.distributed.initialize() reads the SLURM environment (coordinator, process ids), so
# train.distributed=True is the only switch. Install lexlm with `pip install -e '.[data]'
# 'jax[cuda12]'` into .venv on the shared filesystem first.
set -euo pipefail
CONFIG=$1; WORKDIR=$2; shift 2
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
srun .venv/bin/python -m experiments.run --config "$CONFIG" --workdir "$WORKDIR" \
  --config.train.distributed=True "$@"
