"""Terminal output for the CLI: live progress (training, evaluation, analysis) and error formatting (rich).

Only the CLI uses this module; library code logs through ``logging``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

KEY_METRICS = (
    ("train/len/mean", "len", "{:.0f}"),
    ("train/acc", "acc", "{:.0%}"),
    ("train/reward/mean", "reward", "{:.3f}"),
    ("train/entropy/mean", "H", "{:.3f}"),
    ("train/kept_frac", "kept", "{:.0%}"),
    ("train/loss", "loss", "{:.4f}"),
)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The key metrics of a step as a short line: ``len 120  acc 25%  reward 0.210 ...``."""
    parts = []
    for key, label, fmt in KEY_METRICS:
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {fmt.format(value)}")
    return "  ".join(parts)


def _clock(seconds: float | None) -> str:
    """``H:MM:SS``, or ``-:--:--`` while unknown.

    >>> _clock(3725.4), _clock(None)
    ('1:02:05', '-:--:--')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def live_capable(con: Console) -> bool:
    """Whether ``con`` can redraw a line in place (a terminal, not ``TERM=dumb``); else progress is plain lines."""
    return con.is_terminal and not con.is_dumb_terminal


BAR_MAX = 40  # widest bar; a narrow terminal gets a shorter one (or none) before anything else is cut
BAR_MIN = 6


class StageLine:
    """One stage's counter: ``NAME  bar  done/total  elapsed  ETA eta`` plus a detail text (metrics, rate).

    On a terminal it is drawn by a rich :class:`~rich.live.Live` and redrawn in place; the bar shrinks,
    then the detail moves to a second line and is cut with an ellipsis, then the name is cut, so
    done/total, elapsed and ETA stay whole down to about 40 columns. Elsewhere (a pipe, a file, CI)
    nothing is drawn: :meth:`plain` prints one line per call, without ANSI codes. The ETA is the
    remaining count at the rate measured since the stage started here (work counted by :meth:`set`
    with ``work=False``, such as a resumed position, is not part of the rate).
    """

    def __init__(self, con: Console, name: str, total: int, done: int = 0) -> None:
        self.console, self.name, self.total, self.done = con, name, total, done
        self.detail = ""
        self._base, self._t0 = done, time.perf_counter()
        self._live: Live | None = None
        if live_capable(con):
            self._live = Live(self, console=con, refresh_per_second=2, transient=False)
            self._live.start()

    @property
    def live(self) -> bool:
        return self._live is not None

    def set(self, done: int, detail: str | None = None, *, work: bool = True) -> None:
        if not work:
            self._base, self._t0 = done, time.perf_counter()
        self.done = done
        if detail is not None:
            self.detail = detail
        if self._live is not None:
            self._live.refresh()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def eta(self) -> float | None:
        worked, dt = self.done - self._base, self.elapsed()
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) * dt / worked if worked > 0 and dt > 0 else None

    def counts(self) -> str:
        return f"{self.done}/{self.total}  {_clock(self.elapsed())}  ETA {_clock(self.eta())}"

    def plain(self, prefix: str) -> None:
        """``PREFIX done/total  elapsed E  ETA T  DETAIL`` as one plain line (flushed)."""
        line = f"{prefix} {self.done}/{self.total}  elapsed {_clock(self.elapsed())}  ETA {_clock(self.eta())}"
        self.console.print(line + (f"  {self.detail}" if self.detail else ""), markup=False, highlight=False,
                           soft_wrap=True)

    def _bar(self, width: int) -> Text:
        filled = width if self.total <= 0 else min(width, int(width * self.done / self.total))
        style = "bar.finished" if self.total and self.done >= self.total else "bar.complete"
        return Text.assemble(("━" * filled, style), ("━" * (width - filled), "bar.back"))

    def __rich_console__(self, con: Console, options: ConsoleOptions) -> RenderResult:
        width, counts, detail = options.max_width, self.counts(), self.detail
        name = self.name[:max(1, width - len(counts) - 2)]
        room = width - len(name) - len(counts) - 2
        inline = bool(detail) and room - len(detail) - 3 >= BAR_MIN
        bar = min(BAR_MAX, room - (len(detail) + 3 if inline else 0) - 1)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(name, "bold cyan")
        line.append(" ")
        if bar >= BAR_MIN:
            line.append_text(self._bar(bar))
            line.append(" ")
        line.append(counts)
        if inline:
            line.append("  " + detail, "dim")
        yield line
        if detail and not inline:
            yield Text("  " + detail, style="dim", no_wrap=True, overflow="ellipsis")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class LiveTrainingDisplay:
    """Stage, step/total, elapsed, ETA and key metrics, refreshed on every optimiser step.

    Implements the ``progress`` protocol of the stage runner: ``start_stage``, ``update``, ``end_stage``
    (and ``message``). On a terminal a live line (:class:`StageLine`); elsewhere one plain line per step:
    ``compress step 3/10  elapsed 0:00:12  ETA 0:00:28  len 120  acc 25% ...``.
    """

    def __init__(self, con: Console | None = None) -> None:
        self.console = con or console
        self._line: StageLine | None = None

    @property
    def line(self) -> StageLine | None:
        """The running stage's line (``None`` between stages)."""
        return self._line

    def start_stage(self, name: str, total: int, done: int = 0) -> None:
        self.end_stage()
        self._line = StageLine(self.console, name, total, done)
        if not self._line.live:
            self.console.print(f"{name}: {total} steps" + (f", from step {done}" if done else ""), markup=False,
                               highlight=False, soft_wrap=True)

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        """A finished step with its metrics; without metrics, only the position (a resumed stage's start)."""
        line = self._line
        if line is None:
            return
        line.set(step, format_metrics(metrics), work=bool(metrics))
        if metrics and not line.live:
            line.plain(f"{line.name} step")

    def end_stage(self) -> None:
        if self._line is not None:
            self._line.stop()
            self._line = None

    def message(self, text: str) -> None:
        self.console.print(text)


INTERRUPTED = "interrupted; finished work is saved (rerun with --resume to continue)"


def user_errors(fn: Callable[..., Any] | None = None, *, interrupted: str = INTERRUPTED) -> Any:
    """Turn the library's user-facing errors into one line on stderr and exit status 2, environment errors
    (no permission, disk full, read-only file system: :data:`egrc_lite.errors.ENVIRONMENT_ERRNOS`, and the
    errors torch and safetensors raise for a write that failed) into one
    line naming the path and status 1, and Ctrl-C into the line ``interrupted`` and status 130; any other
    exception is a bug and keeps its traceback. ``@user_errors`` or ``@user_errors(interrupted=...)``."""
    if fn is None:
        return functools.partial(user_errors, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from egrc_lite.errors import USER_ERRORS, environment_error

        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            _error_line(str(err))
            raise typer.Exit(2) from None
        except Exception as err:  # an OSError, or torch's/safetensors' error for a write that failed
            message = environment_error(err, kwargs.get("out"))
            if message is None:
                raise
            _error_line(message)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print(interrupted)
            raise typer.Exit(130) from None

    return wrapper


def _error_line(message: str) -> None:
    """``error: MESSAGE`` on stderr, the message printed as is (no rich markup)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class EvalProgressBar:
    """Progress per benchmark (or analysis phase): done/total samples, samples/s, tokens/s, elapsed, ETA.

    Implements ``generate.base.BatchProgress`` (evaluation's and analysis' progress) plus
    ``close``. On a terminal a live line (:class:`StageLine`); elsewhere one plain line per ``advance``:
    ``math500 12/500  elapsed 0:00:10  ETA 0:06:40  1.23 samples/s  456 tok/s``.
    """

    def __init__(self, con: Any) -> None:
        self.console = con
        self._line: StageLine | None = None
        self._samples = 0
        self._tokens = 0

    @property
    def line(self) -> StageLine | None:
        """The running benchmark's (or phase's) line (``None`` between them)."""
        return self._line

    def start(self, benchmark: str, total: int, reused: int) -> None:
        self.close()
        if reused:
            self.console.print(f"{benchmark}: reusing {reused} of {total} samples already written")
        self._line = StageLine(self.console, benchmark, total, reused)
        self._samples, self._tokens = 0, 0
        if not self._line.live:
            self.console.print(f"{benchmark}: {total - reused} samples", markup=False, highlight=False)

    def advance(self, samples: int, tokens: int) -> None:
        line = self._line
        if line is None:
            return
        self._samples += samples
        self._tokens += tokens
        dt = max(line.elapsed(), 1e-9)
        line.set(line.done + samples, f"{self._samples / dt:.2f} samples/s  {self._tokens / dt:.0f} tok/s")
        if not line.live:
            line.plain(line.name)

    def finish(self, benchmark: str, summary: dict[str, Any]) -> None:
        """An evaluation summary (``acc``, ``len``, ``l_acc``) as ``ACC .. LEN ..``; any other summary as
        ``NAME: done/total in H:MM:SS  key value ...``."""
        line, self._line = self._line, None
        if line is not None:
            line.stop()
        if "acc" in summary and "len" in summary:
            lac = summary.get("l_acc")
            self.console.print(f"{benchmark}: ACC {summary['acc']:.1f}  LEN {summary['len']:.0f}"
                               + (f"  L-Acc {lac:.1f}" if isinstance(lac, (int, float)) else ""))
            return
        head = f"{benchmark}: {line.done}/{line.total} in {_clock(line.elapsed())}" if line else f"{benchmark}: done"
        extra = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
        self.console.print(head + (f"  {extra}" if extra else ""), markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._line is not None:
            self._line.stop()
            self._line = None
