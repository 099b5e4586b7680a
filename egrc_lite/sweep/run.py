"""Running a planned sweep (:mod:`egrc_lite.sweep.plan` plans it): each combination trained, its adapter
and the base model evaluated, every step recorded in ``sweep.json``, then the comparison report.

See :mod:`egrc_lite.sweep.plan` for the layout of a sweep directory and the statuses. Each training and
each evaluation is a job: run in this process, or with ``isolate`` in a child process of its own
(:mod:`egrc_lite.sweep.isolate`), so that a GPU's memory is given back between jobs. The parent
decides what is already complete (a finished run, an evaluation with every sample) and starts no
child for it.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from egrc_lite.config import EVAL_GENERATOR, EgrcConfig, EvalSettings
from egrc_lite.runs import RunDir, atomic_write_json, atomic_write_text
from egrc_lite.sweep.isolate import ChildFailed, RunJob, in_process, one_line, run_in_child, want_isolation
from egrc_lite.sweep.plan import BASE, ERROR_TXT, REPORT_MD, SWEEP_JSON, Combination, SweepError, SweepPlan, dict_diff
from egrc_lite.sweep.report import write_report

logger = logging.getLogger("egrc_lite.sweep")  # one logger for planning and running a sweep


@dataclass(frozen=True)
class SweepEval:
    """What every model is evaluated on; answer rule and prompt come from each model's own config."""

    benchmarks: tuple[Any, ...]  # egrc_lite.evaluation.tasks.Benchmark
    settings: Any  # egrc_lite.evaluation.evaluate.EvalSettings
    backend: str = "hf"
    stages: bool = False  # also the adapter at the end of every stage but the last
    scales: tuple[float, ...] = ()  # also each run's adapter with its update times each scale (eval --adapter-scale)

    def settings_for(self, cfg: EgrcConfig) -> Any:
        return dataclasses.replace(self.settings, answer_rule=cfg.reward.answer_rule,
                                   prompt_suffix=cfg.data.prompt_suffix, system_prompt=cfg.data.system_prompt)


EVAL = EvalSettings()  # the evaluation defaults (egrc_lite.config)

def default_max_tokens(plan: SweepPlan) -> int:
    """The largest ``max_completion_length`` of any stage of the base or of any combination."""
    return max(s.max_completion_length or 1 for cfg in (plan.base, *(c.config for c in plan.runs))
               for s in cfg.schedule.stages)


def _eval_model_section(cfg: EgrcConfig) -> dict[str, Any]:
    return cfg.model.model_dump(mode="json", exclude={"gradient_checkpointing", "load_in_4bit"})


def prepare_eval(plan: SweepPlan, benchmarks: str, *, n: int = EVAL.n, limit: int | None = None,
                 max_tokens: int | None = None, batch_size: int = EVAL.batch_size, data_dir: str | Path | None = None,
                 backend: str = EVAL_GENERATOR, seed: int = EVAL.seed, stages: bool = False,
                 scales: tuple[float, ...] = ()) -> SweepEval:
    """Load the benchmarks and fix the sampling settings (fails before any training starts)."""
    from egrc_lite.evaluation.tasks import load_benchmark, parse_benchmarks
    from egrc_lite.generate import GENERATORS

    for combo in plan.runs:
        if _eval_model_section(combo.config) != _eval_model_section(plan.base):
            raise SweepError(f"combination {combo.name} changes the model section; the sweep compares every run "
                             "with one base model: vary training settings only, or sweep without --eval")
    if backend not in GENERATORS:
        raise SweepError(f"unknown generation backend '{backend}'; valid: {', '.join(GENERATORS)}")
    settings = EvalSettings(n=n, max_tokens=max_tokens or default_max_tokens(plan), batch_size=batch_size,
                            limit=limit, seed=seed)
    benches = tuple(load_benchmark(name, data_dir=data_dir, limit=limit) for name in parse_benchmarks(benchmarks))
    return SweepEval(benches, settings, backend, stages, tuple(scales))


def _eval_complete(out_dir: Path, spec: SweepEval, settings: Any, adapter: str | None,
                   adapter_scale: float | None = None) -> bool:
    """Whether ``out_dir`` already holds every sample this evaluation asks for (then no model is loaded)."""
    from egrc_lite.evaluation.evaluate import EvalError, read_summary

    try:
        summary = read_summary(out_dir)
    except EvalError:
        return False
    saved = summary.get("settings") or {}
    keys = ("n", "max_tokens", "temperature", "top_p", "seed", "answer_rule", "prompt_suffix", "system_prompt")
    if summary.get("adapter") != adapter or saved.get("adapter_scale") != adapter_scale or any(
            saved.get(k) != getattr(settings, k) for k in keys):
        return False
    entries = summary["benchmarks"]
    return all(b.name in entries and entries[b.name].get("n_problems") == len(b.problems)
               and entries[b.name].get("n_samples") == settings.n for b in spec.benchmarks)


def _adapter_id(adapter: Path | None) -> str | None:
    return str(adapter.resolve()) if adapter is not None else None


def eval_generator(spec: SweepEval, cfg: EgrcConfig, adapter: Path | None, settings: Any,
                   adapter_scale: float | None = None) -> Any:
    """The generator of one evaluation of the sweep (built where the evaluation runs: in its child
    process with ``isolate``); engine options of a backend belong here."""
    from egrc_lite.evaluation.evaluate import eval_prompts
    from egrc_lite.generate import get_generator

    scaled = {} if adapter_scale is None else {"adapter_scale": adapter_scale}
    return get_generator(spec.backend, cfg, adapter=adapter, batch_size=settings.batch_size,
                         prompts=eval_prompts(spec.benchmarks, settings), max_tokens=settings.max_tokens, **scaled)


def evaluate_model(cfg: EgrcConfig, adapter: Path | None, out_dir: Path, spec: SweepEval,
                   base_dir: Path | None, adapter_scale: float | None = None, progress: Any = None) -> str:
    """Evaluate the model of ``cfg`` (with ``adapter``, its update times ``adapter_scale`` when given) into
    ``out_dir``: ``"reused"`` or ``"evaluated"``."""
    from egrc_lite.evaluation.evaluate import evaluate

    settings = spec.settings_for(cfg)
    adapter_id = _adapter_id(adapter)
    if _eval_complete(out_dir, spec, settings, adapter_id, adapter_scale):
        return "reused"
    generator = eval_generator(spec, cfg, adapter, settings, adapter_scale)
    scaled = {} if adapter_scale is None else {"adapter_scale": adapter_scale}
    try:
        evaluate(generator, spec.benchmarks, out_dir, settings, model=cfg.model.name_or_path, adapter=adapter_id,
                 base=base_dir, extra_settings={"dtype": getattr(generator, "dtype", None) or cfg.model.dtype, **scaled},
                 progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
        del generator
    return "evaluated"


def stage_eval_name(run: str, stage: str) -> str:
    """Folder under ``eval/`` of a run's adapter at the end of ``stage``."""
    return f"{run}@{stage}"


def scale_eval_name(run: str, scale: float) -> str:
    """Folder under ``eval/`` of a run's adapter at LoRA scale ``scale`` (report row ``NAME@S``)."""
    from egrc_lite.generate.scale import scale_label

    return f"{run}@scale-{scale_label(scale)}"


def closing_job(run_job: RunJob, label: str, fn: Any, args: tuple[Any, ...], progress: Any, close: str) -> Any:
    """``run_job(label, fn, args, progress)``; when it fails, ``progress.<close>()`` too (a child that
    died could not close its live display here)."""
    try:
        return run_job(label, fn, args, progress)
    except BaseException:
        getattr(progress, close, lambda: None)()
        raise


def run_evaluation(run_job: RunJob, cfg: EgrcConfig, adapter: Path | None, out_dir: Path, spec: SweepEval,
                   base_dir: Path | None, progress: Any = None, adapter_scale: float | None = None) -> str:
    """:func:`evaluate_model` as a job of ``run_job`` (job ``eval/NAME``), unless ``out_dir`` is complete."""
    if _eval_complete(out_dir, spec, spec.settings_for(cfg), _adapter_id(adapter), adapter_scale):
        return "reused"
    return closing_job(run_job, f"eval/{out_dir.name}", evaluate_model,
                       (cfg, adapter, out_dir, spec, base_dir, adapter_scale), progress, "close")


def evaluate_stage_ends(combo: Combination, run_dir: RunDir, out: Path, spec: SweepEval, base_dir: Path | None,
                        progress: Any = None, run_job: RunJob = in_process) -> list[dict[str, Any]]:
    """Evaluate the adapter at the end of every stage but the last (the paper's Table 2 evaluates its
    exploration-first run after exploration too); one record per stage."""
    done = []
    for stage, checkpoint in run_dir.stage_end_checkpoints():
        eval_dir = out / "eval" / stage_eval_name(combo.name, stage)
        how = run_evaluation(run_job, combo.config, checkpoint, eval_dir, spec, base_dir, progress)
        done.append({"stage": stage, "checkpoint": str(checkpoint), "eval_dir": str(eval_dir), "eval": how})
    return done


# ---------------------------------------------------------------------------------------- execution

@dataclass
class SweepResult:
    record: dict[str, Any]  # the content of sweep.json
    report_path: Path
    plot_path: Path | None
    report: Any  # egrc_lite.evaluation.report.Report, or None without evaluation

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.record["runs"] if r["status"] == "failed"]


def _initial_record(plan: SweepPlan, out: Path, spec: SweepEval | None, isolated: bool) -> dict[str, Any]:
    evaluation = None
    if spec is not None:
        evaluation = {**{k: getattr(spec.settings, k) for k in ("n", "max_tokens", "temperature", "top_p", "seed",
                                                                "limit", "batch_size")},
                      "benchmarks": {b.name: b.source for b in spec.benchmarks}, "backend": spec.backend,
                      "stages": spec.stages}
    return {
        "presets": list(plan.presets), "sets": list(plan.sets), "grid": {a.key: list(a.values) for a in plan.axes},
        "eval": evaluation, "isolated": isolated,
        "base": None if spec is None else {"status": "pending", "reason": None, "eval_dir": str(out / "eval" / BASE)},
        "runs": [{"name": c.name, "values": dict(c.assignments), "presets": c.presets, "overrides": c.sets,
                  "status": "pending", "phase": None, "reason": None, "train": None, "eval": None, "seconds": None,
                  "stage_evals": [],
                  "run_dir": str(out / "runs" / c.name),
                  "eval_dir": str(out / "eval" / c.name) if spec is not None else None} for c in plan.runs],
        "report": str(out / REPORT_MD), "plot": None, "updated": None,
    }


def _check_saved_config(run_dir: RunDir, cfg: EgrcConfig) -> None:
    try:
        saved = yaml.safe_load(run_dir.config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SweepError(f"{run_dir.config_path}: unreadable ({type(err).__name__}); delete {run_dir.path}") from None
    diff = dict_diff(saved if isinstance(saved, dict) else {}, cfg.model_dump(mode="json"))
    if diff:
        key, old, new = diff[0]
        raise SweepError(f"{run_dir.path} holds a run made with another config ({key}: {old!r} there, {new!r} now; "
                         f"{len(diff)} difference(s)); delete it or choose another --out")


def finished_training(combo: Combination, run_dir: RunDir) -> str | None:
    """``"reused"`` when ``run_dir`` holds this combination's finished run, else ``None``; a run made with
    another config raises a :class:`SweepError`."""
    if run_dir.state_path.is_file():
        _check_saved_config(run_dir, combo.config)
        if run_dir.is_finished():
            return "reused"
    return None


def train_combination(combo: Combination, run_dir: RunDir, progress: Any = None) -> str:
    """Train one combination into ``run_dir``: ``"reused"`` (finished), ``"resumed"`` or ``"trained"``."""
    if finished_training(combo, run_dir):
        return "reused"
    resume = run_dir.state_path.is_file() or bool(run_dir.checkpoints())
    from egrc_lite import train

    train.run_schedule(combo.config, run_dir, resume=resume, progress=progress)
    return "resumed" if resume else "trained"


def _write_error(run_dir: RunDir, err: BaseException) -> None:
    try:
        text = err.details if isinstance(err, ChildFailed) else "".join(traceback.format_exception(err))
        atomic_write_text(run_dir.path / ERROR_TXT, text)
    except OSError:
        logger.warning("could not write %s", run_dir.path / ERROR_TXT)


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_one(combo: Combination, entry: dict[str, Any], out: Path, spec: SweepEval | None, base_dir: Path | None,
             train_progress: Any, eval_progress: Any, run_job: RunJob) -> None:
    run_dir = RunDir(out / "runs" / combo.name)
    t0 = time.perf_counter()
    entry.update(status="running", phase="train", reason=None, train=None, eval=None, stage_evals=[], scale_evals=[])
    try:
        entry["train"] = finished_training(combo, run_dir) or closing_job(
            run_job, f"runs/{combo.name}", train_combination, (combo, run_dir), train_progress, "end_stage")
        if spec is not None:
            entry["phase"] = "eval"
            entry["eval"] = run_evaluation(run_job, combo.config, run_dir.adapter_dir, out / "eval" / combo.name,
                                           spec, base_dir, eval_progress)
            if spec.stages:
                entry["stage_evals"] = evaluate_stage_ends(combo, run_dir, out, spec, base_dir, eval_progress,
                                                           run_job)
            for scale in spec.scales:
                eval_dir = out / "eval" / scale_eval_name(combo.name, scale)
                how = run_evaluation(run_job, combo.config, run_dir.adapter_dir, eval_dir, spec, base_dir,
                                     eval_progress, adapter_scale=scale)
                entry["scale_evals"].append({"scale": scale, "eval_dir": str(eval_dir), "eval": how})
    except Exception as err:  # noqa: BLE001 - a failed combination is recorded and the sweep goes on
        entry.update(status="failed", reason=one_line(err), seconds=round(time.perf_counter() - t0, 1))
        _write_error(run_dir, err)
        logger.warning("combination %s failed in %s: %s", combo.name, entry["phase"], entry["reason"])
        return
    idle = entry["train"] == "reused" and entry["eval"] in (None, "reused") and all(
        e["eval"] == "reused" for e in [*entry["stage_evals"], *entry["scale_evals"]])
    entry.update(status="skipped" if idle else "done", phase=None, seconds=round(time.perf_counter() - t0, 1))
    (run_dir.path / ERROR_TXT).unlink(missing_ok=True)


def run_sweep(plan: SweepPlan, out: str | Path, spec: SweepEval | None = None, *, train_progress: Any = None,
              eval_progress: Any = None, notify: Callable[[str], None] | None = None,
              isolate: bool | None = None) -> SweepResult:
    """Train every combination in turn (then evaluate it), evaluate the base once, write the report.

    ``train_progress`` goes to :func:`egrc_lite.train.run_schedule`, ``eval_progress`` to
    :func:`egrc_lite.evaluation.evaluate.evaluate` (from a child, their calls are replayed here);
    ``notify`` gets one line per step of the sweep. ``isolate``: each training and evaluation in a
    child process of its own (``None``: when a CUDA GPU is visible).
    """
    out = Path(out).expanduser()
    notify = notify or logger.info
    isolated = want_isolation(isolate)
    run_job: RunJob = run_in_child if isolated else in_process
    record = _initial_record(plan, out, spec, isolated)

    def save() -> None:
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(out / SWEEP_JSON, record)

    save()
    base_dir = None
    if spec is not None:
        notify(f"base model {plan.base.model.name_or_path}: evaluating -> {out / 'eval' / BASE}")
        try:
            done = run_evaluation(run_job, plan.base, None, out / "eval" / BASE, spec, None, eval_progress)
            record["base"].update(status="skipped" if done == "reused" else "done")
            base_dir = out / "eval" / BASE
        except Exception as err:  # noqa: BLE001 - the runs can still be trained and evaluated
            record["base"].update(status="failed", reason=one_line(err))
            logger.warning("base evaluation failed: %s", record["base"]["reason"])
        save()
        _free_memory()
    for i, (combo, entry) in enumerate(zip(plan.runs, record["runs"]), 1):
        notify(f"[{i}/{len(plan.runs)}] {combo.name} ({combo.label}) -> {out / 'runs' / combo.name}")
        try:
            _run_one(combo, entry, out, spec, base_dir, train_progress, eval_progress, run_job)
        except BaseException:  # interrupted: leave a readable record, then stop
            entry.update(status="pending", reason="interrupted")
            save()
            raise
        save()
        _free_memory()
        notify(f"[{i}/{len(plan.runs)}] {combo.name}: {entry['status']}"
               + (f" ({entry['phase']}: {entry['reason']})" if entry["status"] == "failed" else ""))
    report, plot = write_report(plan, out, record, spec)
    record["plot"] = str(plot) if plot else None
    save()
    return SweepResult(record, out / REPORT_MD, plot, report)
