"""``egrc-lite env`` and ``egrc-lite benchmarks list``: what is installed and what can be evaluated here."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

benchmarks_app = typer.Typer(help="The benchmark registry.", no_args_is_help=True)


def environment() -> dict[str, Any]:
    """Versions, CUDA and driver, GPU packages and the backend ``auto`` picks: for bug reports."""
    from egrc_lite import __version__
    from egrc_lite.backends.base import gpu_environment
    from egrc_lite.evaluation.tasks import default_data_dir
    from egrc_lite.presets import preset_dirs
    from egrc_lite.runs import git_commit, package_versions

    return {"egrc_lite": __version__, "git_commit": git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": package_versions(), **gpu_environment(),
            "preset_dirs": [str(d) for d in preset_dirs()],
            "data_dir": str(default_data_dir()) if default_data_dir() else None}


def env_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts and bug reports).")] = False,
) -> None:
    """Versions, CUDA/driver, which backends and extras are available: paste it into a bug report."""
    from egrc_lite.cli.ui import console

    info = environment()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {'yes' if v is True else 'no' if v is False else v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        console.print(f"[bold]{key}[/]: {value}", highlight=False, soft_wrap=True)


def benchmark_rows(data_dir: Path | None) -> list[dict[str, Any]]:
    """One row per registered benchmark: name, problems, where it loads from, and whether that works offline."""
    from egrc_lite.evaluation.tasks import ALIASES, BENCHMARKS, BUILTIN_BENCHMARKS, default_data_dir

    folder = data_dir if data_dir is not None else default_data_dir()
    aliases = {target: alias for alias, target in ALIASES.items()}
    rows = []
    for spec in BENCHMARKS.values():
        local = folder / spec.file if folder is not None else None
        here = local is not None and local.is_file()
        rows.append({"name": spec.name + (f" (= {aliases[spec.name]})" if spec.name in aliases else ""),
                     "title": spec.title, "problems": spec.size,
                     "source": str(local) if here else f"hub: {spec.hf_id}", "offline": here})
    rows += [{"name": b.name, "title": b.title, "problems": b.size, "source": "built in", "offline": True}
             for b in BUILTIN_BENCHMARKS.values()]
    return rows


@benchmarks_app.command("list")
def benchmarks_list(
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of benchmark JSONL files "
                        "(default $EGRC_DATA_DIR, else ../shared/data beside the checkout).")] = None,
) -> None:
    """The benchmarks eval knows: problems, source, and whether each is available without a network."""
    from rich.table import Table

    from egrc_lite.cli.ui import console

    table = Table()
    table.add_column("benchmark", no_wrap=True)
    table.add_column("what it is")
    table.add_column("problems")
    table.add_column("source", overflow="fold")  # a path wraps, never loses its end
    table.add_column("offline")
    for row in benchmark_rows(data_dir):
        table.add_row(row["name"], row["title"], str(row["problems"]), row["source"],
                      "yes" if row["offline"] else "no (downloads from the hub)")
    console.print(table)
