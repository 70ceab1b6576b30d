#!/usr/bin/env bash
# GPU smoke tests on a 1-GPU machine, run unchanged there; on a machine without a CUDA GPU (or without the
# packages a test needs) each prints one line starting with "SKIP:" and exits 0. They check plumbing, not learning.
#
#   scripts/gpu_smoke.sh [ARM] [OUT]   verl: make a tiny random model, train recipes/gpu/tiny-smoke.yaml
#                                      (2 GRPO steps of 2 tasks x 2 episodes, oracle world model) for one arm
#                                      with verl + vLLM. ARM: real | sim-uncontrolled | sim-controlled (default);
#                                      OUT default runs/tiny-smoke. Needs `pip install -e '.[gpu]'` (verl 0.9.1,
#                                      torch 2.11, vLLM 0.24).
#   scripts/gpu_smoke.sh lwm [OUT]     the world-model loop and recipes/gpu/lwm-fidelity.yaml at smoke size:
#                                      real transitions -> `wm data` -> `wm train` on the GPU (a held-out
#                                      fidelity curve per checkpoint when llama-cpp-python is installed) ->
#                                      the trained model served by vLLM (`simrl serve world-model`, port 8001)
#                                      -> `wm eval` (oracle, base, trained; compliance) -> 2 TRL steps of the
#                                      sim-trained arm against the served model. OUT default runs/lwm-smoke.
#                                      Needs `pip install -e '.[trl,transformers]' vllm`.
set -euo pipefail
cd "$(dirname "$0")/.."                      # recipe model paths (./runs/...) are read from here
python="${PYTHON:-python}"

skip() { echo "SKIP: $*"; exit 0; }
need_gpu() {
    "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
        || skip "no CUDA GPU visible to torch (or torch is not installed): the GPU smoke test $1 needs one"
}
need_module() {
    "$python" -c "import $1" 2>/dev/null || skip "python module $1 is not installed: the GPU smoke test $2 needs it ($3)"
}

lwm_smoke() {
    local out="${1:-runs/lwm-smoke}" simrl=("$python" -m simrl.cli.main) port=8001
    need_gpu lwm
    need_module vllm lwm "pip install vllm"
    need_module trl lwm "pip install -e '.[trl]'"
    mkdir -p "$out"
    for seed in 3 1003; do
        [ -d "$out/world-$seed" ] || "${simrl[@]}" world generate worlds/tiny.yaml --seed "$seed" --out "$out/world-$seed"
    done
    "${simrl[@]}" rollout --env mcp-world --world "$out/world-3" --split train --out "$out/real.jsonl"
    "${simrl[@]}" rollout --env mcp-world --world "$out/world-1003" --split test --out "$out/heldout.jsonl"
    "${simrl[@]}" wm data --trajectories "$out/real.jsonl" --world "$out/world-3" --perturb 8 --out "$out/data"
    local curve=()
    if "$python" -c "import llama_cpp" 2>/dev/null; then
        curve=(--curve-trajectories "$out/heldout.jsonl" --curve-world "$out/world-1003" --curve-transitions 4)
    else
        echo "note: llama-cpp-python is not installed: no held-out fidelity curve per checkpoint"
    fi
    rm -rf "$out/wm-model"
    "${simrl[@]}" wm train --data "$out/data" --base smollm2 --device cuda --max-steps 4 --save-every 2 \
        --max-length 4096 --out "$out/wm-model" "${curve[@]}"
    local log="$out/vllm.log"
    "${simrl[@]}" serve world-model --model "$out/wm-model/model" --port "$port" --served-model-name lwm-trained \
        --log "$log" -- --gpu-memory-utilization 0.15 > "$out/serve.out" 2>&1 &
    local server=$!
    trap 'kill -INT '"$server"' 2>/dev/null; wait '"$server"' 2>/dev/null || true' EXIT
    for _ in $(seq 1 180); do
        curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && break
        kill -0 "$server" 2>/dev/null || { echo "lwm smoke test FAILED: vLLM exited (see $log, $out/serve.out)" >&2; exit 1; }
        sleep 2
    done
    "${simrl[@]}" wm eval --trajectories "$out/heldout.jsonl" --world "$out/world-1003" --world-model oracle \
        --world-model base=transformers:smollm2 --world-model trained=openai:lwm-trained \
        --wm-base-url "http://127.0.0.1:$port/v1" --max-transitions 8 --perturb 4 --wm-max-tokens 512 \
        --out "$out/fidelity-gpu"
    rm -rf "$out/train/sim-trained"
    "${simrl[@]}" train recipes/gpu/lwm-fidelity.yaml --arm sim-trained --out "$out/train" \
        --set budget.steps=2 --set budget.batch=2 --set budget.group_size=2 --set 'seeds=[0]' \
        --set trainer.checkpoint_every=2 --set trainer.trajectories_per_step=4 \
        --set "arms.sim-trained.fidelity=$out/fidelity-gpu#trained"
    local run="$out/train/sim-trained/seed-0"
    if ! ls "$run"/checkpoints/checkpoint-2 >/dev/null 2>&1; then
        echo "lwm smoke test FAILED: no checkpoint-2 under $run/checkpoints (see $run)" >&2
        exit 1
    fi
    echo "lwm smoke test passed: wm train ($out/wm-model), vLLM served it, wm eval ($out/fidelity-gpu/scores.md)," \
         "2 TRL steps of sim-trained against it ($run)"
}

verl_smoke() {
    local arm="${1:-sim-controlled}" out="${2:-runs/tiny-smoke}"
    need_gpu verl
    need_module verl verl "pip install -e '.[gpu]'"
    need_module vllm verl "pip install -e '.[gpu]'"
    if [ ! -f runs/tiny-model/config.json ]; then
        "$python" -m simrl.testing.tiny_model runs/tiny-model
    fi
    rm -rf "$out/$arm"                       # a fresh run (use `simrl train ... --resume` to continue one)
    "$python" -m simrl.cli.main train recipes/gpu/tiny-smoke.yaml --arm "$arm" --out "$out"
    local job="$out/$arm/seed-0/verl"
    if ! ls -d "$job"/checkpoints/global_step_2 >/dev/null 2>&1; then
        echo "smoke test FAILED: no checkpoint global_step_2 under $job/checkpoints (see $job/train.log)" >&2
        exit 1
    fi
    echo "smoke test passed: 2 verl steps of arm $arm; checkpoint $job/checkpoints/global_step_2, log $job/train.log"
}

if [ "${1:-}" = lwm ]; then
    shift
    lwm_smoke "$@"
else
    verl_smoke "$@"
fi
