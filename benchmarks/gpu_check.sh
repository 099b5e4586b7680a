#!/usr/bin/env bash
# GPU check of the hf backend at the shapes of DeepSeek-R1-Distill-Qwen-1.5B (random weights, bf16, the r1-1.5b
# preset's LoRA, sampling and batch shape): transformers generate tokens/s of 8 and 64 sequences at 1k and 4k
# tokens, and training at the preset's micro-batch (loss + backward with gradient checkpointing, AdamW) with peak
# GPU memory; benchmarks/gpu_check.py says what is measured and how.
# Steps: README "GPU" > "Running the GPU check" (here: --download fills .whl/; there: this script, .whl carried).
# Hardware: one CUDA GPU, written for an 80 GB H100/H200 (a run that runs out of memory on a smaller card is
#   recorded as failed and the next one still runs); no network. Time: at most 8 min on an H100 by construction
#   (gpu_check.py keeps a 420 s budget and caps each generation to fit; the wheel install takes seconds); estimated
#   5-7 min, most of it two 4096-token generations. Not yet run on a GPU: rehearsed on a CPU with --tiny in a venv
#   holding only the GPU machine's packages, with no network (benchmarks/gpu_check_rehearsal.sh).
# Needs there: python3 (3.12) with CUDA torch, transformers, peft, accelerate, pandas, pyarrow, typer, rich, pyyaml,
#   sympy, requests, xxhash, fsspec, triton (the GPU machine's image has them). egrc-lite's other needs (CARRIED
#   below: trl, datasets, pydantic, math-verify and their small needs, pinned) are
#   installed from the wheels in $WHEELS (default .whl/) with pip --no-index --no-deps into a private folder put
#   first on PYTHONPATH: the machine's torch and transformers are never touched (the script checks it).
# Tokenizer: $EGRC_R1_TOKENIZER, else $WHEELS/deepseek-r1-distill-qwen (copied there by --download), else
#   ../shared/tokenizers/deepseek-r1-distill-qwen, else the builtin tiny one (the lengths are forced either way).
# Usage: benchmarks/gpu_check.sh --download                      here, with PyPI: wheels for Python $WHEEL_PYTHON
#                                                                 (default 3.12) + the tokenizer into $WHEELS
#        benchmarks/gpu_check.sh [--tiny] [gpu_check.py flags]   the check (results: $OUT, else runs/gpu_check/:
#                                                                 gpu_check.json and gpu_check.log)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
# egrc-lite's runtime needs on this path that the GPU machine lacks. Versions: the GPU set (constraints/gpu.txt),
# except trl 1.16.0, the CPU set's (constraints/cpu.txt): trl 1.15's GRPO loss runs only through Triton on a GPU, so
# only 1.16 can be rehearsed on a CPU; it is also what `pip install -e .` gives the hf backend without the gpu extra.
CARRIED=(trl==1.16.0 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.4 pydantic_core==2.50.5
         annotated-types==0.8.0 typing-inspection==0.4.5 math-verify==0.9.0 latex2sympy2_extended==1.11.0
         antlr4-python3-runtime==4.13.2)
IF_OLDER=(typing_extensions==4.16.0)  # installed only where the machine's is older (pydantic needs >= 4.16.0)
KEEP=(torch transformers peft accelerate numpy pandas pyarrow tokenizers safetensors huggingface_hub)  # never installed
TOKENIZER_SRC=../shared/tokenizers/deepseek-r1-distill-qwen

if [[ ${1:-} == --download ]]; then
  mkdir -p "$WHEELS"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${CARRIED[@]}" "${IF_OLDER[@]}"
  if [[ -f $TOKENIZER_SRC/tokenizer.json ]]; then
    mkdir -p "$WHEELS/deepseek-r1-distill-qwen"
    for f in tokenizer.json tokenizer_config.json chat_template.jinja; do
      [[ ! -f $TOKENIZER_SRC/$f ]] || cp "$TOKENIZER_SRC/$f" "$WHEELS/deepseek-r1-distill-qwen/"
    done
  else
    echo "no $TOKENIZER_SRC: the check will use the builtin tiny tokenizer" >&2
  fi
  ls -l "$WHEELS"
  echo "$WHEELS: $(du -sk "$WHEELS" | cut -f1) KiB to carry (limit 64 MiB with the working tree)"
  exit 0
fi

RESULTS=${OUT:-runs/gpu_check}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t0=$(date +%s)
if ! "$PY" -c "import trl, datasets, pydantic, math_verify" 2>/dev/null; then
  site=${TMPDIR:-/tmp}/egrc-gpu-check-site
  specs=("${CARRIED[@]}")
  for spec in "${IF_OLDER[@]}"; do
    "$PY" - "${spec%%==*}" "${spec#*==}" <<'EOF' || specs+=("$spec")
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.version import Version
try:
    sys.exit(0 if Version(version(sys.argv[1])) >= Version(sys.argv[2]) else 1)
except PackageNotFoundError:
    sys.exit(1)
EOF
  done
  rm -rf "$site"
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile --no-cache-dir --target "$site" \
    "${specs[@]}" || { echo "could not install ${specs[*]} from $WHEELS/: run benchmarks/gpu_check.sh" \
      "--download where PyPI is reachable and carry $WHEELS (README \"Running the GPU check\")" >&2; exit 2; }
  for name in "${KEEP[@]}"; do
    [[ ! -e $site/$name ]] || { echo "refusing: the carried set would replace the machine's $name" >&2; exit 2; }
  done
  export PYTHONPATH=$site:$PYTHONPATH
  echo "installed from $WHEELS in $(( $(date +%s) - t0 )) s: ${specs[*]}"
fi
if [[ -z ${EGRC_R1_TOKENIZER:-} && -f $WHEELS/deepseek-r1-distill-qwen/tokenizer.json ]]; then
  export EGRC_R1_TOKENIZER=$WHEELS/deepseek-r1-distill-qwen
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PY" benchmarks/gpu_check.py --out "$RESULTS/gpu_check.json" "$@" 2>&1 | tee "$RESULTS/gpu_check.log"
