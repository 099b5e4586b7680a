"""One adapter, a whole length-accuracy curve: evaluate a LoRA adapter with its update scaled by ``s``.

A LoRA layer computes ``W x + s * (alpha / r) * B A x``; ``s = 0`` is the base model exactly (``W + 0``), ``s = 1``
the adapter as trained, values between interpolate and above 1 extrapolate the update. The hf generator scales
PEFT's per-layer ``scaling`` before merging (:func:`scale_lora_layers`); vLLM serves a scaled copy of the adapter
(:func:`write_scaled_adapter`: every ``lora_B`` weight times ``s``) as its LoRA request.

>>> parse_scales("0, 0.25,1,1.25")
[0.0, 0.25, 1.0, 1.25]
>>> [scale_label(s) for s in (0.0, 0.25, 1.0, 1.25)]
['0', '0.25', '1', '1.25']
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from egrc_lite.generate.base import GenerationError

MAX_SCALE = 10.0
SCALE_DIR_PREFIX = "scale-"


def parse_scales(text: str) -> list[float]:
    """``--adapter-scale`` as a list of distinct scales in the order given; a bad list is a one-line error."""
    values: list[float] = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise GenerationError(f"--adapter-scale {text!r}: {item!r} is not a number; give comma-separated scales "
                                  "such as 0,0.5,1") from None
        if not math.isfinite(value) or not 0.0 <= value <= MAX_SCALE:
            raise GenerationError(f"--adapter-scale {text!r}: {item} is outside 0..{MAX_SCALE:g}; 0 is the base model, "
                                  "1 the adapter as trained")
        if value not in values:
            values.append(value)
    return values


def scale_label(scale: float) -> str:
    """The scale as written in directory names and report rows (``NAME@0.25``)."""
    return f"{scale:g}"


def scale_dir(out: Path, scale: float) -> Path:
    return out / f"{SCALE_DIR_PREFIX}{scale_label(scale)}"


def scale_lora_layers(peft_model: Any, scale: float) -> int:
    """Multiply every LoRA layer's scaling (``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA) by ``scale``;
    returns how many layers were scaled (0 means the model holds no LoRA layer: an error for the caller)."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for name in module.scaling:
                module.scaling[name] *= scale
            count += 1
    return count


def write_scaled_adapter(adapter: Path, scale: float, dest: Path) -> Path:
    """A copy of the PEFT adapter folder ``adapter`` in ``dest`` with every ``lora_B`` weight times ``scale``
    (safetensors, or ``adapter_model.bin``); the config and other files are copied unchanged."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    weights = adapter / "adapter_model.safetensors"
    legacy = adapter / "adapter_model.bin"
    if not (adapter / "adapter_config.json").is_file() or not (weights.is_file() or legacy.is_file()):
        raise GenerationError(f"--adapter {adapter}: expected adapter_config.json and adapter_model.safetensors there")
    for item in adapter.iterdir():
        if item.is_file() and item.name not in (weights.name, legacy.name):
            shutil.copy2(item, dest / item.name)
    if weights.is_file():
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(weights))
    else:
        tensors = torch.load(legacy, map_location="cpu", weights_only=True)
    scaled = {k: (v * scale).to(v.dtype) if ".lora_B." in k else v for k, v in tensors.items()}
    if not any(".lora_B." in k for k in tensors):
        raise GenerationError(f"--adapter {adapter}: no lora_B weights in it; --adapter-scale needs a LoRA adapter")
    if weights.is_file():
        save_file({k: v.contiguous() for k, v in scaled.items()}, str(dest / weights.name),
                  metadata={"format": "pt"})
    else:
        torch.save(scaled, dest / legacy.name)
    note = {"source": str(adapter), "scale": scale}
    (dest / "egrc_scale.json").write_text(json.dumps(note) + "\n", encoding="utf-8")
    return dest
