"""The logit checks of a merge: the probe batch, its fp32 logits (exactly: no TF32), their largest
difference, the fp32 check of the merge arithmetic, and the gap to the 4-bit model a QLoRA adapter was
trained on (measured when bitsandbytes and a CUDA GPU are there)."""

from __future__ import annotations

import gc
import importlib.util
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from egrc_lite.merge.result import FP32_TOLERANCE, InconclusiveMergeError, MergeError

PROBE_PROMPTS = (
    "What is 17 + 25? Please reason step by step, and put your final answer within \\boxed{}.",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "Wait, let me check that again: is 91 a prime number?",
)


def probe_batch(tokenizer: Any, vocab: int) -> list[list[int]]:
    """Token ids of the probe prompts (chat template when there is one), plus one fixed id pattern."""
    batch = []
    for text in PROBE_PROMPTS:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                 tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        batch.append([i for i in ids if i < vocab][:256])
    batch.append([(7919 * k + 13) % vocab for k in range(48)])  # spread over the whole vocabulary
    return [ids for ids in batch if ids]


def probe_logits(model: Any, batch: list[list[int]]) -> list[Any]:
    """Float32 CPU logits ``[T, V]`` of each probe sequence (one at a time: no padding effects)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode(), _exact_fp32():
        for ids in batch:
            x = torch.tensor([ids], device=device)  # [1, T]
            out.append(model(input_ids=x).logits[0].float().cpu())  # [T, V]
    return out


@contextmanager
def _exact_fp32() -> Iterator[None]:
    """Full fp32 matmuls (no TF32) while it lasts: the fp32 check compares at 1e-4, TF32 rounds at ~1e-3."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def max_abs(a: list[Any], b: list[Any]) -> float:
    """The largest absolute difference between two lists of same-shaped tensors."""
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def check_fp32(merged: list[Any], reference: list[Any], plain: list[Any], scale: float, out: Path,
               allow_inconclusive: bool) -> tuple[float, float, float]:
    """``(max |merged - reference|, its tolerance, max |reference - plain|)``, all fp32 logits; raises
    :class:`MergeError` when the merge is off, :class:`InconclusiveMergeError` when the adapter's own effect
    is within the tolerance (unless ``allow_inconclusive``)."""
    diff, tol, effect = max_abs(merged, reference), FP32_TOLERANCE * max(1.0, scale), max_abs(reference, plain)
    if diff > tol:
        raise MergeError(f"merge check failed: max |logit difference| {diff:.3g} between the fp32 merged model and "
                         f"base+adapter (fp32) exceeds the tolerance {tol:.3g} ({FP32_TOLERANCE:g} x max(1, "
                         f"{scale:.3g})); nothing was written to {out}")
    if effect <= tol and not allow_inconclusive:
        raise InconclusiveMergeError(
            f"merge check inconclusive: the adapter moves the logits by at most {effect:.3g}, within the check's "
            f"tolerance {tol:.3g} ({FP32_TOLERANCE:g} x max(1, {scale:.3g})), so a merge cannot be told from no "
            f"merge (an untrained adapter?); nothing was written to {out}; pass --allow-inconclusive to save it anyway")
    return diff, tol, effect


def four_bit_gap(path: str, trained_cfg: Any, adapter: Path, probe: list[list[int]],
                 saved: list[Any]) -> tuple[float | None, str]:
    """``(max |logits_4bit - logits_saved|, "")`` for the 4-bit base + adapter the adapter was trained on,
    or ``(None, why it was not measured)``."""
    reason = _four_bit_unavailable()
    if reason:
        return None, reason
    try:
        quantized = _four_bit_logits(path, trained_cfg, adapter, probe)
    except (RuntimeError, ValueError, OSError, ImportError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"loading the 4-bit model failed: {first}"
    finally:
        _free_cuda()
    return max_abs(quantized, saved), ""


def _four_bit_unavailable() -> str:
    """Why the 4-bit (bitsandbytes) model cannot be loaded here, or ``""`` when it can."""
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("no CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes is not installed: pip install -e '.[gpu]'")
    return "; ".join(missing)


def _four_bit_logits(path: str, trained_cfg: Any, adapter: Path, probe: list[list[int]]) -> list[Any]:
    """Probe logits of the model the adapter was trained on: the 16-bit base quantized to 4-bit on load
    (nf4, double quantization, the run's compute dtype: the hf backend's settings) + the adapter, on the GPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from egrc_lite.backends.hf import quantization_config
    from egrc_lite.backends.sources import load_kwargs

    name = trained_cfg.model.dtype
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype="auto" if name == "auto" else getattr(torch, name), device_map={"": torch.cuda.current_device()},
        quantization_config=quantization_config(trained_cfg), **load_kwargs(trained_cfg, path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return probe_logits(peft_model, probe)


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
