"""Where a run restarts: the stages a run covers (``--stage``) and the latest checkpoint of a run folder.

Every checkpoint ``stages/<i>-<name>/checkpoint-N`` carries ``egrc_state.json``, the schedule state as of
that step; :func:`find_resume_point` picks the latest one. Used by the stage runner and, to say what a
``--resume`` will do before anything loads, by the CLI (:func:`resume_line`).
"""

from __future__ import annotations

import dataclasses

from egrc_lite.config import ConfigError, EgrcConfig
from egrc_lite.runs import CKPT_STATE, RunDir, read_json
from egrc_lite.train.schedule import ScheduleState, StagePlan, plan_stages


def select_stages(plan: list[StagePlan], stage_filter: list[str] | None) -> list[StagePlan]:
    """The stages whose mode or name is in ``stage_filter`` (all when ``None``), start steps renumbered."""
    if not stage_filter:
        return plan
    chosen = [p for p in plan if p.mode in stage_filter or p.name in stage_filter]
    if not chosen:
        valid = ", ".join(sorted({p.mode for p in plan} | {p.name for p in plan}))
        raise ConfigError(f"--stage {','.join(stage_filter)}: the schedule has no such stage (it has: {valid})")
    out, start = [], 0
    for p in chosen:
        out.append(dataclasses.replace(p, start_step=start))
        start += p.steps
    return out


def find_resume_point(run_dir: RunDir, plan: list[StagePlan]) -> tuple[ScheduleState, str | None]:
    """The latest checkpoint with a schedule state, and that state (a fresh one if there is none)."""
    best: tuple[int, str, ScheduleState] | None = None
    names = [p.name for p in plan]
    for p in plan:
        folder = run_dir.stage_dir(p.index, p.name)
        for ckpt in folder.glob("checkpoint-*") if folder.is_dir() else ():
            path = ckpt / CKPT_STATE
            if not path.is_file():
                continue
            try:
                data = read_json(path)
                sched = ScheduleState.from_dict(data["schedule"])
                stage = data.get("stage")
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if stage not in names:
                continue
            if best is None or sched.global_step > best[0]:
                best = (sched.global_step, str(ckpt), sched)
    if best is None:
        return ScheduleState(), None
    return best[2], best[1]


def describe_resume_point(sched: ScheduleState, checkpoint: str | None, plan: list[StagePlan]) -> str:
    """One line: the stage, step and checkpoint a resume restarts from.

    >>> plan = plan_stages(EgrcConfig().schedule)
    >>> describe_resume_point(ScheduleState(), None, plan)
    'no checkpoint yet: starting over at stage compress, step 1'
    """
    stage = sched.current(plan)
    if checkpoint is None:
        return f"no checkpoint yet: starting over at stage {stage.name if stage else '?'}, step 1"
    if stage is None:
        return f"every stage is done: saving the final adapter from {checkpoint}"
    where = f"stage {stage.name}, step {sched.stage_step + 1} of {stage.steps} (global step {sched.global_step + 1})"
    if sched.stage_step == 0:
        return f"{where}, starting from the adapter of {checkpoint} (the end of the previous stage)"
    return f"{where}, from {checkpoint}"


def resume_line(cfg: EgrcConfig, run_dir: RunDir, stage_filter: list[str] | None = None) -> str:
    """What ``run_schedule(..., resume=True)`` will do with ``run_dir``, in one line (for the CLI to print)."""
    plan = select_stages(plan_stages(cfg.schedule), stage_filter)
    sched, checkpoint = find_resume_point(run_dir, plan)
    line = f"resuming {run_dir.path}: {describe_resume_point(sched, checkpoint, plan)}"
    problem = run_dir.state_problem()
    return line + (f" (state.json {problem}: rebuilt from the checkpoints)" if problem and checkpoint else "")
