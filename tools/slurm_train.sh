#!/bin/bash
# Multi-node, multi-GPU training on SLURM with Lightning's DDP: one task per GPU, each rank read from
# SLURM's environment, and a run that reaches its time limit checkpoints, requeues and resumes.
#
#   sbatch tools/slurm_train.sh                                      # configs/pvt_waymo.yaml, 2 nodes x 8 GPUs
#   CONFIG=pvt_kitti.yaml sbatch --nodes=4 tools/slurm_train.sh --trainer.max_epochs 80
#   sbatch --nodes=1 --ntasks-per-node=4 --gpus-per-node=4 tools/slurm_train.sh   # one node, 4 GPUs
#
# Submit from the repository root. Arguments after the script go to tools/train.py (any LightningCLI
# override); sbatch's own options on the command line override the #SBATCH lines below. Each #SBATCH
# line is explained by the comment above it (sbatch reads directives up to the first command).
# docs/distributed.md ("Launching") has the torchrun equivalent.
#
# Job name, in squeue and in the log file's name (not "bash" or "interactive": Lightning takes those
# for an interactive session and would not read the ranks from SLURM).
#SBATCH --job-name=perception
# Machines; Lightning's --trainer.num_nodes below follows it.
#SBATCH --nodes=2
# Processes per machine: one per GPU, as Lightning's SLURM support requires (= --gpus-per-node).
#SBATCH --ntasks-per-node=8
# GPUs per machine.
#SBATCH --gpus-per-node=8
# CPU cores per process: its data-loader workers (data.num_workers) and itself.
#SBATCH --cpus-per-task=8
# All of each machine's memory (the data loaders' shared memory comes out of it too).
#SBATCH --mem=0
# Wall-clock limit of one run; requeueing carries training on past it.
#SBATCH --time=24:00:00
# SIGUSR1 to every task 90 s before the limit: Lightning's SLURM plug-in saves a checkpoint and requeues the job.
#SBATCH --signal=SIGUSR1@90
# Let the job be requeued (some clusters default to --no-requeue).
#SBATCH --requeue
# A requeued run appends to the log instead of overwriting it.
#SBATCH --open-mode=append
# The log of all tasks, in the submission directory: <job name>-<job id>.out.
#SBATCH --output=%x-%j.out

# Stop at the first failing command, unset variable or failed pipe.
set -euo pipefail

# The experiment: a path, or a bare name looked up in configs/.
CONFIG="${CONFIG:-pvt_waymo.yaml}"
# The interpreter: the environment active at submission (sbatch passes it on), or PYTHON=.venv/bin/python.
PYTHON="${PYTHON:-python}"
# One intra-op thread per process unless set, as torchrun does: the data-loader workers use the other cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# Run from the submission directory: sbatch executes a spooled copy of this script, not this file.
cd "${SLURM_SUBMIT_DIR:?submit with sbatch (SLURM_SUBMIT_DIR is unset)}"

# Lightning requires one task per GPU; say so here rather than after every rank has loaded the data.
if [[ -n "${SLURM_GPUS_ON_NODE:-}" && "${SLURM_GPUS_ON_NODE}" != "${SLURM_NTASKS_PER_NODE}" ]]; then
  # The message names both numbers and the fix.
  echo "slurm_train.sh: ${SLURM_NTASKS_PER_NODE} tasks per node for ${SLURM_GPUS_ON_NODE} GPUs; set --ntasks-per-node = --gpus-per-node" >&2
  # Fail the job before srun starts anything.
  exit 1
fi

# Where and what: the log's first line, also after each requeue (SLURM_RESTART_COUNT counts them).
echo "job ${SLURM_JOB_ID}: ${SLURM_NNODES} nodes (${SLURM_JOB_NODELIST}) x ${SLURM_NTASKS_PER_NODE} GPUs, ${CONFIG}, restart ${SLURM_RESTART_COUNT:-0}"

# srun starts --ntasks-per-node copies on every node; Lightning takes each one's global rank, local rank
# and node from SLURM_PROCID, SLURM_LOCALID and SLURM_NODEID, and the rendezvous address and port from
# the job (its first node, a port from the job id). num_nodes and devices repeat SLURM's numbers (Lightning
# checks they agree); --ckpt_path last resumes from the run's newest last.ckpt, so the first start and
# every requeue run this same line ("none yet" starts afresh).
srun "$PYTHON" tools/train.py --config "$CONFIG" --trainer.num_nodes "$SLURM_NNODES" --trainer.devices "$SLURM_NTASKS_PER_NODE" --trainer.strategy ddp --ckpt_path last "$@"
