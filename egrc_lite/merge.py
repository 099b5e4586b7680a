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

The merge runs in fp32 (on the GPU when the fp32 base fits in its free memory, else on the CPU),
in place: one fp32 copy of the model at a time (about 4 bytes per parameter, ~7 GB for R1-1.5B).
It is checked twice on a probe batch (a few chat prompts and one id pattern spread over the vocabulary):

1. Before saving, the arithmetic: the fp32 logits of base + adapter (unmerged, the LoRA branch
   computed separately; taken before merging in place) against the fp32 logits of the merged model.
   It fails when ``max |logits_merged - logits_adapter| > 1e-4 * max(1, max |logits_adapter|)``.
   When the adapter itself moves the logits by no more than that tolerance (e.g. an untrained,
   all-zero LoRA B), the check cannot tell a merge from no merge: that is refused as inconclusive
   (:class:`InconclusiveMergeError`) unless ``allow_inconclusive`` (``--allow-inconclusive``).
2. After saving, the rounding: the same reference against the *saved* merged model, reloaded from the
   output folder by plain ``AutoModelForCausalLM`` (its saved weights upcast exactly to fp32), with
   ``tol`` = 1e-4 (fp32), 1e-2 (fp16), 3e-2 (bf16) by default in the same formula: what rounding the
   merged weights to the saved dtype may cost (measured on SmolLM2-135M with a random rank-16 adapter:
   bf16 0.37 and fp16 0.086 at a logit scale of 39, i.e. about a third of the tolerance). At bf16 that
   is about one logit for R1-sized models, too coarse to see a missing merge: check 1 is what does.

The largest difference the adapter itself makes is reported beside them. For an adapter trained on
a 4-bit (QLoRA) base, the gap between the model it was trained on (the base quantized to 4-bit as
training loads it, + adapter) and the saved merge is reported too, when bitsandbytes and a CUDA GPU
are there; else the output says it was not measured and why. The output is written to a temp folder
and renamed into place only after the checks pass.

>>> relative_tolerance("bf16")
0.03
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from egrc_lite.errors import EgrcError
from egrc_lite.runs import adapter_base_name, find_adapter_dir, run_model_section

logger = logging.getLogger(__name__)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
FP32_TOLERANCE = 1e-4  # relative tolerance of the check of the merge arithmetic (merged vs unmerged, both fp32)
MERGE_RECORD = "egrc_merge.json"
PROBE_PROMPTS = (
    "What is 17 + 25? Please reason step by step, and put your final answer within \\boxed{}.",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "Wait, let me check that again: is 91 a prime number?",
)


class MergeError(EgrcError):
    """The adapter cannot be merged (missing files, unknown base, failed check); one line."""


class InconclusiveMergeError(MergeError):
    """The adapter moves the logits by no more than the fp32 check's tolerance: a merge cannot be told
    from no merge (``--allow-inconclusive`` saves it anyway); one line."""


@dataclass
class MergeResult:
    """What was merged and how the checks went; logit differences are absolute (max over the probe).

    ``max_abs_diff``/``tolerance``: the saved model vs base+adapter (the saved dtype's rounding);
    ``fp32_max_abs_diff``/``fp32_tolerance``: the fp32 merge vs base+adapter (the merge arithmetic);
    ``quant_gap``: 4-bit base + adapter vs the saved model (``None`` with ``quant_gap_note`` saying why).
    """

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
    fp32_max_abs_diff: float = 0.0
    fp32_tolerance: float = 0.0
    quant_gap: float | None = None
    quant_gap_note: str = ""

    @property
    def inconclusive(self) -> bool:
        """The adapter's effect is within the fp32 check's tolerance: no merge would have passed it too."""
        return self.adapter_effect <= self.fp32_tolerance

    @property
    def passed(self) -> bool:
        return self.fp32_max_abs_diff <= self.fp32_tolerance and self.max_abs_diff <= self.tolerance


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


def _max_abs(a: list[Any], b: list[Any]) -> float:
    """The largest absolute difference between two lists of same-shaped tensors."""
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
                  tolerance: float | None = None, device: str | None = None,
                  allow_inconclusive: bool = False) -> MergeResult:
    """Merge ``adapter`` into its base, save to ``out`` and check it (see the module doc).

    Raises :class:`MergeError` (nothing is left at ``out``) when a check fails, and
    :class:`InconclusiveMergeError` when the fp32 check cannot tell a merge from no merge, unless
    ``allow_inconclusive``.
    """
    import torch

    dtype = _dtype_key(dtype)
    adapter = check_adapter_dir(Path(adapter))
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"--out {out} exists and is not empty; choose another folder or remove it")
    cfg, path, source, trained_cfg = _resolve_base(adapter, base, dtype)
    tokenizer = _tokenizer(path, cfg, adapter)
    logger.info("merging %s into %s (%s)%s", adapter, cfg.model.name_or_path, dtype,
                "; adapter trained on 4-bit weights: merging into the original 16-bit ones" if trained_cfg else "")
    device = device or _work_device(path, cfg)
    model = _load_base(path, cfg, torch.float32, device)  # merge and reference in fp32: exact up to the saved dtype
    probe = _probe_batch(tokenizer, model.get_input_embeddings().weight.shape[0])
    merged, reference, plain = _merge_in_memory(model, adapter, cfg.model.name_or_path, probe)
    del model
    scale = max(float(x.abs().max()) for x in reference)
    fp32_diff, fp32_tol, effect = _check_fp32(_logits(merged, probe), reference, plain, scale, out,
                                              allow_inconclusive)

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _save(merged, tokenizer, tmp, getattr(torch, DTYPES[dtype]))
        del merged
        gc.collect()
        reloaded = _reload(tmp, device)
        saved = _logits(reloaded, probe)
        del reloaded
        gc.collect()
        rel = relative_tolerance(dtype) if tolerance is None else tolerance
        result = MergeResult(out=str(out.resolve()), adapter=str(adapter), base=cfg.model.name_or_path,
                             base_source=source, dtype=dtype, max_abs_diff=_max_abs(saved, reference),
                             tolerance=rel * max(1.0, scale), logit_scale=scale, adapter_effect=effect,
                             trained_4bit=trained_cfg is not None, probe_tokens=sum(len(p) for p in probe),
                             fp32_max_abs_diff=fp32_diff, fp32_tolerance=fp32_tol)
        if result.max_abs_diff > result.tolerance:
            raise MergeError(f"merge check failed: max |logit difference| {result.max_abs_diff:.3g} between the "
                             f"merged model and base+adapter exceeds the tolerance {result.tolerance:.3g} ({rel:g} x "
                             f"max(1, {scale:.3g})); nothing was written to {out}")
        if trained_cfg is not None:
            result.quant_gap, result.quant_gap_note = _four_bit_gap(path, trained_cfg, adapter, probe, saved)
        record = {**asdict(result), "inconclusive": result.inconclusive, "out": None}
        (tmp / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _check_fp32(merged: list[Any], reference: list[Any], plain: list[Any], scale: float, out: Path,
                allow_inconclusive: bool) -> tuple[float, float, float]:
    """``(max |merged - reference|, its tolerance, max |reference - plain|)``, all fp32 logits; raises
    :class:`MergeError` when the merge is off, :class:`InconclusiveMergeError` when the adapter's own effect
    is within the tolerance (unless ``allow_inconclusive``)."""
    diff, tol, effect = _max_abs(merged, reference), FP32_TOLERANCE * max(1.0, scale), _max_abs(reference, plain)
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


def _four_bit_gap(path: str, trained_cfg: Any, adapter: Path, probe: list[list[int]],
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
    return _max_abs(quantized, saved), ""


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
    return _logits(peft_model, probe)


def _free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _resolve_base(adapter: Path, base: str | None, dtype: str) -> tuple[Any, str, str, Any]:
    """``(config, path to load, model source, config the adapter was trained with when that was 4-bit else None)``;
    the base always unquantized."""
    from egrc_lite.backends import BackendError
    from egrc_lite.backends.sources import resolve_model_source
    from egrc_lite.config import ConfigError, validate_config

    section = find_base(adapter, base)
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
