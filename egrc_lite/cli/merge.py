"""The ``merge`` command (registered on the app by :mod:`egrc_lite.cli.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def merge(
    adapter: Annotated[Path, typer.Option("--adapter", help="The LoRA adapter directory (or a run directory holding "
                       "adapter/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the merged model (new or empty).")],
    dtype: Annotated[str, typer.Option("--dtype", help="bf16 | fp16 | fp32: the saved weights' dtype.")] = "bf16",
    base: Annotated[Optional[str], typer.Option("--base", help="The base model (default: the run's config.yaml one "
                    "level up, else the adapter's base_model_name_or_path).")] = None,
    tolerance: Annotated[Optional[float], typer.Option("--tolerance", help="Relative tolerance of the logit check "
                         "of the saved model (default 3e-2 bf16, 1e-2 fp16, 1e-4 fp32; times max(1, max |logit|)); "
                         "the fp32 check of the merge itself is always at 1e-4.")] = None,
    allow_inconclusive: Annotated[bool, typer.Option("--allow-inconclusive", help="Save the merge even when the "
                                  "adapter moves the logits too little for the check to tell a merge from no merge "
                                  "(e.g. an untrained adapter).")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Run the base model's own Python "
                                 "code from its repository (never inherited from the run's config.yaml).")] = False,
) -> None:
    """Merge a LoRA adapter into its (16-bit) base model and save it for plain transformers / vLLM, checked on logits."""
    from transformers.utils import logging as hf_logging

    from rich.markup import escape

    from egrc_lite.merge import merge_adapter
    from egrc_lite.runs import find_adapter_dir, remote_code_note
    from egrc_lite.cli.ui import console

    hf_logging.disable_progress_bar()
    console.print(f"[bold]egrc-lite merge[/] {adapter} -> {out} ({dtype})")
    note = remote_code_note(find_adapter_dir(adapter), trust_remote_code)
    if note:
        console.print(escape(note), highlight=False, soft_wrap=True)
    result = merge_adapter(adapter, out, dtype=dtype, base=base, tolerance=tolerance,
                           allow_inconclusive=allow_inconclusive, trust_remote_code=trust_remote_code)
    if result.trained_4bit:
        console.print(f"adapter trained on 4-bit (QLoRA) base weights: merged into the original 16-bit weights of "
                      f"{result.base}, not into dequantized 4-bit ones")
    console.print(f"fp32 merge check: max |logit difference| {result.fp32_max_abs_diff:.3g} <= tolerance "
                  f"{result.fp32_tolerance:.3g} (merged vs unmerged base+adapter, both in fp32)")
    if result.inconclusive:
        console.print(f"[yellow]inconclusive[/]: the adapter moves logits by at most {result.adapter_effect:.3g}, "
                      "within the fp32 check's tolerance: it cannot tell this merge from no merge "
                      "(saved anyway: --allow-inconclusive)")
    console.print(f"merge check on {result.probe_tokens} probe tokens: max |logit difference| {result.max_abs_diff:.3g} "
                  f"<= tolerance {result.tolerance:.3g} (the adapter itself moves logits by up to "
                  f"{result.adapter_effect:.3g})")
    if result.trained_4bit:
        console.print(_four_bit_gap_line(result.quant_gap, result.quant_gap_note, result.probe_tokens, result.dtype))
    console.print(f"[green]done[/]: merged model ({result.dtype}, base {result.base}, trust_remote_code "
                  f"{str(result.trust_remote_code).lower()}) in {result.out}")


def _four_bit_gap_line(gap: float | None, note: str, tokens: int, dtype: str) -> str:
    """The output line (rich markup) on how far the saved merge is from the 4-bit model the adapter was trained on."""
    from rich.markup import escape

    if gap is None:
        return f"gap to the 4-bit model the adapter was trained on: not measured ({escape(note)})"
    return (f"gap to the 4-bit model the adapter was trained on: max |logit difference| {gap:.3g} on {tokens} probe "
            f"tokens (4-bit base + adapter vs the saved {dtype} merge)")
