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
from pathlib import Path
from typing import TYPE_CHECKING

from egrc_lite.errors import EgrcError

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

BACKENDS = ("auto", "hf", "unsloth")
GPU_EXTRA = "pip install -e '.[gpu]' -c constraints/gpu.txt"
CPU_CHECK_ENV = "EGRC_ALLOW_UNSLOTH_CPU"


class BackendError(EgrcError):
    """A backend or model cannot be used here; its message is one line naming the fix."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return bool(torch.cuda.is_available())


NVIDIA_DRIVER_FILE = "/proc/driver/nvidia/version"
CUDA13_DRIVER = 580
"""Oldest NVIDIA driver branch that runs CUDA 13 builds (torch 2.13.0 and vllm 0.31.0 from PyPI are)."""


def _nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version line ("" when unreadable), ``None`` when there is no NVIDIA GPU."""
    path = Path(NVIDIA_DRIVER_FILE)
    if not path.exists() and not any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    except (OSError, IndexError):
        return ""


def check_cuda_usable() -> None:
    """Raise :class:`BackendError` when an NVIDIA GPU is present but torch cannot use CUDA.

    The usual cause is a driver older than the CUDA the torch wheel was built for; without this
    check ``auto`` would quietly train on the CPU, many times slower.
    """
    if _cuda_available():
        return
    driver = _nvidia_driver()
    if driver is None:
        return
    import torch

    built = torch.version.cuda or "none (a CPU build)"
    raise BackendError(
        f"an NVIDIA GPU is present ({driver or 'driver version unknown'}) but torch {torch.__version__} cannot use "
        f"CUDA (built for CUDA {built}): update the NVIDIA driver to {CUDA13_DRIVER} or newer for CUDA 13 builds, "
        "or install a torch build for your driver's CUDA (https://pytorch.org/get-started/locally/); "
        "to train on the CPU anyway pass --backend hf")


def missing_4bit_vllm_packages(load_in_4bit: bool, fast_inference: bool) -> list[str]:
    """Packages 4-bit weights under vLLM need that are not installed (vLLM >= 0.28 moved bitsandbytes
    to the ``vllm-bnb-plugin`` package; unsloth-zoo 2026.10.9 stops with "pip install vllm-bnb-plugin")."""
    if not (load_in_4bit and fast_inference):
        return []
    return [dist for dist, module in (("bitsandbytes", "bitsandbytes"), ("vllm-bnb-plugin", "vllm_bnb_plugin"))
            if importlib.util.find_spec(module) is None]


def unsloth_load_notices(cfg: EgrcConfig, fast: bool, standby: bool) -> list[str]:
    """What unsloth 2026.10.9 will do differently from the config, said before the (long) load."""
    notes = []
    if fast and cfg.model.revision:
        notes.append(f"model.revision={cfg.model.revision} does not reach vLLM (unsloth_zoo's load_vllm takes no "
                     "revision): rollouts may use the default revision's weights; point model.name_or_path at a "
                     "local snapshot of that revision instead")
    if standby and os.environ.get("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", "0") == "0":
        notes.append(f"vLLM standby: unsloth replaces unsloth.gpu_memory_utilization={cfg.unsloth.gpu_memory_utilization} "
                     "by its own share for the card (about 0.71-0.88 of GPU memory with vllm >= 0.11); set "
                     "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE=1 to keep yours")
    return notes


def gpu_environment() -> dict[str, object]:
    """What a bug report needs about the GPU side: torch's CUDA build and devices, the NVIDIA driver, the
    GPU packages present, and the backend ``auto`` picks here (or why it cannot)."""
    import torch

    cuda = _cuda_available()
    env: dict[str, object] = {
        "torch_cuda_build": torch.version.cuda, "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "nvidia_driver": _nvidia_driver(),
        "gpu_packages": {name: importlib.util.find_spec(module) is not None for name, module in (
            ("unsloth", "unsloth"), ("vllm", "vllm"), ("bitsandbytes", "bitsandbytes"),
            ("vllm-bnb-plugin", "vllm_bnb_plugin"))},
    }
    try:
        env["auto_backend"] = "%s (%s)" % resolve_backend("auto")
    except BackendError as err:
        env["auto_backend"] = f"none: {err}"
    return env


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
    check_cuda_usable()
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
