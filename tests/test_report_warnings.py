"""`report` warns, one stderr line per setting, when the compared evaluations were not measured alike
(limit, n, max tokens, temperature of their summary.json settings)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.evaluation.report import ModelSummary, build_report, settings_warnings

runner = CliRunner()
BENCH = {"arithmetic": {"acc": 10.0, "len": 150.0}}


def _summary(**settings) -> dict:
    full = {"n": 4, "max_tokens": 32768, "temperature": 0.6, "top_p": 0.95, "limit": None, "seed": 0, **settings}
    return {"model": "m", "adapter": None, "settings": full, "benchmarks": BENCH}


def test_each_differing_setting_is_one_line_naming_the_models_and_values():
    models = [ModelSummary("base", _summary()),
              ModelSummary("ours", _summary(n=1, max_tokens=256, limit=100, temperature=1.0, seed=3, top_p=1.0)),
              ModelSummary("other", _summary(n=1))]
    lines = settings_warnings(models)
    assert len(lines) == 4  # seed and top_p are not compared
    by_key = dict(zip(("limit", "n", "max tokens", "temperature"), lines))
    assert "base all, ours 100, other all" in by_key["limit"] and "--limit" in by_key["limit"]
    assert "base 4, ours 1, other 1" in by_key["n"]
    assert "base 32768, ours 256, other 32768" in by_key["max tokens"] and "--max-tokens" in by_key["max tokens"]
    assert "base 0.6, ours 1.0, other 0.6" in by_key["temperature"]
    assert all(line.startswith("warning: the evaluations differ in ") and "\n" not in line for line in lines)
    assert build_report(models[0], models[1:]).warnings == lines


def test_alike_settings_or_summaries_without_them_give_no_warning():
    assert settings_warnings([ModelSummary("a", _summary()), ModelSummary("b", _summary(seed=5))]) == []
    assert settings_warnings([ModelSummary("a", _summary(n=1.0)), ModelSummary("b", _summary(n=1))]) == []
    bare = {"benchmarks": BENCH}  # hand-written summaries (e.g. the paper's numbers): nothing to compare
    assert settings_warnings([ModelSummary("a", bare), ModelSummary("b", {**bare, "settings": {}}),
                              ModelSummary("c", _summary())]) == []
    only_n = {**bare, "settings": {"n": 2}}
    expected = ("warning: the evaluations differ in n (a 4, b 2): their ACC and LEN were not measured alike; "
                "re-evaluate with the same --n")
    assert settings_warnings([ModelSummary("a", _summary()), ModelSummary("b", only_n)]) == [expected]


def _write(folder: Path, summary: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_report_cli_warns_on_stderr_and_keeps_stdout_clean(tmp_path):
    base = _write(tmp_path / "base-eval", _summary())
    ours = _write(tmp_path / "ours" / "eval", _summary(max_tokens=256, n=1))
    result = runner.invoke(app, ["report", "--base", str(base), str(ours.parent), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["base"] == "base-eval"  # stdout is the JSON alone
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert "differ in n (base-eval 4, ours 1)" in lines[0]
    assert "differ in max tokens (base-eval 32768, ours 256)" in lines[1]

    same = _write(tmp_path / "same", _summary())
    result = runner.invoke(app, ["report", "--base", str(base), str(same)])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
