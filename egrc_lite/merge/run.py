"""The merge itself: :func:`merge_adapter` loads the base in fp32, merges the adapter in place, checks it
(:mod:`egrc_lite.merge.check`), saves it to a temp folder and renames that into place once the checks pass."""

from __future__ import annotations

import gc
import json
import logging
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from egrc_lite.merge.check import check_fp32, four_bit_gap, max_abs, probe_batch, probe_logits
from egrc_lite.merge.load import (
    base_tokenizer, check_adapter_dir, load_base, reload_saved, resolve_base, save_merged, work_device,
)
from egrc_lite.merge.result import DTYPES, MERGE_RECORD, MergeError, MergeResult, dtype_key, relative_tolerance
from egrc_lite.runs import respect_umask

logger = logging.getLogger("egrc_lite.merge")  # one logger for the whole merge

def merge_adapter(adapter: str | Path, out: str | Path, *, dtype: str = "bf16", base: str | None = None,
                  tolerance: float | None = None, device: str | None = None,
                  allow_inconclusive: bool = False, trust_remote_code: bool = False) -> MergeResult:
    """Merge ``adapter`` into its base, save to ``out`` and check it (see :mod:`egrc_lite.merge`).

    ``trust_remote_code``: run the base model's own Python code (never taken from the run's config).

    Raises :class:`MergeError` (nothing is left at ``out``) when a check fails, and
    :class:`InconclusiveMergeError` when the fp32 check cannot tell a merge from no merge, unless
    ``allow_inconclusive``.
    """
    import torch

    dtype = dtype_key(dtype)
    adapter = check_adapter_dir(Path(adapter))
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MergeError(f"--out {out} exists and is not empty; choose another folder or remove it")
    cfg, path, source, trained_cfg = resolve_base(adapter, base, dtype, trust_remote_code)
    tokenizer = base_tokenizer(path, cfg, adapter)
    logger.info("merging %s into %s (%s)%s", adapter, cfg.model.name_or_path, dtype,
                "; adapter trained on 4-bit weights: merging into the original 16-bit ones" if trained_cfg else "")
    device = device or work_device(path, cfg)
    model = load_base(path, cfg, torch.float32, device)  # merge and reference in fp32: exact up to the saved dtype
    probe = probe_batch(tokenizer, model.get_input_embeddings().weight.shape[0])
    merged, reference, plain = _merge_in_memory(model, adapter, cfg.model.name_or_path, probe)
    del model
    scale = max(float(x.abs().max()) for x in reference)
    fp32_diff, fp32_tol, effect = check_fp32(probe_logits(merged, probe), reference, plain, scale, out,
                                             allow_inconclusive)

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_merged(merged, tokenizer, tmp, getattr(torch, DTYPES[dtype]))
        del merged
        gc.collect()
        reloaded = reload_saved(tmp, device)
        saved = probe_logits(reloaded, probe)
        del reloaded
        gc.collect()
        rel = relative_tolerance(dtype) if tolerance is None else tolerance
        result = MergeResult(out=str(out.resolve()), adapter=str(adapter), base=cfg.model.name_or_path,
                             base_source=source, dtype=dtype, max_abs_diff=max_abs(saved, reference),
                             tolerance=rel * max(1.0, scale), logit_scale=scale, adapter_effect=effect,
                             trained_4bit=trained_cfg is not None, probe_tokens=sum(len(p) for p in probe),
                             fp32_max_abs_diff=fp32_diff, fp32_tolerance=fp32_tol,
                             trust_remote_code=cfg.model.trust_remote_code)
        if result.max_abs_diff > result.tolerance:
            raise MergeError(f"merge check failed: max |logit difference| {result.max_abs_diff:.3g} between the "
                             f"merged model and base+adapter exceeds the tolerance {result.tolerance:.3g} ({rel:g} x "
                             f"max(1, {scale:.3g})); nothing was written to {out}")
        if trained_cfg is not None:
            result.quant_gap, result.quant_gap_note = four_bit_gap(path, trained_cfg, adapter, probe, saved)
        record = {**asdict(result), "inconclusive": result.inconclusive, "out": None}
        (tmp / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        respect_umask(tmp)  # safetensors writes 0600: a vLLM server under another account could not read it
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


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
    reference = probe_logits(peft_model, probe)
    with peft_model.disable_adapter():
        plain = probe_logits(peft_model, probe)
    return peft_model.merge_and_unload(), reference, plain
