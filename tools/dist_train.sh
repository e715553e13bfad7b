#!/usr/bin/env bash
# Distributed training on one machine with torchrun (the script mmdetection users expect).
#
#   tools/dist_train.sh CONFIG NUM_GPUS [tools/train.py flags] [KEY VALUE overrides]
#   e.g. tools/dist_train.sh configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml 8 --resume
#
# Several machines: run on each machine with the same MASTER_ADDR / PORT and its own NODE_RANK:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 tools/dist_train.sh CONFIG 8
# Without CUDA, NUM_GPUS CPU processes train with gloo. PYTHON selects the interpreter (default: python).
set -euo pipefail
TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/launch_args.sh
source "$TOOLS_DIR/launch_args.sh"

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_GPUS [tools/train.py arguments]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
check_launch_args "$0" "$CONFIG" "$GPUS"
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PYTHON=${PYTHON:-python}

if [ "$NNODES" = "1" ] && [ -z "${PORT:-}" ]; then
    # one machine and no port given: torchrun picks a free port itself
    RDZV=(--standalone)
else
    RDZV=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="${MASTER_ADDR:-127.0.0.1}"
          --master_port="${PORT:-29500}")
fi

exec "$PYTHON" -m torch.distributed.run "${RDZV[@]}" --nproc_per_node="$GPUS" \
    "$TOOLS_DIR/train.py" --config-file "$CONFIG" "$@"
