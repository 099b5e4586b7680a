"""Length-accuracy reports: the layout of the paper's Table 1 (ACC, LEN, L-Acc per benchmark).

One row per model: the base first (its L-Acc is ``-``), then each model with, per benchmark,
ACC (Pass@1, percent), LEN (mean tokens per response) and ``L-Acc = ACC * sqrt(1 - LEN / LEN_base)``
(:func:`egrc_lite.evaluation.metrics.l_acc`) against the base's LEN, plus averages over the benchmarks that
every row has: ACC, LEN, LEN as a percentage of the base's, and L-Acc.

A model is given as a run directory (``<run>/eval/summary.json``), an eval directory
(``<dir>/summary.json``) or a summary file. Rendering: :func:`render` as ``table`` (rich),
``markdown``, ``csv`` or ``json``. The math is pure; only :func:`load_model` reads files.
CSV and JSON also carry each benchmark's thinking-efficiency metrics
(:mod:`egrc_lite.evaluation.efficiency`: accuracy at token budgets, its AUC, tokens to the first
correct answer and after it); the table and markdown add them as a second table when asked
(``efficiency=True``). Summaries written before those metrics existed show ``-`` / empty cells.
``Report.warnings`` holds one line per setting (:data:`COMPARED_SETTINGS`: limit, n, max tokens,
temperature) in which the compared evaluations differ (:func:`settings_warnings`).

>>> base = {"benchmarks": {"aime24": {"acc": 33.3, "len": 16927.0}}}
>>> ours = {"benchmarks": {"aime24": {"acc": 36.7, "len": 3634.0}}}
>>> rep = build_report(ModelSummary("base", base), [ModelSummary("ours", ours)])
>>> round(rep.rows[1].cells["aime24"].l_acc, 1), round(rep.rows[1].avg_len_ratio, 1)
(32.5, 21.5)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egrc_lite.evaluation.efficiency import Efficiency, read_efficiency
from egrc_lite.evaluation.evaluate import EvalError, find_summary, read_summary
from egrc_lite.evaluation.metrics import l_acc
from egrc_lite.runs import metrics_file

FORMATS = ("table", "markdown", "csv", "json")
# The paper's column order (Table 1), then anything else in the base's order.
PAPER_ORDER = ("aime24", "minerva", "math500", "gsm8k", "amc", "amc83", "amc23", "olympiadbench")
DISPLAY = {"aime24": "AIME24", "minerva": "Minerva", "math500": "MATH500", "gsm8k": "GSM8K", "amc": "AMC",
           "amc83": "AMC", "amc23": "AMC23", "olympiadbench": "OlymBench"}


COMPARED_SETTINGS = (("limit", "limit", "--limit"), ("n", "n", "--n"), ("max_tokens", "max tokens", "--max-tokens"),
                     ("temperature", "temperature", "--temperature"))
"""(summary.json ``settings`` key, its name, the ``eval`` option) of the settings a report checks are the same."""


def display_name(benchmark: str) -> str:
    """The column title of a benchmark (``amc83`` is the paper's AMC)."""
    return DISPLAY.get(benchmark, benchmark)


@dataclass(frozen=True)
class ModelSummary:
    """One model's summary and where it came from."""

    label: str
    summary: dict[str, Any]
    summary_path: Path | None = None
    eval_dir: Path | None = None
    run_dir: Path | None = None


def load_model(path: str | Path, label: str | None = None) -> ModelSummary:
    """Read a run directory, eval directory or summary file (errors name the file)."""
    file = find_summary(path)
    summary = read_summary(file)
    eval_dir = file.parent
    run_dir = eval_dir.parent if metrics_file(eval_dir.parent).is_file() else None
    if label is None:
        label = (eval_dir.parent.name if eval_dir.name == "eval" else eval_dir.name) or str(eval_dir)
    return ModelSummary(label, summary, file, eval_dir, run_dir)


def scale_dirs(path: str | Path) -> list[tuple[float, Path]]:
    """The ``scale-S/`` eval directories of ``eval --adapter-scale`` under ``path`` (or ``path/eval``, a run),
    in increasing scale; empty when there are none."""
    p = Path(path).expanduser()
    for root in (p, p / "eval"):
        found = []
        for child in root.glob("scale-*") if root.is_dir() else []:
            try:
                scale = float(child.name[len("scale-"):])
            except ValueError:
                continue
            if (child / "summary.json").is_file():
                found.append((scale, child))
        if found:
            return sorted(found)
    return []


def load_models(path: str | Path, label: str | None = None) -> list[ModelSummary]:
    """:func:`load_model`, or, for an ``eval --adapter-scale`` directory (``scale-S/`` inside, no summary of its
    own), one model per scale labelled ``NAME@S``."""
    try:
        return [load_model(path, label)]
    except EvalError:
        scales = scale_dirs(path)
        if not scales:
            raise
    p = Path(path).expanduser()
    name = label or ((p.parent.name if p.name == "eval" else p.name) or str(p))
    run_dir = p if metrics_file(p).is_file() else None
    return [ModelSummary(f"{name}@{child.name[len('scale-'):]}", read_summary(child / "summary.json"),
                         child / "summary.json", child, run_dir) for _, child in scales]


def unique_labels(models: Sequence[ModelSummary]) -> list[ModelSummary]:
    """The same models with repeated labels made distinct (``name``, ``name#2``, ...)."""
    seen: dict[str, int] = {}
    out = []
    for m in models:
        seen[m.label] = seen.get(m.label, 0) + 1
        out.append(m if seen[m.label] == 1 else ModelSummary(f"{m.label}#{seen[m.label]}", m.summary,
                                                              m.summary_path, m.eval_dir, m.run_dir))
    return out


@dataclass(frozen=True)
class Cell:
    acc: float
    len: float
    l_acc: float | None
    eff: Efficiency = field(default_factory=Efficiency)


@dataclass
class Row:
    label: str
    is_base: bool
    cells: dict[str, Cell | None]
    avg_acc: float | None = None
    avg_len: float | None = None
    avg_len_ratio: float | None = None  # mean of LEN / LEN_base, percent
    avg_l_acc: float | None = None
    source: str | None = None


@dataclass
class Report:
    base: str
    benchmarks: list[str]
    averaged: list[str]
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def order_benchmarks(names: Sequence[str]) -> list[str]:
    """Paper order first, then the rest as given.

    >>> order_benchmarks(["gsm8k", "custom", "aime24"])
    ['aime24', 'gsm8k', 'custom']
    """
    known = [n for n in PAPER_ORDER if n in names]
    return known + [n for n in names if n not in known]


def _shown(value: Any) -> str:
    return "all" if value is None else str(value)


def settings_warnings(models: Sequence[ModelSummary]) -> list[str]:
    """One line per setting of :data:`COMPARED_SETTINGS` in which the summaries' ``settings`` differ, naming
    each model and its value (a summary without that setting is left out of the comparison).

    >>> a = ModelSummary("base", {"settings": {"n": 4, "max_tokens": 32768, "limit": None}})
    >>> b = ModelSummary("ours", {"settings": {"n": 4, "max_tokens": 256, "limit": 100}})
    >>> for line in settings_warnings([a, b]): print(line)
    warning: the evaluations differ in limit (base all, ours 100): their ACC and LEN were not measured alike; re-evaluate with the same --limit
    warning: the evaluations differ in max tokens (base 32768, ours 256): their ACC and LEN were not measured alike; re-evaluate with the same --max-tokens
    """
    lines = []
    for key, name, option in COMPARED_SETTINGS:
        values = [(m.label, settings[key]) for m in models
                  if isinstance(settings := m.summary.get("settings"), dict) and key in settings]
        distinct: list[Any] = []
        for _, value in values:
            if value not in distinct:
                distinct.append(value)
        if len(distinct) > 1:
            shown = ", ".join(f"{label} {_shown(value)}" for label, value in values)
            lines.append(f"warning: the evaluations differ in {name} ({shown}): their ACC and LEN were not "
                         f"measured alike; re-evaluate with the same {option}")
    return lines


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_report(base: ModelSummary, models: Sequence[ModelSummary]) -> Report:
    """The Table 1 layout: the base row, then one row per model, with averages over common benchmarks."""
    base_b = base.summary["benchmarks"]
    everyone = [base, *models]
    names: list[str] = []
    for m in everyone:
        names += [n for n in m.summary["benchmarks"] if n not in names]
    names = order_benchmarks(names)
    averaged = [n for n in names if all(n in m.summary["benchmarks"] for m in everyone)]
    report = Report(base=base.label, benchmarks=names, averaged=averaged, warnings=settings_warnings(everyone))
    for i, m in enumerate(everyone):
        is_base = i == 0
        cells: dict[str, Cell | None] = {}
        for name in names:
            entry = m.summary["benchmarks"].get(name)
            if entry is None:
                cells[name] = None
                continue
            base_len = base_b.get(name, {}).get("len")
            value = None
            if not is_base and base_len is not None and base_len > 0:
                value = l_acc(float(entry["acc"]), float(entry["len"]), float(base_len))
            cells[name] = Cell(float(entry["acc"]), float(entry["len"]), value, read_efficiency(entry))
        row = Row(m.label, is_base, cells, source=str(m.summary_path) if m.summary_path else None)
        if averaged:
            row.avg_acc = _mean([cells[n].acc for n in averaged])
            row.avg_len = _mean([cells[n].len for n in averaged])
            ratios = [cells[n].len / base_b[n]["len"] for n in averaged if base_b[n]["len"] > 0]
            row.avg_len_ratio = 100.0 * _mean(ratios) if len(ratios) == len(averaged) else None
            if not is_base:
                lac = [cells[n].l_acc for n in averaged]
                row.avg_l_acc = _mean(lac) if all(v is not None for v in lac) else None
        report.rows.append(row)
    return report


# ---------------------------------------------------------------------------------------- rendering

def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def header(report: Report) -> list[str]:
    cols = ["model"]
    for name in report.benchmarks:
        title = display_name(name)
        cols += [f"{title} ACC", f"{title} LEN", f"{title} L-Acc"]
    return cols + ["avg ACC", "avg LEN", "LEN/base %", "avg L-Acc"]


def text_rows(report: Report) -> list[list[str]]:
    """Rows of display strings: ACC and L-Acc to 0.1, LEN to whole tokens, ``-`` where empty."""
    rows = []
    for row in report.rows:
        cells = [row.label]
        for name in report.benchmarks:
            c = row.cells[name]
            cells += ["-", "-", "-"] if c is None else [_fmt(c.acc, 1), _fmt(c.len, 0), _fmt(c.l_acc, 1)]
        cells += [_fmt(row.avg_acc, 1), _fmt(row.avg_len, 0), _fmt(row.avg_len_ratio, 1), _fmt(row.avg_l_acc, 1)]
        rows.append(cells)
    return rows


def _md_table(cols: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] * left + ["---:"] * (len(cols) - left)) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def to_markdown(report: Report, efficiency: bool = False) -> str:
    """Table 1 as markdown; with ``efficiency``, the thinking-efficiency table below it."""
    lines = _md_table(header(report), text_rows(report))
    lines.append("")
    lines.append(f"L-Acc = ACC x sqrt(1 - LEN / LEN_base) against {report.base}; averages over: "
                 f"{', '.join(display_name(n) for n in report.averaged) or '(no benchmark common to all)'}.")
    if efficiency:
        grid = budgets(report)
        cols = ["benchmark", "model", "ACC", *(f"acc@{b}" for b in grid), "AUC", "first answer mean",
                "first answer median", "tail mean", "tail median", "found %"]
        rows = [[display_name(name), label, _fmt(c.acc, 1), *(_fmt(c.eff.acc_at_budget.get(b), 1) for b in grid),
                 *_eff_cells(c.eff)] for name, label, c in efficiency_rows(report)]
        lines += ["", *_md_table(cols, rows, left=2), "", EFFICIENCY_NOTE]
    return "\n".join(lines) + "\n"


EFFICIENCY_NOTE = ("acc@B: ACC counting only responses finished within B tokens; AUC: area under acc@B over "
                   "log2 B (0-100); first answer: tokens up to the first correct answer of a correct response, "
                   "tail: tokens after it; found: share of the correct responses in which it was located; "
                   "~: estimated from character positions.")


def efficiency_rows(report: Report) -> list[tuple[str, str, Cell]]:
    """``(benchmark, model, cell)`` for the efficiency table: each benchmark, then each model that has it."""
    return [(name, row.label, c) for name in report.benchmarks for row in report.rows
            if (c := row.cells[name]) is not None]


def _eff_cells(e: Efficiency) -> list[str]:
    """AUC, first answer mean and median, tail mean and median (``~`` when estimated), found %."""
    mark = "~" if e.unit == "estimated" else ""
    tokens = [_fmt(v, 0) if v is None else mark + _fmt(v, 0)
              for v in (e.first_mean, e.first_median, e.tail_mean, e.tail_median)]
    return [_fmt(e.auc, 1), *tokens, _fmt(None if e.found is None else 100.0 * e.found, 0)]


def missing_efficiency(report: Report) -> list[str]:
    """Labels of the rows none of whose benchmarks has efficiency metrics (summaries from before them)."""
    return [row.label for row in report.rows if all(c is None or c.eff.empty for c in row.cells.values())]


EFFICIENCY_COLUMNS = ("acc_budget_auc", "first_answer_tokens_mean", "first_answer_tokens_median",
                      "reflection_tail_tokens_mean", "reflection_tail_tokens_median", "first_answer_found",
                      "first_answer_unit")
"""Per-benchmark efficiency columns of the CSV (then ``<bench>_acc_at_<B>`` per budget), named as in summary.json."""


def budgets(report: Report, benchmark: str | None = None) -> list[int]:
    """The budgets of ``acc_at_budget`` that any row holds (for one benchmark, or for all), ascending."""
    found = {b for row in report.rows for name, c in row.cells.items()
             if c is not None and benchmark in (None, name) for b in c.eff.acc_at_budget}
    return sorted(found)


def to_csv(report: Report) -> str:
    """Wide CSV with full precision; empty cells for missing values. After the Table 1 columns, each
    benchmark's efficiency columns: :data:`EFFICIENCY_COLUMNS`, then ``<bench>_acc_at_<B>`` per budget."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cols = ["model", "is_base"]
    for name in report.benchmarks:
        cols += [f"{name}_acc", f"{name}_len", f"{name}_l_acc"]
    cols += ["avg_acc", "avg_len", "avg_len_ratio", "avg_l_acc"]
    for name in report.benchmarks:  # after the Table 1 columns, so that those keep their places
        cols += [f"{name}_{key}" for key in EFFICIENCY_COLUMNS] + [f"{name}_acc_at_{b}" for b in budgets(report, name)]
    writer.writerow(cols)
    for row in report.rows:
        values: list[Any] = [row.label, int(row.is_base)]
        for name in report.benchmarks:
            c = row.cells[name]
            values += ["", "", ""] if c is None else [c.acc, c.len, "" if c.l_acc is None else c.l_acc]
        values += ["" if v is None else v for v in (row.avg_acc, row.avg_len, row.avg_len_ratio, row.avg_l_acc)]
        for name in report.benchmarks:
            c = row.cells[name]
            e = c.eff if c is not None else Efficiency()
            values += ["" if v is None else v for v in _eff_values(e)]
            values += ["" if e.acc_at_budget.get(b) is None else e.acc_at_budget[b] for b in budgets(report, name)]
        writer.writerow(values)
    return buf.getvalue()


def _eff_values(e: Efficiency) -> tuple[Any, ...]:
    """The values of :data:`EFFICIENCY_COLUMNS`, in order."""
    return e.auc, e.first_mean, e.first_median, e.tail_mean, e.tail_median, e.found, e.unit


def _eff_json(e: Efficiency) -> dict[str, Any]:
    curve = {str(b): v for b, v in e.acc_at_budget.items()} or None
    return {"acc_at_budget": curve, **dict(zip(EFFICIENCY_COLUMNS, _eff_values(e), strict=True))}


def to_json(report: Report) -> str:
    rows = []
    for row in report.rows:
        rows.append({
            "model": row.label, "is_base": row.is_base, "source": row.source,
            "benchmarks": {n: (None if c is None else {"acc": c.acc, "len": c.len, "l_acc": c.l_acc,
                                                       **_eff_json(c.eff)})
                           for n, c in row.cells.items()},
            "avg": {"acc": row.avg_acc, "len": row.avg_len, "len_ratio": row.avg_len_ratio, "l_acc": row.avg_l_acc},
        })
    return json.dumps({"base": report.base, "benchmarks": report.benchmarks, "averaged_over": report.averaged,
                       "rows": rows}, indent=2) + "\n"


def to_rich(report: Report) -> Any:
    """A ``rich.table.Table`` for a terminal: one row per model, one column per benchmark, each cell
    stacking ACC, LEN, L-Acc and LEN as a percentage of the base's (fits 80 columns for six benchmarks)."""
    from rich import box
    from rich.table import Table

    table = Table(title=f"ACC / LEN / L-Acc against {report.base}", box=box.SIMPLE_HEAD, show_lines=True, pad_edge=False, collapse_padding=True,
                  caption=f"averages over {', '.join(display_name(n) for n in report.averaged) or '-'}")
    longest = max(len(row.label) for row in report.rows)
    table.add_column("model", overflow="fold", min_width=min(longest, 12))
    table.add_column("", style="dim", no_wrap=True)
    for name in report.benchmarks:
        table.add_column(display_name(name), justify="right", no_wrap=True)
    table.add_column("avg", justify="right", no_wrap=True)
    base_row = report.rows[0]
    for row in report.rows:
        cells = []
        for name in report.benchmarks:
            c, b = row.cells[name], base_row.cells.get(name)
            ratio = 100.0 * c.len / b.len if c is not None and b is not None and b.len > 0 else None
            cells.append("-\n-\n-\n-" if c is None else
                         f"{_fmt(c.acc, 1)}\n{_fmt(c.len, 0)}\n{_fmt(c.l_acc, 1)}\n{_fmt(ratio, 0)}")
        cells.append(f"{_fmt(row.avg_acc, 1)}\n{_fmt(row.avg_len, 0)}\n{_fmt(row.avg_l_acc, 1)}\n"
                     f"{_fmt(row.avg_len_ratio, 0)}")
        table.add_row(row.label, "ACC\nLEN\nL-Acc\nLEN %", *cells, style="dim" if row.is_base else None)
    return table


def efficiency_rich(report: Report) -> Any:
    """The efficiency table for a terminal: a row per benchmark and model; cells ``mean / median``."""
    from rich import box
    from rich.table import Table

    table = Table(title="Thinking efficiency", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption="AUC: ACC within a token budget, averaged over log2 budgets; first answer / tail: tokens "
                          "to the first correct answer and after it (mean / median); ~ estimated")
    table.add_column("benchmark", overflow="fold")
    table.add_column("model", overflow="fold")
    for title in ("ACC", "AUC", "first answer", "tail", "found %"):
        table.add_column(title, justify="right", no_wrap=True)
    for name, label, c in efficiency_rows(report):
        auc, first_mean, first_median, tail_mean, tail_median, found = _eff_cells(c.eff)
        table.add_row(display_name(name), label, _fmt(c.acc, 1), auc, f"{first_mean} / {first_median}",
                      f"{tail_mean} / {tail_median}", found)
    return table


def render(report: Report, fmt: str, *, efficiency: bool = False) -> Any:
    """``fmt`` in table | markdown | csv | json: a rich renderable for ``table``, else a string.
    ``efficiency`` adds the thinking-efficiency table to ``table`` and ``markdown`` (csv and json always
    carry those metrics)."""
    if fmt not in FORMATS:
        raise EvalError(f"unknown report format '{fmt}'; valid: {', '.join(FORMATS)}")
    if fmt == "table" and efficiency:
        from rich.console import Group

        return Group(to_rich(report), efficiency_rich(report))
    if fmt == "markdown":
        return to_markdown(report, efficiency)
    return {"table": to_rich, "csv": to_csv, "json": to_json}[fmt](report)
