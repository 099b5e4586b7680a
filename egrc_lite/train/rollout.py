"""What speeds up a trainer's rollout generation, around TRL's ``_generate_single_turn``; and
:func:`set_generation_cap`, which tightens its cap mid-stage (``cap_schedule``).

Two exact speed-ups, each with its own switch: merged LoRA weights (:mod:`egrc_lite.train.fastgen`,
``train.merge_lora_for_generation``) and a ``model.generate`` that drops finished rows from the
decoding batch (:mod:`egrc_lite.generate.pruned`, ``train.drop_finished_rows``). Both are for
transformers generation on unsharded weights: with vLLM, continuous batching or DeepSpeed/FSDP
weights they stand aside and the trainer notes why, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _blocker(trainer: Any) -> str | None:
    """Why rollouts of ``trainer`` (an ``EgrcGRPOTrainer``) cannot be sped up here, or ``None``."""
    if getattr(trainer, "use_vllm", False):
        return "vLLM generation"
    if getattr(trainer, "use_transformers_continuous_batching", False):
        return "continuous batching"
    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
        return "sharded weights"
    return None


@contextlib.contextmanager
def rollout_speedups(trainer: Any) -> Iterator[None]:
    """Around one rollout generation of ``trainer``: merged LoRA weights where exact (the report lands in
    ``trainer.egrc_merge_report``, ``None`` when unmerged) and the row-dropping ``generate``."""
    blocker = _blocker(trainer)
    trainer.egrc_merge_report = None
    with contextlib.ExitStack() as stack:
        if trainer.egrc_merge_lora_for_generation and blocker is None:
            from egrc_lite.train.fastgen import merged_lora_weights

            trainer.egrc_merge_report = stack.enter_context(merged_lora_weights(trainer.model))
            trainer._egrc_note(trainer.egrc_merge_report.note())
        elif trainer.egrc_merge_lora_for_generation:
            trainer._egrc_note(f"merged-LoRA generation off: {blocker}; generating unmerged")
        if trainer.egrc_drop_finished_rows and blocker is None:
            stack.enter_context(_pruned_generate(trainer.accelerator.unwrap_model(trainer.model)))
        yield


@contextlib.contextmanager
def _pruned_generate(model: Any) -> Iterator[None]:
    """``model.generate`` is :func:`~egrc_lite.generate.pruned.generate_pruned` inside the block."""
    from egrc_lite.generate.pruned import generate_pruned

    if "generate" in vars(model):  # someone else's instance patch: leave it
        yield
        return
    model.generate = lambda *args, **kwargs: generate_pruned(model, *args, **kwargs)
    try:
        yield
    finally:
        del model.generate


def set_generation_cap(trainer: Any, length_clip: int, max_completion_length: int) -> bool:
    """Give ``trainer`` (an ``EgrcGRPOTrainer``) a new generation cap and clip ``L`` from its next rollout on
    (ThinkPrune-style tightening, :func:`egrc_lite.train.schedule.stage_caps`): TRL's ``max_completion_length``
    and the settings its generation paths read it into (transformers' generation config, vLLM's), and the
    reward callables' caps (:func:`egrc_lite.train.rewards.set_caps`). Returns whether anything changed.
    """
    from egrc_lite.train.rewards import set_caps

    changed = trainer.max_completion_length != max_completion_length
    trainer.max_completion_length = max_completion_length
    config = getattr(trainer, "generation_config", None)
    if config is not None and hasattr(config, "max_new_tokens"):
        config.max_new_tokens = max_completion_length
    kwargs = getattr(trainer, "generation_kwargs", None)
    if isinstance(kwargs, dict) and "max_new_tokens" in kwargs:
        kwargs["max_new_tokens"] = max_completion_length
    vllm = getattr(trainer, "vllm_generation", None)
    if vllm is not None and hasattr(vllm, "max_completion_length"):
        vllm.max_completion_length = max_completion_length
    params = getattr(trainer, "vllm_sampling_params", None)  # unsloth's in-process vLLM (not tested here)
    if params is not None and hasattr(params, "max_tokens"):
        params.max_tokens = max_completion_length
    set_caps(trainer.reward_funcs, length_clip, max_completion_length)
    return changed
