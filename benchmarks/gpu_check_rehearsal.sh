#!/usr/bin/env bash
# Rehearsal of benchmarks/gpu_check.sh on a CPU, in the GPU machine's situation: a clean venv holding only what
# that machine has (torch, transformers 5.17.0, huggingface_hub 1.33.0, peft, accelerate 1.15.0, triton 3.6.0,
# pandas, pyarrow and the small packages its image lists: typer, rich, pyyaml, sympy, requests, httpx, aiohttp,
# fsspec, xxhash, psutil, jinja2), checked to lack every carried package; then `gpu_check.sh --download` fills a
# wheel folder for this venv's Python and `gpu_check.sh --tiny` runs with no network (unshare -n where it works),
# installing the carried set from those wheels exactly as on the GPU machine; the venv is checked to be unchanged.
# A second, shorter --tiny run (8 sequences) loads the carried R1-distill tokenizer, as the GPU run does.
# Differences from the GPU machine, on purpose: torch 2.13.0 CPU instead of 2.11.0+cu130 (no CPU 2.11 on this
#   machine's index), and Python $REHEARSAL_PYTHON (default python3.11: the CPU torch wheel here is for 3.11; a
#   3.12 one from PyPI is the CUDA build, GBs), so its wheels are the same versions for 3.11 (pure-Python except
#   pydantic_core and multiprocess, whose 3.12 builds are what .whl/ holds for the GPU).
# Hardware: any x86-64 Linux CPU; ~2.5 GB disk; PyPI (or the local mirror) reachable while the venv is built.
# Time (measured 2026-12-02 on 2 shared cores, packages from the local PyPI mirror): 3 min 32 s cold (venv ~2 min,
#   the --tiny run 35 s, the R1-tokenizer run ~50 s); --reuse skips the venv build.
# Writes only .venv-gpucheck-rehearsal/ in the checkout (git-ignored): venv/, whl/, out/ (the results), tmp/.
# Usage: benchmarks/gpu_check_rehearsal.sh [--reuse] [extra gpu_check.py flags for the first --tiny run]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
R=$ROOT/.venv-gpucheck-rehearsal
PYBIN=${REHEARSAL_PYTHON:-python3.11}
REUSE=0
if [[ ${1:-} == --reuse ]]; then REUSE=1; shift; fi
t0=$(date +%s)
phase() { echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
unset PYTHONPATH VIRTUAL_ENV EGRC_R1_TOKENIZER
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HOME=$R/hf XDG_CACHE_HOME=$R/xdg MPLCONFIGDIR=$R/mpl

# what the GPU machine has, pinned where KINDS.md gives the version (peft: constraints/gpu.txt's)
MACHINE=(torch==2.13.0 transformers==5.17.0 huggingface_hub==1.33.0 accelerate==1.15.0 peft==0.21.2 triton==3.6.0
         pandas pyarrow typer rich pyyaml sympy requests httpx aiohttp fsspec xxhash psutil jinja2 packaging tqdm)
CARRIED_MODULES=(trl datasets dill multiprocess pydantic pydantic_core annotated_types typing_inspection
                 math_verify latex2sympy2_extended antlr4)
# typer >= 0.2x needs pydantic, which pip then brings; the GPU machine's image has typer but no pydantic (KINDS.md)
NOT_THERE=(pydantic pydantic-core annotated-types typing-inspection)

if [[ $REUSE == 0 || ! -x $R/venv/bin/python ]]; then
  phase "clean venv ($PYBIN) with the GPU machine's packages"
  rm -rf "$R/venv" "$R/whl"
  mkdir -p "$R"
  "$PYBIN" -m venv "$R/venv"
  "$R/venv/bin/python" -m pip install -q --only-binary=:all: "${MACHINE[@]}" 2> >(grep -v "^WARNING: Location" >&2)
  "$R/venv/bin/python" -m pip uninstall -q -y "${NOT_THERE[@]}"
fi
V=$R/venv/bin/python
"$V" - "${CARRIED_MODULES[@]}" <<'EOF'
import importlib.util, sys, torch, transformers
there = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None]
if there:
    sys.exit(f"the rehearsal venv already has {there}: it must hold only the GPU machine's packages")
print(f"venv: python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}; "
      f"none of the carried packages")
EOF
"$V" -m pip freeze > "$R/freeze-before.txt"

phase "carried wheels for this Python (gpu_check.sh --download)"
rm -rf "$R/whl" "$R/out" "$R/tmp"
mkdir -p "$R/out" "$R/tmp"
PATH=$R/venv/bin:$PATH WHEELS=$R/whl WHEEL_PYTHON=$("$V" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
  benchmarks/gpu_check.sh --download

NONET=()
if unshare -n true 2>/dev/null; then NONET=(unshare -n); else echo "(unshare -n unavailable: the network stays up)"; fi
phase "gpu_check.sh --tiny, no network ${NONET[*]:+(${NONET[*]})}"
t1=$(date +%s)
PATH=$R/venv/bin:$PATH WHEELS=$R/whl TMPDIR=$R/tmp OUT=$R/out "${NONET[@]}" benchmarks/gpu_check.sh --tiny "$@"
echo "gpu_check.sh --tiny took $(( $(date +%s) - t1 )) s"
if [[ -f $R/whl/deepseek-r1-distill-qwen/tokenizer.json ]]; then
  phase "gpu_check.sh --tiny --sequences 8 with the carried R1-distill tokenizer"
  mkdir -p "$R/out/r1tok"
  PATH=$R/venv/bin:$PATH WHEELS=$R/whl TMPDIR=$R/tmp OUT=$R/out/r1tok "${NONET[@]}" benchmarks/gpu_check.sh --tiny \
    --sequences 8 --tokenizer "$R/whl/deepseek-r1-distill-qwen"
fi

"$V" -m pip freeze > "$R/freeze-after.txt"
diff -u "$R/freeze-before.txt" "$R/freeze-after.txt" || { echo "the check changed the venv's packages" >&2; exit 1; }
echo "venv unchanged (torch and transformers untouched); results in $R/out/"
phase "rehearsal passed"
