"""Terminal output for the CLI: a live training display and error formatting (rich).

Only the CLI uses this module; library code logs through ``logging``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

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


class LiveTrainingDisplay:
    """Stage, step/total, ETA and key metrics, refreshed on every optimiser step.

    Implements the ``progress`` protocol of the stage runner: ``start_stage``, ``update``, ``end_stage``.
    """

    def __init__(self, con: Console | None = None) -> None:
        self.console = con or console
        self._progress: Progress | None = None
        self._task = None
        self._stage = ""

    def start_stage(self, name: str, total: int, done: int = 0) -> None:
        self.end_stage()
        self._stage = name
        self._progress = Progress(
            TextColumn("[bold cyan]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
            console=self.console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total, completed=done, stage=name, metrics="")

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step, metrics=format_metrics(metrics))

    def end_stage(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def message(self, text: str) -> None:
        self.console.print(text)


INTERRUPTED = "interrupted; finished work is saved (rerun with --resume to continue)"


def user_errors(fn: Callable[..., Any] | None = None, *, interrupted: str = INTERRUPTED) -> Any:
    """Turn the library's user-facing errors into one line on stderr and exit status 2, environment errors
    (no permission, disk full, read-only file system: :data:`egrc_lite.errors.ENVIRONMENT_ERRNOS`) into one
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
        except OSError as err:
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
    """A rich progress bar per benchmark: done/total, samples/s, tokens/s, ETA (implements EvalProgress)."""

    def __init__(self, con: Any) -> None:
        self.console = con
        self._progress: Any = None
        self._task: Any = None
        self._t0 = 0.0
        self._samples = 0
        self._tokens = 0

    def start(self, benchmark: str, total: int, reused: int) -> None:
        self.close()
        if reused:
            self.console.print(f"{benchmark}: reusing {reused} of {total} samples already written")
        self._progress = Progress(TextColumn("[bold cyan]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                  TimeRemainingColumn(), console=self.console)
        self._progress.start()
        self._task = self._progress.add_task(benchmark, total=total, completed=reused, rate="")
        self._t0, self._samples, self._tokens = time.perf_counter(), 0, 0

    def advance(self, samples: int, tokens: int) -> None:
        self._samples += samples
        self._tokens += tokens
        dt = max(time.perf_counter() - self._t0, 1e-9)
        rate = f"{self._samples / dt:.2f} samples/s  {self._tokens / dt:.0f} tok/s"
        if self._progress is not None:
            self._progress.update(self._task, advance=samples, rate=rate)

    def finish(self, benchmark: str, summary: dict[str, Any]) -> None:
        self.close()
        lac = summary.get("l_acc")
        self.console.print(f"{benchmark}: ACC {summary['acc']:.1f}  LEN {summary['len']:.0f}"
                           + (f"  L-Acc {lac:.1f}" if isinstance(lac, (int, float)) else ""))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
