"""Running a planned sweep (:mod:`egrc_lite.sweep.plan` plans it): each combination trained, its adapter
and the base model evaluated, every step recorded in ``sweep.json``, then the comparison report.

See :mod:`egrc_lite.sweep.plan` for the layout of a sweep directory and the statuses.
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
from egrc_lite.errors import EgrcError
from egrc_lite.runs import RunDir, atomic_write_json, atomic_write_text, read_metrics
from egrc_lite.sweep.plan import (BASE, ERROR_TXT, PLOT_PNG, REPORT_MD, SWEEP_JSON, Combination, SweepError, SweepPlan,
                             dict_diff)

logger = logging.getLogger("egrc_lite.sweep")  # one logger for planning and running a sweep


@dataclass(frozen=True)
class SweepEval:
    """What every model is evaluated on; answer rule and prompt come from each model's own config."""

    benchmarks: tuple[Any, ...]  # egrc_lite.evaluation.tasks.Benchmark
    settings: Any  # egrc_lite.evaluation.evaluate.EvalSettings
    backend: str = "hf"
    stages: bool = False  # also the adapter at the end of every stage but the last

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
                 backend: str = EVAL_GENERATOR, seed: int = EVAL.seed, stages: bool = False) -> SweepEval:
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
    return SweepEval(benches, settings, backend, stages)


def _eval_complete(out_dir: Path, spec: SweepEval, settings: Any, adapter: str | None) -> bool:
    """Whether ``out_dir`` already holds every sample this evaluation asks for (then no model is loaded)."""
    from egrc_lite.evaluation.evaluate import EvalError, read_summary

    try:
        summary = read_summary(out_dir)
    except EvalError:
        return False
    saved = summary.get("settings") or {}
    keys = ("n", "max_tokens", "temperature", "top_p", "seed", "answer_rule", "prompt_suffix", "system_prompt")
    if summary.get("adapter") != adapter or any(saved.get(k) != getattr(settings, k) for k in keys):
        return False
    entries = summary["benchmarks"]
    return all(b.name in entries and entries[b.name].get("n_problems") == len(b.problems)
               and entries[b.name].get("n_samples") == settings.n for b in spec.benchmarks)


def evaluate_model(cfg: EgrcConfig, adapter: Path | None, out_dir: Path, spec: SweepEval,
                   base_dir: Path | None, progress: Any = None) -> str:
    """Evaluate the model of ``cfg`` (with ``adapter``) into ``out_dir``: ``"reused"`` or ``"evaluated"``."""
    from egrc_lite.evaluation.evaluate import evaluate
    from egrc_lite.generate import get_generator

    settings = spec.settings_for(cfg)
    adapter_id = str(adapter.resolve()) if adapter is not None else None
    if _eval_complete(out_dir, spec, settings, adapter_id):
        return "reused"
    generator = get_generator(spec.backend, cfg, adapter=adapter, batch_size=settings.batch_size)
    try:
        evaluate(generator, spec.benchmarks, out_dir, settings, model=cfg.model.name_or_path, adapter=adapter_id,
                 base=base_dir, extra_settings={"dtype": cfg.model.dtype}, progress=progress)
    finally:
        getattr(progress, "close", lambda: None)()
        del generator
    return "evaluated"


def stage_eval_name(run: str, stage: str) -> str:
    """Folder under ``eval/`` of a run's adapter at the end of ``stage``."""
    return f"{run}@{stage}"


def evaluate_stage_ends(combo: Combination, run_dir: RunDir, out: Path, spec: SweepEval, base_dir: Path | None,
                        progress: Any = None) -> list[dict[str, Any]]:
    """Evaluate the adapter at the end of every stage but the last (the paper's Table 2 evaluates its
    exploration-first run after exploration too); one record per stage."""
    done = []
    for stage, checkpoint in run_dir.stage_end_checkpoints():
        eval_dir = out / "eval" / stage_eval_name(combo.name, stage)
        how = evaluate_model(combo.config, checkpoint, eval_dir, spec, base_dir, progress)
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


def one_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an error, with its type unless it is a user-facing one."""
    text = (str(err).strip().splitlines() or [""])[0]
    if not isinstance(err, EgrcError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _initial_record(plan: SweepPlan, out: Path, spec: SweepEval | None) -> dict[str, Any]:
    evaluation = None
    if spec is not None:
        evaluation = {**{k: getattr(spec.settings, k) for k in ("n", "max_tokens", "temperature", "top_p", "seed",
                                                                "limit", "batch_size")},
                      "benchmarks": {b.name: b.source for b in spec.benchmarks}, "backend": spec.backend,
                      "stages": spec.stages}
    return {
        "presets": list(plan.presets), "sets": list(plan.sets), "grid": {a.key: list(a.values) for a in plan.axes},
        "eval": evaluation,
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


def train_combination(combo: Combination, run_dir: RunDir, progress: Any = None) -> str:
    """Train one combination into ``run_dir``: ``"reused"`` (finished), ``"resumed"`` or ``"trained"``."""
    if run_dir.state_path.is_file():
        _check_saved_config(run_dir, combo.config)
        if run_dir.is_finished():
            return "reused"
    resume = run_dir.state_path.is_file()
    from egrc_lite import train

    train.run_schedule(combo.config, run_dir, resume=resume, progress=progress)
    return "resumed" if resume else "trained"


def _write_error(run_dir: RunDir, err: BaseException) -> None:
    try:
        atomic_write_text(run_dir.path / ERROR_TXT, "".join(traceback.format_exception(err)))
    except OSError:
        logger.warning("could not write %s", run_dir.path / ERROR_TXT)


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_one(combo: Combination, entry: dict[str, Any], out: Path, spec: SweepEval | None, base_dir: Path | None,
             train_progress: Any, eval_progress: Any) -> None:
    run_dir = RunDir(out / "runs" / combo.name)
    t0 = time.perf_counter()
    entry.update(status="running", phase="train", reason=None, train=None, eval=None, stage_evals=[])
    try:
        entry["train"] = train_combination(combo, run_dir, train_progress)
        if spec is not None:
            entry["phase"] = "eval"
            entry["eval"] = evaluate_model(combo.config, run_dir.adapter_dir, out / "eval" / combo.name, spec,
                                           base_dir, eval_progress)
            if spec.stages:
                entry["stage_evals"] = evaluate_stage_ends(combo, run_dir, out, spec, base_dir, eval_progress)
    except Exception as err:  # noqa: BLE001 - a failed combination is recorded and the sweep goes on
        entry.update(status="failed", reason=one_line(err), seconds=round(time.perf_counter() - t0, 1))
        _write_error(run_dir, err)
        logger.warning("combination %s failed in %s: %s", combo.name, entry["phase"], entry["reason"])
        return
    idle = entry["train"] == "reused" and entry["eval"] in (None, "reused") and all(
        e["eval"] == "reused" for e in entry["stage_evals"])
    entry.update(status="skipped" if idle else "done", phase=None, seconds=round(time.perf_counter() - t0, 1))
    (run_dir.path / ERROR_TXT).unlink(missing_ok=True)


def run_sweep(plan: SweepPlan, out: str | Path, spec: SweepEval | None = None, *, train_progress: Any = None,
              eval_progress: Any = None, notify: Callable[[str], None] | None = None) -> SweepResult:
    """Train every combination in turn (then evaluate it), evaluate the base once, write the report.

    ``train_progress`` goes to :func:`egrc_lite.train.run_schedule`, ``eval_progress`` to
    :func:`egrc_lite.evaluation.evaluate.evaluate`; ``notify`` gets one line per step of the sweep.
    """
    out = Path(out).expanduser()
    notify = notify or logger.info
    record = _initial_record(plan, out, spec)

    def save() -> None:
        record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(out / SWEEP_JSON, record)

    save()
    base_dir = None
    if spec is not None:
        notify(f"base model {plan.base.model.name_or_path}: evaluating -> {out / 'eval' / BASE}")
        try:
            done = evaluate_model(plan.base, None, out / "eval" / BASE, spec, None, eval_progress)
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
            _run_one(combo, entry, out, spec, base_dir, train_progress, eval_progress)
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


# ---------------------------------------------------------------------------------------- report

def training_summary(run_dir: Path, window: int = 4) -> dict[str, Any] | None:
    """Means over the first and the last ``window`` optimiser steps (at most half the run each) of a run's
    ``metrics.jsonl``."""
    rows = read_metrics(run_dir)
    if not rows:
        return None

    def mean(part: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in part if isinstance(r.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    k = max(1, min(window, len(rows) // 2))  # first and last do not overlap
    first, last = rows[:k], rows[-k:]
    return {"steps": rows[-1]["step"], "len_first": mean(first, "train/len/mean"),
            "len_last": mean(last, "train/len/mean"), "acc_first": mean(first, "train/acc"),
            "acc_last": mean(last, "train/acc"), "entropy_last": mean(last, "train/entropy/mean")}


def build_comparison(out: Path, record: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The Table 1 layout for the base and every evaluated combination (its stage ends first, with
    ``--eval-stages``), and the loaded summaries."""
    from egrc_lite.evaluation.evaluate import EvalError
    from egrc_lite.evaluation.report import ModelSummary, build_report, load_model

    def load(path: Any, label: str) -> Any:
        try:
            return load_model(path, label=label)
        except EvalError as err:
            logger.warning("%s left out of the report: %s", label, err)
            return None

    ok = ("done", "skipped")
    base = load(out / "eval" / BASE, BASE) if (record.get("base") or {}).get("status") in ok else None
    base = base or ModelSummary(f"{BASE} (not evaluated)", {"benchmarks": {}})
    models = []
    for entry in record["runs"]:
        if entry["status"] not in ok or not entry.get("eval_dir"):
            continue
        rows = [(e["eval_dir"], f"{entry['name']} (after {e['stage']})") for e in entry.get("stage_evals") or []]
        for eval_dir, label in [*rows, (entry["eval_dir"], entry["name"])]:
            m = load(eval_dir, label)
            if m is not None:
                models.append(dataclasses.replace(m, run_dir=Path(entry["run_dir"])))
    return build_report(base, models), [base, *models]


def _cell(value: Any, digits: int = 1, pct: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{100 * value:.0f}%" if pct else f"{value:.{digits}f}"


def runs_markdown(out: Path, record: dict[str, Any]) -> str:
    """One row per combination: grid values, status, and training metrics (first / last 4 steps)."""
    lines = ["| run | grid values | status | steps | train LEN first -> last | train acc first -> last "
             "| entropy last | note |", "|---|---|---|---:|---:|---:|---:|---|"]
    for entry in record["runs"]:
        t = training_summary(Path(entry["run_dir"])) or {}
        values = ", ".join(f"`{k}={v}`" for k, v in entry["values"].items())
        note = f"{entry['phase']}: {entry['reason']}" if entry["status"] == "failed" else (entry.get("reason") or "")
        lines.append(f"| {entry['name']} | {values} | {entry['status']} | {t.get('steps', '-')} | "
                     f"{_cell(t.get('len_first'), 0)} -> {_cell(t.get('len_last'), 0)} | "
                     f"{_cell(t.get('acc_first'), pct=True)} -> {_cell(t.get('acc_last'), pct=True)} | "
                     f"{_cell(t.get('entropy_last'), 3)} | {note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_report(plan: SweepPlan, out: Path, record: dict[str, Any], spec: SweepEval | None) -> tuple[Any, Path | None]:
    """Write ``report.md`` (and the accuracy-length plot with evaluation); returns the report and the plot path."""
    from egrc_lite.evaluation.report import to_markdown

    grid = "; ".join(f"`{a.key}` = {', '.join(a.values)}" for a in plan.axes)
    parts = [f"# egrc-lite sweep: {' + '.join(plan.presets)}\n",
             f"Grid: {grid}.  ", f"Overrides: {', '.join(f'`{s}`' for s in plan.sets) or 'none'}.  "]
    report, plot = None, None
    if spec is None:
        parts.append("Evaluation: none (`--eval` not given); training metrics only.\n")
    else:
        s = record["eval"]
        parts.append(f"Evaluation: {', '.join(s['benchmarks'])} (limit {s['limit'] or 'all'}, n {s['n']}, max tokens "
                     f"{s['max_tokens']}, temperature {s['temperature']}, top-p {s['top_p']}, backend {s['backend']}); "
                     f"base: {plan.base.model.name_or_path} without adapter"
                     + ("; rows 'NAME (after STAGE)': the adapter at the end of that stage" if s.get("stages") else "")
                     + ".\n")
        report, _ = build_comparison(out, record)
        if record["base"]["status"] == "failed":
            parts.append(f"**The base evaluation failed** ({record['base']['reason']}): no L-Acc.\n")
        parts += ["## Accuracy and length against the base model\n", to_markdown(report)]
        if report.benchmarks:
            from egrc_lite.evaluation.plots import plot_acc_vs_len

            plot = plot_acc_vs_len(report, out / PLOT_PNG)
            parts.append(f"![accuracy vs length]({PLOT_PNG})\n")
    parts += ["## Runs\n", runs_markdown(out, record)]
    failed = [e for e in record["runs"] if e["status"] == "failed"]
    if failed:
        parts.append(f"{len(failed)} combination(s) failed (traceback in runs/NAME/{ERROR_TXT}); rerun the same "
                     "command to retry them.\n")
    atomic_write_text(out / REPORT_MD, "\n".join(parts))
    return report, plot
