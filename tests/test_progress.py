"""Progress a person can see: the live line keeps stage, step/total and ETA at 80 and 60 columns; a
pipe or a file gets one plain line per step or batch; ``analyze`` reports its phases (CPU)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from egrc_lite.cli.ui import EvalProgressBar, LiveTrainingDisplay, StageLine

ASSETS = Path(__file__).resolve().parent / "assets"
METRICS = {"train/len/mean": 120.0, "train/acc": 0.25, "train/reward/mean": 0.21, "train/entropy/mean": 0.512,
           "train/kept_frac": 0.8, "train/loss": 0.0123}
ANSI = "\x1b["


def _terminal(width: int) -> Console:
    return Console(width=width, force_terminal=True, record=True, file=io.StringIO())


def _plain() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out), out


def _frame(line: StageLine, width: int) -> list[str]:
    """The lines a terminal of ``width`` columns shows for ``line`` now."""
    con = _terminal(width)
    con.print(line)
    return con.export_text().splitlines()


class Clock:
    """A stand-in for ``time.perf_counter`` that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "perf_counter", fake)
    return fake


# ------------------------------------------------------------------------------------- on a terminal
@pytest.mark.parametrize("width", [80, 60])
def test_training_line_keeps_step_total_and_eta_on_a_narrow_terminal(width):
    con = _terminal(width)
    display = LiveTrainingDisplay(con)
    display.start_stage("compress", 10)
    display.update(3, METRICS)
    first, *rest = _frame(display.line, width)
    assert first.startswith("compress ") and "3/10" in first and "ETA" in first, first
    assert first.rstrip().split("ETA ")[1].count(":") == 2 and "…" not in first  # the ETA whole, nothing cut
    assert rest and rest[0].strip().startswith("len 120  acc 25%")  # the metrics on a line of their own
    assert all(len(row) <= width for row in [first, *rest])
    display.end_stage()
    shown = con.export_text()
    assert "3/10" in shown and "ETA" in shown and "len 120" in shown
    assert display.line is None


@pytest.mark.parametrize("width", [80, 60])
def test_eval_line_keeps_done_total_and_eta_on_a_narrow_terminal(width):
    bar = EvalProgressBar(_terminal(width))
    bar.start("olympiadbench", 500, 0)
    bar.advance(12, 4560)
    rows = _frame(bar.line, width)
    assert rows[0].startswith("olympiadbench ") and "12/500" in rows[0] and "ETA" in rows[0], rows
    assert "samples/s" in " ".join(rows) and "tok/s" in " ".join(rows)
    assert all(len(row) <= width for row in rows)
    bar.finish("olympiadbench", {"acc": 25.0, "len": 120.0})
    shown = bar.console.export_text()
    assert "12/500" in shown and "ETA" in shown and "ACC 25.0" in shown


def test_a_wide_terminal_shows_one_line_and_a_tiny_one_cuts_the_name_first(clock):
    line = StageLine(_plain()[0], "math500", 500, 0)
    line.set(12, "1.23 samples/s  456 tok/s")
    assert len(_frame(line, 120)) == 1 and "456 tok/s" in _frame(line, 120)[0]
    tiny = StageLine(_plain()[0], "a-very-long-stage-name", 10, 0)
    tiny.set(3)
    (row,) = _frame(tiny, 36)
    assert row.endswith(tiny.counts()) and row.startswith("a-very") and len(row) <= 36, row


# ------------------------------------------------------------------------------------- not a terminal
def test_training_prints_one_plain_line_per_step_when_not_a_terminal(clock):
    con, out = _plain()
    display = LiveTrainingDisplay(con)
    display.start_stage("compress", 10)
    display.update(5, {})  # a resumed stage's position: no line, and no part of the rate
    for step in (6, 7):
        clock.now += 10
        display.update(step, METRICS)
    display.end_stage()
    lines = out.getvalue().splitlines()
    assert lines == [
        "compress: 10 steps",
        "compress step 6/10  elapsed 0:00:10  ETA 0:00:40  len 120  acc 25%  reward 0.210  H 0.512  kept 80%  "
        "loss 0.0123",
        "compress step 7/10  elapsed 0:00:20  ETA 0:00:30  len 120  acc 25%  reward 0.210  H 0.512  kept 80%  "
        "loss 0.0123",
    ]
    assert ANSI not in out.getvalue()


def test_eval_prints_one_plain_line_per_batch_when_not_a_terminal(clock):
    con, out = _plain()
    bar = EvalProgressBar(con)
    bar.start("math500", 20, 4)
    for _ in range(2):
        clock.now += 4
        bar.advance(8, 400)
    bar.finish("math500", {"acc": 25.0, "len": 120.0})
    assert out.getvalue().splitlines() == [
        "math500: reusing 4 of 20 samples already written",
        "math500: 16 samples",
        "math500 12/20  elapsed 0:00:04  ETA 0:00:04  2.00 samples/s  100 tok/s",
        "math500 20/20  elapsed 0:00:08  ETA 0:00:00  2.00 samples/s  100 tok/s",
        "math500: ACC 25.0  LEN 120",
    ]
    assert ANSI not in out.getvalue()


def test_the_calls_the_sweep_replays_stay_the_same():
    for cls, names in ((LiveTrainingDisplay, ("start_stage", "update", "end_stage", "message")),
                       (EvalProgressBar, ("start", "advance", "finish", "close"))):
        assert all(callable(getattr(cls, n, None)) for n in names), cls
    bar = EvalProgressBar(_plain()[0])
    bar.advance(1, 1)  # before start and after close: nothing, no error
    bar.close()
    LiveTrainingDisplay(_plain()[0]).update(1, METRICS)


# ------------------------------------------------------------------------------------- analyze
class Recorder:
    def __init__(self, forward: EvalProgressBar) -> None:
        self.calls: list[tuple] = []
        self.forward = forward

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            self.calls.append((name, *args, *kwargs.values()))
            getattr(self.forward, name)(*args, **kwargs)
        return call


def test_analyze_model_reports_generate_score_and_exact_grad(tmp_path):
    import torch

    from egrc_lite.analysis.run import analyze_model
    from egrc_lite.config import AnalysisSettings, DataConfig
    from egrc_lite.data import load_problems
    from egrc_lite.presets import resolve

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        problems = load_problems(DataConfig(source=str(ASSETS / "analysis_problems.jsonl"), shuffle=False, limit=2))
        settings = AnalysisSettings(samples=2, max_tokens=6, exact_tokens=3, batch_size=3, answer_rule="last_number")
        con, out = _plain()
        progress = Recorder(EvalProgressBar(con))
        report = analyze_model(resolve("smoke"), problems, tmp_path, settings, progress=progress)
    finally:
        torch.set_num_threads(before)
    calls = progress.calls
    phases = [c[1] for c in calls if c[0] == "start"]
    assert phases == ["generate", "score", "exact-grad"]
    by_phase: dict[str, list[tuple]] = {}
    phase = None
    for c in calls:
        phase = c[1] if c[0] == "start" else phase
        by_phase.setdefault(phase, []).append(c)
    gen = by_phase["generate"]
    assert gen[0] == ("start", "generate", 4, 0) and gen[-1][0] == "finish"
    assert [c[1] for c in gen if c[0] == "advance"] == [3, 1]  # one call per generated batch of 3
    assert gen[-1][2]["acc"] == pytest.approx(100 * report["accuracy"])
    score = by_phase["score"]
    assert [c[1] for c in score if c[0] == "advance"] == [2, 2]  # one call per problem's samples
    assert sum(c[2] for c in score if c[0] == "advance") == report["tokens"] == score[-1][2]["tokens"]
    exact = by_phase["exact-grad"]
    rows = [json.loads(line) for line in (tmp_path / "responses.jsonl").open()]
    assert exact[0][2] == sum(1 for r in rows if r["exact"])
    assert sum(c[2] for c in exact if c[0] == "advance") == sum(len(r["exact"]) for r in rows) == min(3, report["tokens"])
    text = out.getvalue()
    assert "generate 4/4  elapsed" in text and "score 4/4  elapsed" in text and "ETA" in text
    assert ANSI not in text
