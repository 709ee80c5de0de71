#!/usr/bin/env bash
# verl's v1 trainer with rollwise's MoPPS selection (and optionally GVM budgets) on a Ray cluster.
#
#   one node:    bash examples/verl/run.sh
#   multi-node:  start Ray first (head: `ray start --head`; every other node: `ray start --address=HEAD:6379`),
#                then on the head: NNODES=4 GPUS_PER_NODE=8 bash examples/verl/run.sh
#   GVM:         ALLOCATOR=gvm bash examples/verl/run.sh
#   any other verl setting: append Hydra overrides, e.g. bash examples/verl/run.sh trainer.total_epochs=2
#
# Needs: GPUs, verl 0.9.x with its vLLM (or SGLang) rollout installed on every node, and rollwise installed
# on every node (the reward function runs in Ray workers, the dataset and replay buffer in the trainer).
# docs/verl.md lists what was tested without a GPU and what was not.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${DATA:-$PWD/data/verl}"
task="${TASK:-basic_arithmetic}"
if [ ! -f "$data/train.parquet" ]; then
  python -m rollwise.integrations.verl_data --task "$task" --train-size "${TRAIN_SIZE:-20000}" \
    --eval-size "${EVAL_SIZE:-500}" --out "$data"
fi
python -m verl.trainer.main_ppo --config-path="$here" --config-name=rollwise_grpo \
  data.train_files="$data/train.parquet" data.val_files="$data/val.parquet" \
  actor_rollout_ref.model.path="${MODEL:-Qwen/Qwen2.5-Math-1.5B}" \
  data.rollwise.allocator="${ALLOCATOR:-fixed}" \
  trainer.nnodes="${NNODES:-1}" trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" \
  trainer.default_local_dir="${OUT:-checkpoints/rollwise-verl}" \
  trainer.save_freq="${SAVE_FREQ:-50}" trainer.test_freq="${TEST_FREQ:-25}" \
  "$@"
