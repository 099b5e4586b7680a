"""The example scripts run as written: each one's sweep resolves (``--dry-run``: plan only, nothing trained)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, runs, expect", [
    ("cpu_ablation.sh", 4, "lc=192_shape=linear"),
    ("cpu_stage_order.sh", 2, "(and at the end of every stage but the last)"),
    ("r1_1.5b_ablation.sh", 6, "(and at the end of every stage but the last)"),
])
def test_example_script_plans_its_sweep(tmp_path, script, runs, expect):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "COLUMNS": "200",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(REPO / "examples" / script), "--dry-run"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"sweep plan: {runs} run(s)" in proc.stdout and expect in proc.stdout, proc.stdout[-3000:]
    assert proc.stdout.count("dry run: nothing was run") >= 1
    assert not (tmp_path / "out" / "runs").exists()
