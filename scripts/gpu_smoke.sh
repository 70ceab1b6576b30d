#!/usr/bin/env bash
# verl smoke test on a 1-GPU machine: make a tiny random model, then train recipes/gpu/tiny-smoke.yaml
# (2 GRPO steps of 2 tasks x 2 episodes, oracle world model) for one arm with verl + vLLM.
# Needs `pip install -e '.[gpu]'` (verl 0.9.1, torch 2.11, vLLM 0.24). Checks the plumbing, not learning.
#
#   scripts/gpu_smoke.sh [ARM] [OUT]      ARM: real | sim-uncontrolled | sim-controlled (default)
#                                         OUT: output folder (default runs/tiny-smoke)
set -euo pipefail
cd "$(dirname "$0")/.."                      # the recipe's model path (./runs/tiny-model) is read from here
arm="${1:-sim-controlled}"
out="${2:-runs/tiny-smoke}"
python="${PYTHON:-python}"

"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
if [ ! -f runs/tiny-model/config.json ]; then
    "$python" -m simrl.testing.tiny_model runs/tiny-model
fi
rm -rf "$out/$arm"                           # a fresh run (use `simrl train ... --resume` to continue one)
"$python" -m simrl.cli.main train recipes/gpu/tiny-smoke.yaml --arm "$arm" --out "$out"

job="$out/$arm/seed-0/verl"
if ! ls -d "$job"/checkpoints/global_step_2 >/dev/null 2>&1; then
    echo "smoke test FAILED: no checkpoint global_step_2 under $job/checkpoints (see $job/train.log)" >&2
    exit 1
fi
echo "smoke test passed: 2 verl steps of arm $arm; checkpoint $job/checkpoints/global_step_2, log $job/train.log"
