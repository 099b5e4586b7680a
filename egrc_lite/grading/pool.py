"""A small pool of grading worker processes, each of which can be killed on its own.

Off the main thread no SIGALRM deadline is available, and a large batch is faster on several
cores; so math-verify comparisons can run in worker processes instead
(:func:`egrc_lite.grading.grade_many` decides which). Each worker is a fresh ``python -c``
interpreter running :func:`serve` (nothing of the caller's ``__main__`` is re-imported, and
starting one is safe from a threaded parent). It talks JSON over two pipes, runs each comparison
under its own ``MV_BUDGET_S`` budget, and is killed and replaced when one comparison takes longer
than the caller's hard deadline (the verdict is then False). Idle workers are kept in
:data:`POOL` for later calls and stopped at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import threading
import time
from collections import deque

from egrc_lite.grading.mathverify import MV_BUDGET_S, compare_in_process, compare_in_process_timed, load_math_verify
from egrc_lite.grading.text import short

logger = logging.getLogger("egrc_lite.grading")  # one logger for every layer of the grader

WORKER_START_S = 60.0  # a fresh worker must report ready within this


def serve(read_fd: int, write_fd: int) -> None:
    """Worker loop (a fresh interpreter): JSON ``[idx, pred, gold]`` in, ``["done", idx, verdict,
    timed_out]`` out, ``null`` or EOF stops it. Its own logs are dropped; the parent reports."""
    from multiprocessing.connection import Connection

    logging.getLogger().addHandler(logging.NullHandler())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        load_math_verify()  # includes the warm-up, so a fresh worker's first item is not slow for being cold
    except Exception:  # noqa: BLE001 - every item then answers False
        pass
    tx.send_bytes(b'["ready"]')
    while True:
        try:
            msg = json.loads(rx.recv_bytes())
        except (EOFError, OSError, ValueError):
            return
        if msg is None:
            return
        idx, pred, gold = msg
        try:
            verdict, timed_out = compare_in_process_timed(pred, gold)
        except BaseException:  # noqa: BLE001
            verdict, timed_out = False, False
        tx.send_bytes(json.dumps(["done", idx, verdict, timed_out]).encode())


class _Worker:
    """``python -c`` running :func:`serve`: a fresh interpreter, so nothing of the caller's
    ``__main__`` is re-imported and starting one is safe from a threaded parent."""

    def __init__(self):
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        paths = [p for p in sys.path if isinstance(p, str)]
        code = (f"import sys; sys.path[:0] = {paths!r}; "
                f"from egrc_lite.grading.pool import serve; serve({down_r}, {up_w})")
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(down_r, up_w),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        finally:
            os.close(down_r)
            os.close(up_w)
        self.tx, self.rx = Connection(down_w, readable=False), Connection(up_r, writable=False)
        self.ready, self.task, self.since = False, None, time.monotonic()

    def send(self, msg) -> None:
        self.tx.send_bytes(json.dumps(msg).encode())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        for closer in (self.proc.kill, lambda: self.proc.wait(2), self.tx.close, self.rx.close):
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass


class WorkerPool:
    """Workers started on demand and kept for later calls (at most CPU count idle ones)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def warm(self) -> bool:
        with self._lock:
            return bool(self._idle)

    def map(self, items: list[tuple[str, str]], n: int, *, deadline_s: float, helper: bool = False) -> list[bool]:
        """Verdicts for ``items`` on ``n`` workers, a worker being killed (verdict False) when one
        comparison takes more than ``deadline_s``; with ``helper`` this (main) thread grades
        items itself until a worker is ready, so a cold start costs no wall time."""
        with self._lock:
            workers = [self._idle.pop() for _ in range(min(n, len(self._idle)))]
        try:
            while len(workers) < n:
                workers.append(_Worker())
            return self._drive(workers, items, helper, deadline_s)
        finally:
            keep = [w for w in workers if w.task is None and w.alive()]
            with self._lock:
                self._idle.extend(keep)
                extra = self._idle[max(os.cpu_count() or 1, 1):]
                del self._idle[len(self._idle) - len(extra):]
            for w in [w for w in workers if w not in keep] + extra:
                w.kill()

    def _drive(self, workers: list[_Worker], items: list[tuple[str, str]], helper: bool,
               deadline_s: float) -> list[bool]:
        from multiprocessing.connection import wait

        results, failures = [False] * len(items), 0
        todo = deque(sorted(range(len(items)), key=lambda i: items[i][1]))  # same gold, same worker caches
        while todo or any(w.task is not None for w in workers):
            for w in workers:
                if w.ready and w.task is None and todo:
                    i = todo.popleft()
                    w.send([i, *items[i]])
                    w.task, w.since = i, time.monotonic()
            waiting = {w.rx: w for w in workers if not w.ready or w.task is not None}
            horizon = min(w.since + (deadline_s if w.ready else WORKER_START_S) for w in waiting.values())
            if helper and todo and not any(w.ready for w in workers):
                horizon = time.monotonic()  # only poll: this thread has work of its own
            for conn in wait(list(waiting), timeout=max(0.0, horizon - time.monotonic())):
                w = waiting[conn]
                try:
                    msg = json.loads(conn.recv_bytes())
                except (EOFError, OSError, ValueError):
                    failures += self._replace(workers, w, "died", items)
                    continue
                if msg[0] == "ready":
                    w.ready = True
                else:
                    _, idx, verdict, timed_out = msg
                    results[idx], w.task = bool(verdict), None
                    if timed_out:
                        logger.warning("grading: comparison timed out after %.1f s: %s",
                                       MV_BUDGET_S, short(items[idx][0]))
            now = time.monotonic()
            for w in list(workers):
                if w.ready and w.task is not None and now - w.since > deadline_s:
                    failures += self._replace(workers, w, f"killed after {deadline_s:.1f} s", items)
                elif not w.ready and now - w.since > WORKER_START_S:
                    failures += self._replace(workers, w, "did not start", items)
            if failures > 3 + len(items):
                raise RuntimeError("grading workers keep failing")
            if helper and todo and not any(w.ready for w in workers):
                i = todo.pop()
                results[i] = compare_in_process(*items[i])
        return results

    def _replace(self, workers: list[_Worker], w: _Worker, why: str, items) -> int:
        what = f" on {short(items[w.task][0])}" if w.task is not None else ""
        logger.warning("grading: worker %s%s", why, what)
        w.kill()
        workers[workers.index(w)] = _Worker()
        return 1

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            try:
                w.tx.send_bytes(b"null")
                w.proc.wait(0.5)
            except Exception:  # noqa: BLE001
                pass
            w.kill()


POOL = WorkerPool()
atexit.register(POOL.shutdown)
