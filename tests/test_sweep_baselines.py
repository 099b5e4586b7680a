"""A smoke sweep over every baseline overlay (presets/baselines/) and the method, under one evaluation (CPU, tiny
random model: ACC is 0, what counts is that every arm trains, is evaluated and is compared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from egrc_lite.cli.sweep import sweep
from egrc_lite.presets import list_presets
from egrc_lite.runs import RunDir

MINI = Path(__file__).parent / "assets" / "mini_bench.jsonl"
BASELINES = sorted(p.name for p in list_presets() if p.name.startswith("baselines/"))

app = typer.Typer(pretty_exceptions_enable=False)
app.command()(sweep)


@app.callback()
def _main() -> None:
    """A local app like the real one (the command is called as `sweep`)."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_smoke_sweep_over_every_baseline_trains_and_evaluates_each_arm(tmp_path):
    out = tmp_path / "sw"
    assert len(BASELINES) == 5
    result = CliRunner().invoke(app, [
        "sweep", "--preset", "smoke", "--grid", "preset=" + ",".join(["none", *BASELINES]),
        "--set", "schedule.stages.explore.steps=1",  # each baseline: one exploration step; the method: 3 + 1
        "--eval", str(MINI), "--limit", "2", "--n", "1", "--max-tokens", "16", "--out", str(out), "--no-isolate"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "sweep.json").read_text())
    names = [r["name"] for r in record["runs"]]
    assert names == ["no-ablation", *(Path(b).name for b in BASELINES)]
    assert record["base"]["status"] == "done"
    report = (out / "report.md").read_text()
    for entry in record["runs"]:
        name = entry["name"]
        assert entry["status"] == "done", (name, entry["reason"])
        run = RunDir(out / "runs" / name)
        assert run.is_finished() and (run.adapter_dir / "adapter_config.json").is_file()
        stages = [r["stage"] for r in run.metrics.rows()]
        assert stages == (["compress"] * 3 + ["explore"] if name == "no-ablation" else ["explore"])
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["adapter"] == str(run.adapter_dir.resolve())
        assert summary["benchmarks"]["mini_bench"]["n_problems"] == 2  # an eval row, on the same problems as all
        assert f"| {name} | " in report
    terms = {e["name"]: yaml.safe_load((out / "runs" / e["name"] / "config.yaml").read_text())["reward"]["length_term"]
             for e in record["runs"]}
    assert terms == {"no-ablation": "penalty", "dapo-filter": "none", "dapo-soft": "dapo_soft",
                     "kimi": "kimi", "l1": "l1", "thinkprune": "none"}
