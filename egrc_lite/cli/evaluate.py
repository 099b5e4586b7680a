"""The ``eval`` and ``report`` commands (registered on the app by :mod:`egrc_lite.cli.app`).

Heavy libraries are imported inside the commands; user mistakes raise EgrcError subclasses, which
the app prints as one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Model: Hugging Face id, local directory, .gguf file, builtin:tiny or builtin:smollm2-135m.")]

from egrc_lite.config import EVAL_GENERATOR, PAPER_BENCHMARKS, EvalSettings
from egrc_lite.evaluation.defaults import ARITHMETIC_LIMIT, ARITHMETIC_MAX_TOKENS, ARITHMETIC_N

EVAL = EvalSettings()  # the defaults of the options below


def eval_model(model: str | None, adapter: Path | None, *,
               trust_remote_code: bool = False) -> tuple[dict[str, Any], Path | None]:
    """The model section for ``eval`` / ``analyze`` and the adapter directory, reading a run's config when needed.

    ``model.trust_remote_code`` is ``trust_remote_code`` (the command's ``--trust-remote-code``), never the
    run's: when the run set it and the command did not, a note says so.
    """
    from egrc_lite.config import ConfigError
    from egrc_lite.runs import adapter_base_name, find_adapter_dir, remote_code_note, run_model_section

    if adapter is not None:
        adapter = find_adapter_dir(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise ConfigError(f"--adapter {adapter}: no adapter_config.json there; point it at a LoRA adapter "
                              "directory (e.g. runs/NAME/adapter)")
    run_model = run_model_section(adapter) if adapter is not None else None
    if model is not None and not (run_model and run_model.get("name_or_path") == model):
        return {"name_or_path": model, "trust_remote_code": trust_remote_code}, adapter
    if model is None and adapter is None:
        raise ConfigError("--model is required unless --adapter points at a run's adapter")
    if run_model:  # keeps e.g. builtin:tiny shapes and dtype of the run
        note = remote_code_note(adapter, trust_remote_code)
        if note:
            from rich.markup import escape

            from egrc_lite.cli.ui import console

            console.print(escape(note), highlight=False, soft_wrap=True)
        return {**run_model, "trust_remote_code": trust_remote_code}, adapter
    base = adapter_base_name(adapter)
    if not base:
        raise ConfigError(f"--adapter {adapter}: its adapter_config.json names no base_model_name_or_path; pass --model")
    return {"name_or_path": base, "trust_remote_code": trust_remote_code}, adapter


def eval_command(
    model: ModelOpt = None,
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="A LoRA adapter directory (or a run "
                       "directory holding adapter/); without --model the base model is read from the run's "
                       "config.yaml or the adapter's adapter_config.json.")] = None,
    benchmarks: Annotated[Optional[str], typer.Option("--benchmarks", "-b", help="Comma-separated: aime24, amc23 (40 "
                          "problems), amc83 (83), amc (= amc83, the paper's AMC: 66.3 = 55/83), math500, minerva, "
                          "olympiadbench, gsm8k, arithmetic and arithmetic-wording (built-in, held out: the training "
                          "wordings / other wordings), or paths to .jsonl files (id/problem/answer). Default: "
                          "arithmetic,arithmetic-wording for a run trained on builtin:arithmetic, else "
                          f"{','.join(PAPER_BENCHMARKS)}.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help=f"Samples per problem (ACC = Pass@1 averaged over them). "
                 f"Default {EVAL.n}; {ARITHMETIC_N} on the arithmetic sets.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help=f"Generation cap per response. Default "
                          f"{EVAL.max_tokens}; on the arithmetic sets {ARITHMETIC_MAX_TOKENS}, or the run's longest "
                          "generation when longer.")] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature (0: greedy).")] = EVAL.temperature,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling.")] = EVAL.top_p,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first K problems of each benchmark "
                     f"(default: all; {ARITHMETIC_LIMIT} on the arithmetic sets).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Eval directory (default: RUN/eval for a run's "
                   "adapter, else runs/eval-MODEL). Rerunning into it resumes.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder of benchmark JSONL files (format "
                        "of shared/data); default $EGRC_DATA_DIR, else ../shared/data beside the checkout, else "
                        "the Hugging Face hub.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Generation backend: hf (transformers; "
                         "CPU or GPU) or vllm (GPU, gpu extra; adapters as LoRA requests).")] = EVAL_GENERATOR,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences generated together (hf); vllm gets "
                          "max(512, this) requests per call and batches them itself.")] = EVAL.batch_size,
    base: Annotated[Optional[Path], typer.Option("--base", help="The base model's eval or run directory: adds "
                    "l_acc per benchmark.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = EVAL.seed,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 "
                     "(default float32, or the run's; vllm on a GPU: bfloat16 unless set).")] = None,
    answer_rule: Annotated[Optional[str], typer.Option("--answer-rule", help="boxed (last \\boxed{} after </think>) or "
                           "last_number (default: the run's reward.answer_rule, else boxed).")] = None,
    prompt_suffix: Annotated[Optional[str], typer.Option("--prompt-suffix", help="Appended to each problem "
                             "(default: the run's data.prompt_suffix, else 'Please reason step by step, and put your "
                             "final answer within \\boxed{}.').")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Run the model's own Python code "
                                 "from its repository (never inherited from a run's config).")] = False,
    adapter_scale: Annotated[Optional[str], typer.Option("--adapter-scale", help="Comma-separated LoRA scales, e.g. "
                             "0,0.25,0.5,0.75,1,1.25: the adapter's update times each (0 = the base model exactly), "
                             "each into OUT/scale-S/ (a normal, resumable eval directory); `report OUT` shows them "
                             "as rows NAME@S with the Pareto front.")] = None,
) -> None:
    """Evaluate a model (optionally with a LoRA adapter) on benchmarks: ACC, LEN, truncation, steps; resumable."""
    from egrc_lite.evaluation.tasks import load_benchmark, parse_benchmarks
    from egrc_lite.config import validate_config
    from egrc_lite.evaluation.defaults import choose_eval_settings, run_eval_defaults
    from egrc_lite.evaluation.evaluate import EvalSettings, eval_prompts, evaluate, read_summary
    from egrc_lite.runs import run_config
    from egrc_lite.cli.ui import EvalProgressBar, console

    from egrc_lite.generate.scale import parse_scales, scale_dir, scale_label

    scales = parse_scales(adapter_scale) if adapter_scale is not None else None
    if scales is not None and adapter is None:
        from egrc_lite.config import ConfigError

        raise ConfigError("--adapter-scale needs --adapter (the LoRA adapter whose update is scaled)")
    model_section, adapter = eval_model(model, adapter, trust_remote_code=trust_remote_code)
    if dtype is not None:
        model_section["dtype"] = dtype
    cfg = validate_config({"model": model_section})
    choice = choose_eval_settings(run_eval_defaults(run_config(adapter) if adapter is not None else None),
                                  benchmarks=benchmarks, n=n, max_tokens=max_tokens, limit=limit,
                                  answer_rule=answer_rule, prompt_suffix=prompt_suffix)
    settings = EvalSettings(n=choice.n, max_tokens=choice.max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                            batch_size=batch_size, limit=choice.limit, answer_rule=choice.answer_rule,
                            prompt_suffix=choice.prompt_suffix, system_prompt=choice.system_prompt)
    if base is not None:
        read_summary(base)  # fail before loading anything
    benches = [load_benchmark(name, data_dir=data_dir, limit=choice.limit)
               for name in parse_benchmarks(choice.benchmarks)]
    from egrc_lite.runs import default_out_dir

    out_dir = out or default_out_dir("eval", cfg.model.name_or_path, adapter)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from egrc_lite.generate import get_generator

    if choice.note:
        from rich.markup import escape

        console.print(escape(choice.note), highlight=False, soft_wrap=True)
    runs = [(None, Path(out_dir))] if scales is None else [(s, scale_dir(Path(out_dir), s)) for s in scales]
    for scale, where in runs:
        shown = "" if scale is None else f" @ scale {scale_label(scale)}"
        console.print(f"[bold]egrc-lite eval[/] {cfg.model.name_or_path}" + (f" + {adapter}" if adapter else "")
                      + f"{shown} on {', '.join(b.name for b in benches)} -> {where}")
        scaled = {} if scale is None else {"adapter_scale": scale}
        generator = get_generator(backend, cfg, adapter=adapter, batch_size=batch_size,
                                  prompts=eval_prompts(benches, settings), max_tokens=settings.max_tokens, **scaled)
        bar = EvalProgressBar(console)
        try:
            result = evaluate(generator, benches, where, settings, model=cfg.model.name_or_path,
                              adapter=str(adapter.resolve()) if adapter else None, base=base,
                              extra_settings={"dtype": getattr(generator, "dtype", None) or cfg.model.dtype,
                                              "trust_remote_code": cfg.model.trust_remote_code, **scaled},
                              progress=bar)
        except KeyboardInterrupt:
            bar.close()
            from egrc_lite.cli.ui import err_console

            err_console.print(f"interrupted; finished samples are saved in {where}: rerun the same command to continue")
            raise typer.Exit(130) from None
        finally:
            bar.close()
        del generator  # one model in memory at a time
        reused = sum(result.reused.values())
        console.print(f"[green]done[/]: {sum(result.generated.values())} samples generated, {reused} reused; "
                      f"summary in {where / 'summary.json'}")


def report(
    base: Annotated[Path, typer.Option("--base", help="The base model's run or eval directory.")],
    models: Annotated[Optional[list[Path]], typer.Argument(help="Run directories (RUN/eval/summary.json) or eval "
                      "directories (DIR/summary.json) to compare with the base; an `eval --adapter-scale` directory gives a row "
                      "NAME@S per scale.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | markdown | csv | json")] = "table",
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write PNG plots to this folder: accuracy vs "
                     "length, accuracy vs token budget, per-problem lengths (base vs the first model), training "
                     "curves of runs.")] = None,
    efficiency: Annotated[bool, typer.Option("--efficiency", help="Add the thinking-efficiency table to table and "
                          "markdown: ACC within token budgets and its AUC, tokens to the first correct answer and "
                          "after it (csv and json always carry them).")] = False,
) -> None:
    """Table 1 of the paper for your models: ACC, LEN and L-Acc per benchmark against the base, plus averages;
    with --efficiency also ACC within token budgets and where the first correct answer appears; warns on
    stderr when the evaluations differ in limit, n, max tokens or temperature."""
    from egrc_lite.evaluation.report import build_report, load_model, load_models, missing_efficiency, render, unique_labels
    from egrc_lite.cli.ui import console

    loaded = unique_labels([load_model(base), *(m for path in models or [] for m in load_models(path))])
    if plots is not None:
        from egrc_lite.evaluation.plots import check_plot_dir

        check_plot_dir(plots)  # before any output: a bad --plots is one line, not a table and then an error
    rep = build_report(loaded[0], loaded[1:])
    output = render(rep, fmt, efficiency=efficiency)
    if isinstance(output, str):
        typer.echo(output, nl=False)
    else:
        console.print(output)
    for line in rep.warnings:
        typer.echo(line, err=True)  # stderr: markdown/csv/json on stdout stay clean
    lacking = missing_efficiency(rep) if efficiency else []
    if lacking:
        typer.echo(f"note: no thinking-efficiency metrics for {', '.join(lacking)} (evaluated before they existed): "
                   "rerun the same `egrc-lite eval` command into that --out to add them from the saved records "
                   "(nothing is generated again)", err=True)
    if plots is not None:
        from egrc_lite.evaluation.plots import write_report_plots

        for path in write_report_plots(rep, loaded, plots):
            typer.echo(f"wrote {path}", err=fmt != "table")  # keep stdout clean for markdown/csv/json
