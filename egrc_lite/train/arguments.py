"""TRL's ``GRPOConfig`` for one stage, from the run's config: the batch shape of one optimiser step and
every training argument egrc-lite sets (loss "dapo" over kept tokens, one generation per step, reused for
``train.num_iterations`` optimiser passes)."""

from __future__ import annotations

from typing import Any

from egrc_lite.config import EgrcConfig, StageConfig


def batch_shape(cfg: EgrcConfig) -> tuple[int, int]:
    """``(per_device_train_batch_size, gradient_accumulation_steps)`` for one optimiser step of
    ``train.prompts_per_step`` prompts x ``G`` completions per process."""
    from egrc_lite.config import ConfigError

    completions = cfg.train.prompts_per_step * cfg.train.num_generations
    accum = cfg.train.gradient_accumulation_steps
    if completions % accum:
        raise ConfigError(f"train.prompts_per_step * train.num_generations = {completions} completions per step "
                          f"must be divisible by train.gradient_accumulation_steps ({accum})")
    return completions // accum, accum


def build_grpo_config(cfg: EgrcConfig, stage: StageConfig, *, output_dir: str, seed: int | None = None,
                      **overrides: Any) -> Any:
    """TRL's ``GRPOConfig`` for one stage: one optimiser step = ``prompts_per_step`` prompts x ``G``.

    Loss "dapo" divides by ``num_items_in_batch`` (the step's kept tokens or kept samples, see
    :mod:`egrc_lite.train.loss_mask`); one generation fills one optimiser step
    (``steps_per_generation = gradient_accumulation_steps``) and is reused for ``train.num_iterations``
    steps. With 1 (the default) samples are on-policy and the ratio is 1, so the clip never binds;
    from the second pass on the ratio is measured against the log-probs at generation time.
    """
    import dataclasses

    import torch
    from trl import GRPOConfig

    per_device, accum = batch_shape(cfg)
    train, dtype = cfg.train, cfg.model.dtype
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir, max_steps=stage.steps, seed=train.seed if seed is None else seed,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=train.num_generations, num_iterations=train.num_iterations,
        temperature=stage.temperature, top_p=stage.top_p, max_completion_length=stage.max_completion_length,
        epsilon=stage.epsilon_low, epsilon_high=stage.epsilon_high, beta=stage.kl_beta,
        learning_rate=stage.learning_rate or train.learning_rate, lr_scheduler_type=train.lr_scheduler_type,
        # transformers 5 reads a float below 1 in warmup_steps as a ratio of the total steps
        warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm,
        optim=train.optim, loss_type="dapo", scale_rewards="group" if stage.mode == "explore" else "none",
        logging_steps=1, report_to=train.loggers or "none", save_strategy="steps", save_steps=train.save_steps,
        save_total_limit=train.save_total_limit, bf16=dtype == "bfloat16" and torch.cuda.is_available(),
        fp16=dtype == "float16" and torch.cuda.is_available(),
        log_completions=False, disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),  # lets torchrun / `accelerate launch --multi_gpu` run on CPUs
    )
    # transformers >= 5.2x renamed gradient_checkpointing (TRL defaults it to True) to activation_checkpointing
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    kwargs["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = \
        cfg.model.gradient_checkpointing
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)
