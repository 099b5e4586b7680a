"""Finding and loading what a merge needs, and saving what it makes: the adapter folder and its
``adapter_config.json``, the base (from ``base=``, the run's config or the adapter config; always
unquantized), its tokenizer, the device to merge on, the fp32 base, the saved output and its reload."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from egrc_lite.merge.result import DTYPES, MergeError
from egrc_lite.runs import adapter_base_name, find_adapter_dir, run_model_section

logger = logging.getLogger("egrc_lite.merge")  # one logger for the whole merge


def find_base(adapter: Path, base: str | None = None) -> dict[str, Any]:
    """The ``model`` config section of the adapter's base (see :mod:`egrc_lite.merge` for the order); a run's
    section keeps its ``trust_remote_code``, which :func:`~egrc_lite.merge.merge_adapter` replaces with its own
    argument."""
    run_model = run_model_section(adapter)
    if base is not None:
        if run_model and run_model.get("name_or_path") == base:
            return run_model  # keeps builtin:tiny shapes, load_in_4bit, tokenizer of the run
        return {"name_or_path": base}
    if run_model:
        return run_model
    name = adapter_base_name(adapter)
    if not name:
        raise MergeError(f"--adapter {adapter}: no run config.yaml above it and its adapter_config.json names no "
                         "base_model_name_or_path; pass --base MODEL")
    return {"name_or_path": name}


def check_adapter_dir(adapter: Path) -> Path:
    """``adapter`` (or ``adapter/adapter`` for a run directory) when it holds a PEFT adapter."""
    adapter = find_adapter_dir(adapter)
    if not adapter.is_dir():
        raise MergeError(f"--adapter {adapter}: no such directory")
    if not (adapter / "adapter_config.json").is_file():
        raise MergeError(f"--adapter {adapter}: no adapter_config.json there; point it at a LoRA adapter directory "
                         "(e.g. runs/NAME/adapter)")
    read_adapter_config(adapter)
    if not any((adapter / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise MergeError(f"--adapter {adapter}: adapter_config.json but no adapter_model.safetensors; "
                         "the adapter was not saved completely")
    return adapter.resolve()


def read_adapter_config(adapter: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` as a dict; a file that is not a JSON object (not UTF-8, not JSON,
    or a list/string) is a :class:`MergeError` naming it."""
    path = adapter / "adapter_config.json"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise MergeError(f"--adapter {adapter}: {path} is not UTF-8 text; re-save the adapter "
                         "(it is not a valid PEFT adapter_config.json)") from None
    except json.JSONDecodeError as err:
        raise MergeError(f"--adapter {adapter}: {path} is not valid JSON (line {err.lineno}: {err.msg}); "
                         "re-save the adapter or fix the file") from None
    if not isinstance(data, dict):
        raise MergeError(f"--adapter {adapter}: {path} is not a JSON object (found {type(data).__name__}); "
                         "re-save the adapter or fix the file")
    return data


def load_base(path: str, cfg: Any, dtype: Any, device: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MergeError(f"could not load the base model '{cfg.model.name_or_path}': {first}") from None
    except ValueError as err:
        if "trust_remote_code" not in str(err) or cfg.model.trust_remote_code:
            raise
        raise MergeError(f"the base model '{cfg.model.name_or_path}' needs its own Python code to load; pass "
                         "--trust-remote-code if you trust it") from None
    quant = getattr(config, "quantization_config", None)
    if quant:
        method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", "?")
        raise MergeError(f"base '{cfg.model.name_or_path}' is a quantized ({method}) checkpoint; merging needs the "
                         "original 16-bit weights: pass --base with the unquantized model")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model.to(device).eval()


def resolve_base(adapter: Path, base: str | None, dtype: str,
                 trust_remote_code: bool = False) -> tuple[Any, str, str, Any]:
    """``(config, path to load, model source, config the adapter was trained with when that was 4-bit else None)``;
    the base always unquantized, ``trust_remote_code`` the caller's (not the run's)."""
    from egrc_lite.backends import BackendError
    from egrc_lite.backends.sources import resolve_model_source
    from egrc_lite.config import ConfigError, validate_config

    section = {**find_base(adapter, base), "trust_remote_code": trust_remote_code}
    run_model = run_model_section(adapter) or {}
    trained_4bit = bool(section.get("load_in_4bit") or run_model.get("load_in_4bit"))
    trained = {**section, "load_in_4bit": True, "dtype": section.get("dtype", run_model.get("dtype", "float32"))}
    section = {**section, "load_in_4bit": False, "dtype": DTYPES[dtype]}  # the original 16-bit (or 32-bit) weights
    try:
        cfg = validate_config({"model": section})
        trained_cfg = validate_config({"model": trained}) if trained_4bit else None
    except ConfigError as err:
        raise MergeError(str(err)) from None
    try:
        path, source = resolve_model_source(cfg)
    except BackendError as err:
        raise MergeError(f"could not load the base model: {err}") from None
    return cfg, path, source, trained_cfg


def base_tokenizer(path: str, cfg: Any, adapter: Path) -> Any:
    """The base's tokenizer, else the copy saved beside the adapter."""
    from egrc_lite.backends.sources import load_tokenizer

    try:
        return load_tokenizer(path, cfg)
    except OSError:
        if not (adapter / "tokenizer_config.json").is_file():
            raise MergeError(f"no tokenizer found for base '{cfg.model.name_or_path}' or in {adapter}") from None
        return load_tokenizer(str(adapter), cfg)


def work_device(path: str, cfg: Any) -> str:
    """``cuda`` when the fp32 base (4 bytes per parameter, plus a quarter for the rest) fits in free GPU memory."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    with init_empty_weights():
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    free = torch.cuda.mem_get_info()[0]
    if params * 5 < free:
        return "cuda"
    logger.info("the fp32 base (%.1f GB) does not fit the GPU's free memory: merging on the CPU", params * 4 / 1e9)
    return "cpu"


def save_merged(model: Any, tokenizer: Any, folder: Path, dtype: Any) -> None:
    """Safetensors weights, config, generation config, tokenizer and chat template in ``folder``."""
    model = model.to(dtype)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model.hf_quantizer = None
    config.use_cache = True
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(folder))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and not (folder / "chat_template.jinja").is_file():
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")


def reload_saved(folder: Path, device: str) -> Any:
    """The saved model as plain transformers loads it, its weights upcast exactly to fp32 for the check."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
