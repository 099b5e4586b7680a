"""One sweep job (a combination's training, one evaluation) in a child process of its own.

A GPU sweep needs this: each training with the unsloth backend starts an in-process vLLM engine
whose memory ``gc`` and ``torch.cuda.empty_cache()`` do not give back, so the second combination
of one process runs out of GPU memory. A child process gives all of it back when it exits.

The child is started with :mod:`multiprocessing`'s ``spawn`` context (a fresh interpreter: no CUDA
state inherited; arguments and results travel as pickles) and gets two pipes of its own:

- events: the progress calls of the job (``start_stage``, ``update``, ... of training; ``start``,
  ``advance``, ... of an evaluation), replayed by the parent on its own display, then one last
  message: the result, the error (one line and the traceback) or ``interrupted``;
- output: the child's stdout and stderr (file descriptors 1 and 2, so C libraries' messages too),
  copied to the parent's stderr line by line; the last lines go into the error of a child that dies.

A child that dies without a last message (exit status, signal, segfault: a faulthandler dump is
kept) raises :class:`ChildFailed`, as does one whose job raised; Ctrl-C stops the child and raises
``KeyboardInterrupt`` in the parent.

Test hook: ``EGRC_SWEEP_TEST_CRASH=JOB:HOW[:EVENT]`` makes the child of job ``JOB`` (its label,
e.g. ``runs/seed=0``) crash: ``HOW`` is an exit status (``3``: ``os._exit(3)``) or a signal name
(``SIGKILL``), at its start or when it first reports the progress call ``EVENT`` (``end_stage``).
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from egrc_lite.errors import EgrcError

logger = logging.getLogger("egrc_lite.sweep")

SPAWN = multiprocessing.get_context("spawn")
CRASH_ENV = "EGRC_SWEEP_TEST_CRASH"
OUTPUT_TAIL = 40  # lines of a dead child's output kept for its error
EXIT_WAIT_S = 120.0  # a child that reported has this long to exit (engine teardown) before it is stopped
STOP_WAITS_S = (3.0, 10.0, 5.0, 5.0)  # a running child after Ctrl-C: wait, then SIGINT, SIGTERM, SIGKILL
RunJob = Callable[[str, Callable[..., Any], tuple[Any, ...], Any], Any]  # (label, fn, args, progress) -> result


class ChildFailed(Exception):
    """A job that failed in its child process: ``reason`` is one line, ``details`` the text for error.txt."""

    def __init__(self, reason: str, details: str) -> None:
        super().__init__(reason)
        self.reason, self.details = reason, details


def one_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an error, with its type unless it is a user-facing one (or a child's report)."""
    text = (str(err).strip().splitlines() or [""])[0]
    if not isinstance(err, (EgrcError, ChildFailed)):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def cuda_visible() -> bool:
    """Whether torch sees a CUDA GPU (checked without creating a CUDA context)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def want_isolation(isolate: bool | None) -> bool:
    """``isolate`` as given; ``None`` (auto): a child process per job exactly when a CUDA GPU is visible."""
    return cuda_visible() if isolate is None else bool(isolate)


def in_process(label: str, fn: Callable[..., Any], args: tuple[Any, ...], progress: Any = None) -> Any:
    """Run a job here: ``fn(*args, progress=progress)`` (``progress`` only when given), as a child does."""
    return fn(*args, progress=progress) if progress is not None else fn(*args)


# ---------------------------------------------------------------------------------------- the child

@dataclass(frozen=True)
class ChildSetup:
    """What a spawned child takes over from its parent (the environment it inherits anyway): the logging
    level and format, the warning filters, and whether transformers' load bars are off."""

    log_level: int
    log_format: str | None
    warning_filters: tuple[Any, ...]
    hf_bars_off: bool

    @classmethod
    def capture(cls) -> ChildSetup:
        root = logging.getLogger()
        fmt = next((getattr(h.formatter, "_fmt", None) for h in root.handlers if h.formatter is not None), None)
        hf = sys.modules.get("transformers.utils.logging")
        filters = tuple(f for f in warnings.filters if f[2].__module__ == "builtins")  # they surely pickle
        return cls(root.level, fmt, filters, bool(hf and not hf.is_progress_bar_enabled()))

    def apply(self) -> None:
        logging.basicConfig(level=self.log_level, **({"format": self.log_format} if self.log_format else {}))
        warnings.filters[:] = list(self.warning_filters)
        if self.hf_bars_off:  # read by transformers when imported (later, by the job)
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def _crash_hook(label: str) -> tuple[str, str | None] | None:
    """``(how, event)`` when the test hook names this job (see the module docstring)."""
    job, _, rest = os.environ.get(CRASH_ENV, "").partition(":")
    if job != label or not rest:
        return None
    how, _, event = rest.partition(":")
    return how, event or None


def _crash(how: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if how.isdigit():
        os._exit(int(how))
    os.kill(os.getpid(), getattr(signal, how))


class _Relay:
    """The child's stand-in for the parent's progress object: every public call goes down the events pipe."""

    def __init__(self, events: Any, crash: tuple[str, str | None] | None = None) -> None:
        self._events, self._crash = events, crash

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)

        def send(*args: Any, **kwargs: Any) -> None:
            if self._crash is not None and name == self._crash[1]:
                _crash(self._crash[0])
            try:
                self._events.send(("progress", name, args, kwargs))
            except (TypeError, AttributeError, ValueError) as err:  # an argument that does not pickle: not shown
                logger.debug("progress call %s not relayed: %s", name, err)

        return send


def _redirect_output(output: Any) -> None:
    """Point file descriptors 1 and 2 at the output pipe (Python's and C libraries' writes alike)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    for stream in (sys.stdout, sys.stderr):
        getattr(stream, "reconfigure", lambda **_: None)(line_buffering=True)


def _child_main(label: str, fn: Callable[..., Any], args: tuple[Any, ...], relay: bool, setup: ChildSetup,
                events: Any, output: Any, crash_log: str) -> None:
    """The child's whole life: set up like the parent, run the job, report its one last message, exit."""
    _redirect_output(output)
    dump = open(crash_log, "w", encoding="utf-8")  # noqa: SIM115 - open until the process ends
    faulthandler.enable(dump, all_threads=True)
    setup.apply()
    hook = _crash_hook(label)
    if hook is not None and hook[1] is None:
        _crash(hook[0])
    try:
        value = in_process(label, fn, args, _Relay(events, hook) if relay else None)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the report short
        message, code = ("interrupted",), 130
    except BaseException as err:  # noqa: BLE001 - every failure of the job is reported to the parent
        message, code = ("error", one_line(err), "".join(traceback.format_exception(err))), 1
    else:
        message, code = ("result", value), 0
    events.send(message)
    sys.exit(code)


# ---------------------------------------------------------------------------------------- the parent

class _Output:
    """Copies a child's output to this process's stderr line by line (above a live display, if one is
    drawn) and keeps its last lines."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        self._thread = threading.Thread(target=self._pump, name="egrc-sweep-output", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while chunk := os.read(self._reader.fileno(), 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._emit(line)
        if pending:
            self._emit(pending)

    def _emit(self, raw: bytes) -> None:
        text = raw.decode(errors="replace").rsplit("\r", 1)[-1]  # a progress bar's last state only
        self.tail.append(text)
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # the parent's stderr is gone: keep the tail only
            pass

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the end of the output (a grandchild may hold it open: then stop waiting)."""
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._reader.close()


def describe_exit(code: int | None) -> str:
    """``exit status 3``, ``SIGKILL (Killed)``, ...: how a process ended, from its ``exitcode``.

    >>> describe_exit(3)
    'exit status 3'
    """
    if code is None or code >= 0:
        return f"exit status {code}"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"signal {-code}"
    hint = "; out of memory? the kernel's OOM killer sends it" if sig == signal.SIGKILL else ""
    return f"{sig.name} ({signal.strsignal(sig) or sig.name}{hint})"


def _dispatch(progress: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    method = getattr(progress, name, None)
    if callable(method):
        method(*args, **kwargs)


def _wait(proc: Any, events: Any, progress: Any) -> tuple[Any, ...] | None:
    """Replay the child's progress calls until its last message (returned) or its end (``None``)."""
    while True:
        if events.poll(0.2):
            try:
                message = events.recv()
            except EOFError:
                return None
            if message[0] != "progress":
                return message
            _dispatch(progress, *message[1:])
        elif not proc.is_alive():
            return None


def _interrupt(proc: Any) -> None:
    if os.name == "posix":
        os.kill(proc.pid, signal.SIGINT)


def _stop(proc: Any, events: Any) -> None:
    """Stop a child that is still running (after Ctrl-C, or a failure of this process): wait a moment
    (Ctrl-C in a terminal reached it too), then SIGINT, SIGTERM and SIGKILL, each with a wait."""
    actions = (None, _interrupt, type(proc).terminate, type(proc).kill)
    for action, wait in zip(actions, STOP_WAITS_S):
        if action is not None and proc.is_alive():
            logger.debug("stopping child process %s: %s", proc.pid, action.__name__)
            action(proc)
        proc.join(wait)
        while events.poll():  # a child blocked on a full pipe would not see the signal
            try:
                events.recv()
            except (EOFError, OSError):
                break
        if not proc.is_alive():
            return


def _read_dump(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def _outcome(label: str, proc: Any, message: tuple[Any, ...] | None, tail: list[str], dump: str) -> Any:
    """The job's result, or the failure it raises in the parent."""
    if message is not None and message[0] == "result":
        if proc.exitcode:
            logger.warning("%s: its child process ended with %s after reporting its result", label,
                           describe_exit(proc.exitcode))
        return message[1]
    if message is not None and message[0] == "interrupted":
        raise KeyboardInterrupt
    if message is not None:
        raise ChildFailed(message[1], message[2])
    how = describe_exit(proc.exitcode)
    details = [f"The child process of {label} (pid {proc.pid}) died: {how}, without reporting an error.",
               f"faulthandler dump:\n{dump}" if dump else "",
               "Its last output:\n" + "\n".join(tail) if tail else "It wrote no output."]
    raise ChildFailed(f"child process died: {how}", "\n\n".join(d for d in details if d) + "\n")


def run_in_child(label: str, fn: Callable[..., Any], args: tuple[Any, ...], progress: Any = None) -> Any:
    """Run ``fn(*args, progress=...)`` in a spawned child process and return its result.

    ``fn`` and ``args`` must pickle (``fn`` a module-level function). The child's progress calls are
    replayed on ``progress``. Raises :class:`ChildFailed` when the job raises or the child dies, and
    ``KeyboardInterrupt`` when either side is interrupted; the child is gone when this returns.
    """
    events_in, events_out = SPAWN.Pipe(duplex=False)
    output_in, output_out = SPAWN.Pipe(duplex=False)
    fd, crash_log = tempfile.mkstemp(prefix="egrc-sweep-", suffix=".faulthandler.txt")
    os.close(fd)
    proc = SPAWN.Process(target=_child_main, name=f"egrc-lite {label}", args=(
        label, fn, args, progress is not None, ChildSetup.capture(), events_out, output_out, crash_log))
    output = None
    try:
        proc.start()
        events_out.close()
        output_out.close()
        output = _Output(output_in)
        message = _wait(proc, events_in, progress)
        proc.join(EXIT_WAIT_S if message is not None else 5.0)
        if proc.is_alive():
            logger.warning("%s: its child process did not exit; stopping it", label)
    finally:
        if proc.is_alive():
            _stop(proc, events_in)
        if output is not None:
            output.close()
        events_in.close()
        dump = _read_dump(crash_log)
        os.unlink(crash_log)
    return _outcome(label, proc, message, list(output.tail) if output else [], dump)
