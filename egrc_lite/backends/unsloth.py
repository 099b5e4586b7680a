"""The unsloth backend: Unsloth LoRA / 4-bit QLoRA with vLLM sampling in the same process (GPU).

Importing this module imports unsloth, which patches TRL, transformers and PEFT at import time;
so it must come before them, and only on this path. :func:`egrc_lite.train.run_schedule`
imports it first on the unsloth backend (through :func:`egrc_lite.backends.load_backend`) (and sets ``UNSLOTH_VLLM_STANDBY=1`` beforehand when
``unsloth.vllm_standby`` is on, since unsloth reads it at import). Nothing else in egrc-lite
imports it.

Training uses the same GRPOTrainer subclass as the hf backend, built on the ``GRPOTrainer`` that
unsloth patched (:func:`egrc_lite.train.trainer.make_trainer_class`); its ``compute_loss`` is
unsloth's, untouched.

Memory knobs (config section ``unsloth``; see the README "GPU" section):

``gpu_memory_utilization``
    the share of GPU memory vLLM takes for weights + KV cache (the rest is training's).
``max_seq_length``
    prompt + completion budget of vLLM and unsloth (default: ``data.max_prompt_length`` plus the
    longest stage's ``max_completion_length``).
``max_lora_rank``
    the largest LoRA rank vLLM reserves room for (default: ``lora.r``).
``vllm_standby``
    unsloth's standby mode: vLLM's weights and KV cache are released while training steps run.
``model.load_in_4bit``
    QLoRA: base weights in 4-bit (bitsandbytes), quantized from the original 16-bit checkpoint
    (``use_exact_model_name``, so the adapter records that checkpoint and ``egrc-lite merge``
    merges into it).

CPU check: with ``EGRC_ALLOW_UNSLOTH_CPU=1`` (see :mod:`egrc_lite.backends`) this code runs on a
CPU, where unsloth falls back to stock transformers/PEFT/TRL; vLLM (``fast_inference``) is then
off and TRL samples with transformers ``generate``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.backends.base import GPU_EXTRA, BackendError, missing_4bit_vllm_packages, unsloth_load_notices

if importlib.util.find_spec("unsloth") is None:
    raise BackendError(f"backend 'unsloth' needs unsloth: {GPU_EXTRA}")

import unsloth  # noqa: E402,F401  -- first: it patches trl, transformers and peft
from unsloth import FastLanguageModel  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig, StageConfig

logger = logging.getLogger(__name__)

STANDBY_ENV = "UNSLOTH_VLLM_STANDBY"


def fast_inference_available() -> bool:
    """vLLM in the same process needs a CUDA GPU and vllm (off on the CPU check)."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None


def default_max_seq_length(cfg: EgrcConfig) -> int:
    """Prompt budget plus the longest completion of any stage."""
    longest = max(int(s.max_completion_length or s.length_clip) for s in cfg.schedule.stages)
    return cfg.data.max_prompt_length + longest


def _read_adapter_config(init_adapter: str | None) -> dict[str, Any] | None:
    if not init_adapter:
        return None
    path = Path(init_adapter).expanduser() / "adapter_config.json"
    if not path.is_file():
        raise BackendError(f"--init-adapter {path.parent}: no adapter_config.json there (expected a PEFT adapter)")
    return json.loads(path.read_text(encoding="utf-8"))


def _lora_kwargs(cfg: EgrcConfig, adapter_cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``get_peft_model`` arguments: the adapter's own shape when resuming from one, else ``cfg.lora``."""
    if adapter_cfg is not None:
        targets = adapter_cfg.get("target_modules")
        return {"r": int(adapter_cfg["r"]), "lora_alpha": int(adapter_cfg["lora_alpha"]),
                "lora_dropout": float(adapter_cfg.get("lora_dropout") or 0.0),
                "target_modules": sorted(targets) if isinstance(targets, (list, set)) else targets}
    lora = cfg.lora
    targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
    return {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "target_modules": targets}


def load_policy(cfg: EgrcConfig, *, init_adapter: str | None = None) -> tuple[Any, Any, str]:
    """Load the base with ``FastLanguageModel`` (vLLM in-process on a GPU) and add a LoRA adapter.

    Returns ``(peft_model, tokenizer, model_source)`` like :func:`egrc_lite.backends.hf.load_policy`;
    with ``init_adapter`` that adapter's weights (and shape) are the trainable starting point.
    """
    import torch

    from egrc_lite.backends.sources import load_kwargs, resolve_model_source

    path, source = resolve_model_source(cfg)
    fast = fast_inference_available()
    standby = cfg.unsloth.vllm_standby and fast
    if standby and os.environ.get(STANDBY_ENV) != "1":
        raise BackendError(f"unsloth.vllm_standby needs {STANDBY_ENV}=1 before unsloth is imported "
                           "(egrc-lite's training sets it; set it yourself when calling load_policy directly)")
    for line in unsloth_load_notices(cfg, fast, standby):
        logger.warning(line)
    missing = missing_4bit_vllm_packages(cfg.model.load_in_4bit, fast)
    if missing:
        raise BackendError(f"model.load_in_4bit with vLLM needs {' and '.join(missing)}: {GPU_EXTRA}")
    adapter_cfg = _read_adapter_config(init_adapter)
    lora = _lora_kwargs(cfg, adapter_cfg)
    checkpointing = "unsloth" if cfg.model.gradient_checkpointing else False
    kwargs: dict[str, Any] = {
        "model_name": path,
        "max_seq_length": cfg.unsloth.max_seq_length or default_max_seq_length(cfg),
        "dtype": None if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype),
        "load_in_4bit": cfg.model.load_in_4bit,
        "full_finetuning": False,
        "use_gradient_checkpointing": checkpointing,
        "use_exact_model_name": True,  # quantize the named 16-bit checkpoint, not a pre-quantized mirror
        "fast_inference": fast,
        "max_lora_rank": max(cfg.unsloth.max_lora_rank or lora["r"], lora["r"]),
        "gpu_memory_utilization": cfg.unsloth.gpu_memory_utilization,
        "random_state": cfg.train.seed,
        **load_kwargs(cfg, path),
    }
    if fast:
        kwargs["unsloth_vllm_standby"] = standby
    logger.info("unsloth: loading %s (4-bit %s, vLLM %s%s)", path, cfg.model.load_in_4bit,
                "in-process" if fast else "off", ", standby" if standby else "")
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BackendError(f"could not load model '{cfg.model.name_or_path}': {first}") from None
    if cfg.model.tokenizer:
        from egrc_lite.backends.sources import load_tokenizer

        tokenizer = load_tokenizer(path, cfg)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    peft_model = FastLanguageModel.get_peft_model(model, bias="none", use_gradient_checkpointing=checkpointing,
                                                  random_state=cfg.train.seed, **lora)
    if init_adapter:
        from egrc_lite.backends.hf import copy_adapter_weights

        adapter = Path(init_adapter).expanduser()
        copy_adapter_weights(peft_model, adapter, f"--init-adapter {adapter}")
        source += f" + adapter:{adapter.resolve()}"
    return peft_model, tokenizer, f"{source} [unsloth{', 4-bit' if cfg.model.load_in_4bit else ''}]"


def vllm_engine(model: Any) -> Any:
    """The vLLM engine unsloth attached to the loaded model (``model.vllm_engine``), or ``None``.

    Unsloth can turn ``fast_inference`` off on its own (old GPUs, some devices); then there is none,
    and asking TRL for vLLM would make it build a second engine from ``model.name_or_path``.
    """
    return getattr(model, "vllm_engine", None)


def generation(model: Any) -> str:
    """How rollouts are sampled for ``model``: unsloth's in-process vLLM engine, or transformers."""
    return "vLLM in-process (unsloth fast_inference)" if vllm_engine(model) is not None else \
        "unsloth / transformers generate (no vLLM engine on the model)"


def grpo_config_overrides(cfg: EgrcConfig, stage: StageConfig, model: Any) -> dict[str, Any]:
    """``GRPOConfig`` settings of this backend: vLLM colocated in this process when the loaded model carries
    unsloth's engine, else none (TRL then samples with ``generate``)."""
    if vllm_engine(model) is None:
        return {}
    out: dict[str, Any] = {"use_vllm": True, "vllm_mode": "colocate",
                           "vllm_gpu_memory_utilization": cfg.unsloth.gpu_memory_utilization}
    if cfg.unsloth.vllm_standby:
        out["vllm_enable_sleep_mode"] = True
    return out
