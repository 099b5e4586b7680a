"""egrc-lite merge: a LoRA adapter merged into builtin:tiny, reloaded by plain transformers, checked on logits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.config import validate_config
from egrc_lite.errors import EgrcError
from egrc_lite.merge import MERGE_RECORD, MergeError, merge_adapter

runner = CliRunner()
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "intermediate_size": 64}
PROBE = [5, 17, 99, 3, 250, 42, 7, 7, 120]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it: config.yaml + adapter/ (LoRA on builtin:tiny, random non-zero B)."""
    import os

    root = tmp_path_factory.mktemp("merge")
    old = os.environ.get("EGRC_CACHE")
    os.environ["EGRC_CACHE"] = str(root / "cache")
    from egrc_lite.backends.hf import load_policy

    model_section = {"name_or_path": "builtin:tiny", "dtype": "float32", "tiny": TINY}
    cfg = validate_config({"model": model_section, "lora": {"r": 4, "alpha": 8}})
    with torch.random.fork_rng():  # LoRA A's init: the same adapter every session (some draws round past 3e-2 in bf16)
        torch.manual_seed(0)
        model, tokenizer, _ = load_policy(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    run = root / "run"
    model.save_pretrained(str(run / "adapter"))
    tokenizer.save_pretrained(str(run / "adapter"))
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model_section}))
    yield run
    if old is None:
        os.environ.pop("EGRC_CACHE", None)
    else:
        os.environ["EGRC_CACHE"] = old


def _reference_logits(run: Path) -> torch.Tensor:
    """Base + adapter (unmerged PEFT) logits on PROBE, fp32."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = json.loads((run / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      str(run / "adapter")).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([PROBE])).logits[0]


@pytest.mark.slow
def test_merged_model_loads_without_egrc_and_matches_base_plus_adapter(run_dir, tmp_path):
    out = tmp_path / "merged"
    old_mask = os.umask(0o022)
    try:
        result = merge_adapter(run_dir / "adapter", out, dtype="fp32")
    finally:
        os.umask(old_mask)
    # readable by another account (a vLLM server), as the umask allows; safetensors alone writes 0600
    assert {oct(p.stat().st_mode & 0o777) for p in [out, *out.rglob("*")]} == {"0o644", "0o755"}
    assert result.passed and 0 <= result.max_abs_diff <= result.tolerance == pytest.approx(1e-4 * max(1, result.logit_scale))
    assert result.adapter_effect > 100 * result.max_abs_diff  # the adapter matters, the merge error does not
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / MERGE_RECORD).read_text())["max_abs_diff"] == result.max_abs_diff
    # A fresh interpreter in which egrc_lite cannot be imported: plain transformers loads model and tokenizer.
    code = (
        "import sys, json, torch; sys.modules['egrc_lite'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval()\n"
        f"t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "text = t.apply_chat_template([{'role': 'user', 'content': '1+1?'}], add_generation_prompt=True, tokenize=False)\n"
        f"print(json.dumps({{'logits': m(input_ids=torch.tensor([{PROBE}])).logits[0].tolist(), 'text': text, "
        "'peft': hasattr(m, 'peft_config')}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not loaded["peft"] and loaded["text"].endswith("<|im_start|>assistant\n<think>\n")
    diff = (torch.tensor(loaded["logits"]) - _reference_logits(run_dir)).abs().max().item()
    assert diff < 1e-4


def test_bf16_merge_saves_bf16_and_stays_within_its_tolerance(run_dir, tmp_path):
    result = merge_adapter(run_dir / "adapter", tmp_path / "bf16", dtype="bf16")
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert result.max_abs_diff > 0 and result.passed


def test_check_failure_is_one_line_and_writes_nothing(run_dir, tmp_path):
    out = tmp_path / "strict"
    with pytest.raises(MergeError) as info:
        merge_adapter(run_dir / "adapter", out, dtype="bf16", tolerance=0.0)
    assert "merge check failed" in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".strict*"))


def test_base_comes_from_the_run_config_when_the_adapter_names_a_missing_one(run_dir, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(run_dir, run)
    cfg_path = run / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "/no/such/base"
    cfg_path.write_text(json.dumps(cfg))
    result = merge_adapter(run, tmp_path / "out", dtype="fp32")  # a run directory works as --adapter too
    assert result.base == "builtin:tiny" and result.passed
    (run / "config.yaml").unlink()
    with pytest.raises(MergeError, match="could not load the base model"):
        merge_adapter(run / "adapter", tmp_path / "out2", dtype="fp32")


def test_4bit_trained_adapter_merges_into_16bit_weights_and_says_so(run_dir, tmp_path):
    run = tmp_path / "qlora"
    shutil.copytree(run_dir, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["load_in_4bit"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    result = runner.invoke(app, ["merge", "--adapter", str(run / "adapter"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "original 16-bit weights" in text and "not into dequantized 4-bit ones" in text
    assert "max |logit difference|" in text and "tolerance" in text
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert "quantization_config" not in config


def test_a_quantized_base_checkpoint_is_refused(run_dir, tmp_path):
    base = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    quantized = tmp_path / "base-bnb-4bit"
    shutil.copytree(base, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(MergeError, match="quantized.*original 16-bit"):
        merge_adapter(run_dir / "adapter", tmp_path / "o", base=str(quantized))


def test_cli_errors_are_one_line_with_exit_2(run_dir, tmp_path):
    cases = [
        (["--adapter", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "no such directory"),
        (["--adapter", str(tmp_path), "--out", str(tmp_path / "o")], "no adapter_config.json"),
        (["--adapter", str(run_dir / "adapter"), "--out", str(tmp_path / "o"), "--dtype", "int8"], "valid: bf16"),
        (["--adapter", str(run_dir / "adapter"), "--out", str(run_dir)], "not empty"),
    ]
    for args, words in cases:
        result = runner.invoke(app, ["merge", *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output and "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if line.startswith("error")]) == 1


def test_merge_error_is_a_user_error():
    assert issubclass(MergeError, EgrcError)


def _copy_run(run_dir: Path, tmp_path: Path, name: str, *, alpha: float | None = None, zero_b: bool = False,
              load_in_4bit: bool = False) -> Path:
    """A copy of the run whose adapter has ``lora_alpha`` = ``alpha``, or all-zero LoRA B (as before training),
    or whose config says it was trained on a 4-bit base."""
    from safetensors.torch import load_file, save_file

    run = tmp_path / name
    shutil.copytree(run_dir, run)
    if alpha is not None:
        cfg_path = run / "adapter" / "adapter_config.json"
        cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "lora_alpha": alpha}))
    if zero_b:
        weights = run / "adapter" / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}, str(weights))
    if load_in_4bit:
        saved = yaml.safe_load((run / "config.yaml").read_text())
        saved["model"]["load_in_4bit"] = True
        (run / "config.yaml").write_text(yaml.safe_dump(saved))
    return run


def test_fp32_check_fails_a_merge_that_left_the_weights_alone(run_dir, tmp_path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTuner

    run = _copy_run(run_dir, tmp_path, "weak", alpha=0.008)  # moves logits by ~2.5e-3: under bf16's 3e-2, over 1e-4
    result = merge_adapter(run / "adapter", tmp_path / "ok", dtype="bf16")
    assert result.passed and not result.inconclusive
    assert result.fp32_max_abs_diff <= result.fp32_tolerance == pytest.approx(1e-4 * max(1, result.logit_scale))
    assert result.fp32_tolerance < result.adapter_effect < result.tolerance  # only the fp32 check can see the adapter
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, *args, **kwargs: self.unload())  # merges nothing
    out = tmp_path / "noop"
    with pytest.raises(MergeError, match="merge check failed.*fp32") as info:
        merge_adapter(run / "adapter", out, dtype="bf16")
    assert "\n" not in str(info.value) and not out.exists() and not list(tmp_path.glob(".noop*"))


def test_an_adapter_too_weak_for_the_check_is_inconclusive_unless_allowed(run_dir, tmp_path):
    from egrc_lite.merge import InconclusiveMergeError

    run = _copy_run(run_dir, tmp_path, "untrained", zero_b=True)  # LoRA B = 0: no merge and a merge look the same
    out = tmp_path / "o"
    with pytest.raises(InconclusiveMergeError):
        merge_adapter(run / "adapter", out, dtype="fp32")
    result = runner.invoke(app, ["merge", "--adapter", str(run / "adapter"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "inconclusive" in result.output and "--allow-inconclusive" in result.output
    assert "Traceback" not in result.output and not out.exists()
    assert len([line for line in result.output.splitlines() if line.startswith("error")]) == 1
    result = runner.invoke(app, ["merge", "--adapter", str(run / "adapter"), "--out", str(out), "--allow-inconclusive"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "fp32 merge check: max |logit difference| 0 <= tolerance" in text
    assert "inconclusive" in text and "cannot tell this merge from no merge" in text and "gap to the 4-bit" not in text
    assert json.loads((out / MERGE_RECORD).read_text())["inconclusive"] is True


def test_4bit_gap_is_reported_when_the_4bit_model_can_be_loaded(run_dir, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import egrc_lite.merge.check as merge_check

    run = _copy_run(run_dir, tmp_path, "qlora", load_in_4bit=True)
    seen = {}

    def fake_4bit_logits(path, trained_cfg, adapter, probe):  # the fp32 base + adapter, every logit moved by 0.25
        seen.update(load_in_4bit=trained_cfg.model.load_in_4bit, adapter=adapter)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), str(adapter))
        return [x + 0.25 for x in merge_check.probe_logits(model.eval(), probe)]

    monkeypatch.setattr(merge_check, "_four_bit_unavailable", lambda: "")
    monkeypatch.setattr(merge_check, "_four_bit_logits", fake_4bit_logits)
    out = tmp_path / "o"
    result = runner.invoke(app, ["merge", "--adapter", str(run / "adapter"), "--out", str(out), "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    assert seen == {"load_in_4bit": True, "adapter": (run / "adapter").resolve()}
    record = json.loads((out / MERGE_RECORD).read_text())
    assert record["quant_gap"] == pytest.approx(0.25, abs=1e-3) and record["quant_gap_note"] == ""
    text = " ".join(result.output.split())
    assert "gap to the 4-bit model the adapter was trained on: max |logit difference| 0.25 on" in text
    assert "vs the saved fp32 merge" in text and "fp32 merge check: max |logit difference|" in text


def test_4bit_gap_not_measured_says_why(run_dir, tmp_path, monkeypatch):
    import egrc_lite.merge.check as merge_check

    run = _copy_run(run_dir, tmp_path, "qlora", load_in_4bit=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o"
    result = runner.invoke(app, ["merge", "--adapter", str(run / "adapter"), "--out", str(out), "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "gap to the 4-bit model the adapter was trained on: not measured (" in text and "no CUDA GPU" in text
    record = json.loads((out / MERGE_RECORD).read_text())
    assert record["quant_gap"] is None and "no CUDA GPU" in record["quant_gap_note"]

    def failing_load(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(merge_check, "_four_bit_unavailable", lambda: "")
    monkeypatch.setattr(merge_check, "_four_bit_logits", failing_load)
    gap, note = merge_check.four_bit_gap("base", None, run / "adapter", [[1]], [torch.zeros(1, 2)])
    assert gap is None and note == "loading the 4-bit model failed: CUDA out of memory. Tried to allocate 2.00 GiB"

    from rich.console import Console

    from egrc_lite.cli.merge import _four_bit_gap_line

    console = Console(width=200, record=True)
    console.print(_four_bit_gap_line(None, "bitsandbytes is not installed: pip install -e '.[gpu]'", 9, "bf16"))
    assert "not measured (bitsandbytes is not installed: pip install -e '.[gpu]')" in console.export_text()


def test_trust_remote_code_is_never_inherited_from_the_run(run_dir, tmp_path):
    from egrc_lite.merge.load import resolve_base

    run = tmp_path / "remote"
    shutil.copytree(run_dir, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["trust_remote_code"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert resolve_base(run / "adapter", None, "fp32")[0].model.trust_remote_code is False
    assert resolve_base(run / "adapter", None, "fp32", True)[0].model.trust_remote_code is True

    out = tmp_path / "o"
    result = runner.invoke(app, ["merge", "--adapter", str(run), "--out", str(out), "--dtype", "fp32"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "set model.trust_remote_code: true; it is not inherited" in text and "pass --trust-remote-code" in text
    assert "trust_remote_code false)" in text
    assert json.loads((out / MERGE_RECORD).read_text())["trust_remote_code"] is False

    out = tmp_path / "o2"
    result = runner.invoke(app, ["merge", "--adapter", str(run), "--out", str(out), "--dtype", "fp32",
                                 "--trust-remote-code"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "not inherited" not in text and "trust_remote_code true)" in text
    assert json.loads((out / MERGE_RECORD).read_text())["trust_remote_code"] is True
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["trust_remote_code"] is True  # left alone
