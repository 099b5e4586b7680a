"""The comparison report of a sweep (``report.md``, the accuracy-length plot), from ``sweep.json``'s
record and the run and evaluation directories it names; :mod:`egrc_lite.sweep.run` writes it last.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from egrc_lite.runs import atomic_write_text, read_metrics
from egrc_lite.sweep.plan import BASE, ERROR_TXT, PLOT_PNG, REPORT_MD, SweepPlan

logger = logging.getLogger("egrc_lite.sweep")


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
    from egrc_lite.generate.scale import scale_label

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
        scaled = [(e["eval_dir"], f"{entry['name']}@{scale_label(e['scale'])}") for e in entry.get("scale_evals") or []]
        for eval_dir, label in [*rows, (entry["eval_dir"], entry["name"]), *scaled]:
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


def write_report(plan: SweepPlan, out: Path, record: dict[str, Any], spec: Any) -> tuple[Any, Path | None]:
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
