"""``egrc-lite env`` (for bug reports) and ``egrc-lite benchmarks list`` (what eval can run here)."""

import json

from typer.testing import CliRunner

from egrc_lite.cli.app import app

runner = CliRunner()


def test_env_reports_versions_cuda_driver_and_the_backend_auto_picks(monkeypatch):
    from egrc_lite.backends import base

    monkeypatch.setattr(base, "_cuda_available", lambda: False)
    monkeypatch.setattr(base, "_nvidia_driver", lambda: None)
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["packages"]["torch"] and info["egrc_lite"] and info["cuda_available"] is False
    assert info["auto_backend"].startswith("hf (auto: no CUDA GPU")
    assert set(info["gpu_packages"]) == {"unsloth", "vllm", "bitsandbytes", "vllm-bnb-plugin"}
    # an NVIDIA GPU torch cannot use: env still answers, and says why no backend is picked
    monkeypatch.setattr(base, "_nvidia_driver", lambda: "NVRM version: 535.1")
    broken = json.loads(runner.invoke(app, ["env", "--json"]).output)
    assert broken["auto_backend"].startswith("none: an NVIDIA GPU is present (NVRM version: 535.1)")
    plain = runner.invoke(app, ["env"])
    assert plain.exit_code == 0 and "auto_backend:" in plain.output and "Traceback" not in plain.output


def test_benchmarks_list_says_which_benchmarks_work_offline(tmp_path):
    (tmp_path / "aime24.jsonl").write_text('{"id": "1", "problem": "1+1?", "answer": "2"}\n')
    result = runner.invoke(app, ["benchmarks", "list", "--data-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "yes" in lines["aime24"] and str(tmp_path / "aime24.jsonl") in lines["aime24"]
    assert "hub: HuggingFaceH4/MATH-500" in lines["math500"] and "no (downloads" in lines["math500"]
    assert "built in" in lines["arithmetic"] and "amc83 (= amc)" in lines
    assert "built in" in lines["arithmetic-wording"] and "200" in lines["arithmetic-wording"]
