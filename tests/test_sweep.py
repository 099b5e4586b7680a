"""`egrc-lite sweep`: grid parsing, run names, the plan, status bookkeeping, and a smoke sweep end to end.

CPU only, no network. The end-to-end test trains the ``smoke`` preset's tiny random model (so every
answer is wrong and ACC is 0); bookkeeping tests replace ``run_schedule`` with a fake, so they run
in this process (``isolate=False``). The isolated-mode tests run every job in a spawned child with
the real smoke preset, and crash children through the ``EGRC_SWEEP_TEST_CRASH`` hook.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from egrc_lite import train
from egrc_lite.cli.sweep import sweep
from egrc_lite.runs import RunDir, write_config
from egrc_lite.sweep import isolate
from egrc_lite.sweep import run as sweep_run
from egrc_lite.sweep.plan import (
    SweepError,
    axis_labels,
    config_diff,
    parse_grid,
    plan_sweep,
    run_name,
    split_values,
)
from egrc_lite.sweep.run import prepare_eval, run_sweep

MINI = Path(__file__).parent / "assets" / "mini_bench.jsonl"
LC = "schedule.stages.compress.length_clip"
FAST = ["--set", "schedule.stages.compress.steps=1", "--set", "schedule.stages.explore.steps=1"]
EVAL = ["--eval", str(MINI), "--limit", "2", "--n", "1", "--max-tokens", "16"]

app = typer.Typer(pretty_exceptions_enable=False)
app.command()(sweep)


@app.callback()
def _main() -> None:
    """A local app like the real one (the command is called as `sweep`)."""


runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _one_thread_in_children(monkeypatch):
    """Spawned children (isolated mode) read their torch thread count from the environment they inherit."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _sweep(*args: str):
    return runner.invoke(app, ["sweep", *args])


def _status(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["runs"]}


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------------------------------- grid and plan

def test_grid_values_split_at_top_level_commas_and_read_like_set_values():
    assert split_values("[explore, compress],[compress, explore]") == ["[explore, compress]", "[compress, explore]"]
    assert split_values("'a,b', c") == ["'a,b'", "c"]
    assert parse_grid(f"{LC}=96,192").values == ("96", "192")
    plan = plan_sweep(["smoke"], ["train.learning_rate=1e-4,2e-4", "schedule.order=[explore, compress]"])
    assert [c.config.train.learning_rate for c in plan.runs] == [1e-4, 2e-4]  # '1e-4' is a float, as with --set
    assert [s.name for s in plan.runs[0].config.schedule.stages] == ["explore", "compress"]


@pytest.mark.parametrize("grid, message", [
    (["reward.shape"], "must look like dotted.key=v1,v2"),
    (["reward.shape=linear,,cosine"], "empty value"),
    (["reward.shape=linear,linear"], "listed twice"),
    (["reward.shape=linear", "reward.shape=cosine"], "given twice"),
    ([], "at least one --grid"),
    (["preset=none,ablations/lc4096"], "unknown preset 'ablations/lc4096'"),
])
def test_grid_mistakes(grid, message):
    with pytest.raises(Exception, match=message):
        plan_sweep(["smoke"], grid)


def test_run_names_are_short_stable_distinct_and_safe():
    labels = axis_labels([LC, "reward.shape"])
    assert run_name(((LC, "96"), ("reward.shape", "cosine")), labels) == "lc=96_shape=cosine"
    both = axis_labels([LC, "schedule.stages.explore.length_clip"])
    assert set(both.values()) == {"compress.lc", "explore.lc"}
    odd = run_name((("model.name_or_path", "org/My Model"), ("schedule.order", "[explore, compress]")),
                   axis_labels(["model.name_or_path", "schedule.order"]))
    assert odd == "model=org-My-Model_order=explore-compress"
    plan = plan_sweep(["smoke"], ["preset=none,ablations/shape-linear+ablations/lc2048", "train.seed=1"])
    assert [c.name for c in plan.runs] == ["no-ablation_seed=1", "shape-linear+lc2048_seed=1"]
    assert plan.runs[1].config.reward.shape == "linear" and plan.runs[1].config.schedule.stages[0].length_clip == 2048
    clash = plan_sweep(["smoke"], ["description=a b,a/b"])  # both sanitize to 'a-b'
    assert len({c.name for c in clash.runs}) == 2


def test_plan_resolves_each_combination_and_grid_values_win_over_set():
    plan = plan_sweep(["smoke"], [f"{LC}=16,24", "reward.shape=exponential,linear"], [f"{LC}=99", "train.seed=3"])
    assert [c.name for c in plan.runs] == ["lc=16_shape=exponential", "lc=16_shape=linear",
                                           "lc=24_shape=exponential", "lc=24_shape=linear"]
    assert plan.base.schedule.stages[0].length_clip == 99
    for combo in plan.runs:
        changed = {k for k, _, _ in config_diff(plan.base, combo.config)}
        expected = {f"{LC}", "schedule.stages.compress.max_completion_length"}
        assert changed == expected | ({"reward.shape"} if combo.config.reward.shape == "linear" else set())
        assert combo.config.train.seed == 3


def test_ablation_presets_as_an_axis_show_their_differences():
    plan = plan_sweep(["default"], ["preset=none,ablations/explore-first,ablations/entangled"])
    diffs = {c.name: config_diff(plan.base, c.config) for c in plan.runs}
    assert diffs["no-ablation"] == []
    assert diffs["explore-first"] == [("schedule.order", None, ["explore", "compress"])]
    assert {k for k, _, _ in diffs["entangled"]} == {"schedule.stages.0.name", "schedule.stages.0.mode",
                                                     "schedule.stages.1.steps"}


def test_eval_refuses_a_grid_that_changes_the_base_model():
    plan = plan_sweep(["smoke"], ["model.dtype=float32,bfloat16"])
    with pytest.raises(SweepError, match="changes the model section"):
        prepare_eval(plan, str(MINI))


# ---------------------------------------------------------------------------------------- CLI mistakes and dry run

@pytest.mark.parametrize("args, message", [
    (["--grid", "reward.shap=linear,cosine"], "--grid combination shap=linear (reward.shap=linear): unknown config "
                                              "key 'reward.shap'; valid keys under 'reward'"),
    (["--grid", "schedule.stages.explor.steps=1,2"], "'explor' names no item"),
    (["--grid", "reward.shape=linear,cubic"], "combination shape=cubic"),
    (["--grid", "reward.shape=linear", "--eval", "aime99"], "unknown benchmark 'aime99'"),
    (["--grid", "reward.shape=linear", "--eval-stages"], "--eval-stages needs --eval BENCHMARKS"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, args, message):
    result = _sweep("--preset", "smoke", *args, "--out", str(tmp_path / "sw"))
    assert result.exit_code == 2, result.output
    errors = _error_lines(result.output)
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "sw").exists()


def test_dry_run_lists_runs_and_differences_and_creates_nothing(tmp_path):
    out = tmp_path / "sw"
    result = _sweep("--preset", "smoke", "--grid", f"{LC}=16,24", "--grid", "reward.shape=exponential,linear",
                    *FAST, *EVAL, "--out", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name in ("lc=16_shape=exponential", "lc=16_shape=linear", "lc=24_shape=exponential", "lc=24_shape=linear"):
        assert name in text
    assert "exponential -> linear" in text and "24 -> 16" in text and "(same as the base)" in text
    assert "dry run: nothing was run" in text and not out.exists()


# ---------------------------------------------------------------------------------------- bookkeeping (fake training)

def _fake_schedule(calls: list, fail: dict[str, BaseException]):
    """A ``run_schedule`` stand-in that writes what a run writes; raises ``fail[name]`` once, mid-run."""

    def run(cfg, run_dir, *, resume=False, progress=None, **kwargs):
        name = run_dir.path.name
        calls.append((name, resume))
        run_dir.create()
        if not resume:
            write_config(run_dir, cfg)
        run_dir.metrics.append({"step": 1, "stage": "compress", "train/len/mean": 20.0, "train/acc": 0.5})
        if name in fail:
            run_dir.write_state({"finished": False})
            raise fail.pop(name)
        run_dir.metrics.append({"step": 2, "stage": "explore", "train/len/mean": 10.0, "train/acc": 0.75})
        run_dir.write_state({"finished": True})
        return {}

    return run


def test_failed_combination_is_recorded_sweep_goes_on_and_rerun_resumes_it(tmp_path, monkeypatch):
    calls: list = []
    fail = {"seed=1": RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")}
    monkeypatch.setattr(train, "run_schedule", _fake_schedule(calls, fail))
    plan = plan_sweep(["smoke"], ["train.seed=0,1,2"])
    out = tmp_path / "sw"
    result = run_sweep(plan, out, isolate=False)
    status = _status(out)
    assert [c[0] for c in calls] == ["seed=0", "seed=1", "seed=2"]  # the sweep went on after seed=1
    assert [status[n]["status"] for n in ("seed=0", "seed=1", "seed=2")] == ["done", "failed", "done"]
    assert status["seed=1"]["reason"] == "RuntimeError: CUDA out of memory." and status["seed=1"]["phase"] == "train"
    assert "Tried to allocate" in (out / "runs" / "seed=1" / "error.txt").read_text()
    assert [r["name"] for r in result.failed] == ["seed=1"]
    report = (out / "report.md").read_text()
    assert "| seed=1 | `train.seed=1` | failed |" in report and "CUDA out of memory" in report
    assert "| 2 | 20 -> 10 | 50% -> 75% |" in report  # training metrics: first and last steps

    calls.clear()
    run_sweep(plan, out, isolate=False)  # the finished runs are skipped, the unfinished one resumed
    assert calls == [("seed=1", True)]
    status = _status(out)
    assert [status[n]["status"] for n in ("seed=0", "seed=1", "seed=2")] == ["skipped", "done", "skipped"]
    assert status["seed=1"]["train"] == "resumed" and not (out / "runs" / "seed=1" / "error.txt").exists()


def test_a_run_made_with_another_config_is_not_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run_schedule", _fake_schedule([], {}))
    out = tmp_path / "sw"
    run_sweep(plan_sweep(["smoke"], ["train.seed=0"]), out, isolate=False)
    result = run_sweep(plan_sweep(["smoke"], ["train.seed=0"], ["train.learning_rate=0.5"]), out, isolate=False)
    entry = result.record["runs"][0]
    assert entry["status"] == "failed"
    assert "holds a run made with another config (train.learning_rate: 0.001 there, 0.5 now" in entry["reason"]


def test_interrupt_leaves_a_readable_record(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run_schedule", _fake_schedule([], {"seed=1": KeyboardInterrupt()}))
    out = tmp_path / "sw"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan_sweep(["smoke"], ["train.seed=0,1,2"]), out, isolate=False)
    status = _status(out)
    assert status["seed=0"]["status"] == "done"
    assert (status["seed=1"]["status"], status["seed=1"]["reason"]) == ("pending", "interrupted")
    assert status["seed=2"]["status"] == "pending"


def test_failed_base_or_run_evaluation_is_reported_and_the_rest_compared(tmp_path, monkeypatch):
    from egrc_lite.sweep import run as sweep_mod
    from egrc_lite.evaluation.evaluate import EvalError

    seen = []

    def fake_eval(cfg, adapter, out_dir, spec, base_dir, progress=None):
        seen.append((out_dir.name, base_dir))
        if adapter is None:
            raise EvalError(f"{out_dir} holds samples made with other settings")
        if out_dir.name == "seed=1":
            raise MemoryError()
        out_dir.mkdir(parents=True)
        (out_dir / "summary.json").write_text(json.dumps({"benchmarks": {"mini_bench": {"acc": 50.0, "len": 10.0}}}))
        return "evaluated"

    monkeypatch.setattr(train, "run_schedule", _fake_schedule([], {}))
    monkeypatch.setattr(sweep_mod, "evaluate_model", fake_eval)
    plan = plan_sweep(["smoke"], ["train.seed=0,1"])
    out = tmp_path / "sw"
    result = run_sweep(plan, out, prepare_eval(plan, str(MINI), n=1, limit=1), isolate=False)
    assert seen == [("base", None), ("seed=0", None), ("seed=1", None)]  # no base summary: no L-Acc
    assert result.record["base"]["status"] == "failed" and "other settings" in result.record["base"]["reason"]
    status = _status(out)
    assert status["seed=0"]["status"] == "done"
    assert (status["seed=1"]["status"], status["seed=1"]["phase"], status["seed=1"]["reason"]) == \
        ("failed", "eval", "MemoryError")
    report = (out / "report.md").read_text()
    assert "**The base evaluation failed**" in report and "| base (not evaluated) | - |" in report
    assert "| seed=0 | 50.0 | 10 | - |" in report and "| seed=1 |" not in report.split("## Runs")[0]


@pytest.mark.parametrize("processes", ["--no-isolate", "--isolate"])
def test_a_value_that_fails_at_run_time_is_reported(tmp_path, processes):
    """A grid value the config accepts but TRL refuses when the trainer is built (no fakes); from a child
    process, the same one-line reason and the child's traceback in error.txt."""
    out = tmp_path / "sw"
    result = _sweep("--preset", "smoke", "--grid", "train.lr_scheduler_type=bogus", *FAST, "--out", str(out), processes)
    assert result.exit_code == 1, result.output
    assert "1 of 1 combination(s) failed" in result.output
    entry = _status(out)["lr-scheduler-type=bogus"]
    assert entry["status"] == "failed" and "bogus is not a valid SchedulerType" in entry["reason"]
    assert entry["reason"].startswith("ValueError: ")  # the type of the child's error, as in this process
    assert "failed" in (out / "report.md").read_text()
    error = (out / "runs" / "lr-scheduler-type=bogus" / "error.txt").read_text()
    assert error.startswith("Traceback") and "SchedulerType" in error
    assert json.loads((out / "sweep.json").read_text())["isolated"] is (processes == "--isolate")


# ---------------------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_smoke_sweep_2x2_end_to_end_with_resume_and_a_failing_combination(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    grid = ["--grid", f"{LC}=16,24", "--grid", "reward.shape=exponential,linear"]
    first = _sweep("--preset", "smoke", "--grid", f"{LC}=16", "--grid", "reward.shape=exponential", *FAST, *EVAL,
                   "--out", str(out))  # one combination of the 2x2 grid, finished before the full sweep
    assert first.exit_code == 0, first.output
    finished = out / "runs" / "lc=16_shape=exponential"
    assert RunDir(finished).is_finished()
    metrics_before = (finished / "metrics.jsonl").read_text()
    records_before = (out / "eval" / "lc=16_shape=exponential" / "mini_bench.jsonl").read_text()

    real = train.run_schedule

    def flaky(cfg, run_dir, **kwargs):
        if run_dir.path.name == "lc=24_shape=linear":
            raise RuntimeError("simulated crash in lc=24_shape=linear")
        return real(cfg, run_dir, **kwargs)

    monkeypatch.setattr(train, "run_schedule", flaky)
    second = _sweep("--preset", "smoke", *grid, *FAST, *EVAL, "--out", str(out), "--no-isolate")  # the fake here
    assert second.exit_code == 1, second.output  # a failed combination: report written, exit 1
    status = _status(out)
    assert {n: s["status"] for n, s in status.items()} == {
        "lc=16_shape=exponential": "skipped", "lc=16_shape=linear": "done",
        "lc=24_shape=exponential": "done", "lc=24_shape=linear": "failed"}
    assert status["lc=24_shape=linear"]["reason"] == "RuntimeError: simulated crash in lc=24_shape=linear"
    assert (finished / "metrics.jsonl").read_text() == metrics_before  # not retrained
    assert (out / "eval" / "lc=16_shape=exponential" / "mini_bench.jsonl").read_text() == records_before
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert sweep_json["base"]["status"] == "skipped"  # the base was evaluated once, by the first invocation
    report = (out / "report.md").read_text()
    assert "| lc=24_shape=linear | " in report and "simulated crash" in report

    monkeypatch.setattr(train, "run_schedule", real)
    third = _sweep("--preset", "smoke", *grid, *FAST, *EVAL, "--out", str(out))  # retries the failed one only
    assert third.exit_code == 0, third.output
    status = _status(out)
    assert status["lc=24_shape=linear"]["status"] == "done"
    assert {s["status"] for n, s in status.items() if n != "lc=24_shape=linear"} == {"skipped"}
    for name in status:
        run = RunDir(out / "runs" / name)
        assert run.is_finished() and (run.adapter_dir / "adapter_config.json").is_file()
        summary = json.loads((out / "eval" / name / "summary.json").read_text())
        assert summary["adapter"] == str(run.adapter_dir.resolve())
        assert summary["settings"]["answer_rule"] == "last_number" and summary["settings"]["max_tokens"] == 16
        assert summary["benchmarks"]["mini_bench"]["n_problems"] == 2
        saved = yaml.safe_load((out / "runs" / name / "config.yaml").read_text())
        compress = saved["schedule"]["stages"][0]
        assert f"lc={compress['length_clip']}_shape={saved['reward']['shape']}" == name and compress["steps"] == 1
    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ") and "mini_bench" not in line]
    assert [line.split(" | ")[0][2:] for line in table[:5]] == ["base", "lc=16_shape=exponential", "lc=16_shape=linear",
                                                                "lc=24_shape=exponential", "lc=24_shape=linear"]
    assert "mini_bench L-Acc" in report and "![accuracy vs length](accuracy_vs_length.png)" in report
    assert (out / "accuracy_vs_length.png").read_bytes()[:4] == b"\x89PNG"
    assert "ACC / LEN / L-Acc against base" in third.output


def test_eval_stages_adds_the_adapter_at_each_stage_end_like_table_2(tmp_path):
    """Stage order as the axis, as in the paper's Table 2: each run is also evaluated after its first stage."""
    out = tmp_path / "sw"
    args = ["--preset", "smoke", "--grid", "schedule.order=[compress, explore],[explore, compress]", *FAST, *EVAL,
            "--eval-stages", "--out", str(out)]
    first = _sweep(*args)
    assert first.exit_code == 0, first.output
    assert "(schedule.order=[compress," in first.output  # list values are printed, not taken for markup
    status = _status(out)
    assert len(status) == 2
    for name, entry in status.items():
        run = RunDir(out / "runs" / name)
        first_stage = yaml.safe_load(run.config_path.read_text())["schedule"]["order"][0]
        [stage_eval] = entry["stage_evals"]
        assert stage_eval["stage"] == first_stage and stage_eval["eval"] == "evaluated"
        checkpoint = Path(stage_eval["checkpoint"])
        assert checkpoint.parent.parent == run.stages_dir and (checkpoint / "adapter_config.json").is_file()
        summary = json.loads((out / "eval" / f"{name}@{first_stage}" / "summary.json").read_text())
        assert summary["adapter"] == str(checkpoint.resolve())
    report = (out / "report.md").read_text()
    rows = [line.split(" | ")[0][2:] for line in report.split("## Runs")[0].splitlines()
            if line.startswith("| ") and "mini_bench" not in line]
    names = list(status)
    assert rows[:5] == ["base", f"{names[0]} (after compress)", names[0], f"{names[1]} (after explore)", names[1]]
    assert "rows 'NAME (after STAGE)'" in report
    again = _sweep(*args)  # everything finished: nothing is trained or evaluated again
    assert again.exit_code == 0, again.output
    assert {e["status"] for e in _status(out).values()} == {"skipped"}
    assert all(e["stage_evals"][0]["eval"] == "reused" for e in _status(out).values())


def _records(directory: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (directory / "mini_bench.jsonl").read_text().splitlines()]
    return sorted((r["problem_id"], r["sample"], r["response"], r["total_tokens"]) for r in rows)


def test_adapter_scale_evaluates_each_run_at_each_scale_as_rows_name_at_s(tmp_path):
    out = tmp_path / "sw"
    args = ["--preset", "smoke", "--grid", "train.seed=0", *FAST, *EVAL, "--set", "schedule.stages.explore.steps=3",
            "--set", "train.learning_rate=0.3",
            "--adapter-scale", "0,1", "--out", str(out)]
    first = _sweep(*args)
    assert first.exit_code == 0, first.output
    [(name, entry)] = _status(out).items()
    assert [(e["scale"], e["eval"]) for e in entry["scale_evals"]] == [(0.0, "evaluated"), (1.0, "evaluated")]
    zero, one = out / "eval" / f"{name}@scale-0", out / "eval" / f"{name}@scale-1"
    assert _records(zero) == _records(out / "eval" / "base")  # scale 0: the base model exactly
    assert _records(one) == _records(out / "eval" / name)  # scale 1: the adapter as trained
    assert _records(one) != _records(zero)  # the trained adapter changes the samples: the checks above can fail
    assert json.loads((zero / "summary.json").read_text())["settings"]["adapter_scale"] == 0.0
    report = (out / "report.md").read_text()
    rows = [line.split(" | ")[0][2:] for line in report.split("## Runs")[0].splitlines()
            if line.startswith("| ") and "mini_bench" not in line]
    assert rows[:4] == ["base", name, f"{name}@0", f"{name}@1"]
    again = _sweep(*args)
    assert again.exit_code == 0, again.output
    assert [e["eval"] for e in _status(out)[name]["scale_evals"]] == ["reused", "reused"]


def test_adapter_scale_needs_eval(tmp_path):
    result = _sweep("--preset", "smoke", "--adapter-scale", "0,1", "--out", str(tmp_path / "sw"))
    assert result.exit_code == 2 and "--adapter-scale needs --eval" in result.output


def test_stage_end_checkpoints_of_finished_and_unfinished_runs(tmp_path):
    run = RunDir(tmp_path / "r")
    plan = [{"name": "explore", "config_index": 1}, {"name": "compress", "config_index": 0}]
    done = [{"name": "explore", "steps": 3}, {"name": "compress", "steps": 2}]
    run.write_state({"finished": True, "plan": plan, "stages_done": done})
    assert run.stage_end_checkpoints() == [("explore", run.stages_dir / "1-explore" / "checkpoint-3")]
    run.write_state({"finished": False, "plan": plan, "stages_done": done[:1]})
    assert run.stage_end_checkpoints() == [("explore", run.stages_dir / "1-explore" / "checkpoint-3")]
    run.write_state({"finished": False, "plan": plan, "stages_done": []})
    assert run.stage_end_checkpoints() == []
    assert RunDir(tmp_path / "none").stage_end_checkpoints() == []


# ---------------------------------------------------------------------------------------- isolated mode (children)

FAST_SETS = FAST[1::2]  # the --set values of FAST


class Recorder:
    """A progress object that records every call, of training's protocol and of evaluation's alike."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args))


def test_isolation_is_on_by_default_exactly_when_a_cuda_gpu_is_visible(monkeypatch):
    import torch

    for visible in (True, False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda visible=visible: visible)
        assert isolate.want_isolation(None) is visible
        assert isolate.want_isolation(True) is True and isolate.want_isolation(False) is False


@pytest.mark.parametrize("args, line", [
    (["--isolate"], "processes: a child process for each training and each evaluation (--isolate)"),
    (["--no-isolate"], "processes: everything in this one (--no-isolate)"),
    ([], "processes: a child process for each training and each evaluation (--isolate, the default: a CUDA GPU "
         "is visible)"),
])
def test_the_plan_says_how_jobs_are_run(tmp_path, monkeypatch, args, line):
    monkeypatch.setattr(isolate, "cuda_visible", lambda: True)
    result = _sweep("--preset", "smoke", "--grid", "train.seed=0", "--out", str(tmp_path / "sw"), "--dry-run", *args)
    assert result.exit_code == 0, result.output
    assert line in " ".join(result.output.split())


def test_a_child_job_runs_in_another_process_and_reports_its_result_its_error_and_its_output(capsys):
    assert isolate.run_in_child("probe", os.getpid, ()) != os.getpid()
    with pytest.raises(isolate.ChildFailed) as info:
        isolate.run_in_child("probe", int, ("x",))
    assert info.value.reason == "ValueError: invalid literal for int() with base 10: 'x'" == sweep_run.one_line(info.value)
    assert info.value.details.startswith("Traceback") and "ValueError" in info.value.details
    isolate.run_in_child("probe", print, ("hello from the child",))
    assert "hello from the child" in capsys.readouterr().err  # the child's stdout, copied to this stderr
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("code, reason, details", [
    ("print('last words', flush=True); import os; os._exit(3)", "exit status 3", "Its last output:\nlast words"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "SIGKILL (Killed; out of memory? the kernel's "
                                                                "OOM killer sends it)", "It wrote no output."),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "SIGSEGV (Segmentation fault)",
     "faulthandler dump:\nFatal Python error: Segmentation fault"),
])
def test_a_child_that_dies_fails_with_how_it_died(code, reason, details):
    with pytest.raises(isolate.ChildFailed) as info:
        isolate.run_in_child("probe", exec, (code,))
    assert info.value.reason == f"child process died: {reason}"
    assert "The child process of probe (pid " in info.value.details and details in info.value.details
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_isolated_sweep_records_a_child_that_dies_goes_on_and_a_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv(isolate.CRASH_ENV, "runs/seed=0:3:end_stage")  # os._exit(3) when its first stage ends
    plan = plan_sweep(["smoke"], ["train.seed=0,1"], FAST_SETS)
    out, display = tmp_path / "sw", Recorder()
    result = run_sweep(plan, out, train_progress=display, isolate=True)
    status = _status(out)
    assert (status["seed=0"]["status"], status["seed=0"]["phase"], status["seed=0"]["reason"]) == \
        ("failed", "train", "child process died: exit status 3")
    assert "died: exit status 3, without reporting an error" in (out / "runs" / "seed=0" / "error.txt").read_text()
    assert status["seed=1"]["status"] == "done" and RunDir(out / "runs" / "seed=1").is_finished()
    assert [r["name"] for r in result.failed] == ["seed=0"]
    assert "| seed=0 | `train.seed=0` | failed |" in (out / "report.md").read_text()
    calls = [name for name, _ in display.calls if name in ("start_stage", "update", "end_stage")]
    assert calls == ["start_stage", "update", "end_stage",  # seed=0 died before its end_stage: the parent's
                     "start_stage", "update", "end_stage", "start_stage", "update", "end_stage"]  # replayed here
    assert display.calls[1][1][0] == 1 and "train/len/mean" in display.calls[1][1][1]

    monkeypatch.delenv(isolate.CRASH_ENV)
    started, real = [], isolate.run_in_child
    monkeypatch.setattr(sweep_run, "run_in_child", lambda label, *args: started.append(label) or real(label, *args))
    run_sweep(plan, out, isolate=True)
    assert started == ["runs/seed=0"]  # a finished run starts no child
    status = _status(out)
    assert (status["seed=0"]["status"], status["seed=0"]["train"]) == ("done", "resumed")
    assert status["seed=1"]["status"] == "skipped" and not (out / "runs" / "seed=0" / "error.txt").exists()
    assert RunDir(out / "runs" / "seed=0").is_finished() and not multiprocessing.active_children()


@pytest.mark.slow
def test_isolated_sweep_with_evaluation_shows_progress_and_reruns_without_a_child(tmp_path, monkeypatch):
    out = tmp_path / "sw"
    args = ["--preset", "smoke", "--grid", "train.seed=0", *FAST, *EVAL, "--out", str(out), "--isolate"]
    first = _sweep(*args)
    assert first.exit_code == 0, first.output
    text = " ".join(first.output.split())
    assert text.count("mini_bench: ACC 0.0 LEN") == 2  # the evaluation bars of the base and seed=0
    assert "compress" in text and "explore" in text and "acc 0%" in text  # the live training display
    run = RunDir(out / "runs" / "seed=0")
    summary = json.loads((out / "eval" / "seed=0" / "summary.json").read_text())
    assert summary["adapter"] == str(run.adapter_dir.resolve()) and summary["settings"]["base"] == str(out / "eval" / "base")
    assert json.loads((out / "sweep.json").read_text())["isolated"] is True

    def no_child(label, *args):
        raise AssertionError(f"{label} started a child")

    monkeypatch.setattr(sweep_run, "run_in_child", no_child)
    again = _sweep(*args)  # everything complete: the parent sees it and starts no child
    assert again.exit_code == 0, again.output
    record = json.loads((out / "sweep.json").read_text())
    assert record["base"]["status"] == "skipped" and record["runs"][0]["status"] == "skipped"


@pytest.mark.slow
def test_ctrl_c_stops_the_child_and_the_sweep_and_a_rerun_resumes(tmp_path):
    class CtrlC(Recorder):
        def update(self, step, metrics):
            """Ctrl-C in a terminal reaches the whole foreground process group: the child and this process."""
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGINT)
            raise KeyboardInterrupt

    # 20 steps: the child is still training when the parent replays its first step (under load the
    # parent may lag a few of the smoke preset's sub-second steps behind)
    plan = plan_sweep(["smoke"], ["train.seed=0"], ["schedule.stages.0.steps=20"])
    out = tmp_path / "sw"
    # A shell without job control starts background jobs with SIGINT ignored, and a spawned child inherits
    # that: give this process Python's own handler, so the child gets one too, as in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(plan, out, train_progress=CtrlC(), isolate=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not multiprocessing.active_children()
    entry = _status(out)["seed=0"]
    assert (entry["status"], entry["reason"]) == ("pending", "interrupted")
    assert not RunDir(out / "runs" / "seed=0").is_finished()
    result = run_sweep(plan, out, isolate=True)
    assert result.record["runs"][0]["status"] == "done" and RunDir(out / "runs" / "seed=0").is_finished()
