"""Merge a LoRA adapter into its base model, and prove the merge: ``egrc-lite merge``.

The output folder holds ``model.safetensors`` (sharded when large), ``config.json``,
``generation_config.json``, the tokenizer and its chat template: plain transformers (or vLLM)
loads it, egrc-lite is not needed. A small ``egrc_merge.json`` records what was merged.

Where the base comes from, first match wins: ``base=``; the run's ``config.yaml`` one level
above the adapter (``runs/NAME/adapter`` -> ``runs/NAME/config.yaml``; keeps e.g. the
``builtin:tiny`` shapes); the adapter's ``adapter_config.json`` (``base_model_name_or_path``).
``builtin:tiny``, ``builtin:smollm2-135m`` and ``.gguf`` sources resolve as in training
(:func:`egrc_lite.backends.sources.resolve_model_source`).

4-bit (QLoRA) adapters: the base is always loaded from its original 16-bit checkpoint, with no
quantization config; a base checkpoint that is itself quantized (``quantization_config`` in
its ``config.json``, e.g. a ``*-bnb-4bit`` repo) is refused, since merging into dequantized
4-bit weights would bake the quantization error into every weight.

The merge runs in fp32 (on the GPU when the fp32 base fits in its free memory, else on the CPU).
The check: on a probe batch (a few chat prompts and one id pattern spread over the vocabulary),
the fp32 logits of base + adapter (unmerged, the LoRA branch computed separately) are compared
with the logits of the *saved* merged model, reloaded from the output folder by plain
``AutoModelForCausalLM`` (its saved weights upcast exactly to fp32). It fails when::

    max |logits_merged - logits_adapter| > tol * max(1, max |logits_adapter|)

with ``tol`` = 1e-4 (fp32), 1e-2 (fp16), 3e-2 (bf16) by default: what rounding the merged
weights to the saved dtype may cost (measured on SmolLM2-135M with a random rank-16 adapter:
bf16 0.37 and fp16 0.086 at a logit scale of 39, i.e. about a third of the tolerance). The
largest difference the adapter itself makes is reported beside it. The output is written to a
temp folder and renamed into place only after the check passes.

>>> relative_tolerance("bf16")
0.03
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from egrc_lite.errors import EgrcError
from egrc_lite.runs import adapter_base_name, find_adapter_dir, run_model_section

logger = logging.getLogger(__name__)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
MERGE_RECORD = "egrc_merge.json"
PROBE_PROMPTS = (
    "What is 17 + 25? Please reason step by step, and put your final answer within \\boxed{}.",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "Wait, let me check that again: is 91 a prime number?",
)


class MergeError(EgrcError):
    """The adapter cannot be merged (missing files, unknown base, failed check); one line."""


@dataclass
class MergeResult:
    out: str
    adapter: str
    base: str
    base_source: str
    dtype: str
    max_abs_diff: float
    tolerance: float
    logit_scale: float
    adapter_effect: float
    trained_4bit: bool
    probe_tokens: int

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def relative_tolerance(dtype: str) -> float:
    """The default relative tolerance of the merge check for an output ``dtype`` (bf16|fp16|fp32)."""
    return TOLERANCES[_dtype_key(dtype)]


def _dtype_key(dtype: str) -> str:
    if dtype not in DTYPES:
        raise MergeError(f"--dtype {dtype!r}: valid: {', '.join(DTYPES)}")
    return dtype


def find_base(adapter: Path, base: str | None = None) -> dict[str, Any]:
    """The ``model`` config section of the adapter's base (see the module doc for the order)."""
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
    if not any((adapter / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise MergeError(f"--adapter {adapter}: adapter_config.json but no adapter_model.safetensors; "
                         "the adapter was not saved completely")
    return adapter.resolve()


def _probe_batch(tokenizer: Any, vocab: int) -> list[list[int]]:
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


def _logits(model: Any, batch: list[list[int]]) -> list[Any]:
    """Float32 CPU logits ``[T, V]`` of each probe sequence (one at a time: no padding effects)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for ids in batch:
            x = torch.tensor([ids], device=device)  # [1, T]
            out.append(model(input_ids=x).logits[0].float().cpu())  # [T, V]
    return out


def _max_abs(a: list[Any], b: list[Any]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _load_base(path: str, cfg: Any, dtype: Any, device: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MergeError(f"could not load the base model '{cfg.model.name_or_path}': {first}") from None
    quant = getattr(config, "quantization_config", None)
    if quant:
        method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", "?")
        raise MergeError(f"base '{cfg.model.name_or_path}' is a quantized ({method}) checkpoint; merging needs the "
                         "original 16-bit weights: pass --base with the unquantized model")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return model.to(device).eval()


def merge_adapter(adapter: str | Path, out: str | Path, *, dtype: str = "bf16", base: str | None = None,
                  tolerance: float | None = None, device: str | None = None) -> MergeResult:
    """Merge ``adapter`` into its base, save to ``out`` and check it (see the module doc).

    Raises :class:`MergeError` (nothing is left at ``out``) when the check fails.
    """
    import torch

    dtype = _dtype_key(dtype)
    adapter = check_adapter_dir(Path(adapter))
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"--out {out} exists and is not empty; choose another folder or remove it")
    cfg, path, source, trained_4bit = _resolve_base(adapter, base, dtype)
    tokenizer = _tokenizer(path, cfg, adapter)
    logger.info("merging %s into %s (%s)%s", adapter, cfg.model.name_or_path, dtype,
                "; adapter trained on 4-bit weights: merging into the original 16-bit ones" if trained_4bit else "")
    device = device or _work_device(path, cfg)
    model = _load_base(path, cfg, torch.float32, device)  # merge and reference in fp32: exact up to the saved dtype
    probe = _probe_batch(tokenizer, model.get_input_embeddings().weight.shape[0])
    merged, reference, plain = _merge_in_memory(model, adapter, cfg.model.name_or_path, probe)
    del model

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _save(merged, tokenizer, tmp, getattr(torch, DTYPES[dtype]))
        del merged
        gc.collect()
        reloaded = _reload(tmp, device)
        diff = _max_abs(_logits(reloaded, probe), reference)
        del reloaded
        scale = max(float(x.abs().max()) for x in reference)
        rel = relative_tolerance(dtype) if tolerance is None else tolerance
        result = MergeResult(out=str(out.resolve()), adapter=str(adapter), base=cfg.model.name_or_path,
                             base_source=source, dtype=dtype, max_abs_diff=diff, tolerance=rel * max(1.0, scale),
                             logit_scale=scale, adapter_effect=_max_abs(reference, plain),
                             trained_4bit=trained_4bit, probe_tokens=sum(len(p) for p in probe))
        if not result.passed:
            raise MergeError(f"merge check failed: max |logit difference| {diff:.3g} between the merged model and "
                             f"base+adapter exceeds the tolerance {result.tolerance:.3g} ({rel:g} x max(1, "
                             f"{scale:.3g})); nothing was written to {out}")
        (tmp / MERGE_RECORD).write_text(json.dumps({**asdict(result), "out": None}, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _resolve_base(adapter: Path, base: str | None, dtype: str) -> tuple[Any, str, str, bool]:
    """``(config, path to load, model source, trained on 4-bit weights)``; the base always unquantized."""
    from egrc_lite.backends import BackendError
    from egrc_lite.backends.sources import resolve_model_source
    from egrc_lite.config import ConfigError, validate_config

    section = find_base(adapter, base)
    run_model = run_model_section(adapter) or {}
    trained_4bit = bool(section.get("load_in_4bit") or run_model.get("load_in_4bit"))
    section = {**section, "load_in_4bit": False, "dtype": DTYPES[dtype]}  # the original 16-bit (or 32-bit) weights
    try:
        cfg = validate_config({"model": section})
        path, source = resolve_model_source(cfg)
    except (ConfigError, BackendError) as err:
        raise MergeError(str(err)) from None
    return cfg, path, source, trained_4bit


def _tokenizer(path: str, cfg: Any, adapter: Path) -> Any:
    """The base's tokenizer, else the copy saved beside the adapter."""
    from egrc_lite.backends.sources import load_tokenizer

    try:
        return load_tokenizer(path, cfg)
    except OSError:
        if not (adapter / "tokenizer_config.json").is_file():
            raise MergeError(f"no tokenizer found for base '{cfg.model.name_or_path}' or in {adapter}") from None
        return load_tokenizer(str(adapter), cfg)


def _merge_in_memory(model: Any, adapter: Path, base: str, probe: list[list[int]]) -> tuple[Any, list[Any], list[Any]]:
    """``(merged model, base+adapter logits, base logits)`` on ``probe``; the LoRA is merged in place."""
    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notes seen through PEFT
            peft_model = PeftModel.from_pretrained(model, str(adapter))
    except (ValueError, KeyError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MergeError(f"adapter {adapter} does not fit base '{base}': {first}") from None
    peft_model.eval()
    reference = _logits(peft_model, probe)
    with peft_model.disable_adapter():
        plain = _logits(peft_model, probe)
    return peft_model.merge_and_unload(), reference, plain


def _work_device(path: str, cfg: Any) -> str:
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


def _save(model: Any, tokenizer: Any, folder: Path, dtype: Any) -> None:
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


def _reload(folder: Path, device: str) -> Any:
    """The saved model as plain transformers loads it, its weights upcast exactly to fp32 for the check."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).to(device).eval()
