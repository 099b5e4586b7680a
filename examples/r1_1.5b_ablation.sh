#!/usr/bin/env bash
# The paper's ablation study (Table 2) for DeepSeek-R1-Distill-Qwen-1.5B: the method (compression then
# exploration, clip 4096, exponential shaping) against length clip 2048 and 8192, linear and cosine
# shaping, and exploration first; every run and the base model evaluated on the paper's six benchmarks, and
# every run also at the end of its first stage (Table 2's "exploration first, after exploration" row;
# STAGE_EVALS=0 skips these and halves the evaluation time).
# Hardware: one GPU with 24 GB or more (RTX 3090/4090, L4, A10; an 80 GB card is faster) and the gpu extra:
#           pip install -e '.[gpu]' -c constraints/gpu.txt
# Time (estimated from the r1-1.5b preset, not measured end to end): six runs of 200 + 100 steps at
#       several hours each (lc8192 is the slowest), plus the evaluation of seven models and six stage ends
#       on 2879 problems x N samples of up to 32k tokens with vLLM (hours per model at N=4): about 3-4 days
#       in all (2-3 with STAGE_EVALS=0).
#       For a first pass in well under a day: N=1 LIMIT=100 STEPS="--set schedule.stages.compress.steps=100
#       --set schedule.stages.explore.steps=50" examples/r1_1.5b_ablation.sh
# Data: training problems from the Hugging Face hub (DeepScaleR), or a local JSONL via
#       --set data.source=...; benchmarks from --data-dir (default ../shared/data), else the hub.
# Resumable: rerun the same command after an interruption or a failed run; finished runs are skipped,
#       unfinished ones resume from their last checkpoint, evaluation samples already written are kept.
# Output: $OUT/report.md, $OUT/accuracy_vs_length.png, $OUT/sweep.json, $OUT/runs/NAME, $OUT/eval/NAME,
#         $OUT/eval/NAME@STAGE.
# Usage: examples/r1_1.5b_ablation.sh [extra sweep options, e.g. --set data.source=data/train.jsonl]
set -euo pipefail
OUT=${OUT:-runs/r1-1.5b-ablation}
N=${N:-4}
LIMIT_OPT=()
if [[ -n "${LIMIT:-}" ]]; then LIMIT_OPT=(--limit "$LIMIT"); fi
# shellcheck disable=SC2206  # STEPS is a list of options on purpose
STEPS_OPT=(${STEPS:-})
STAGE_OPT=()
if [[ "${STAGE_EVALS:-1}" != 0 ]]; then STAGE_OPT=(--eval-stages); fi

# no-ablation = the method itself (r1-1.5b as is); the others apply one overlay of presets/ablations/.
GRID="preset=none,ablations/lc2048,ablations/lc8192,ablations/shape-linear,ablations/shape-cosine,ablations/explore-first"

# Pass 1: training only, so that the evaluation engine never shares the GPU with the training one.
# A failed run (exit status 1) does not stop pass 2, which evaluates the others; a usage error (2) does.
rc=0
egrc-lite sweep --preset r1-1.5b --grid "$GRID" ${STEPS_OPT[@]+"${STEPS_OPT[@]}"} --out "$OUT" "$@" || rc=$?
if [[ $rc -ne 0 && $rc -ne 1 ]]; then exit "$rc"; fi

# Pass 2: the same runs (finished ones are skipped, failed ones retried), evaluated with vLLM, then the report.
egrc-lite sweep --preset r1-1.5b --grid "$GRID" ${STEPS_OPT[@]+"${STEPS_OPT[@]}"} --out "$OUT" \
  --eval aime24,amc,math500,minerva,olympiadbench,gsm8k --n "$N" ${LIMIT_OPT[@]+"${LIMIT_OPT[@]}"} \
  --max-tokens 32768 --eval-backend vllm ${STAGE_OPT[@]+"${STAGE_OPT[@]}"} "$@"
