"""Choosing a training backend: ``hf`` (transformers + PEFT, CPU or GPU) or ``unsloth`` (GPU, in-process vLLM).

Choosing one imports nothing heavy: availability is checked with ``importlib.util.find_spec``
(unsloth must never be imported by accident, since it patches TRL and transformers at import).

CPU check of the unsloth code path: with ``EGRC_ALLOW_UNSLOTH_CPU=1`` (and unsloth installed)
``resolve_backend("unsloth")`` accepts a machine without a GPU; unsloth then falls back to stock
transformers/PEFT/TRL and vLLM stays off. Only ``benchmarks/gpu_path_cpu_check.sh`` uses it.

>>> resolve_backend("hf")
('hf', 'asked for hf')
"""

from __future__ import annotations

import importlib.util
import os

from egrc_lite.errors import EgrcError

BACKENDS = ("auto", "hf", "unsloth")
GPU_EXTRA = "pip install -e '.[gpu]' -c constraints/gpu.txt"
CPU_CHECK_ENV = "EGRC_ALLOW_UNSLOTH_CPU"


class BackendError(EgrcError):
    """A backend or model cannot be used here; its message is one line naming the fix."""


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return bool(torch.cuda.is_available())


def _missing_gpu_packages() -> list[str]:
    return [name for name in ("unsloth", "vllm") if importlib.util.find_spec(name) is None]


def resolve_backend(name: str) -> tuple[str, str]:
    """Pick the backend for ``name`` ("auto", "hf" or "unsloth"): ``(backend, reason in words)``.

    ``auto`` picks unsloth only when a CUDA GPU is visible and unsloth and vllm are installed,
    else hf. Asking for unsloth where it cannot run raises :class:`BackendError`.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'; valid: {', '.join(BACKENDS)}")
    if name == "hf":
        return "hf", "asked for hf"
    missing = _missing_gpu_packages()
    cuda = _cuda_available()
    if name == "unsloth":
        if not cuda and os.environ.get(CPU_CHECK_ENV) == "1":
            if "unsloth" in missing:
                raise BackendError(f"backend 'unsloth' needs unsloth: {GPU_EXTRA}")
            return "unsloth", f"asked for unsloth; no GPU, {CPU_CHECK_ENV}=1: unsloth's CPU fallback, no vLLM"
        if missing:
            raise BackendError(f"backend 'unsloth' needs {' and '.join(missing)}: {GPU_EXTRA}")
        if not cuda:
            raise BackendError("backend 'unsloth' needs a CUDA GPU and none is visible (use --backend hf on a CPU)")
        return "unsloth", "asked for unsloth; a CUDA GPU and unsloth+vllm are available"
    if not cuda:
        return "hf", "auto: no CUDA GPU visible, so transformers+PEFT (hf)"
    if missing:
        return "hf", f"auto: a GPU is visible but {' and '.join(missing)} is not installed ({GPU_EXTRA}), so hf"
    return "unsloth", "auto: a CUDA GPU and unsloth+vllm are available"
