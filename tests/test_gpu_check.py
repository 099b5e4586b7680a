"""benchmarks/gpu_check.sh is ready to run as it is on the borrowed GPU machine (README "GPU" > "Running the
GPU check"): its carried set is pinned, complete and small enough, its pure parts compute what they say, and its
CPU dry run goes through the shell script. The clean-venv rehearsal is benchmarks/gpu_check_rehearsal.sh."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
WHEELS = REPO / ".whl"
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus carried paths
README_SECTION = ("## GPU", "### Running the GPU check")
# What the GPU machine's image has among egrc-lite's needs (KINDS.md, "Python packages already there").
MACHINE_HAS = {"torch", "transformers", "peft", "accelerate", "typer", "rich", "pyyaml", "matplotlib", "pandas",
               "pyarrow", "numpy", "sympy", "requests", "xxhash", "fsspec", "httpx", "huggingface-hub", "jinja2"}
NOT_ON_THIS_PATH = {"gguf"}  # only GGUF model sources need it (backends.sources checks for it when asked)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _array(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)", SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{name}=( ... ) not found in {SCRIPT.name}"
    return match.group(1).split()


def _pins(spec_list: list[str]) -> dict[str, str]:
    return {_norm(spec.split("==")[0]): spec.split("==")[1] for spec in spec_list}


def _constraint_sets() -> list[set[str]]:
    return [{_norm(line.split("#")[0].strip()) for line in (REPO / "constraints" / name).read_text().splitlines()
             if "==" in line and not line.startswith("#")} for name in ("gpu.txt", "cpu.txt")]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_header_points_to_the_readme_section():
    header = SCRIPT.read_text().split("\nset -euo pipefail")[0]
    assert 'README "GPU" > "Running the GPU check"' in header
    readme = (REPO / "README.md").read_text()
    gpu = readme.index(f"\n{README_SECTION[0]}\n")
    end = readme.find("\n## ", gpu + 1)
    assert f"\n{README_SECTION[1]}\n" in readme[gpu:end if end > 0 else None], "README lacks the section"


def test_carried_set_is_pinned_and_covers_what_the_machine_lacks():
    specs = _array("CARRIED") + _array("IF_OLDER")
    assert all("==" in spec for spec in specs), "every carried package is pinned"
    gpu_set, cpu_set = _constraint_sets()
    for spec in specs:  # a tested version: the GPU set's, or the CPU set's (trl)
        assert _norm(spec) in gpu_set or _norm(spec) in cpu_set, spec
    carried = set(_pins(_array("CARRIED")))
    if_older = set(_pins(_array("IF_OLDER")))
    keep = {_norm(n) for n in _array("KEEP")}
    assert not (carried | if_older) & (keep | MACHINE_HAS), "the machine's own packages are never carried"
    assert {"torch", "transformers"} <= keep
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0]) for d in deps}
    missing = names - carried - MACHINE_HAS - NOT_ON_THIS_PATH
    assert not missing, f"runtime dependencies neither on the GPU machine nor carried: {missing}"


def test_carried_wheels_fit_the_device_limit():
    if not WHEELS.is_dir():
        pytest.skip(".whl/ not downloaded (benchmarks/gpu_check.sh --download)")
    pins = _pins(_array("CARRIED") + _array("IF_OLDER"))
    wheels = sorted(WHEELS.glob("*.whl"))
    for name in pins:  # exactly one wheel of the pinned version for the GPU machine's Python 3.12
        found = [w.name for w in wheels if _norm(w.name.split("-")[0]) == name
                 and w.name.split("-")[1] == pins[name] and re.search(r"-(py3|py312|cp312)-", w.name)]
        assert len(found) == 1, f"{name}=={pins[name]}: {found}"
    carried_bytes = sum(p.stat().st_size for p in WHEELS.rglob("*") if p.is_file())
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    tree_bytes = sum((REPO / p).stat().st_size for p in tracked.split("\0") if p and (REPO / p).is_file())
    assert carried_bytes + tree_bytes < CARRY_LIMIT, (carried_bytes, tree_bytes)


def test_pure_helpers():
    gpu_check = _module()
    assert doctest.testmod(gpu_check, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
    assert [r["accumulation"] for r in gpu_check.plan_runs([8, 16, 64], 8, 16)] == [1, 1, 4]
    assert gpu_check.plan_runs([8], 8, 16)[0]["micro_batch"] == 8  # fewer sequences than a micro-batch
    for bad in ([12], [24]):
        with pytest.raises(ValueError):
            gpu_check.plan_runs(bad, 8, 16)
    # one generation's rates: 4 sequences, a token every 0.1 s after a 0.5 s prompt
    stamps = [0.0] + [0.5 + 0.1 * i for i in range(99)]
    rates = gpu_check.token_rates(4, 0.0, 0.5 + 0.1 * 99, stamps, 100, [10, 1000])
    assert list(rates) == ["10", "100"] and rates["10"]["seconds"] == pytest.approx(1.4)
    assert rates["100"]["tokens_per_s"] == pytest.approx(400 / 10.4)
    assert gpu_check.generation_cap(400, 2, 100) == pytest.approx((400 - 100 - gpu_check.MARGIN_S) / 2)


@pytest.mark.slow
def test_r1_shapes_are_the_real_models():
    """The random model has DeepSeek-R1-Distill-Qwen-1.5B's 1,777,088,000 parameters (built on the meta device)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**_module().R1_1P5B))
    assert sum(p.numel() for p in model.parameters()) == 1_777_088_000


@pytest.mark.slow
def test_tiny_dry_run_through_the_shell_script(tmp_path):
    """gpu_check.sh --tiny on the project venv (nothing to install): one 8-sequence step whose 4096-token
    generation is cut by its time cap, reported as cut, trained at the reached length, written under $OUT."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(SCRIPT), "--tiny", "--sequences", "8", "--length", "4096", "--max-gen-s", "2"],
                          check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "installed from" not in proc.stdout and "gpu_check done" in proc.stdout
    assert (tmp_path / "gpu_check.log").read_text().count("summary") == 1
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["card"] == "CPU" and result["preset"] == "r1-1.5b" and result["total_s"] > 0
    (run,) = result["runs"]
    assert run["sequences"] == 8 and run["micro_batch"] == result["preset_batch"]["micro_batch"]
    assert run["cut"] and 0 < run["reached_length"] < 4096 and run["mean_completion_len"] == run["reached_length"]
    assert str(run["reached_length"]) in run["gen_tokens_per_s"] and run["train_part_s"] > 0
    assert result["train_step"]["completion_length"] == run["reached_length"]
