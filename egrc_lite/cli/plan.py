"""``egrc-lite plan`` and ``compress --dry-run``: the estimate of :mod:`egrc_lite.train.plan` as tables."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from egrc_lite.cli.options import PresetOpt, SetOpt


def plan_command(
    preset: PresetOpt = None,
    overrides: SetOpt = None,
    gpu_memory: Annotated[Optional[float], typer.Option(
        "--gpu-memory", help="The card's memory in GiB (e.g. 24 or 80); without it, no verdict and no vLLM share.")] = None,
    backend: Annotated[Optional[str], typer.Option(
        "--backend", help="auto | hf | unsloth (default: the config's; auto plans for unsloth + vLLM on a GPU).")] = None,
) -> None:
    """Will it fit? Estimate a run's peak GPU memory by component without loading weights; exit 1 if it does not fit."""
    from egrc_lite.train.plan import plan
    from egrc_lite.presets import DEFAULT_PRESET
    from egrc_lite.cli.ui import console

    presets = preset or [DEFAULT_PRESET]
    result = plan(presets, overrides or [], gpu_gib=gpu_memory, backend=backend)
    print_estimate(result.estimate, result.shape, title=f"peak GPU memory: {' + '.join(presets)}")
    est = result.estimate
    if est.fits is None:
        return
    if est.fits:
        console.print(f"[green]fits[/]: {est.peak / 2**30:.2f} of {gpu_memory:g} GiB")
        return
    console.print(f"[red]does not fit[/]: {_why(est, gpu_memory)}")
    if result.fixes:
        console.print("Each of these makes it fit (estimated peak):")
        for line, fixed in result.fixes:
            console.print(f"  --set {line}    ({fixed.peak / 2**30:.2f} GiB{_kv_note(fixed)})", highlight=False,
                          markup=False)
    elif result.combined:
        console.print("No single change fits; together these do:")
        console.print("  " + " ".join(f"--set {line}" for line in result.combined), highlight=False, markup=False)
    else:
        console.print("No combination of 4-bit loading, checkpointing, smaller micro-batches, vLLM's share and a "
                      "shorter clip fits this card: use a larger GPU or a smaller model.")
    raise typer.Exit(1)


def _kv_note(est: Any) -> str:
    if est.kv_capacity_tokens is None or est.kv_capacity_tokens >= est.kv_needed_tokens:
        return ""
    return (f"; vLLM's KV cache {est.kv_capacity_tokens:,} of the {est.kv_needed_tokens:,} tokens a step's rollouts "
            "need: they queue, slower")


def _why(est: Any, gpu_gib: float) -> str:
    if est.peak > est.gpu_bytes:
        return f"{est.peak / 2**30:.2f} GiB > {gpu_gib:g} GiB"
    return (f"vLLM's KV cache holds {est.kv_capacity_tokens:,} tokens, less than one sequence "
            f"({est.longest_sequence:,} tokens)")


def print_estimate(est: Any, shape: Any, *, title: str) -> None:
    from rich.table import Table

    from egrc_lite.cli.ui import console

    table = Table("component", "GiB", "how", title=title, caption=f"model shapes: {shape.source}",
                  caption_justify="left")
    for part in est.components:
        table.add_row(part.name, f"{part.bytes / 2**30:.2f}", part.note)
    table.add_row("[bold]peak[/]", f"[bold]{est.peak / 2**30:.2f}[/]",
                  "persistent parts + the larger of training (activations + logits) and sampling")
    console.print(table)
    if est.kv_capacity_tokens is not None:
        if est.kv_capacity_tokens < est.longest_sequence:
            tail = f" (less than one {est.longest_sequence:,}-token sequence: vLLM would refuse to start)"
        else:
            tail = "" if est.kv_capacity_tokens >= est.kv_needed_tokens else " (they queue: slower, no crash)"
        console.print(f"vLLM KV cache: {est.kv_capacity_tokens:,} tokens; a step's rollouts need "
                      f"{est.kv_needed_tokens:,}{tail}", highlight=False)
    for note in est.notes:
        console.print(f"[yellow]note[/]: {note}")


def dry_run(cfg: Any) -> None:
    """``compress --dry-run``: the resolved config, the stage plan and the memory estimate; no model is loaded."""
    import yaml
    from rich.table import Table

    from egrc_lite.train.plan import estimate, model_shape
    from egrc_lite.train.schedule import plan_stages
    from egrc_lite.cli.ui import console

    console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), highlight=False, markup=False,
                  soft_wrap=True)
    table = Table("#", "stage", "mode", "steps", "from step", "L", "max tokens", "T", "top-p", "lr", title="stage plan")
    for p in plan_stages(cfg.schedule):
        s = p.config
        table.add_row(str(p.index), p.name, p.mode, str(p.steps), str(p.start_step), str(s.length_clip),
                      str(s.max_completion_length), f"{s.temperature:g}", f"{s.top_p:g}",
                      f"{s.learning_rate or cfg.train.learning_rate:g}")
    console.print(table)
    shape = model_shape(cfg)
    print_estimate(estimate(cfg, shape), shape, title="peak GPU memory (without vLLM's share)")
    console.print("dry run: nothing loaded or written. For a verdict on a card: egrc-lite plan --gpu-memory GiB "
                  "with the same --preset/--set.", highlight=False)
