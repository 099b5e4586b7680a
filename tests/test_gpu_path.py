"""The GPU path's first try, proven on a CPU: packages, import order, CUDA driver floor, vLLM engine reuse.

unsloth, vllm and CUDA are not here, so each test stubs the one thing it needs: a fake ``unsloth``
module, a model with or without ``vllm_engine``, a driver file.
"""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from egrc_lite.backends import base
from egrc_lite.config import EgrcConfig, StageConfig

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- 1. vllm-bnb-plugin for 4-bit under vLLM
def test_gpu_extra_and_constraints_carry_the_vllm_bitsandbytes_plugin():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert "vllm-bnb-plugin==0.0.3" in [e.split("#")[0].strip() for e in extra]
    pins = (REPO / "constraints" / "gpu.txt").read_text().split()
    assert "vllm-bnb-plugin==0.0.3" in pins
    bnb = next(p for p in pins if p.startswith("bitsandbytes=="))
    assert tuple(int(x) for x in bnb.split("==")[1].split(".")) >= (0, 48, 1)  # what the plugin requires


def test_4bit_with_vllm_names_missing_packages(monkeypatch):
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name, *a: None)
    assert base.missing_4bit_vllm_packages(True, True) == ["bitsandbytes", "vllm-bnb-plugin"]
    assert base.missing_4bit_vllm_packages(True, False) == []  # no vLLM: bitsandbytes is checked by the loader
    assert base.missing_4bit_vllm_packages(False, True) == []


# ------------------------------------------------------------------------- 8. the CUDA driver floor
def test_nvidia_gpu_without_cuda_stops_with_the_driver_requirement(monkeypatch):
    monkeypatch.setattr(base, "_cuda_available", lambda: False)
    monkeypatch.setattr(base, "_nvidia_driver", lambda: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15")
    for name in ("auto", "unsloth"):
        with pytest.raises(base.BackendError, match=r"550\.54\.15.*driver to 580 or newer.*--backend hf"):
            base.resolve_backend(name)
    assert base.resolve_backend("hf")[0] == "hf"  # asked for the CPU path explicitly
    monkeypatch.setattr(base, "_nvidia_driver", lambda: None)
    assert base.resolve_backend("auto")[0] == "hf"  # no NVIDIA GPU at all: the CPU path, as before


def test_nvidia_driver_is_read_from_the_kernel_file(monkeypatch, tmp_path):
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.51.03\nGCC version: 12\n")
    monkeypatch.setattr(base, "NVIDIA_DRIVER_FILE", str(driver))
    assert base._nvidia_driver().endswith("575.51.03")
    monkeypatch.setattr(base, "NVIDIA_DRIVER_FILE", str(tmp_path / "absent"))
    monkeypatch.setattr(base.Path, "glob", lambda self, pattern: iter(()))
    assert base._nvidia_driver() is None


# ------------------------------------------------------------------------- 3. unsloth is imported first
STUB = textwrap.dedent("""
    import json, os, sys
    with open(os.environ["STUB_RECORD"], "a") as fh:
        fh.write(json.dumps({m: m in sys.modules for m in ("transformers", "trl", "peft")}) + "\\n")
    raise ImportError("stub unsloth: the test stops here")
""")


@pytest.mark.parametrize("command", [
    ["compress", "--preset", "smoke", "--backend", "unsloth"],
    ["train", "--stage", "compress", "--preset", "smoke", "--backend", "unsloth"],
    ["sweep", "--preset", "smoke", "--set", "backend=unsloth", "--grid", "train.seed=1", "--no-isolate"],
    ["sweep", "--preset", "smoke", "--set", "backend=unsloth", "--grid", "train.seed=1", "--isolate"],
], ids=["compress", "train", "sweep", "sweep-isolated"])
def test_unsloth_is_imported_before_transformers_trl_and_peft(tmp_path, command):
    (tmp_path / "stub" / "unsloth").mkdir(parents=True)
    (tmp_path / "stub" / "unsloth" / "__init__.py").write_text(STUB)
    record = tmp_path / "record.jsonl"
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path / 'stub'}:{REPO}", "STUB_RECORD": str(record),
           base.CPU_CHECK_ENV: "1"}
    subprocess.run([sys.executable, "-m", "egrc_lite.cli", *command, "--out",
                    str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen and seen[0] == {"transformers": False, "trl": False, "peft": False}


# ------------------------------------------------------------ 9. vLLM only when the model carries the engine
@pytest.fixture
def unsloth_backend(monkeypatch):
    """egrc_lite.backends.unsloth imported against a stub ``unsloth`` (the real one needs its GPU stack)."""
    stub = types.ModuleType("unsloth")
    stub.__spec__ = importlib.machinery.ModuleSpec("unsloth", None)
    stub.FastLanguageModel = object
    monkeypatch.setitem(sys.modules, "unsloth", stub)
    monkeypatch.delitem(sys.modules, "egrc_lite.backends.unsloth", raising=False)
    import egrc_lite.backends.unsloth as module

    yield module
    sys.modules.pop("egrc_lite.backends.unsloth", None)


def test_trl_uses_vllm_only_when_the_loaded_model_carries_unsloths_engine(unsloth_backend):
    cfg = EgrcConfig.model_validate({"unsloth": {"gpu_memory_utilization": 0.4}})
    stage = StageConfig(mode="compress", steps=1)
    with_engine = types.SimpleNamespace(vllm_engine=object())
    without = types.SimpleNamespace()  # unsloth turned fast_inference off (old GPU, DGX Spark, ...)
    assert unsloth_backend.grpo_config_overrides(cfg, stage, with_engine) == {
        "use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.4}
    assert unsloth_backend.grpo_config_overrides(cfg, stage, without) == {}  # TRL would build a second engine
    assert unsloth_backend.generation(with_engine).startswith("vLLM in-process")
    assert "no vLLM engine" in unsloth_backend.generation(without)


def test_the_manifest_says_how_rollouts_were_sampled(tmp_path):
    from egrc_lite import train
    from egrc_lite.runs import RunDir, read_json

    cfg = EgrcConfig.model_validate({"model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 8},
                                     "schedule": {"stages": [{"mode": "compress", "steps": 1, "length_clip": 4}]},
                                     "train": {"num_generations": 2, "prompts_per_step": 1}})
    run_dir = RunDir(tmp_path / "run")
    train.run_schedule(cfg, run_dir)
    manifest = read_json(run_dir.manifest_path)
    assert manifest["generation"] == "transformers generate" and manifest["prompts_dropped_too_long"] == 0


# ------------------------------------------------------------------------------------- smaller items
def test_unsloth_notices_say_what_the_config_will_not_do(monkeypatch):
    cfg = EgrcConfig.model_validate({"model": {"revision": "abc123"}, "unsloth": {"vllm_standby": True}})
    monkeypatch.delenv("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", raising=False)
    notes = base.unsloth_load_notices(cfg, fast=True, standby=True)
    assert any("revision=abc123 does not reach vLLM" in n for n in notes)
    assert any("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE=1" in n for n in notes)
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", "1")
    assert base.unsloth_load_notices(cfg, fast=False, standby=True) == []


def test_prompts_longer_than_max_prompt_length_are_dropped_and_none_fitting_is_an_error():
    from egrc_lite.config import DataConfig
    from egrc_lite.data import DataError, Problem, fit_prompt_length

    probs = [Problem(str(i), "x" * n, "1") for i, n in enumerate((10, 40, 20))]
    kept, dropped = fit_prompt_length(probs, DataConfig(max_prompt_length=20, prompt_suffix=""),
                                      lambda m: len(m[-1]["content"]))
    assert [p.id for p in kept] == ["0", "2"] and dropped == 1
    with pytest.raises(DataError, match="shortest has 30.*raise data.max_prompt_length"):
        fit_prompt_length(probs, DataConfig(max_prompt_length=20, prompt_suffix=""), lambda m: 30)
