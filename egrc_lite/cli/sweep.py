"""``egrc-lite sweep``: run an ablation grid, evaluate every result and the base model once, and compare.

Registered on the main app with ``app.command()(sweep)``. The work is done by
:mod:`egrc_lite.sweep.plan`; this module parses options and prints (the plan, progress, the report).
Heavy libraries are imported inside the command. User mistakes print one line and exit with
status 2; a sweep in which some combination failed exits with status 1 after writing its report.
With ``--isolate`` (the default when a CUDA GPU is visible) every training and evaluation runs in a
child process; its progress calls are replayed on the same live display and progress bars here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from egrc_lite.cli.ui import user_errors
from egrc_lite.config import EVAL_GENERATOR, EvalSettings

EVAL = EvalSettings()  # the defaults of the evaluation options below

MAX_DIFFS_SHOWN = 6


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _slug(preset: str) -> str:
    """``r1-1.5b`` -> ``r1-1.5b``, ``ablations/lc2048`` -> ``ablations-lc2048``, ``my/base.yaml`` -> ``base``."""
    name = Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "sweep"


def _plan_table(plan: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from egrc_lite.sweep.plan import config_diff

    table = Table(title=f"sweep plan: {len(plan.runs)} run(s) on {' + '.join(plan.presets)}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("run", no_wrap=True, min_width=min(40, max(len(c.name) for c in plan.runs)))
    for title in ("grid values", "resolved config vs the base"):
        table.add_column(title, overflow="fold")
    for i, combo in enumerate(plan.runs, 1):
        diff = config_diff(plan.base, combo.config)
        lines = [f"{k}: {_show(old)} -> {_show(new)}" for k, old, new in diff[:MAX_DIFFS_SHOWN]]
        if len(diff) > MAX_DIFFS_SHOWN:
            lines.append(f"... and {len(diff) - MAX_DIFFS_SHOWN} more")
        table.add_row(str(i), escape(combo.name), escape("\n".join(f"{k}={v}" for k, v in combo.assignments)),
                      escape("\n".join(lines) or "(same as the base)"))  # values like [a, b] are not markup
    return table


def _status_table(result: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table("run", "status", "train", "eval", "time", "note", title="combinations")
    style = {"done": "green", "skipped": "cyan", "failed": "bold red"}
    for entry in result.record["runs"]:
        note = f"{entry['phase']}: {entry['reason']}" if entry["status"] == "failed" else (entry.get("reason") or "")
        seconds = entry.get("seconds")
        stage_evals, scale_evals = entry.get("stage_evals") or [], entry.get("scale_evals") or []
        evals = (entry.get("eval") or "-") + (f" (+{len(stage_evals)} stage end)" if stage_evals else "") + (
            f" (+{len(scale_evals)} scales)" if scale_evals else "")
        table.add_row(escape(entry["name"]), f"[{style.get(entry['status'], 'yellow')}]{entry['status']}[/]",
                      entry.get("train") or "-", evals,
                      f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "-", escape(note))
    return table


def _run(opts: dict[str, Any]) -> None:
    from egrc_lite.presets import DEFAULT_PRESET
    from egrc_lite.sweep.plan import SweepError, plan_sweep
    from egrc_lite.cli.ui import console

    if opts["eval_stages"] and not opts["eval"]:
        raise SweepError("--eval-stages needs --eval BENCHMARKS (what to evaluate the stage ends on)")
    scales: tuple[float, ...] = ()
    if opts["adapter_scale"] is not None:
        from egrc_lite.generate.scale import parse_scales

        if not opts["eval"]:
            raise SweepError("--adapter-scale needs --eval BENCHMARKS (what to evaluate the scaled adapters on)")
        scales = tuple(parse_scales(opts["adapter_scale"]))
    presets = opts["preset"] or [DEFAULT_PRESET]
    plan = plan_sweep(presets, opts["grid"] or [], opts["overrides"] or [])
    out = opts["out"] or Path("runs") / f"sweep-{_slug(presets[0])}"
    console.print(_plan_table(plan))
    spec = None
    if opts["eval"]:
        from egrc_lite.sweep.run import default_max_tokens

        if opts["dry_run"]:
            from egrc_lite.evaluation.tasks import parse_benchmarks

            names = ", ".join(parse_benchmarks(opts["eval"]))
            stages = " (and at the end of every stage but the last)" if opts["eval_stages"] else ""
            if scales:
                stages += f" (and at LoRA scales {opts['adapter_scale']})"
            console.print(f"evaluation: base + each run{stages} on {names} (limit {opts['limit'] or 'all'}, "
                          f"n {opts['n']}, max tokens {opts['max_tokens'] or default_max_tokens(plan)}) -> {out / 'eval'}")
        else:
            from egrc_lite.sweep.run import prepare_eval

            spec = prepare_eval(plan, opts["eval"], n=opts["n"], limit=opts["limit"], max_tokens=opts["max_tokens"],
                                batch_size=opts["batch_size"], data_dir=opts["data_dir"], backend=opts["eval_backend"],
                                stages=opts["eval_stages"], scales=scales)
    else:
        console.print("evaluation: none (--eval not given); the report shows training metrics only")
    isolate = _processes(opts["isolate"])
    if opts["dry_run"]:
        console.print(f"dry run: nothing was run; the sweep would write to {out}")
        return
    _execute(plan, out, spec, isolate)


def _processes(isolate: bool | None) -> bool:
    """Resolve ``--isolate/--no-isolate`` (unset: on when a CUDA GPU is visible) and say what it means."""
    from egrc_lite.cli.ui import console
    from egrc_lite.sweep.isolate import want_isolation

    isolated = want_isolation(isolate)
    what = "a child process for each training and each evaluation" if isolated else "everything in this one"
    flag = "--isolate" if isolated else "--no-isolate"
    why = "" if isolate is not None else f", the default: {'a' if isolated else 'no'} CUDA GPU is visible"
    console.print(f"processes: {what} ({flag}{why})", highlight=False)
    return isolated


def _execute(plan: Any, out: Path, spec: Any, isolate: bool) -> None:
    from egrc_lite.backends import import_training_backend

    for cfg in {c.config.backend: c.config for c in plan.runs}.values():  # unsloth before transformers, TRL, PEFT
        import_training_backend(cfg)
    from transformers.utils import logging as hf_logging

    from rich.markup import escape

    from egrc_lite.evaluation.report import to_rich
    from egrc_lite.sweep.run import run_sweep
    from egrc_lite.cli.ui import EvalProgressBar, LiveTrainingDisplay, console

    hf_logging.disable_progress_bar()
    display, bar = LiveTrainingDisplay(console), EvalProgressBar(console)
    try:
        result = run_sweep(plan, out, spec, train_progress=display, eval_progress=bar, isolate=isolate,
                           notify=lambda line: console.print(f"[bold]sweep[/] {escape(line)}", highlight=False))
    finally:
        display.end_stage()
        bar.close()
    if result.report is not None:
        console.print(to_rich(result.report))
    console.print(_status_table(result))
    console.print(f"report: {result.report_path}" + (f", plot: {result.plot_path}" if result.plot_path else "")
                  + f", status: {out / 'sweep.json'}")
    if result.failed:
        from egrc_lite.cli.ui import err_console

        err_console.print(f"[bold red]{len(result.failed)} of {len(plan.runs)} combination(s) failed[/] (see the "
                          "note column and runs/NAME/error.txt); rerun the same command to retry them")
        raise typer.Exit(1)


@user_errors(interrupted="interrupted; finished runs and samples are saved: rerun the same command to continue")
def sweep(
    preset: Annotated[Optional[list[str]], typer.Option("--preset", "-p", help="Base preset (name or .yaml path); "
                      "repeat to compose left to right, e.g. --preset r1-1.5b --preset ablations/auto-switch. "
                      "Default: the embedded CPU demo 'default'.")] = None,
    grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", help="A grid axis: dotted.key=v1,v2,... "
                    "(values read like --set values; stages by name, e.g. "
                    "schedule.stages.compress.length_clip=96,192). Repeat for more axes: every combination is one "
                    "run. The axis preset=none,ablations/lc2048,... applies preset overlays instead.")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config value of every "
                         "run: dotted.key=value (repeatable; grid values win over it).")] = None,
    eval_benchmarks: Annotated[Optional[str], typer.Option("--eval", help="Benchmarks to evaluate the base model "
                               "(once) and every run on: comma-separated names (aime24, amc, math500, minerva, "
                               "olympiadbench, gsm8k, ...) or .jsonl paths. Default: no evaluation; the report "
                               "then shows training metrics only.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first K problems of each benchmark.")] = None,
    n: Annotated[int, typer.Option("--n", help="Samples per problem (ACC = Pass@1 averaged over them).")] = EVAL.n,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Generation cap per response in the "
                          "evaluation (default: the largest max_completion_length of any run's schedule).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences generated together in the "
                          "evaluation.")] = EVAL.batch_size,
    eval_backend: Annotated[str, typer.Option("--eval-backend", help="Generation backend of the evaluation: hf "
                            "(transformers; CPU or GPU) or vllm (GPU, the gpu extra).")] = EVAL_GENERATOR,
    eval_stages: Annotated[bool, typer.Option("--eval-stages", help="Also evaluate each run's adapter at the end "
                           "of every stage but the last (eval/NAME@STAGE; report rows 'NAME (after STAGE)'), like "
                           "the paper's Table 2 rows for exploration-first after exploration.")] = False,
    adapter_scale: Annotated[Optional[str], typer.Option("--adapter-scale", help="Also evaluate each run's adapter "
                             "with its update times each of these comma-separated scales (eval/NAME@scale-S; report "
                             "rows NAME@S, points on the accuracy-length plot), e.g. 0,0.5,1,1.25.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of benchmark JSONL files (default "
                        "$EGRC_DATA_DIR, else ../shared/data beside the checkout, else the Hugging Face hub).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Sweep directory (default runs/sweep-PRESET): "
                   "runs/NAME, eval/base, eval/NAME, sweep.json, report.md, accuracy_vs_length.png. Rerunning "
                   "into it skips finished runs and resumes the rest.")] = None,
    isolate: Annotated[Optional[bool], typer.Option("--isolate/--no-isolate", help="Run each training and each "
                       "evaluation in a child process of its own, so that all its GPU memory (an in-process vLLM "
                       "engine's too) is given back when it ends; a crashed child fails its combination only. "
                       "Default: on when a CUDA GPU is visible (on a CPU a child costs some seconds of "
                       "start-up).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and how each resolved config differs "
                       "from the base; run nothing, write nothing.")] = False,
) -> None:
    """Ablations in one command: train every combination of --grid values, evaluate each and the base model, compare.

    Runs go one after another into OUT/runs/NAME; a failed one is recorded (OUT/sweep.json) and the
    sweep goes on, then exits with status 1 after writing the report. Rerun the same command to
    resume: finished runs are skipped, unfinished and failed ones continue.
    """
    opts = dict(locals())
    opts["eval"] = opts.pop("eval_benchmarks")
    _run(opts)
