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
                         "(default 3e-2 bf16, 1e-2 fp16, 1e-4 fp32; times max(1, max |logit|)).")] = None,
) -> None:
    """Merge a LoRA adapter into its (16-bit) base model and save it for plain transformers / vLLM, checked on logits."""
    from transformers.utils import logging as hf_logging

    from egrc_lite.merge import merge_adapter
    from egrc_lite.cli.ui import console

    hf_logging.disable_progress_bar()
    console.print(f"[bold]egrc-lite merge[/] {adapter} -> {out} ({dtype})")
    result = merge_adapter(adapter, out, dtype=dtype, base=base, tolerance=tolerance)
    if result.trained_4bit:
        console.print(f"adapter trained on 4-bit (QLoRA) base weights: merged into the original 16-bit weights of "
                      f"{result.base}, not into dequantized 4-bit ones")
    console.print(f"merge check on {result.probe_tokens} probe tokens: max |logit difference| {result.max_abs_diff:.3g} "
                  f"<= tolerance {result.tolerance:.3g} (the adapter itself moves logits by up to "
                  f"{result.adapter_effect:.3g})")
    console.print(f"[green]done[/]: merged model ({result.dtype}, base {result.base}) in {result.out}")
