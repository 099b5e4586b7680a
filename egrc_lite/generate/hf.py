"""The ``hf`` generator: batched sampling with transformers ``generate``, on a CPU or a GPU."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.config import GENERATION_BATCH
from egrc_lite.generate.base import (
    GenerationError, Messages, Sample, check_prompts_fit, encode_prompt, load_model_tokenizer, think_close_ids,
    think_token_count,
)

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)


def _first_stop(ids: Sequence[int], stop: set[int]) -> int | None:
    for i, tok in enumerate(ids):
        if tok in stop:
            return i
    return None


class HFGenerator:
    """Batched sampling with transformers ``generate`` (left padding), on a CPU or a GPU.

    Prompts are expanded ``n`` times, sorted by length to cut padding, and generated in batches
    of ``batch_size`` sequences; a row that ends leaves its batch (:mod:`egrc_lite.generate.pruned`).
    Sampling is seeded per call (the global RNG state is restored).
    ``on_batch``, when given, hears the samples of each batch as it finishes (for progress).
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = GENERATION_BATCH, model_source: str = "",
                 on_batch: Callable[[list[Sample]], None] | None = None) -> None:
        if batch_size < 1:
            raise GenerationError(f"--batch-size must be >= 1, got {batch_size}")
        self.on_batch = on_batch
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model_source = model_source
        self.device = next(model.parameters()).device
        self.stop_ids = self._stop_ids()
        self.think_close_ids = think_close_ids(tokenizer)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._warned_caps: set[int] = set()

    def _stop_ids(self) -> set[int]:
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        if not ids:
            raise GenerationError("the tokenizer has no end-of-sequence token; set one in its tokenizer_config.json")
        return ids

    def encode_prompt(self, messages: Messages) -> list[int]:
        return encode_prompt(self.tokenizer, messages)

    def generate(self, prompts: Sequence[Messages], *, n: int, max_tokens: int, temperature: float,
                 top_p: float, seed: int) -> list[list[Sample]]:
        encoded = [self.encode_prompt(p) for p in prompts]
        check_prompts_fit(prompts, encoded, self.max_positions)
        jobs = sorted(((i, s) for i in range(len(prompts)) for s in range(n)), key=lambda j: len(encoded[j[0]]))
        out: list[list[Sample | None]] = [[None] * n for _ in prompts]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            samples = self._generate_batch([encoded[i] for i, _ in chunk], max_tokens, temperature, top_p,
                                           seed + start)
            for (i, s), sample in zip(chunk, samples):
                out[i][s] = sample
            if self.on_batch is not None:
                self.on_batch(samples)
        return [[s for s in row if s is not None] for row in out]

    def _budget(self, longest_prompt: int, max_tokens: int) -> int:
        if self.max_positions and longest_prompt + max_tokens > self.max_positions:
            budget = max(1, self.max_positions - longest_prompt)
            if max_tokens not in self._warned_caps:  # once per setting, not per batch
                self._warned_caps.add(max_tokens)
                logger.warning("max_tokens %d exceeds the model's %d positions: responses are capped at "
                               "%d positions minus the prompt (and count as truncated there)",
                               max_tokens, self.max_positions, self.max_positions)
            return budget
        return max_tokens

    def _generate_batch(self, batch: list[list[int]], max_tokens: int, temperature: float, top_p: float,
                        seed: int) -> list[Sample]:
        import torch

        from egrc_lite.generate.pruned import generate_pruned  # imports torch: not at module import

        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.stop_ids)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)  # [B, T]
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        budget = self._budget(width, max_tokens)
        kwargs: dict[str, Any] = {"max_new_tokens": budget, "pad_token_id": pad, "eos_token_id": sorted(self.stop_ids)}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            generated = generate_pruned(self.model, input_ids, mask, **kwargs)  # [B, T + new]
        samples = []
        for row in generated[:, width:].tolist():
            stop = _first_stop(row, self.stop_ids)
            ids = row if stop is None else row[:stop]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            samples.append(Sample(text=text, token_ids=ids, truncated=stop is None,
                                  think_tokens=think_token_count(ids, self.think_close_ids)))
        return samples


def load_hf_generator(cfg: EgrcConfig, *, adapter: str | Path | None = None, batch_size: int = GENERATION_BATCH,
             device: str | None = None, adapter_scale: float = 1.0) -> HFGenerator:
    """Load the base model of ``cfg`` (and ``adapter`` on top, its update times ``adapter_scale``, merged) for
    generation."""
    import torch
    from transformers import AutoModelForCausalLM

    from egrc_lite.backends.sources import load_kwargs

    path, source, tokenizer = load_model_tokenizer(cfg)
    dtype = "auto" if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, **load_kwargs(cfg, path)}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenerationError(f"could not load model '{cfg.model.name_or_path}': {first}") from None
    if adapter is not None:
        model, source = attach_merged_adapter(model, Path(adapter).expanduser(), source, scale=adapter_scale)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(target).eval()
    return HFGenerator(model, tokenizer, batch_size=batch_size, model_source=source)


def attach_merged_adapter(model: Any, adapter: Path, source: str, *, scale: float = 1.0) -> tuple[Any, str]:
    """``model`` with ``adapter`` merged in, its update times ``scale`` (PEFT's per-layer scaling; 0 adds exactly
    nothing to the base weights)."""
    from peft import PeftModel

    from egrc_lite.generate.scale import scale_label, scale_lora_layers

    if not (adapter / "adapter_config.json").is_file():
        raise GenerationError(f"--adapter {adapter}: no adapter_config.json there (expected a PEFT adapter)")
    peft_model = PeftModel.from_pretrained(model, str(adapter))
    label = f"{source} + adapter:{adapter.resolve()}"
    if scale != 1.0:
        if not scale_lora_layers(peft_model, scale):
            raise GenerationError(f"--adapter {adapter}: no LoRA layer in it; --adapter-scale needs a LoRA adapter")
        label += f" @ scale {scale_label(scale)}"
    # Merging gives the same outputs and generates faster than running the LoRA branch.
    return peft_model.merge_and_unload(), label
