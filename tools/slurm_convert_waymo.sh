#!/usr/bin/env bash
# Convert one Waymo split on a SLURM cluster: an array of N shard jobs, then one merge job that
# starts once every shard has succeeded (tools/convert_waymo.py --shard I/N and --merge).
#
#   bash tools/slurm_convert_waymo.sh SRC OUT SPLIT [conversion options for the shards, e.g. --every 5]
#   SHARDS=32 WORKERS=8 bash tools/slurm_convert_waymo.sh data/waymo/raw/training data/waymo/converted train --every 5
#
# SHARDS array tasks (default 16) of WORKERS processes each (default 4); PYTHON (default python)
# must import the package on every node, and every node must see SRC and OUT at the same paths (a
# shared file system). Partition, time limit, account: sbatch's own SBATCH_PARTITION,
# SBATCH_TIMELIMIT, SBATCH_ACCOUNT variables. Logs: ./waymo-SPLIT-<job>_<task>.out.
# A failed shard holds the merge back (afterok): read its log, fix, submit that task again (it
# resumes), then run the merge by hand: python tools/convert_waymo.py --merge --out OUT --split SPLIT
set -euo pipefail
if (($# < 3)); then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
src=$1 out=$2 split=$3
shift 3
shards=${SHARDS:-16} workers=${WORKERS:-4} python=${PYTHON:-python}
tool="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/convert_waymo.py"
quote() { printf '%q ' "$@"; }

# 1. the shards: task I converts shard I/N ($SLURM_ARRAY_TASK_ID is expanded on the node, not here)
shard_command="$(quote "$python" "$tool" --src "$src" --out "$out" --split "$split" --workers "$workers" "$@")"
array=$(sbatch --parsable --job-name="waymo-$split" --array="0-$((shards - 1))" --cpus-per-task="$workers" \
  --output="waymo-$split-%A_%a.out" --wrap "$shard_command--shard \$SLURM_ARRAY_TASK_ID/$shards")
array=${array%%;*} # --parsable prints "jobid" or "jobid;cluster"

# 2. the merge, after every task exited 0: the split file and (train) the ground-truth database
merge=$(sbatch --parsable --job-name="waymo-$split-merge" --dependency="afterok:$array" \
  --cpus-per-task="$workers" --output="waymo-$split-merge-%j.out" \
  --wrap "$(quote "$python" "$tool" --merge --out "$out" --split "$split" --workers "$workers")")
echo "shards: job $array (tasks 0-$((shards - 1))); merge: job ${merge%%;*}, after all of them"
