#!/usr/bin/env bash
# Train across nodes with torchrun. Run the same command on every node (or let
# slurm.sbatch do it); torchrun's rendezvous puts the processes together.
#
# usage: examples/multinode.sh CONFIG.yaml [extra gpt2 train flags...]
# Settings (environment variables, with defaults):
#   NNODES=1            nodes in the job           NPROC_PER_NODE=$(GPUs, or 1)
#   RDZV_ENDPOINT=localhost:29500   host:port of the rendezvous (the first node)
#   RDZV_ID=gpt2cli     job id shared by all nodes
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
CONFIG=$1; shift
[ -f "$CONFIG" ] || { echo "multinode: no config file $CONFIG" >&2; exit 1; }
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
NNODES=${NNODES:-1}
NPROC_PER_NODE=${NPROC_PER_NODE:-$(( gpus > 0 ? gpus : 1 ))}
RDZV_ENDPOINT=${RDZV_ENDPOINT:-localhost:29500}
RDZV_ID=${RDZV_ID:-gpt2cli}

exec torchrun --nnodes "$NNODES" --nproc_per_node "$NPROC_PER_NODE" \
  --rdzv-backend c10d --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "$RDZV_ID" \
  -m gpt2cli train --config "$CONFIG" "$@"
