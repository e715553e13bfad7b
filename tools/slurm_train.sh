#!/usr/bin/env bash
# Distributed training on a SLURM cluster, one task per GPU across as many nodes as needed (mmdetection's script).
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG NUM_GPUS [tools/train.py flags] [KEY VALUE overrides]
#   e.g. tools/slurm_train.sh gpu frcnn configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml 16
#
# Environment: GPUS_PER_NODE (default: min(NUM_GPUS, 8)), CPUS_PER_TASK (default 5), PORT (rendezvous port on the
# first node, default: random in 20000-39999), SRUN_ARGS (extra srun flags), PYTHON (default python).
# Each task exports RANK / LOCAL_RANK / WORLD_SIZE / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT from SLURM's
# variables, so tools/train.py joins the process group through env://, exactly as under torchrun.
#
# Preemption and time limits (inside an sbatch job with `#SBATCH --requeue` and `#SBATCH --signal=USR1@120`):
# SLURM sends SIGUSR1 (time limit ahead) or SIGTERM (preemption) to the training processes; they finish the
# iteration, save a checkpoint and exit with status 75. This script then requeues the job (`scontrol requeue`), and
# the requeued job (SLURM_RESTART_COUNT > 0) passes --resume, so it continues from OUTPUT_DIR/last_checkpoint.
set -euo pipefail
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/launch_args.sh
source "$TOOLS_DIR/launch_args.sh"

if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG NUM_GPUS [tools/train.py arguments]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=$4
shift 4
check_launch_args "$0" "$CONFIG" "$GPUS"
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PORT=${PORT:-$(( 20000 + RANDOM % 20000 ))}
PYTHON=${PYTHON:-python}
EXIT_STOPPED=75  # tools/train.py: stopped by SIGTERM / SIGUSR1 after saving a checkpoint
RESUME=()
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
    RESUME=(--resume)  # a requeued job continues from last_checkpoint (a fresh start if there is none)
    echo "$0: requeued job (restart ${SLURM_RESTART_COUNT}): adding --resume" >&2
fi
# The batch shell may get SIGTERM too: keep it alive until the training processes have saved and exited.
trap 'echo "$0: stop signal received; waiting for the training processes to save a checkpoint" >&2' TERM USR1

set +e
# shellcheck disable=SC2086  # SRUN_ARGS is a list of flags
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    bash -c '
        MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
        export MASTER_ADDR MASTER_PORT="'"$PORT"'"
        export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS
        export LOCAL_WORLD_SIZE=${SLURM_NTASKS_PER_NODE%%(*}
        exec "$0" -u "$1" --config-file "$2" "${@:3}"
    ' "$PYTHON" "$TOOLS_DIR/train.py" "$CONFIG" "$@" ${RESUME[@]+"${RESUME[@]}"}
status=$?
set -e
if [ "$status" -eq "$EXIT_STOPPED" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ] && command -v scontrol > /dev/null; then
        scontrol requeue "$SLURM_JOB_ID"
        echo "$0: training stopped after saving a checkpoint; requeued job $SLURM_JOB_ID (it resumes)" >&2
    else
        echo "$0: training stopped after saving a checkpoint; run the same command with --resume" >&2
    fi
fi
exit "$status"
