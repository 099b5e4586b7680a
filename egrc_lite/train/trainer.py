"""The TRL ``GRPOTrainer`` subclass: the module that knows TRL internals (with :mod:`egrc_lite.train.rollout`).

TRL has no advantage hook, so :class:`EgrcTrainerMixin` works at these seams, which exist in
trl 1.15 and 1.16 (each has a CPU test in ``tests/test_training.py``):

``_calculate_rewards``
    call TRL, keep the gathered per-function rewards ``[B_all, F]`` (TRL sums them with weights 1).
``_generate_and_score_completions``
    call TRL, then replace ``advantages`` with :mod:`egrc_lite.train.advantages` (method.md s2, s3, s5).
    Dropped samples (``mask`` false, e.g. ``R <= 0`` in compression, or cut at the cap without EOS under
    ``reward.overlong_filter``: :func:`~egrc_lite.train.advantages.drop_rows`) get advantage 0 *and* leave
    the loss: they are zeroed in the loss-only mask ``tool_mask`` (TRL multiplies it into
    ``completion_mask`` in the loss but not in the attention), and ``num_items_in_batch``, the
    "dapo" normaliser, is recounted over kept tokens (or kept samples, with 1/|o| weights in
    ``tool_mask``, for ``train.loss_aggregation: sequence``; :mod:`egrc_lite.train.loss_mask`).
    The attention mask stays intact so the loss forward also yields valid token entropies for
    every sampled completion. The batch gets the marker ``loss_mask.SCORED``.
``_prepare_inputs``
    call TRL; after a generation, regroup its micro-batches by loss weight and completion length, each
    cut to its longest completion (:mod:`egrc_lite.train.microbatch`, ``train.group_by_length``).
``compute_loss``
    refuses a batch without that marker (TRL bypassed our scoring); init refuses TRL settings the
    normaliser is not written for (:func:`~egrc_lite.train.loss_mask.check_trl_settings`). With
    ``train.num_iterations > 1`` TRL reuses the scored batch (mask and normaliser too) that many steps.
    With ``train.group_by_length`` (one process) only rows with loss weight enter the loss forward and
    backward; dropped rows get a no-grad forward for the entropy metrics, or none.
``_generate_single_turn``
    TRL's rollout generation, run from merged LoRA weights where that is exact (hf backend, no vLLM,
    no sharded weights; :mod:`egrc_lite.train.fastgen` decides per layer). ``train.merge_lora_for_generation``.
    Its ``model.generate`` drops finished rows (:mod:`egrc_lite.generate.pruned`, ``train.drop_finished_rows``).
``_get_per_token_logps_and_entropies``
    call TRL; during the loss forward, add the token entropies of all sampled tokens to the step's
    sums (:mod:`egrc_lite.train.entropy_stats`). When the loss forward returns none (unsloth calls
    the seam with ``compute_efficient=True`` and gets ``None``), measure them with a no-grad,
    chunked forward over the same ids at the stage temperature, unless ``analysis.track_entropy``
    is off (:attr:`EgrcTrainerMixin.egrc_entropy_fallback`).

An optimiser step whose batch (all processes) keeps no sample at all makes no update: the
gradients are set to ``None`` before ``optimizer.step()``, so AdamW skips every parameter
(no momentum, no weight decay) and the adapter stays bit-identical.

The sampling temperature enters both generation and TRL's fused log-prob head, which is built
when a trainer is created; a stage switch therefore builds a fresh trainer on the same PEFT
model (:func:`build_trainer`), and the mixin first removes the previous trainer's head patch.

Heavy libraries (trl, transformers) are imported inside functions, so that the unsloth backend
can import unsloth first; :func:`make_trainer_class` builds the subclass of whatever
``GRPOTrainer`` is current (``EgrcGRPOTrainer`` is that class for stock TRL).

Distributed: each process scores its slice of the gathered batch; the skip decision and the
normaliser use global counts. On a machine without CUDA the config sets ``use_cpu``, so
``torchrun`` / ``accelerate launch --multi_gpu --num_processes N`` run N CPU processes (gloo).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from egrc_lite.train.advantages import STAGE_ADVANTAGE, drop_rows, get_advantage_fn
from egrc_lite.train.entropy_stats import N_SUMS, can_score, completion_entropies, entropy_metrics, entropy_sums
from egrc_lite.train.loss_mask import LOSS_AGGREGATIONS, SCORED, check_trl_settings, kept_loss_mask, require_scored
from egrc_lite.train.samples import capture_samples, generation_stats, truncated_rows

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig, StageConfig

logger = logging.getLogger(__name__)

TRL_SEAMS = ("_calculate_rewards", "_generate_and_score_completions", "_get_per_token_logps_and_entropies",
             "_prepare_inputs")
"""The private GRPOTrainer methods the mixin overrides (tested by name and signature)."""

_PRE_TRL_FORWARD = "_egrc_pre_trl_forward"


def _base_model(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def restore_forward(model: Any) -> None:
    """Undo TRL's fused-LM-head patch (an instance ``forward``) from an earlier trainer on ``model``.

    The first call records the pre-TRL instance forward (usually none), later calls put it back,
    so each new trainer patches a clean model with its own temperature.
    """
    if not isinstance(model, torch.nn.Module):
        return
    base = _base_model(model)
    if not hasattr(base, _PRE_TRL_FORWARD):
        object.__setattr__(base, _PRE_TRL_FORWARD, base.__dict__.get("forward"))
        return
    original = getattr(base, _PRE_TRL_FORWARD)
    if original is None:
        base.__dict__.pop("forward", None)
    else:
        base.forward = original


class EgrcTrainerMixin:
    """Replaces TRL's advantages with egrc-lite's for one stage ``mode`` (compress|explore|entangled).

    Use through :func:`make_trainer_class` / ``EgrcGRPOTrainer``; extra constructor arguments are
    ``mode``, ``adv_beta`` (``beta`` of ``A = beta * R``) and ``loss_aggregation`` (``token`` |
    ``sequence``, :mod:`egrc_lite.train.loss_mask`). After each generation,
    :meth:`egrc_pop_step_stats` returns the step's metrics (rewards, lengths, kept fraction,
    entropy, advantage stats) and :attr:`egrc_samples` the captured completions when
    :attr:`egrc_capture_samples` was set.
    """

    egrc_zero_completion_mask = False
    """Also zero dropped rows of ``completion_mask`` (for a loss that ignores ``tool_mask``); the
    entropy metric then covers the kept samples only."""
    egrc_loss_entropies = True
    """Whether the base class's loss forward returns token entropies (stock TRL: yes; unsloth: no)."""
    egrc_group_by_length = True
    """Regroup each generation's micro-batches by completion length, cut to it (``train.group_by_length``)."""
    egrc_dropped_entropy_rows: int | None = None
    """At most this many dropped rows of a step get an entropy forward (``analysis.dropped_entropy_rows``)."""
    egrc_drop_finished_rows = True
    """Rollouts drop finished rows from the decoding batch (``train.drop_finished_rows``; not on unsloth)."""
    egrc_merge_lora_for_generation = True
    """Generate rollouts from merged LoRA weights where exact (``train.merge_lora_for_generation``;
    never on unsloth, whose generation path differs)."""
    egrc_overlong_filter = False
    """DAPO's overlong filtering: samples cut at the cap without EOS get no loss weight (``reward.overlong_filter``)."""

    def __init__(self, *args: Any, mode: str = "compress", adv_beta: float = 1.0, loss_aggregation: str = "token",
                 **kwargs: Any) -> None:
        if mode not in STAGE_ADVANTAGE:
            raise ValueError(f"unknown stage mode {mode!r}; valid modes: {', '.join(STAGE_ADVANTAGE)}")
        valid = ("token",) if self.egrc_zero_completion_mask else LOSS_AGGREGATIONS  # unsloth's loss: no weights
        if loss_aggregation not in valid:
            raise ValueError(f"train.loss_aggregation={loss_aggregation!r} is not supported on this backend; "
                             f"valid: {', '.join(valid)}")
        self.egrc_loss_aggregation = loss_aggregation
        restore_forward(kwargs.get("model", args[0] if args else None))
        self.egrc_mode = mode
        self.egrc_adv_beta = float(adv_beta)
        self.egrc_capture_samples = False
        self.egrc_samples: list[dict[str, Any]] = []
        self._egrc_adv_fn = get_advantage_fn(STAGE_ADVANTAGE[mode])
        self._egrc_rewards_per_func: torch.Tensor | None = None
        self._egrc_stats: dict[str, float] = {}
        self._egrc_entropy = [0.0] * N_SUMS  # entropy_stats.entropy_sums over the step (all processes)
        self.egrc_connectors: Any = None  # an analysis.ConnectorMatcher: connector metrics per step
        self.egrc_entropy_fallback = True  # measure entropies when the loss forward returns none
        self._egrc_skip_update = False
        self._egrc_notes: set[str] = set()  # one-line notes logged once per trainer
        self.egrc_merge_report: Any = None  # the last rollout's fastgen.MergeReport (None: generated unmerged)
        self._egrc_passes = 0  # optimiser passes made over the current generation (train.num_iterations)
        super().__init__(*args, **kwargs)
        check_trl_settings(self)  # loss_type, steps_per_generation, num_iterations: what the normaliser is for
        self.add_callback(_make_skip_callback(self))

    # ------------------------------------------------------------------ TRL seams
    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        rewards_per_func = super()._calculate_rewards(*args, **kwargs)  # [B_all, F], gathered
        self._egrc_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._egrc_rewards_per_func = None
        out = super()._generate_and_score_completions(inputs)
        rewards_per_func = self._egrc_rewards_per_func
        if rewards_per_func is None:
            raise RuntimeError("GRPOTrainer no longer calls _calculate_rewards from _generate_and_score_completions; "
                               "egrc-lite's TRL seam is broken for this TRL version")
        training = self.model.training
        group = self.num_generations if training else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device)  # [F]
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)  # [B_all]
        result = self._egrc_adv_fn(rewards.float().cpu(), group_size=group, beta=self.egrc_adv_beta)
        completion_mask = out["completion_mask"]  # [B, T]
        truncated = self.accelerator.gather(truncated_rows(out["completion_ids"], completion_mask, self.eos_token_ids,
                                                           self.max_completion_length)).cpu()  # [B_all]
        if self.egrc_overlong_filter:  # DAPO: cut at the cap without EOS -> out of the loss and the normaliser
            result = drop_rows(result, truncated)

        n_local = completion_mask.size(0)
        local = slice(self.accelerator.process_index * n_local, (self.accelerator.process_index + 1) * n_local)
        device = completion_mask.device
        keep = result.mask[local].to(device)  # [B]
        out["advantages"] = result.advantages[local].to(device=device, dtype=out["advantages"].dtype)  # [B]
        # TRL's loss-only mask (tool-result tokens), zero on dropped rows (1/|o| weights for "sequence"),
        # and the normaliser: the step's kept tokens (or samples) over all processes
        out["tool_mask"], num_items = kept_loss_mask(completion_mask, out.get("tool_mask"), keep,
                                                     self.egrc_loss_aggregation,
                                                     lambda n: self.accelerator.gather(n).sum())
        if self.egrc_zero_completion_mask:
            out["completion_mask"] = completion_mask * keep.unsqueeze(1).to(completion_mask.dtype)
        out["num_items_in_batch"] = num_items
        out[SCORED] = torch.tensor(True, device=device)  # compute_loss refuses a batch without it
        self._egrc_skip_update = training and int(num_items.item()) == 0
        self._egrc_passes = 0

        lengths = self.accelerator.gather(completion_mask.sum(dim=1)).float().cpu()  # [B_all]
        self._egrc_stats = generation_stats(self.reward_func_names, rewards_per_func, rewards, result, lengths,
                                            truncated, self._egrc_skip_update)
        if self.egrc_capture_samples:
            self.egrc_samples = capture_samples(getattr(self, "_logs", None), inputs, rewards_per_func, rewards,
                                                result, lengths, self.reward_func_names)
        return out

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        """TRL's buffered micro-batches, regrouped by completion length and cut to it after each generation
        (``train.group_by_length``, :mod:`egrc_lite.train.microbatch`)."""
        fresh = self.model.training and (self._buffered_inputs is None or self._step % (
            self.args.steps_per_generation * self.num_iterations) == 0)
        inputs = super()._prepare_inputs(generation_batch)
        if not (fresh and self.egrc_group_by_length):
            return inputs
        from egrc_lite.train.microbatch import group_by_length, sample_dropped

        batches = group_by_length(self._buffered_inputs)
        if batches is not self._buffered_inputs:  # regrouped: mark which dropped rows get their entropies measured
            rng = torch.Generator().manual_seed(self.args.seed * 100003 + self.state.global_step)
            batches = sample_dropped(batches, self.egrc_dropped_entropy_rows, rng)
        self._buffered_inputs = batches
        return batches[self._step % self.args.steps_per_generation]

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """TRL's loss over the rows with loss weight only (``train.group_by_length``); the others (dropped
        by the advantage rule) only have their entropies measured, without grad, when those are tracked."""
        from egrc_lite.train.microbatch import MEASURE, loss_rows, regroupable, take_rows

        require_scored(inputs, self.num_iterations)  # else TRL's advantages, or ratio 1 in every pass
        if not (self.egrc_group_by_length and self.egrc_loss_entropies and self.accelerator.num_processes == 1
                and self.top_entropy_quantile >= 1.0 and regroupable(inputs)):
            return super().compute_loss(model, inputs, *args, **kwargs)
        weighted = loss_rows(inputs)  # [B]
        measure = inputs.get(MEASURE, (~weighted).float())  # [B] entropy weight of each dropped row (0: skip)
        dropped = ((~weighted) & (measure > 0)).nonzero().flatten()
        if len(dropped) and self.egrc_entropy_fallback:  # a no-grad forward, for the entropy metrics only
            rows = take_rows(inputs, dropped)
            with torch.no_grad():
                self._egrc_add_entropies(model, torch.cat([rows["prompt_ids"], rows["completion_ids"]], dim=1),
                                         torch.cat([rows["prompt_mask"], rows["completion_mask"]], dim=1),
                                         rows["completion_ids"].size(1), None, weight=float(measure[dropped].max()))
        if not weighted.any():  # no row trains: a zero loss that still reaches every trainable parameter
            return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        return super().compute_loss(model, take_rows(inputs, weighted.nonzero().flatten()), *args, **kwargs)

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        from egrc_lite.train.rollout import rollout_speedups

        with rollout_speedups(self):
            return super()._generate_single_turn(*args, **kwargs)

    def _egrc_note(self, note: str | None) -> None:
        """Log ``note`` once per trainer."""
        if note and note not in self._egrc_notes:
            self._egrc_notes.add(note)
            logger.info(note)

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor,
                                           attention_mask: torch.Tensor, logits_to_keep: int,
                                           *args: Any, **kwargs: Any) -> Any:
        from egrc_lite.train.entropy_stats import capture_last_hidden

        if not (torch.is_grad_enabled() and self.model.training):  # not the loss forward
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        # the loss forward, once per micro-batch; away from T = 1 it keeps its last hidden states (for entropy_t1)
        t1_apart = self.temperature != 1 and self.egrc_entropy_fallback
        with capture_last_hidden(self.accelerator.unwrap_model(model), t1_apart) as hidden:
            result = super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        entropies = self._egrc_add_entropies(model, input_ids, attention_mask, logits_to_keep, result[1], hidden)
        return (result[0], entropies, *result[2:])  # measured ones are handed on to the loss too

    # ------------------------------------------------------------------ metrics
    def _egrc_add_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                            entropies: torch.Tensor | None, hidden: list[torch.Tensor] | None = None,
                            weight: float = 1.0) -> Any:
        """Add one loss forward's entropies ``[B, T]`` (measured here when ``None``) to the step's sums, and
        those at temperature 1 (the stage's own at T = 1, else from that forward's last ``hidden`` states),
        all times ``weight`` (a sampled row standing for several).

        Returns the entropies used (``None`` when there are none). Every process calls this once
        per micro-batch and takes the same path, so the reduce stays collective.
        """
        from egrc_lite.train.entropy_stats import capture_last_hidden, entropies_t1

        unwrapped, at_t1 = self.accelerator.unwrap_model(model), self.temperature == 1
        if entropies is None:
            if not self.egrc_entropy_fallback:
                return None
            with self.accelerator.autocast(), capture_last_hidden(unwrapped, not at_t1) as hidden:
                entropies = completion_entropies(unwrapped, input_ids, attention_mask,
                                                 logits_to_keep, self.temperature)  # [B, T]
        with self.accelerator.autocast():
            ents_t1 = entropies if at_t1 else entropies_t1(unwrapped, hidden, input_ids, attention_mask, logits_to_keep)
        mask = attention_mask[:, -logits_to_keep:]  # [B, T] sampled tokens
        local = entropy_sums(input_ids[:, -logits_to_keep:], entropies, mask, self.egrc_connectors, ents_t1) * weight
        total = self.accelerator.reduce(local, reduction="sum").tolist()
        self._egrc_entropy = [a + b for a, b in zip(self._egrc_entropy, total)]
        return entropies

    def egrc_entropy_source(self) -> str | None:
        """Where the step's token entropies come from: ``"loss"`` (the loss forward hands them over),
        ``"forward"`` (egrc-lite's no-grad pass), or ``None`` (nowhere: ``entropy/mean`` stays NaN)."""
        if self.egrc_loss_entropies:
            return "loss"
        return "forward" if self.egrc_entropy_fallback and can_score(self.model) else None

    def egrc_pop_step_stats(self) -> dict[str, float]:
        """The last generation's metrics plus the token entropy of the step's loss forwards; resets the
        entropy, and the generation's metrics after its last pass (``train.num_iterations``, logged as
        ``pass`` when above 1)."""
        stats = {**self._egrc_stats, **entropy_metrics(self._egrc_entropy, self.egrc_connectors)}
        self._egrc_entropy, self._egrc_passes = [0.0] * N_SUMS, self._egrc_passes + 1
        if self.num_iterations > 1 and self._egrc_stats:
            stats["pass"] = float(self._egrc_passes)
        if self._egrc_passes >= self.num_iterations:
            self._egrc_stats = {}
        return stats


def _make_skip_callback(trainer: Any) -> Any:
    """A callback that drops all gradients before ``optimizer.step()`` when the step kept no sample."""
    from transformers import TrainerCallback

    class SkipEmptyUpdate(TrainerCallback):
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if trainer._egrc_skip_update:
                for param in trainer.model.parameters():
                    param.grad = None
                logger.info("step %d kept no sample: optimizer update skipped", state.global_step + 1)

    return SkipEmptyUpdate()


_CLASSES: dict[type, type] = {}


def make_trainer_class(base: type | None = None) -> type:
    """``EgrcTrainerMixin`` on top of ``base`` (default: the current ``trl.GRPOTrainer``), cached.

    On the ``GRPOTrainer`` unsloth patched, ``compute_loss`` is unsloth's, which may not apply TRL's
    loss-only ``tool_mask``; dropped samples are then also zeroed in ``completion_mask``
    (``egrc_zero_completion_mask``). Its loss forward returns no token entropies
    (``egrc_loss_entropies``), so the mixin measures them itself.
    """
    if base is None:
        from trl import GRPOTrainer as base  # noqa: N813
    if base not in _CLASSES:
        unsloth = base.__name__.startswith("Unsloth")
        _CLASSES[base] = type("EgrcGRPOTrainer", (EgrcTrainerMixin, base), {
            "__module__": __name__, "__doc__": EgrcTrainerMixin.__doc__,
            "egrc_zero_completion_mask": unsloth, "egrc_loss_entropies": not unsloth,
            "egrc_merge_lora_for_generation": not unsloth, "egrc_drop_finished_rows": not unsloth})
    return _CLASSES[base]


def __getattr__(name: str) -> Any:
    if name == "EgrcGRPOTrainer":
        return make_trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_trainer(cfg: EgrcConfig, stage: StageConfig, model: Any, tokenizer: Any, dataset: Any, *,
                  output_dir: str, seed: int | None = None, reward_funcs: list[Any] | None = None,
                  callbacks: list[Any] | None = None, trainer_class: type | None = None,
                  logging_dir: str | None = None, **config_overrides: Any) -> Any:
    """A fresh ``EgrcGRPOTrainer`` for ``stage`` on ``model`` (a PEFT model), quiet (no TRL printing).

    ``analysis.track_entropy`` turns on the connector metrics and the entropy pass for backends
    whose loss forward returns no entropies (``egrc_entropy_fallback``). ``logging_dir``: where the
    tensorboard logger of ``train.report_to`` writes (transformers' default: ``output_dir/runs/<time>_<host>``,
    a new folder per start; a fixed folder lets a resumed stage append to it).
    """
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from egrc_lite.train.arguments import build_grpo_config
    from egrc_lite.train.loggers import tensorboard_callback
    from egrc_lite.train.rewards import bind_trainer, build_reward_funcs

    args = build_grpo_config(cfg, stage, output_dir=output_dir, seed=seed, **config_overrides)
    funcs = reward_funcs if reward_funcs is not None else build_reward_funcs(stage.mode, cfg.reward, stage)
    cls = trainer_class or make_trainer_class()
    trainer = cls(model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tokenizer,
                  callbacks=callbacks, mode=stage.mode, adv_beta=stage.beta,
                  loss_aggregation=cfg.train.loss_aggregation)
    bind_trainer(funcs, trainer)  # EOS ids (cut at the cap or not), whether the template opens <think>, G
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if trainer.pop_callback(TensorBoardCallback) is not None:  # train.report_to has tensorboard
        trainer.add_callback(tensorboard_callback(logging_dir))
    trainer.egrc_entropy_fallback = cfg.analysis.track_entropy
    trainer.egrc_merge_lora_for_generation &= cfg.train.merge_lora_for_generation
    trainer.egrc_group_by_length = cfg.train.group_by_length
    trainer.egrc_dropped_entropy_rows = cfg.analysis.dropped_entropy_rows
    trainer.egrc_drop_finished_rows &= cfg.train.drop_finished_rows
    trainer.egrc_overlong_filter = cfg.reward.overlong_filter
    if trainer.egrc_entropy_source() == "forward":
        logger.info("token entropy: the backend's loss returns none; measured by a no-grad forward per micro-batch")
    if cfg.analysis.track_entropy:
        from egrc_lite.analysis.entropy import get_connector_matcher

        trainer.egrc_connectors = get_connector_matcher(tokenizer, cfg.analysis.connectors)
    return trainer

