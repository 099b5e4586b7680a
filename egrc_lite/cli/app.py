"""The ``egrc-lite`` command line (Typer). Heavy libraries are imported inside the commands.

User mistakes (bad config, missing files, missing extras) print one line on stderr and exit
with status 2; no traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from egrc_lite import __version__
from egrc_lite.cli.help import WordsGroup
from egrc_lite.cli.options import PresetOpt, SetOpt
from egrc_lite.cli.ui import user_errors

app = typer.Typer(
    name="egrc-lite",
    cls=WordsGroup,
    help="Entropy-Guided Reasoning Compression: make reasoning models think shorter without thinking worse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
presets_app = typer.Typer(help="List presets and show resolved configs.", no_args_is_help=True)
app.add_typer(presets_app, name="presets")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"egrc-lite {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    """egrc-lite: two-stage RL (compression, then exploration) with LoRA on one GPU or a CPU."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        _quiet_third_party()


def _quiet_third_party() -> None:
    """Keep the terminal for egrc-lite's own output: no telemetry, library deprecation chatter or load bars."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*deprecated.*")


@presets_app.command("list")
@user_errors
def presets_list() -> None:
    """List the presets with the first line of each header."""
    from rich.table import Table

    from egrc_lite.presets import list_presets, preset_dirs
    from egrc_lite.cli.ui import console

    table = Table(title="egrc-lite presets", caption="from " + ", then ".join(str(d) for d in preset_dirs())
                  + "; `egrc-lite presets show NAME` prints one", caption_justify="left")
    table.add_column("preset", no_wrap=True, style="bold")
    table.add_column("what it is (the first sentence of its header)")
    for info in list_presets():
        table.add_row(info.name, info.summary)
    console.print(table)


@presets_app.command("show")
@user_errors
def presets_show(
    name: Annotated[Optional[list[str]], typer.Argument(
        help="Preset names or .yaml paths, composed left to right like repeated --preset.", show_default=False)] = None,
    preset: PresetOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Print the presets' headers and the fully resolved config (defaults + presets + --set) as YAML.

    The presets compose exactly as `compress` composes them: NAME arguments first, then each --preset,
    e.g. `presets show r1-1.5b --preset ablations/lc2048` (or `presets show r1-1.5b ablations/lc2048`).
    """
    import yaml

    from egrc_lite.presets import DEFAULT_PRESET, find_preset, read_preset_text, resolve
    from egrc_lite.cli.ui import console

    presets = [*(name or []), *(preset or [])] or [DEFAULT_PRESET]
    cfg = resolve(presets, overrides or [])
    header: list[str] = []
    for item in presets:
        if len(presets) > 1:
            header.append(f"# ---- preset {item}")
        header += [line for line in read_preset_text(find_preset(item)).splitlines() if line.startswith("#")]
    text = "\n".join(header) + "\n" + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _run_training(preset: list[str] | None, overrides: list[str] | None, out: Path | None, resume: bool,
                  flags: dict[str, Any], init_adapter: Path | None = None,
                  stage_filter: list[str] | None = None) -> None:
    from egrc_lite.presets import DEFAULT_PRESET, resolve
    from egrc_lite.runs import RunDir, check_writable
    from egrc_lite.cli.ui import LiveTrainingDisplay, console

    presets = preset or [DEFAULT_PRESET]
    name = "+".join(Path(p).stem for p in presets)
    run_dir = RunDir(out or Path("runs") / name)  # `--out ""` is Path("."): refused below unless it is empty
    _check_run_dir(run_dir, resume)
    if resume:
        if preset or overrides or any(v is not None for v in flags.values()):
            console.print("[yellow]--resume: using the run's saved config; --preset/--set/flags are ignored[/]")
        cfg = resolve(str(run_dir.config_path))  # the saved config is a complete preset
    else:
        cfg = resolve(presets, overrides or [], flags)
    check_writable(run_dir.path)  # a read-only folder: exit 1 now, not after the model is loaded
    if run_dir.is_finished():
        console.print(f"[green]{run_dir.path} is already finished[/]; adapter in {run_dir.adapter_dir}")
        return
    from egrc_lite.backends import import_training_backend
    from egrc_lite.backends.sources import check_model_source

    check_model_source(cfg)  # a bad model source is one line in about a second, before the heavy imports

    backend, reason = import_training_backend(cfg)  # unsloth before transformers, TRL and PEFT
    main_process = os.environ.get("RANK", "0") == "0"  # under `accelerate launch`, only rank 0 reports
    if main_process:
        console.print(f"[bold]egrc-lite[/] {cfg.description or name} -> {run_dir.path}  (backend: {backend}, {reason})")
        if resume:
            from egrc_lite.train.runner import resume_line

            console.print(resume_line(cfg, run_dir, stage_filter), highlight=False, markup=False, soft_wrap=True)
    from transformers.utils import logging as hf_logging

    from egrc_lite.train import run_schedule

    hf_logging.disable_progress_bar()

    display = LiveTrainingDisplay(console)
    try:
        result = run_schedule(cfg, run_dir, resume=resume,
                              init_adapter=str(init_adapter) if init_adapter else None,
                              stage_filter=stage_filter, progress=display)
    finally:
        display.end_stage()
    if main_process:
        _print_result(run_dir, result)


def _check_run_dir(run_dir: Any, resume: bool) -> None:
    """Refuse an ``--out`` that is a file, a folder that is not a run (new runs: unless new or empty), or,
    with ``--resume``, a folder without a run's config; before anything is loaded or written."""
    from egrc_lite.runs import check_new_run_dir, check_resumable_run_dir

    if resume:
        check_resumable_run_dir(run_dir.path)
    else:
        check_new_run_dir(run_dir.path)


def _print_result(run_dir: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    from egrc_lite.cli.ui import console

    stages = result.get("stages", []) if isinstance(result, dict) else []
    if stages:
        table = Table("stage", "steps", "first len", "last len", "first acc", "last acc", title="stages")
        for s in stages:
            table.add_row(str(s.get("name")), str(s.get("steps")), _fmt(s.get("first_len")), _fmt(s.get("last_len")),
                          _fmt(s.get("first_acc"), pct=True), _fmt(s.get("last_acc"), pct=True))
        console.print(table)
    console.print(f"[green]done[/]: adapter in {run_dir.adapter_dir}, metrics in {run_dir.metrics_path}")


def _fmt(value: Any, pct: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.0%}" if pct else f"{value:.1f}"


ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model: Hugging Face id, local directory, .gguf file, builtin:tiny or builtin:smollm2-135m.")]
BackendOpt = Annotated[Optional[str], typer.Option("--backend", help="auto | hf | unsloth (auto: unsloth on a CUDA "
                                                   "GPU with the gpu extra, else hf).")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/PRESET).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (train.seed).")]


@app.command()
@user_errors
def compress(
    preset: PresetOpt = None,
    overrides: SetOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    seed: SeedOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config, the stage plan and the "
                                          "memory estimate, then exit without loading a model.")] = False,
) -> None:
    """The main job: run the whole schedule (compression, then exploration) and save the final LoRA adapter."""
    flags = {"model.name_or_path": model, "backend": backend, "train.seed": seed}
    if dry_run:
        from egrc_lite.presets import DEFAULT_PRESET, resolve
        from egrc_lite.cli.plan import dry_run as print_dry_run

        print_dry_run(resolve(preset or [DEFAULT_PRESET], overrides or [], flags))
        return
    _run_training(preset, overrides, out, resume, flags)


@app.command()
@user_errors
def train(
    stage: Annotated[str, typer.Option("--stage", help="Which stage(s) of the schedule to run: compress, explore "
                                       "or entangled (comma-separated for several).")],
    preset: PresetOpt = None,
    overrides: SetOpt = None,
    out: OutOpt = None,
    resume: ResumeOpt = False,
    init_adapter: Annotated[Optional[Path], typer.Option("--init-adapter", help="Start from this LoRA adapter "
                                                         "directory (e.g. a finished run's adapter/).")] = None,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Run one stage of the schedule alone (for ablations), optionally from an existing adapter."""
    from egrc_lite.config import ConfigError

    wanted = [s.strip() for s in stage.split(",") if s.strip()]
    if not wanted or any(s not in ("compress", "explore", "entangled") for s in wanted):
        raise ConfigError(f"--stage {stage!r}: valid stages are compress, explore, entangled")
    if init_adapter is not None and not (init_adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--init-adapter {init_adapter}: no adapter_config.json there; "
                          "point it at a LoRA adapter directory")
    _run_training(preset, overrides, out, resume, {"model.name_or_path": model, "backend": backend,
                                                   "train.seed": seed},
                  init_adapter=init_adapter, stage_filter=wanted)


# ---------------------------------------------------------------------------------------- eval / report


def _register_commands() -> None:
    """Commands that live in their own modules (each imports its heavy libraries inside the command)."""
    from egrc_lite.cli.analyze import analyze
    from egrc_lite.cli.evaluate import eval_command, report
    from egrc_lite.cli.info import benchmarks_app, env_command
    from egrc_lite.cli.merge import merge
    from egrc_lite.cli.plan import plan_command
    from egrc_lite.cli.sweep import sweep

    app.command("eval", help=eval_command.__doc__)(user_errors(eval_command))
    app.command(help=report.__doc__)(user_errors(report))
    app.command(help=merge.__doc__)(user_errors(merge))
    app.command("plan", help=plan_command.__doc__)(user_errors(plan_command))
    app.command(help=analyze.__doc__)(user_errors(analyze))
    app.command(help=sweep.__doc__)(sweep)  # has its own user_errors (another interrupt message)
    app.command("env", help=env_command.__doc__)(user_errors(env_command))
    app.add_typer(benchmarks_app, name="benchmarks")


_register_commands()
