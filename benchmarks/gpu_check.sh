#!/usr/bin/env bash
# GPU benchmark of the hf backend at the shapes of DeepSeek-R1-Distill-Qwen-1.5B (random weights, bf16):
# rollout tokens/s, stage-1 step time and peak GPU memory at completion lengths 1024 and 4096, G = 8
# (benchmarks/gpu_check.py says what is measured and how).
# Hardware: one CUDA GPU with >= 40 GB; no network needed. Not yet run on a GPU (estimate: 3-5 minutes on
#           one H100/H200, most of it transformers generate of the 4096-token rollout); tested with --tiny on a CPU.
# Needs: python3 with CUDA torch, transformers, peft, accelerate, typer, rich, pyyaml. Missing trl, datasets,
#        pydantic, math-verify (and their small needs) are installed from wheels in WHEELS (default .whl/)
#        into a private folder, with no network: download them first as the README "GPU" section shows.
# Tokenizer: $EGRC_R1_TOKENIZER or ../shared/tokenizers/deepseek-r1-distill-qwen for realistic prompts,
#        else the builtin tiny one (the lengths are forced either way).
# Usage: benchmarks/gpu_check.sh [--tiny] [other gpu_check.py flags]   (results: $OUT or runs/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-runs/gpu_check}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import trl, datasets, pydantic, math_verify" 2>/dev/null; then
  site=${TMPDIR:-/tmp}/egrc-gpu-check-site
  wheels=(${WHEELS:-.whl}/*.whl)
  [[ -e ${wheels[0]} ]] || { echo "trl/datasets/pydantic/math-verify missing and no wheels in ${WHEELS:-.whl}/" >&2; exit 2; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
  export PYTHONPATH=$site:$PYTHONPATH
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 benchmarks/gpu_check.py --out "$RESULTS/gpu_check.json" "$@"
