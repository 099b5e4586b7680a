"""Writing files so that nothing finished is lost: atomic writes (temp file + rename) of text, JSON and
PNG, append-only JSONL logs whose torn last line is dropped, and permissions that follow the umask.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_json(d / "a.json", {"x": 1}); read_json(d / "a.json")
{'x': 1}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc`` on Linux; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(path: str | Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the permissions a plain ``open``/``mkdir``
    would have: 0666/0777 less the umask. safetensors and ``tempfile`` create files 0600 and folders 0700,
    which another account (e.g. a vLLM server's) cannot read."""
    mask = current_umask()
    path = Path(path)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename (with the
    permissions of a plain write: :func:`respect_umask`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def save_png(fig: Any, path: str | Path) -> Path:
    """Write the matplotlib figure ``fig`` as a PNG atomically (temp file in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not mkstemp: keep the umask's permissions
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path) -> Any:
    with Path(path).open(encoding="utf-8") as fh:
        return json.load(fh)


class JsonlLog:
    """An append-only JSONL file: each ``append`` writes one line and flushes it to disk.

    A torn last line (a crash mid-write) is ignored by ``rows`` and dropped by ``repair``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n"
        if _ends_torn(self.path):
            line = "\n" + line  # a torn last line stays a line of its own (dropped when read), not glued to this row
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:  # bytes: a line torn inside a UTF-8 character must not stop the reading
            for number, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    logger.warning("%s: dropping the torn last line %d (a write cut short)", self.path, number)
                    break
                row = self._parse(raw, number)
                if row is not None:
                    yield row

    def _parse(self, raw: bytes, number: int) -> dict[str, Any] | None:
        """Line ``number`` as a JSON object; ``None`` (with a warning) when blank or unreadable."""
        if not raw.strip():
            return None
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            row = None
        if not isinstance(row, dict):
            logger.warning("%s: skipping line %d, not a JSON object", self.path, number)
            return None
        return row

    def rows(self) -> list[dict[str, Any]]:
        return list(self)

    def truncate(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Atomically rewrite the log with the rows ``keep`` accepts; returns how many were dropped."""
        rows = self.rows()
        kept = [r for r in rows if keep(r)]
        if self.path.exists():
            atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        return len(rows) - len(kept)


MetricsLog = JsonlLog


def _ends_torn(path: Path) -> bool:
    """Whether ``path`` exists and its last byte is not a newline (a write cut short)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
