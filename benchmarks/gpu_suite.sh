#!/usr/bin/env bash
# Every GPU check and benchmark, for a session lent the GPU machine (device tool), in two calls
# that each fit the 10-minute limit of one command:
#   run(command="bash benchmarks/gpu_suite.sh tests")   then   run(command="bash benchmarks/gpu_suite.sh bench")
# The machine has jax, flax, optax, hypothesis, torch and transformers installed and no network.
# Results land in $OUT (fetched back) and are meant to be committed under benchmarks/results/.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/device.txt" 2>&1

step() { echo "== $1"; shift; timeout "$@"; echo "rc=$?"; }

STAGE=${1:-tests}
if [ "$STAGE" = tests ]; then
# 1. The construction's property suite under the thorough hypothesis profile.
step "thorough property suite" 540 env HYPOTHESIS_PROFILE=thorough SUPERPOSE_CASES_SUMMARY="$OUT/thorough_summary.json" python -m pytest -q -p no:cacheprovider \
    tests/construction tests/proofs_check --junitxml "$OUT/thorough_junit.xml" > "$OUT/thorough.log" 2>&1
tail -3 "$OUT/thorough.log"
else
# 2. Benchmarks: construction predict, training throughput (+ PyTorch reference), LLM harness.
step "construction benchmark" 120 python benchmarks/construction.py --out "$OUT"
step "training benchmark" 240 python benchmarks/training.py --preset paper --dtype bfloat16 --json "$OUT/training_gpu.json"
step "llm harness benchmark" 200 python benchmarks/llm_harness.py --mode gpu --json "$OUT/llm_harness_gpu.json"
fi
