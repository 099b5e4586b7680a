"""The transformers + PEFT training backend: load a policy (base model + trainable LoRA adapter).

The model comes from any source :func:`egrc_lite.backends.sources.resolve_model_source` knows. Runs on a CPU or a GPU; 4-bit (QLoRA) loading needs bitsandbytes from the ``gpu`` extra.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.backends.base import BackendError
from egrc_lite.backends.sources import load_kwargs, load_tokenizer, resolve_model_source
from egrc_lite.runs import respect_umask

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

def _dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def quantization_config(cfg: EgrcConfig) -> Any:
    """The bitsandbytes 4-bit (nf4, double quant) settings of QLoRA training, or ``None`` without ``load_in_4bit``."""
    if not cfg.model.load_in_4bit:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError("model.load_in_4bit needs bitsandbytes: pip install -e '.[gpu]'")
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if cfg.model.dtype in ("auto", "bfloat16") else _dtype(cfg.model.dtype)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def lora_config(cfg: EgrcConfig) -> Any:
    from peft import LoraConfig

    lora = cfg.lora
    targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type="CAUSAL_LM", bias="none")


def load_policy(cfg: EgrcConfig, *, init_adapter: str | None = None) -> tuple[Any, Any, str]:
    """Load the base model and wrap it with a trainable LoRA adapter.

    Returns ``(peft_model, tokenizer, model_source)``. With ``init_adapter`` (a saved PEFT adapter
    directory, e.g. a previous run's ``adapter/``) that adapter is loaded as the trainable one
    instead of a fresh LoRA.
    """
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    path, source = resolve_model_source(cfg)
    tokenizer = load_tokenizer(path, cfg)
    kwargs: dict[str, Any] = {"dtype": _dtype(cfg.model.dtype), **load_kwargs(cfg, path)}
    quant = quantization_config(cfg)
    if quant is not None:
        kwargs["quantization_config"] = quant
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BackendError(f"could not load model '{cfg.model.name_or_path}': {first}") from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.model.gradient_checkpointing)
    if init_adapter:
        adapter = Path(init_adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise BackendError(f"--init-adapter {adapter}: no adapter_config.json there (expected a PEFT adapter)")
        peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        source += f" + adapter:{adapter.resolve()}"
    else:
        peft_model = get_peft_model(model, lora_config(cfg))
    return peft_model, tokenizer, source


def copy_adapter_weights(model: Any, folder: str | Path, what: str) -> None:
    """Copy the LoRA weights saved in ``folder`` (``adapter_model.safetensors``) into the same-shaped
    adapter of ``model``; ``what`` names the folder in errors (e.g. ``--init-adapter runs/x/adapter``)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = Path(folder) / "adapter_model.safetensors"
    if not weights.is_file():
        raise BackendError(f"{what}: no adapter_model.safetensors there")
    result = set_peft_model_state_dict(model, load_file(str(weights)))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise BackendError(f"{what} does not fit the model: unexpected keys {unexpected[:3]}")


REFERENCE_ADAPTER = "ref"
"""The adapter TRL's ``GRPOTrainer`` adds to a PEFT policy as its KL reference when ``beta > 0``: a copy of
``default`` as the trainer is built (a second one of that name is refused, so each stage first drops it)."""


def drop_reference_adapter(model: Any) -> bool:
    """Delete TRL's KL reference adapter from ``model`` (an earlier stage's); whether it had one."""
    if REFERENCE_ADAPTER not in (getattr(model, "peft_config", None) or {}):
        return False
    model.delete_adapter(REFERENCE_ADAPTER)
    return True


def save_adapter_weights(model: Any, path: Path) -> None:
    """Save the trainable (``default``) adapter's weights to the safetensors file ``path``, atomically."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(model).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    respect_umask(tmp)  # safetensors writes 0600
    os.replace(tmp, path)


def load_reference_weights(model: Any, path: Path) -> bool:
    """Load adapter weights saved by :func:`save_adapter_weights` into TRL's KL reference adapter of ``model``;
    ``False`` when ``model`` has none (TRL then refers to the base model)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if REFERENCE_ADAPTER not in (getattr(model, "peft_config", None) or {}):
        return False
    result = set_peft_model_state_dict(model, load_file(str(path)), adapter_name=REFERENCE_ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise BackendError(f"{path} does not fit the model: unexpected keys {result.unexpected_keys[:3]}")
    return True


def save_adapter(model: Any, tokenizer: Any, target: Path) -> None:
    """Save the PEFT adapter and tokenizer to ``target``, replacing it atomically (temp dir + rename)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    respect_umask(tmp)  # safetensors writes 0600: an adapter another account (a vLLM server) cannot read
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
