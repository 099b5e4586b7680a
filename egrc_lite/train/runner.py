"""The stage runner: the schedule of method.md s4 as fresh trainers on one PEFT model.

Each stage (compress, explore or entangled, in any order) gets its own ``EgrcGRPOTrainer``, so
its sampling temperature reaches generation and the fused log-prob head alike. One callback,
:class:`StageCallback`, turns every optimiser step into one metrics row, feeds the automatic
switch (:mod:`egrc_lite.train.schedule`) and records the schedule state beside each checkpoint.

Resume: every checkpoint ``stages/<i>-<name>/checkpoint-N`` carries ``egrc_state.json`` (the
schedule state as of that step, written after the checkpoint itself). ``resume=True`` picks the
latest such checkpoint, drops metric and sample rows past it, and either resumes that stage's
trainer from it, or, when the checkpoint ended its stage, loads its adapter and starts the next.

KL reference (a stage's ``kl_beta > 0``): TRL copies the adapter into a ``ref`` adapter as each trainer
is built, so a stage refers to the weights it starts from; the previous stage's ``ref`` is dropped first.
Those weights are also saved as ``stages/<i>-<name>/reference_adapter.safetensors``, and a stage resumed
mid-way loads them into ``ref`` (TRL would copy the freshly loaded adapter; the checkpoint's comes after).

Under ``accelerate launch`` every process runs this function; only the main process writes.
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from egrc_lite.config import ConfigError, EgrcConfig, check_loggers_installed
from egrc_lite.runs import (CKPT_STATE, JsonlLog, RunDir, atomic_write_json, check_new_run_dir, respect_umask,
                            write_config, write_manifest)
from egrc_lite.train.loggers import LOGGER_PROJECT, finish_wandb_run, logger_env, logs_dir
from egrc_lite.train.resume import describe_resume_point, find_resume_point, select_stages
from egrc_lite.train.resume import resume_line  # noqa: F401  (the CLI's import)
from egrc_lite.train.schedule import ScheduleState, StagePlan, plan_stages

logger = logging.getLogger(__name__)

SWITCH_METRIC_KEYS = {"entropy": "train/entropy/mean", "length": "train/len/mean"}
REFERENCE_FILE = "reference_adapter.safetensors"
"""In a stage folder: the adapter weights the stage started from, its KL reference (``kl_beta > 0`` only)."""


def check_switch_metric(cfg: EgrcConfig, stage: StagePlan, trainer: Any = None) -> None:
    """Refuse an auto-switch stage whose metric no step would log (its switch could never fire).

    ``length`` is always logged. ``entropy`` (``train/entropy/mean``) needs token entropies: the
    backend's loss forward hands them over (stock TRL) or egrc-lite measures them with a no-grad
    pass (``analysis.track_entropy``; unsloth relies on it). ``track_entropy: false`` is refused
    on every backend, so a config does not switch on one backend and silently never on another.
    With ``trainer``, the stage's trainer must also have a source (``egrc_entropy_source``): its
    loss forward, or a policy with a backbone and an LM head for the pass.
    """
    if not stage.auto_switch or cfg.schedule.auto_switch.metric != "entropy":
        return
    if not cfg.analysis.track_entropy:
        raise ConfigError(f"stage {stage.name}: schedule.auto_switch.metric=entropy needs analysis.track_entropy=true "
                          "(without it train/entropy/mean is only logged where the backend's loss returns it); "
                          "set analysis.track_entropy=true or schedule.auto_switch.metric=length")
    if trainer is not None and trainer.egrc_entropy_source() is None:
        raise ConfigError(f"stage {stage.name}: schedule.auto_switch.metric=entropy, but this backend's loss returns "
                          "no token entropies and the policy has no backbone + LM head to measure them with; "
                          "use schedule.auto_switch.metric=length")


class StageCallback(TrainerCallback):
    """One stage's bookkeeping: metrics rows, samples, schedule state, auto switch, checkpoint state."""

    def __init__(self, runner: _Runner, stage: StagePlan, reference: Path | None = None) -> None:
        self.runner, self.stage, self.reference = runner, stage, reference
        self.trainer: Any = None
        self._t0 = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from egrc_lite.backends.hf import load_reference_weights

        if self.reference is not None:  # after the checkpoint (and the ref/ saved in it) was loaded
            load_reference_weights(self.trainer.model, self.reference)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._t0 = time.perf_counter()
        every, step = self.runner.cfg.train.sample_every, self.runner.state.global_step + 1
        self.trainer.egrc_capture_samples = self.runner.cfg.train.num_samples_logged > 0 and step % every == 0
        if self.stage.config.cap_schedule:  # ThinkPrune-style: this step's cap, from the steps the stage has done
            from egrc_lite.train.rollout import set_generation_cap
            from egrc_lite.train.schedule import stage_caps

            clip, cap = stage_caps(self.stage.config, self.runner.state.stage_step)
            if set_generation_cap(self.trainer, clip, cap):
                logger.info("stage %s step %d: generation cap %d, length clip %d (cap_schedule)", self.stage.name,
                            self.runner.state.stage_step + 1, cap, clip)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" not in logs or "train_runtime" in logs:
            return  # the end-of-training summary, not a step
        r, sched = self.runner, self.runner.state
        stats = self.trainer.egrc_pop_step_stats()
        row: dict[str, Any] = {"step": sched.global_step + 1, "stage": self.stage.name,
                               "stage_index": self.stage.index, "stage_step": sched.stage_step + 1,
                               "mode": self.stage.mode}
        row.update({f"train/{k}": _finite(v) for k, v in stats.items()})
        row["train/loss"] = _finite(logs.get("loss"))
        row["train/lr"] = _finite(logs.get("learning_rate"))
        row["train/grad_norm"] = _finite(logs.get("grad_norm"))
        if "train/acc" not in row and "compress/accuracy" in logs:
            row["train/acc"] = _finite(logs["compress/accuracy"])
        if self.stage.config.cap_schedule:
            row["train/cap"] = self.trainer.max_completion_length  # this step's (tightened) generation cap
        row["time/step_s"] = time.perf_counter() - self._t0
        metric = row.get(SWITCH_METRIC_KEYS[r.cfg.schedule.auto_switch.metric])
        reason = sched.observe(r.plan, r.cfg.schedule.auto_switch, metric)
        if reason == "auto_switch":
            row["switch"] = True
            control.should_training_stop = True
            control.should_save = True
            logger.info("auto switch: leaving stage %s after %d steps (global step %d)",
                        self.stage.name, row["stage_step"], row["step"])
        if state.global_step != row["stage_step"]:
            logger.warning("trainer step %d != schedule stage step %d", state.global_step, row["stage_step"])
        if r.is_main:
            r.metrics.append(row)
            self._write_samples(row)
            r.write_run_state()
        self.trainer.egrc_samples = []
        if r.progress is not None:
            r.progress.update(row["stage_step"], row)

    def _write_samples(self, row: dict[str, Any]) -> None:
        samples = self.trainer.egrc_samples
        n = self.runner.cfg.train.num_samples_logged
        if not samples or n <= 0:
            return
        picks = sorted({round(i * len(samples) / n) for i in range(min(n, len(samples)))})
        for i in picks:
            self.runner.samples.append({"step": row["step"], "stage": row["stage"],
                                        "stage_step": row["stage_step"], **samples[i]})

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.runner.is_main and ckpt.is_dir():
            atomic_write_json(ckpt / CKPT_STATE, {"schedule": self.runner.state.to_dict(),
                                                  "stage": self.stage.name, "stage_index": self.stage.index,
                                                  "trainer_step": state.global_step})
            respect_umask(ckpt)  # safetensors writes 0600
            self.runner.last_checkpoint = str(ckpt)
            self.runner.write_run_state()


def _finite(value: Any) -> float | None:
    """A float for JSON, ``None`` for missing/NaN/inf."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


class _Runner:
    """State shared by the stage loop and its callbacks."""

    def __init__(self, cfg: EgrcConfig, run_dir: RunDir, plan: list[StagePlan], progress: Any, is_main: bool) -> None:
        self.cfg, self.run_dir, self.plan, self.progress, self.is_main = cfg, run_dir, plan, progress, is_main
        self.state = ScheduleState()
        self.metrics, self.samples = JsonlLog(run_dir.metrics_path), JsonlLog(run_dir.samples_path)
        self.last_checkpoint: str | None = None
        self.finished = False

    def steps_done(self) -> dict[str, int]:
        done = {f["name"]: int(f["steps"]) for f in self.state.finished}
        current = self.state.current(self.plan)
        if current is not None:
            done[current.name] = self.state.stage_step
        return done

    def write_run_state(self) -> None:
        current = self.state.current(self.plan)
        atomic_write_json(self.run_dir.state_path, {
            "finished": self.finished,
            "stage_index": self.state.stage_index,
            "stage": current.name if current else None,
            "stage_step": self.state.stage_step,
            "global_step": self.state.global_step,
            "plan": [{"name": p.name, "mode": p.mode, "steps": p.steps, "config_index": p.index} for p in self.plan],
            "steps_done": self.steps_done(),
            "switch_steps": {f["name"]: f["end_step"] for f in self.state.finished if f["reason"] == "auto_switch"},
            "stages_done": self.state.finished,
            "last_checkpoint": self.last_checkpoint,
            "schedule": self.state.to_dict(),
        })


def _stage_summary(rows: list[dict[str, Any]], finished: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in finished:
        mine = [r for r in rows if r.get("stage") == f["name"]]
        first, last = (mine[0], mine[-1]) if mine else ({}, {})
        out.append({**f, "first_len": first.get("train/len/mean"), "last_len": last.get("train/len/mean"),
                    "first_acc": first.get("train/acc"), "last_acc": last.get("train/acc"),
                    "first_entropy": first.get("train/entropy/mean"), "last_entropy": last.get("train/entropy/mean")})
    return out


def run_schedule(cfg: EgrcConfig, run_dir: RunDir, *, resume: bool = False, init_adapter: str | None = None,
                 stage_filter: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Run the stages of ``cfg.schedule`` (those in ``stage_filter``, if given) into ``run_dir``.

    Returns ``{"steps", "stages": [{name, mode, steps, end_step, reason, first_len, last_len,
    first_acc, last_acc, ...}], "switch_steps", "adapter", "model_source", "resumed_from"}``.
    ``progress`` (optional) gets ``start_stage(name, total)``, ``update(step, metrics)`` and
    ``end_stage()``.
    """
    import torch
    from accelerate import PartialState

    from egrc_lite.backends import load_backend
    from egrc_lite.backends.hf import drop_reference_adapter, save_adapter
    from egrc_lite.data import data_fingerprint, fit_prompt_length, load_problems, to_prompt_dataset, token_budget
    from egrc_lite.generate.base import encode_prompt
    from egrc_lite.train.trainer import make_trainer_class

    dist = PartialState(cpu=not torch.cuda.is_available())
    plan = select_stages(plan_stages(cfg.schedule), stage_filter)
    for stage in plan:
        check_switch_metric(cfg, stage)  # before anything is loaded or written
    check_loggers_installed(cfg.train)
    if not resume:
        check_new_run_dir(run_dir.path)  # every process, before the main one writes (the barrier below)
    dist.wait_for_everyone()
    problems = load_problems(cfg.data)
    backend = load_backend(cfg)  # on unsloth: imports it (already done by egrc_lite.train.run_schedule)
    logger.info("backend %s (%s)", backend.name, backend.reason)
    trainer_class = make_trainer_class()  # on top of trl.GRPOTrainer as the backend left it
    # one live display, on the main process (the others would draw the same bars over it)
    runner = _Runner(cfg, run_dir, plan, progress if dist.is_main_process else None, dist.is_main_process)
    if resume and run_dir.is_finished():
        return _finished_summary(run_dir, runner)
    checkpoint = _resume_point(runner) if resume else _fresh_start(runner)
    dist.wait_for_everyone()

    model, tokenizer, model_source = backend.load_policy(cfg, init_adapter=init_adapter)
    budget = token_budget(cfg)  # L1: a token budget in each prompt (reward.length_term=l1), else None
    problems, dropped = fit_prompt_length(problems, cfg.data, lambda m: len(encode_prompt(tokenizer, m)), budget)
    if dropped:
        logger.warning("%d of %d training prompts exceed data.max_prompt_length=%d tokens and are left out",
                       dropped, dropped + len(problems), cfg.data.max_prompt_length)
    dataset = to_prompt_dataset(problems, cfg.data, budget)
    generation = backend.generation(model)
    logger.info("rollouts: %s", generation)
    if runner.is_main and (not resume or not run_dir.manifest_path.exists()):
        write_manifest(run_dir, cfg, data_hash=data_fingerprint(problems), model_source=model_source,
                       extra={"backend": backend.name, "generation": generation, "stages": [p.name for p in plan],
                              "stage_filter": stage_filter, "init_adapter": init_adapter,
                              "prompts_dropped_too_long": dropped,
                              "token_budget": None if budget is None else [budget.low, budget.high]})
    if checkpoint is not None and runner.state.stage_step == 0:
        _load_adapter_weights(model, checkpoint)  # the checkpoint ended its stage: start the next from it

    resume_from = checkpoint if checkpoint is not None and runner.state.stage_step > 0 else None
    with logger_env(cfg, run_dir, runner.is_main):
        while not runner.state.done(plan):
            reference = stage_reference(runner, model, resumed=resume_from is not None)
            trainer = build_stage_trainer(runner, model, tokenizer, dataset, trainer_class, backend.grpo_overrides,
                                          reference)
            _train_stage(runner, trainer, resume_from)
            resume_from = None
            del trainer
            finish_wandb_run(cfg)
            gc.collect()

    runner.finished = True
    drop_reference_adapter(model)  # the adapter/ folder holds the trained adapter only
    if runner.is_main:
        save_adapter(model, tokenizer, run_dir.adapter_dir)
        runner.write_run_state()
    dist.wait_for_everyone()
    finished = runner.state.finished
    return {
        "steps": runner.state.global_step,
        "stages": _stage_summary(runner.metrics.rows(), finished),
        "switch_steps": {f["name"]: f["end_step"] for f in finished if f["reason"] == "auto_switch"},
        "adapter": str(run_dir.adapter_dir),
        "model_source": model_source,
        "resumed_from": checkpoint,
    }


def _resume_point(runner: _Runner) -> str | None:
    """Restore the schedule from the latest checkpoint and drop log rows past it; the checkpoint path."""
    runner.state, checkpoint = find_resume_point(runner.run_dir, runner.plan)
    runner.last_checkpoint = checkpoint
    keep_to = runner.state.global_step
    problem = runner.run_dir.state_problem()
    if problem and problem != "missing":
        logger.warning("%s is %s; rebuilding it from the checkpoints", runner.run_dir.state_path, problem)
    if runner.is_main:
        runner.metrics.truncate(lambda row: _row_step(row) <= keep_to)
        runner.samples.truncate(lambda row: _row_step(row) <= keep_to)
    logger.info("resuming %s: %s", runner.run_dir.path, describe_resume_point(runner.state, checkpoint, runner.plan))
    return checkpoint


def _row_step(row: dict[str, Any]) -> float:
    """A log row's global ``step`` (0 when it has none or not a number)."""
    step = row.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


def _fresh_start(runner: _Runner) -> None:
    """A new run (its folder passed :func:`check_new_run_dir`): clear what egrc-lite left there before a first
    checkpoint, write the config."""
    run_dir = runner.run_dir
    if runner.is_main:
        run_dir.create()
        shutil.rmtree(run_dir.stages_dir, ignore_errors=True)
        for log in (runner.metrics, runner.samples):
            log.path.unlink(missing_ok=True)
        write_config(run_dir, runner.cfg)


def stage_reference(runner: _Runner, model: Any, resumed: bool) -> Path | None:
    """Before the current stage's trainer is built: drop the previous ``ref`` adapter; with ``kl_beta > 0``, save the
    adapter as the stage's KL reference (:data:`REFERENCE_FILE`), or, ``resumed`` mid-stage, return the saved one."""
    from egrc_lite.backends.hf import drop_reference_adapter, save_adapter_weights

    drop_reference_adapter(model)
    stage = runner.state.current(runner.plan)
    path = runner.run_dir.stage_dir(stage.index, stage.name) / REFERENCE_FILE
    if stage.config.kl_beta <= 0:
        return None
    if not resumed:
        if runner.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_adapter_weights(model, path)
        return None
    if not path.is_file():
        logger.warning("%s is missing: the KL reference of stage %s is the one its checkpoint saved", path, stage.name)
        return None
    return path


def build_stage_trainer(runner: _Runner, model: Any, tokenizer: Any, dataset: Any, trainer_class: type,
                        grpo_overrides: Any, reference: Path | None = None) -> Any:
    """A fresh trainer for the schedule's current stage, with its :class:`StageCallback` (which loads
    ``reference`` into the KL reference adapter as training begins, see :func:`stage_reference`)."""
    from egrc_lite.train.trainer import build_trainer

    stage = runner.state.current(runner.plan)
    callback = StageCallback(runner, stage, reference)
    folder = runner.run_dir.stage_dir(stage.index, stage.name).name  # <i>-<name>
    trainer = build_trainer(runner.cfg, stage.config, model, tokenizer, dataset,
                            output_dir=str(runner.run_dir.stage_dir(stage.index, stage.name)),
                            seed=runner.cfg.train.seed + stage.index, callbacks=[callback],
                            trainer_class=trainer_class, logging_dir=str(logs_dir(runner.run_dir) / folder),
                            run_name=f"{runner.run_dir.path.name}/{folder}", project=LOGGER_PROJECT,
                            **grpo_overrides(runner.cfg, stage.config, model))
    callback.trainer = trainer
    check_switch_metric(runner.cfg, stage, trainer)
    return trainer


def _train_stage(runner: _Runner, trainer: Any, resume_from: str | None) -> None:
    stage = runner.state.current(runner.plan)
    index, progress = runner.state.stage_index, runner.progress
    logger.info("stage %s (%s): steps %d..%d", stage.name, stage.mode, runner.state.stage_step + 1, stage.steps)
    if progress is not None:
        progress.start_stage(stage.name, stage.steps)
        if runner.state.stage_step:
            progress.update(runner.state.stage_step, {})
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        if progress is not None:
            progress.end_stage()
    if runner.state.stage_index == index:
        raise RuntimeError(f"stage {stage.name} stopped after {runner.state.stage_step} of {stage.steps} "
                           "steps without finishing (see the log above)")


def _load_adapter_weights(model: Any, checkpoint: str) -> None:
    """Copy a checkpoint's adapter weights into ``model`` (stage boundary on resume)."""
    from egrc_lite.backends.hf import copy_adapter_weights

    copy_adapter_weights(model, checkpoint, f"checkpoint {checkpoint}")


def _finished_summary(run_dir: RunDir, runner: _Runner) -> dict[str, Any]:
    state = run_dir.read_state() or {}
    finished = state.get("stages_done", [])
    return {"steps": state.get("global_step", 0), "stages": _stage_summary(runner.metrics.rows(), finished),
            "switch_steps": state.get("switch_steps", {}), "adapter": str(run_dir.adapter_dir),
            "model_source": None, "resumed_from": None}
