"""``egrc-lite analyze``: the entropy-conflict diagnostics of paper s4.3 for a model or for finished runs.

Registered on the main app with ``app.command()(analyze)``. Two modes:

- ``analyze --model M [--adapter DIR] [--data FILE | --benchmark NAME] [--samples K] [--exact-tokens N]``:
  sample rollouts, measure token entropy and gradient magnitude, write ``report.json`` and PNGs, showing
  the progress of each phase (generate, score, exact-grad) as ``evaluate`` does;
- ``analyze --runs RUN [RUN ...]``: compare training runs from their ``metrics.jsonl``.

Heavy libraries are imported inside the command. User mistakes print one line and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


from egrc_lite.config import ANALYSIS_PROBLEMS, AnalysisSettings

ANALYSIS = AnalysisSettings()  # the defaults of the options below


def _fmt(value: Any, digits: int = 3, pct: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if pct else f"{value:.{digits}f}"
    return str(value)


def _corr_cell(corr: dict[str, Any]) -> str:
    return f"r={_fmt(corr.get('pearson'))}  rho={_fmt(corr.get('spearman'))}  n={corr.get('n', 0)}"


def _print_model_report(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from egrc_lite.cli.ui import console

    corr, conn, byc = report["correlation"], report["connectors"], report["entropy_by_correctness"]
    table = Table(title=f"Entropy conflict: {report['model']}", show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value")
    rows = [
        ("responses / tokens", f"{report['responses']} / {report['tokens']}"),
        ("accuracy / mean length", f"{_fmt(report['accuracy'], pct=True)} / {_fmt(report['mean_length'], 1)}"),
        ("mean token entropy", _fmt(report["mean_entropy"])),
        ("entropy vs proxy ||onehot-p||", _corr_cell(corr["entropy_vs_proxy"])),
        ("entropy vs exact LoRA grad norm", _corr_cell(corr["entropy_vs_exact"])),
        ("proxy vs exact (proxy quality)", _corr_cell(corr["proxy_vs_exact"])),
        ("connector share of tokens", _fmt(conn["connector_share"], pct=True)),
        ("entropy: connectors / others", f"{_fmt(conn['entropy_connector'])} / {_fmt(conn['entropy_other'])}"),
        ("connector share, top 20% entropy", _fmt(conn["high_entropy"]["connector_share"], pct=True)),
        ("entropy: correct / incorrect", f"{_fmt(byc['correct']['mean_entropy'])} ({byc['correct']['responses']}) / "
                                         f"{_fmt(byc['incorrect']['mean_entropy'])} ({byc['incorrect']['responses']})"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    high = conn["high_entropy"]
    top = Table(title=f"Most frequent tokens in the top {high['frac']:.0%} by entropy ({high['n_tokens']} tokens)")
    for col in ("token", "count", "share", "mean entropy", "connector"):
        top.add_column(col)
    for r in high["top_tokens"]:
        style = "bold yellow" if r["connector"] else None
        top.add_row(r["token"], str(r["count"]), _fmt(r["share"], pct=True), _fmt(r["mean_entropy"]),
                    "yes" if r["connector"] else "", style=style)
    console.print(top)
    console.print(f"[green]wrote[/] {out / 'report.json'}, responses.jsonl, entropy_vs_gradient.png, "
                  "high_entropy_tokens.png")


def _print_runs_report(report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    from egrc_lite.cli.ui import console

    table = Table(title="Training runs (first -> last step)")
    for col in ("run", "steps", "stages", "length", "accuracy", "entropy", "compress / accuracy samples"):
        table.add_column(col)

    def span(run: dict[str, Any], key: str, digits: int) -> str:
        return f"{_fmt(run['first'].get(key), digits)} -> {_fmt(run['last'].get(key), digits)}"

    for run in report["runs"]:
        counts = "-"
        if run["entangled"]:
            counts = f"{span(run, 'train/adv/compress_samples', 0)} / {span(run, 'train/adv/accuracy_samples', 0)}"
        table.add_row(run["name"], str(run["steps"]), ", ".join(run["stages"]), span(run, "train/len/mean", 1),
                      span(run, "train/acc", 2), span(run, "train/entropy/mean", 3), counts)
    console.print(table)
    console.print(f"[green]wrote[/] {out / 'runs_report.json'}, run_curves.png, objective_counts.png")


def _load_problems(data: str | None, benchmark: str | None, data_dir: Path | None, limit: int) -> tuple[list, str]:
    from egrc_lite.analysis.run import AnalysisError

    if data is not None and benchmark is not None:
        raise AnalysisError("pass either --data or --benchmark, not both")
    if benchmark is not None:
        from egrc_lite.evaluation.tasks import load_benchmark

        bench = load_benchmark(benchmark, data_dir=data_dir, limit=limit)
        return bench.problems, f"{bench.name} ({bench.source})"
    from egrc_lite.config import DataConfig
    from egrc_lite.data import load_problems

    source = data or "builtin:arithmetic"
    return load_problems(DataConfig(source=source, shuffle=False, limit=limit)), source


def _run_answer_rule(adapter: Path | None) -> str | None:
    """The answer rule of the run an adapter came from (``RUN/config.yaml``), if any."""
    if adapter is None or not (adapter.parent / "config.yaml").is_file():
        return None
    import yaml

    try:
        saved = yaml.safe_load((adapter.parent / "config.yaml").read_text(encoding="utf-8")) or {}
        return (saved.get("reward") or {}).get("answer_rule")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def _analyze_model(model: str | None, adapter: Path | None, opts: dict[str, Any]) -> None:
    from egrc_lite.analysis.run import AnalysisSettings, analyze_model
    from egrc_lite.cli.evaluate import eval_model  # model section + adapter dir, reading a run's config when needed
    from egrc_lite.config import DEFAULT_PROMPT_SUFFIX, validate_config
    from egrc_lite.cli.ui import EvalProgressBar, console

    if opts["limit"] < 1:
        from egrc_lite.analysis.run import AnalysisError

        raise AnalysisError(f"--limit must be >= 1, got {opts['limit']}")
    model_section, adapter = eval_model(model, adapter)
    if opts["dtype"] is not None:
        model_section["dtype"] = opts["dtype"]
    cfg = validate_config({"model": model_section})
    rule = opts["answer_rule"] or _run_answer_rule(adapter) or "boxed"
    settings = AnalysisSettings(samples=opts["samples"], exact_tokens=opts["exact_tokens"],
                                max_tokens=opts["max_tokens"], temperature=opts["temperature"], top_p=opts["top_p"],
                                seed=opts["seed"], batch_size=opts["batch_size"], answer_rule=rule,
                                prompt_suffix=DEFAULT_PROMPT_SUFFIX)
    problems, source = _load_problems(opts["data"], opts["benchmark"], opts["data_dir"], opts["limit"])
    connectors = None
    if opts["connectors"] is not None:
        connectors = [w.strip() for w in opts["connectors"].split(",") if w.strip()]
    from egrc_lite.runs import default_out_dir

    out = opts["out"] or default_out_dir("analysis", cfg.model.name_or_path, adapter)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    console.print(f"[bold]egrc-lite analyze[/] {cfg.model.name_or_path}" + (f" + {adapter}" if adapter else "")
                  + f": {len(problems)} problems x {settings.samples} samples from {source} -> {out}")
    bar = EvalProgressBar(console)  # generate, score, exact-grad: done/total, samples/s, ETA
    try:
        report = analyze_model(cfg, problems, out, settings, adapter=adapter, connectors=connectors,
                               data_source=source, progress=bar)
    finally:
        bar.close()
    _print_model_report(report, Path(out))


def analyze(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hugging Face id, local directory, .gguf, "
                     "builtin:tiny or builtin:smollm2-135m.")] = None,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="A LoRA adapter directory (or a run directory "
                       "holding adapter/); its parameters are the ones whose gradient is measured.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Problems: a JSONL file (problem/answer/id fields) "
                    "or builtin:arithmetic (the default).")] = None,
    benchmark: Annotated[Optional[str], typer.Option("--benchmark", "-b", help="Problems from a benchmark: aime24, "
                         "amc23, amc83 (amc), math500, minerva, olympiadbench, gsm8k.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of benchmark JSONL files "
                        "(default $EGRC_DATA_DIR or ../shared/data).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Number of problems (the first ones).")] = ANALYSIS_PROBLEMS,
    samples: Annotated[int, typer.Option("--samples", "-k", help="Rollouts per problem.")] = ANALYSIS.samples,
    exact_tokens: Annotated[int, typer.Option("--exact-tokens", help="Tokens (drawn at random) whose exact LoRA "
                            "gradient norm is computed; one backward pass each.")] = ANALYSIS.exact_tokens,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Generation cap per rollout.")] = ANALYSIS.max_tokens,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature; entropy is measured "
                           "at it.")] = ANALYSIS.temperature,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling.")] = ANALYSIS.top_p,
    seed: Annotated[int, typer.Option("--seed", help="Sampling and token-selection seed.")] = ANALYSIS.seed,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences generated together.")] = ANALYSIS.batch_size,
    answer_rule: Annotated[Optional[str], typer.Option("--answer-rule", help="boxed or last_number (default: the "
                           "run's, else boxed).")] = None,
    connectors: Annotated[Optional[str], typer.Option("--connectors", help="Comma-separated connector words "
                          "replacing the default list (analysis.connectors).")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto | float32 | bfloat16 | float16.")] = None,
    runs: Annotated[Optional[list[Path]], typer.Option("--runs", help="Compare training runs instead: "
                    "--runs RUN [RUN ...] (run directories with metrics.jsonl).")] = None,
    more_runs: Annotated[Optional[list[Path]], typer.Argument(metavar="RUN", help="Further run directories "
                         "after --runs.", show_default=False)] = None,
    smooth: Annotated[int, typer.Option("--smooth", help="Moving-average window of the run curves.")] = 1,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default RUN/analysis for a "
                   "run's adapter, runs/analysis-MODEL, or runs/analysis-compare for --runs).")] = None,
) -> None:
    """Entropy-conflict diagnostics: entropy vs gradient magnitude, connector tokens, and run comparisons."""
    opts = dict(locals())
    from egrc_lite.errors import USER_ERRORS

    try:
        _dispatch(opts)
    except USER_ERRORS as err:
        from rich.markup import escape

        from egrc_lite.cli.ui import err_console

        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _dispatch(opts: dict[str, Any]) -> None:
    from egrc_lite.analysis.run import AnalysisError

    run_dirs = list(opts["runs"] or []) + list(opts["more_runs"] or [])
    if opts["more_runs"] and not opts["runs"]:
        raise AnalysisError(f"unexpected argument {opts['more_runs'][0]}: run directories follow --runs")
    if run_dirs:
        if opts["model"] is not None or opts["adapter"] is not None:
            raise AnalysisError("--runs compares finished runs; it does not take --model or --adapter")
        from egrc_lite.analysis.run import compare_runs

        out = opts["out"] or Path("runs") / "analysis-compare"
        report = compare_runs(run_dirs, out, smooth=opts["smooth"])
        _print_runs_report(report, Path(out))
        return
    if opts["model"] is None and opts["adapter"] is None:
        raise AnalysisError("pass --model M (and optionally --adapter DIR) to analyze a model, or --runs RUN ... "
                            "to compare training runs")
    _analyze_model(opts["model"], opts["adapter"], opts)
