"""PNG plots for reports: accuracy vs length with the Pareto front, accuracy vs token budget,
per-problem lengths (paper Fig. 4), and training curves from a run's ``metrics.jsonl``.

matplotlib is imported inside the plotting functions and used through ``Figure`` objects with the
Agg canvas (no pyplot, no global backend change). Files are written atomically.

>>> pareto_front([(100, 50.0), (50, 40.0), (200, 45.0), (20, 40.0)])
[3, 0]
>>> stage_changes([{"step": 1, "stage": "compress"}, {"step": 2, "stage": "compress"},
...                {"step": 3, "stage": "explore"}])
[(3, 'explore')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from egrc_lite.errors import EgrcError
from egrc_lite.evaluation.report import Report, display_name
from egrc_lite.runs import JsonlLog, read_metrics, save_png


class PlotError(EgrcError, ValueError):
    """The plot folder cannot be used (e.g. ``--plots`` names a file); one line naming the fix."""


TRAINING_KEYS = (
    ("train/len/mean", "mean length (tokens)"),
    ("train/acc", "accuracy"),
    ("train/reward/mean", "mean reward"),
    (("train/entropy_t1/mean", "train/entropy/mean"), "mean token entropy at T = 1 (dashed: stage temperature)"),
)
"""``(metric key(s), title)`` of the training-curve panels; a panel's second key is drawn dashed."""


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (length, accuracy) points no other point beats (shorter-or-equal and at least as
    accurate, one strictly), ordered by length. Ties keep the first."""
    front = []
    best_acc = -math.inf
    for i in sorted(range(len(points)), key=lambda k: (points[k][0], -points[k][1])):
        if points[i][1] > best_acc:
            front.append(i)
            best_acc = points[i][1]
    return front


def stage_changes(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """``(step, new stage)`` wherever the ``stage`` of consecutive metric rows changes."""
    out = []
    previous = None
    for row in rows:
        stage = row.get("stage")
        if stage is None:
            continue
        if previous is not None and stage != previous:
            out.append((row.get("step"), str(stage)))
        previous = stage
    return out


def per_problem(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean length, fraction correct and mean steps per problem id, in first-seen order."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        if "problem_id" in rec and isinstance(rec.get("total_tokens"), (int, float)):
            grouped.setdefault(str(rec["problem_id"]), []).append(rec)
    return {
        pid: {"len": sum(r["total_tokens"] for r in recs) / len(recs),
              "correct": sum(bool(r.get("correct")) for r in recs) / len(recs),
              "steps": sum(float(r.get("steps") or 0) for r in recs) / len(recs)}
        for pid, recs in grouped.items()
    }


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_acc_vs_len(report: Report, path: str | Path) -> Path:
    """One panel per benchmark: a point per model (base as a star), the Pareto front as a line.

    Each model keeps its colour in every panel and is named once, in a legend below the panels
    (labels beside the points overlap as soon as two models land close together).
    """
    names = report.benchmarks
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(max(4.6, 4.2 * cols), 3.4 * rows + 0.3 * math.ceil((len(report.rows) + 1) / 2))
    colors = [f"C{i % 10}" for i in range(len(report.rows))]
    markers = ["o", "s", "^", "D", "v", "P"]  # with 10 colours: 60 distinct models before a repeat
    handles: dict[str, Any] = {}
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        pts = []
        for i, row in enumerate(report.rows):
            cell = row.cells.get(name)
            if cell is None:
                continue
            pts.append((cell.len, cell.acc))
            marker = "*" if row.is_base else markers[(i // 10) % len(markers)]
            handles[row.label] = ax.scatter([cell.len], [cell.acc], marker=marker, s=160 if row.is_base else 50,
                                            color=colors[i], zorder=3, label=row.label)
        front = pareto_front(pts)
        if len(front) > 1:
            (line,) = ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="grey", lw=1,
                              zorder=2, label="Pareto front")
            handles.setdefault("Pareto front", line)
        ax.set_title(display_name(name))
        ax.set_xlabel("LEN (tokens)")
        ax.set_ylabel("ACC (%)")
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2, fontsize=7,
                   frameon=False)
    fig.suptitle("Accuracy vs length")
    return save_png(fig, path)


def plot_acc_vs_budget(report: Report, path: str | Path) -> Path | None:
    """One panel per benchmark: ACC within a token budget against the budget (log2 axis), a curve per
    model (the base dashed). None, and no file, when no summary holds ``acc_at_budget``."""
    names = [n for n in report.benchmarks if any(c is not None and c.eff.acc_at_budget
                                                 for c in (row.cells[n] for row in report.rows))]
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(max(4.6, 4.2 * cols), 3.4 * rows + 0.3 * math.ceil((len(report.rows) + 1) / 2))
    handles: dict[str, Any] = {}
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        for i, row in enumerate(report.rows):
            cell = row.cells.get(name)
            if cell is None or not cell.eff.acc_at_budget:
                continue
            xs, ys = list(cell.eff.acc_at_budget), list(cell.eff.acc_at_budget.values())
            (line,) = ax.plot(xs, ys, "--" if row.is_base else "-", marker="o", ms=3, color=f"C{i % 10}",
                              label=row.label)
            handles.setdefault(row.label, line)
        ax.set_xscale("log", base=2)
        ticks = sorted({b for row in report.rows if (c := row.cells.get(name)) is not None
                        for b in c.eff.acc_at_budget})
        ax.set_xticks(ticks, [str(b) for b in ticks], rotation=45, fontsize=7)  # plain labels: no mathtext fonts
        ax.minorticks_off()
        ax.set_title(display_name(name))
        ax.set_xlabel("token budget B (log2)")
        ax.set_ylabel("ACC within B (%)")
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    fig.suptitle("Accuracy vs token budget")
    return save_png(fig, path)


def plot_problem_lengths(records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]],
                         labels: tuple[str, str], benchmark: str, path: str | Path, max_problems: int = 40) -> Path:
    """Per-problem mean length of two models side by side, marked correct (o) or wrong (x) by majority,
    with mean reasoning steps below (the paper's Fig. 4)."""
    a, b = per_problem(records_a), per_problem(records_b)
    ids = [pid for pid in a if pid in b][:max_problems]
    if not ids:
        raise ValueError(f"no problem of {benchmark} is in both models' records")
    fig = _figure(max(6.0, 0.32 * len(ids) + 2), 6.0)
    ax, ax_steps = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    width = 0.4
    for offset, stats, label, color in ((-width / 2, a, labels[0], "tab:blue"), (width / 2, b, labels[1], "tab:orange")):
        xs = [i + offset for i in range(len(ids))]
        lens = [stats[p]["len"] for p in ids]
        ax.bar(xs, lens, width, label=label, color=color, alpha=0.8)
        ok = [stats[p]["correct"] >= 0.5 for p in ids]
        ax.scatter([x for x, o in zip(xs, ok) if o], [v for v, o in zip(lens, ok) if o], marker="o",
                   color="green", s=18, zorder=3)
        ax.scatter([x for x, o in zip(xs, ok) if not o], [v for v, o in zip(lens, ok) if not o], marker="x",
                   color="red", s=22, zorder=3)
        ax_steps.bar(xs, [stats[p]["steps"] for p in ids], width, label=label, color=color, alpha=0.8)
    ax.set_ylabel("mean length (tokens)")
    ax.set_title(f"{display_name(benchmark)}: length per problem (o correct, x wrong, majority of samples)")
    ax.legend(fontsize=8)
    ax_steps.set_ylabel("reasoning steps")
    ax_steps.set_xticks(range(len(ids)))
    ax_steps.set_xticklabels([p[-12:] for p in ids], rotation=90, fontsize=6)
    ax.set_xticks(range(len(ids)))
    ax.set_xticklabels([])
    return save_png(fig, path)


def plot_training_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "training") -> Path:
    """Length, accuracy, reward and entropy against step; dashed lines where the stage changes."""
    by_step: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        if isinstance(row.get("step"), (int, float)):
            by_step[row["step"]] = row  # a resumed run may repeat a step: the last row wins
    ordered = [by_step[s] for s in sorted(by_step)]
    if not ordered:
        raise ValueError("no metric rows with a 'step'")
    changes = stage_changes(ordered)
    fig = _figure(10, 6.5)
    for k, (keys, label) in enumerate(TRAINING_KEYS):
        ax = fig.add_subplot(2, 2, k + 1)
        keys = (keys,) if isinstance(keys, str) else keys
        for j, key in enumerate(keys):
            pts = [(r["step"], r[key]) for r in ordered if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-" if j == 0 else "--", lw=1.3)
        if not ax.lines:
            ax.text(0.5, 0.5, f"no '{keys[0]}'", ha="center", va="center", transform=ax.transAxes, color="grey")
        for step, stage in changes:
            ax.axvline(step, ls="--", color="grey", lw=1)
            ax.annotate(stage, (step, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=7, color="grey")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    first = ordered[0].get("stage")
    fig.suptitle(f"{title}" + (f" (starts in {first})" if first else ""))
    return save_png(fig, path)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "model"


def check_plot_dir(out_dir: str | Path) -> Path:
    """``out_dir`` (user expanded) when it is a folder or can be made one; a file in its place, or a file
    above it, is a :class:`PlotError` (call it before any output, so a bad ``--plots`` fails first)."""
    out = Path(out_dir).expanduser()
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                where = "" if folder == out else f" ({folder} is a file)"
                raise PlotError(f"--plots {out_dir}: not a folder{where}; give a folder for the PNG plots "
                                "(it is created if missing)")
            break
    return out


def write_report_plots(report: Report, models: Sequence[Any], out_dir: str | Path) -> list[Path]:
    """All plots for a report into ``out_dir``; ``models`` are the report's ``ModelSummary`` objects, base first.

    - ``acc_vs_len.png`` always;
    - ``acc_vs_budget.png`` when a summary holds ``acc_at_budget`` (:func:`plot_acc_vs_budget`);
    - ``lengths_<benchmark>.png`` (base vs the first other model) for each benchmark whose per-sample
      records both eval directories hold;
    - ``training_<model>.png`` for each model given as a run directory with a ``metrics.jsonl``.
    """
    out = check_plot_dir(out_dir)
    written = [plot_acc_vs_len(report, out / "acc_vs_len.png")]
    budget_plot = plot_acc_vs_budget(report, out / "acc_vs_budget.png")
    if budget_plot is not None:
        written.append(budget_plot)
    if len(models) >= 2:
        first, second = models[0], models[1]
        for name in report.benchmarks:
            paths = [m.eval_dir / f"{name}.jsonl" if m.eval_dir else None for m in (first, second)]
            if all(p is not None and p.is_file() for p in paths):
                recs = [JsonlLog(p).rows() for p in paths]
                if per_problem(recs[0]).keys() & per_problem(recs[1]).keys():
                    written.append(plot_problem_lengths(recs[0], recs[1], (first.label, second.label), name,
                                                        out / f"lengths_{_slug(name)}.png"))
    for m in models:
        rows = read_metrics(m.run_dir) if m.run_dir else []
        if rows:
            written.append(plot_training_curves(rows, out / f"training_{_slug(m.label)}.png", title=m.label))
    return written
