import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from egrc_lite.cli.app import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_explains_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("compress", "train", "presets"):
        assert command in result.output
    for command in (["compress"], ["train"], ["presets", "show"]):
        sub = runner.invoke(app, [*command, "--help"])
        assert sub.exit_code == 0 and "--" in sub.output


def test_the_three_entry_points_start_the_same_app():
    """``egrc-lite``, ``python cli.py`` (a checkout) and ``python -m egrc_lite.cli`` (``accelerate launch -m``)."""
    for cmd in ([sys.executable, str(REPO / "cli.py"), "--version"], [sys.executable, "-m", "egrc_lite.cli", "--version"],
                [str(Path(sys.executable).parent / "egrc-lite"), "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0 and out.stdout.startswith("egrc-lite "), (cmd, out.stderr[-300:])


def test_presets_list_and_show_resolved_config():
    listed = runner.invoke(app, ["presets", "list"])
    assert listed.exit_code == 0 and "smoke" in listed.output and "r1-1.5b" in listed.output
    shown = runner.invoke(app, ["presets", "show", "smoke", "--set", "train.seed=11"])
    assert shown.exit_code == 0
    body = yaml.safe_load("\n".join(l for l in shown.output.splitlines() if not l.startswith("#")))
    assert body["train"]["seed"] == 11 and body["model"]["name_or_path"] == "builtin:tiny"
    assert body["schedule"]["stages"][0]["temperature"] == 0.6  # resolved, not raw


def test_user_mistakes_are_one_line_errors_without_traceback():
    cases = [
        ["presets", "show", "nope"],
        ["presets", "show", "smoke", "--set", "train.lr=1"],
        ["train", "--stage", "shrink", "--preset", "smoke"],
        ["compress", "--preset", "smoke", "--set", "data.source=/no/such.jsonl", "--out", "/tmp/egrc-never"],
    ]
    for args in cases:
        proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True,
                              cwd=REPO)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr  # one logical line, maybe wrapped


def test_every_command_is_registered():
    result = runner.invoke(app, ["--help"])
    for command in ("compress", "train", "eval", "report", "merge", "analyze", "sweep", "presets"):
        assert command in result.output, command


def test_presets_compose_on_the_command_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "compress", "--preset", "smoke", "--preset",
                           "ablations/shape-linear", "--set", "schedule.stages.compress.steps=1",
                           "--set", "schedule.stages.explore.steps=0", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["reward"]["shape"] == "linear" and saved["model"]["name_or_path"] == "builtin:tiny"
    assert "FutureWarning" not in proc.stderr and "Traceback" not in proc.stderr
    again = subprocess.run([sys.executable, str(REPO / "cli.py"), "compress", "--preset", "smoke", "--out", str(out)],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_only_rank_zero_prints_the_header_and_summary(tmp_path, monkeypatch):
    """Under `accelerate launch` every rank runs the CLI; only RANK=0 reports (no doubled tables)."""
    from egrc_lite import train

    calls = []

    def fake_run_schedule(cfg, run_dir, **kwargs):
        calls.append(kwargs["progress"])
        return {"steps": 1, "stages": [{"name": "compress", "steps": 1, "first_len": 9.0, "last_len": 5.0,
                                        "first_acc": 0.5, "last_acc": 0.75}]}

    monkeypatch.setattr(train, "run_schedule", fake_run_schedule)
    for rank, shown in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(tmp_path / f"rank{rank}")])
        assert result.exit_code == 0, result.output
        assert ("done" in result.output) is shown and ("stages" in result.output) is shown, (rank, result.output)
        assert ("egrc-lite" in result.output) is shown
    assert len(calls) == 2  # every rank trains
