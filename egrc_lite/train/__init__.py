"""Two-stage RL training: compression, then exploration, as stages of one schedule.

Owns: the reward formulas (``reward_formulas``; the field's length-control baselines: ``length_control``) and the
TRL reward callables (``rewards``), advantages (``advantages``),
the stage plan and automatic switch (``schedule``), all pure; the TRL ``GRPOTrainer`` subclass,
the only module that knows TRL internals (``trainer``), with rollouts from merged LoRA weights
(``fastgen``), the kept-sample loss mask, normaliser and TRL guards (``loss_mask``) and the sampled
completions it logs (``samples``); each stage's ``GRPOConfig`` (``arguments``); the stage loop (``runner``) and where a run restarts
(``resume``);
and ``train.report_to``'s loggers (``loggers``); the memory planner behind ``egrc-lite plan``, from shapes alone and
without torch (``shapes``, ``memory``, ``plan``). :func:`run_schedule` is the entry point: it loads the training backend first
(unsloth, when chosen, must be imported before transformers, TRL and PEFT), then runs the stages.

May import: analysis (token statistics logged every step), backends, config, data, presets (``plan``), runs, errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig
    from egrc_lite.runs import RunDir

__all__ = ["run_schedule"]


def run_schedule(cfg: EgrcConfig, run_dir: RunDir, *, resume: bool = False, init_adapter: str | None = None,
                 stage_filter: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Run the stage schedule into ``run_dir``; see :func:`egrc_lite.train.runner.run_schedule`.

    The training backend is imported before the stage runner imports transformers and TRL
    (:func:`egrc_lite.backends.import_training_backend`: unsloth first, as it requires).
    """
    from egrc_lite.backends import import_training_backend

    import_training_backend(cfg)
    from egrc_lite.train.runner import run_schedule as run

    return run(cfg, run_dir, resume=resume, init_adapter=init_adapter, stage_filter=stage_filter, progress=progress)
