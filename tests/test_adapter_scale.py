"""`eval --adapter-scale`: scale 0 is the base model exactly, scale 1 the plain adapter, each scale its own
resumable eval directory; the scaled copy vLLM serves; bad scales are one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from egrc_lite.cli import app
from egrc_lite.generate.base import GenerationError
from egrc_lite.generate.scale import parse_scales, scale_dir, write_scaled_adapter

EVAL = ["--model", "builtin:tiny", "--benchmarks", "arithmetic", "--limit", "3", "--n", "2", "--max-tokens", "12",
        "--answer-rule", "last_number", "--batch-size", "4", "--temperature", "1.0"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter on builtin:tiny whose update is far from zero (B drawn at random, not PEFT's zeros)."""
    import torch

    from egrc_lite.backends.hf import load_policy
    from egrc_lite.presets import resolve

    model, _, _ = load_policy(resolve("smoke"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    path = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(path)
    return path


def _texts(directory):
    rows = [json.loads(line) for line in (directory / "arithmetic.jsonl").read_text().splitlines()]
    return sorted((r["problem_id"], r["sample"], r["response"], r["total_tokens"]) for r in rows)


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_scale_zero_is_the_base_and_scale_one_the_plain_adapter(tmp_path, adapter):
    base = invoke("eval", *EVAL, "--out", str(tmp_path / "base"))
    assert base.exit_code == 0, base.output
    plain = invoke("eval", *EVAL, "--adapter", str(adapter), "--out", str(tmp_path / "plain"))
    assert plain.exit_code == 0, plain.output
    scaled = invoke("eval", *EVAL, "--adapter", str(adapter), "--adapter-scale", "0,1,0.5", "--out", str(tmp_path / "s"))
    assert scaled.exit_code == 0, scaled.output
    zero, one, half = (scale_dir(tmp_path / "s", s) for s in (0.0, 1.0, 0.5))
    assert [p.name for p in (zero, one, half)] == ["scale-0", "scale-1", "scale-0.5"]
    assert _texts(zero) == _texts(tmp_path / "base")
    assert _texts(one) == _texts(tmp_path / "plain")
    assert _texts(one) != _texts(zero)  # the adapter changes the samples, so the two checks above mean something
    assert _texts(half) not in (_texts(zero), _texts(one))
    for d, s in ((zero, 0.0), (one, 1.0), (half, 0.5)):
        summary = json.loads((d / "summary.json").read_text())
        assert summary["settings"]["adapter_scale"] == s and "arithmetic" in summary["benchmarks"]
    again = invoke("eval", *EVAL, "--adapter", str(adapter), "--adapter-scale", "0,1,0.5", "--out", str(tmp_path / "s"))
    assert again.exit_code == 0 and again.output.count("0 samples generated, 6 reused") == 3, again.output


def test_the_scaled_copy_scales_lora_b_only(tmp_path, adapter):
    from safetensors.torch import load_file

    out = write_scaled_adapter(adapter, 0.25, tmp_path / "copy")
    before = load_file(str(adapter / "adapter_model.safetensors"))
    after = load_file(str(out / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(".lora_B." in k for k in before)
    for key, value in before.items():
        expected = value * 0.25 if ".lora_B." in key else value
        assert after[key].dtype == value.dtype and bool((after[key] == expected).all()), key
    assert (out / "adapter_config.json").read_text() == (adapter / "adapter_config.json").read_text()


def test_scaled_merge_equals_the_hand_scaled_update(adapter):
    import torch

    from transformers import AutoModelForCausalLM

    from egrc_lite.backends.tiny import ensure_tiny
    from egrc_lite.generate.hf import attach_merged_adapter
    from egrc_lite.presets import resolve

    def merged(scale):
        base = AutoModelForCausalLM.from_pretrained(ensure_tiny(resolve("smoke").model.tiny))
        model, _ = attach_merged_adapter(base, adapter, "tiny", scale=scale)
        return {k: v.clone() for k, v in model.state_dict().items()}

    zero, one, two = merged(0.0), merged(1.0), merged(2.0)
    key = next(k for k in zero if k.endswith("q_proj.weight"))
    assert not torch.equal(zero[key], one[key])
    torch.testing.assert_close(two[key] - zero[key], 2 * (one[key] - zero[key]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text, message", [("0,x", "'x' is not a number"), ("-1", "outside 0..10"),
                                           ("nan", "outside"), ("1,,2", "'' is not a number")])
def test_bad_scales(text, message):
    with pytest.raises(GenerationError, match=message):
        parse_scales(text)


def test_scale_needs_an_adapter_and_bad_lists_are_one_line(tmp_path, adapter):
    no_adapter = invoke("eval", *EVAL, "--adapter-scale", "0,1", "--out", str(tmp_path / "x"))
    assert no_adapter.exit_code == 2 and "--adapter-scale needs --adapter" in no_adapter.output
    bad = invoke("eval", *EVAL, "--adapter", str(adapter), "--adapter-scale", "0,big", "--out", str(tmp_path / "y"))
    assert bad.exit_code == 2 and "not a number" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "y").exists()


def _summary(directory, acc, length):
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps(
        {"model": "m", "settings": {"n": 1, "max_tokens": 256, "limit": 10, "temperature": 0.6},
         "benchmarks": {"arithmetic": {"acc": acc, "len": length}}}))


def test_report_shows_each_scale_as_a_row_and_plots_the_front(tmp_path):
    _summary(tmp_path / "base", 10.0, 160.0)
    for scale, acc, length in (("0", 10.0, 160.0), ("0.5", 25.0, 60.0), ("1", 30.0, 25.0), ("1.25", 20.0, 20.0)):
        _summary(tmp_path / "demo" / f"scale-{scale}", acc, length)
    (tmp_path / "demo" / "scale-notes").mkdir()  # not a scale: ignored
    result = invoke("report", "--base", str(tmp_path / "base"), str(tmp_path / "demo"), "--format", "csv",
                    "--plots", str(tmp_path / "plots"))
    assert result.exit_code == 0, result.output
    rows = [line.split(",")[:4] for line in result.stdout.splitlines()[1:] if line and not line.startswith("wrote")]
    assert [r[0] for r in rows] == ["base", "demo@0", "demo@0.5", "demo@1", "demo@1.25"]
    assert [float(r[2]) for r in rows[1:]] == [10.0, 25.0, 30.0, 20.0]
    assert (tmp_path / "plots" / "acc_vs_len.png").stat().st_size > 0


def test_a_folder_without_summaries_or_scales_is_still_an_error(tmp_path):
    _summary(tmp_path / "base", 10.0, 160.0)
    (tmp_path / "empty").mkdir()
    result = invoke("report", "--base", str(tmp_path / "base"), str(tmp_path / "empty"))
    assert result.exit_code == 2 and "no summary found" in result.output
