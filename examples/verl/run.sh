#!/usr/bin/env bash
# verl's v1 trainer with rollwise's MoPPS selection (and optionally GVM budgets) on a Ray cluster.
#
#   one node:    bash examples/verl/run.sh
#   multi-node:  start Ray first (head: `ray start --head`; every other node: `ray start --address=HEAD:6379`),
#                then on the head: NNODES=4 GPUS_PER_NODE=8 bash examples/verl/run.sh
#   GVM:         ALLOCATOR=gvm bash examples/verl/run.sh
#   the model:   MODEL=DIR_OR_HUB_NAME (default models/smollm2: `rollwise export-model smollm2 models/smollm2`
#                writes it without a hub; the papers used Qwen/Qwen2.5-Math-1.5B)
#   the data:    DATA=DIR (default data/verl, written on first use: rollwise's default task, TASK= and
#                OPTIONS='{...}' for another reasoning-gym task and its options)
#   any other verl setting: append Hydra overrides, e.g. bash examples/verl/run.sh trainer.total_epochs=2
#
# Needs: GPUs, verl 0.9.x with its vLLM (or SGLang) rollout installed on every node, and rollwise installed
# on every node (the reward function runs in Ray workers, the dataset and replay buffer in the trainer).
# Without a GPU it stops at once (verl would start Ray and wait for GPUs forever); SKIP_GPU_CHECK=1 skips
# the check where this node has none but the Ray cluster's other nodes do.
# docs/verl.md lists what was tested without a GPU and what was not.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${DATA:-$PWD/data/verl}"
task="${TASK:-basic_arithmetic}"
if [ "${SKIP_GPU_CHECK:-0}" != 1 ] && ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "examples/verl/run.sh: no CUDA GPU visible on this node (torch.cuda.is_available() is False)." >&2
  echo "  verl's trainer needs GPUs for its rollout servers and FSDP workers; without them Ray waits for" >&2
  echo "  GPU resources that never come. Run on a GPU node, or SKIP_GPU_CHECK=1 if the Ray cluster's other" >&2
  echo "  nodes have the GPUs. Without a GPU, tests/integrations/test_verl.py exercises the plug-in (docs/verl.md)." >&2
  exit 2
fi
if [ ! -f "$data/train.parquet" ]; then
  python -m rollwise.integrations.verl_data --task "$task" ${OPTIONS:+--options "$OPTIONS"} \
    --train-size "${TRAIN_SIZE:-2000}" --eval-size "${EVAL_SIZE:-500}" --out "$data"
fi
python -m verl.trainer.main_ppo --config-path="$here" --config-name=rollwise_grpo \
  data.train_files="$data/train.parquet" data.val_files="$data/val.parquet" \
  actor_rollout_ref.model.path="${MODEL:-models/smollm2}" \
  data.rollwise.allocator="${ALLOCATOR:-fixed}" \
  trainer.nnodes="${NNODES:-1}" trainer.n_gpus_per_node="${GPUS_PER_NODE:-8}" \
  trainer.default_local_dir="${OUT:-checkpoints/rollwise-verl}" \
  trainer.save_freq="${SAVE_FREQ:-50}" trainer.test_freq="${TEST_FREQ:-25}" \
  "$@"
