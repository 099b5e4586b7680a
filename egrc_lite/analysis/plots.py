"""PNG plots of the entropy-conflict analysis (paper Fig. 3a, 3b, 3d, 3e).

matplotlib is imported inside the functions and used through ``Figure`` objects with the Agg
canvas (no pyplot, no global backend change); files are written atomically (temp file + rename).
Every function writes a readable PNG even without data (the panel says so).

>>> moving_average([1.0, 2.0, 3.0, 4.0], 2)
[1.0, 1.5, 2.5, 3.5]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from egrc_lite.runs import save_png

CONNECTOR_COLOR = "tab:orange"
OTHER_COLOR = "tab:gray"


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start); ``window <= 1`` keeps them."""
    if window <= 1:
        return [float(v) for v in values]
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += float(v)
        if i >= window:
            total -= float(values[i - window])
        out.append(total / min(i + 1, window))
    return out


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def _fmt_r(corr: Mapping[str, Any] | None) -> str:
    if not corr or corr.get("pearson") is None:
        return f"n={corr.get('n', 0) if corr else 0}"
    rho = corr.get("spearman")
    return f"r={corr['pearson']:.2f}" + (f", rho={rho:.2f}" if rho is not None else "") + f", n={corr['n']}"


def plot_entropy_vs_gradient(entropy: Sequence[float], proxy: Sequence[float],
                             exact: Sequence[tuple[float, float, float]], corr: Mapping[str, Any],
                             path: str | Path) -> Path:
    """Three panels: entropy vs the proxy (hexbin, all tokens), entropy vs the exact norm and
    proxy vs exact norm (scatter, ``exact`` = ``(entropy, proxy, exact)`` triples); titles carry the
    correlations of ``corr`` (``entropy_vs_proxy``, ``entropy_vs_exact``, ``proxy_vs_exact``)."""
    fig = _figure(14, 4.2)
    ax = fig.add_subplot(1, 3, 1)
    if len(entropy) >= 2:
        hb = ax.hexbin(entropy, proxy, gridsize=40, bins="log", mincnt=1, cmap="viridis")
        fig.colorbar(hb, ax=ax, label="tokens (log)")
    elif entropy:
        ax.scatter(entropy, proxy, s=10)
    else:
        _empty(ax, "no tokens")
    ax.set_title(f"all tokens: {_fmt_r(corr.get('entropy_vs_proxy'))}", fontsize=9)
    ax.set_xlabel("token entropy (nats)")
    ax.set_ylabel("proxy ||onehot - p||")
    for k, (xi, yi, xl, yl, key) in enumerate(((0, 2, "token entropy (nats)", "exact ||grad log pi|| (LoRA)",
                                                "entropy_vs_exact"),
                                               (1, 2, "proxy ||onehot - p||", "exact ||grad log pi|| (LoRA)",
                                                "proxy_vs_exact"))):
        ax = fig.add_subplot(1, 3, k + 2)
        if exact:
            ax.scatter([e[xi] for e in exact], [e[yi] for e in exact], s=14, alpha=0.7, color="tab:blue")
        else:
            _empty(ax, "no exact norms (--exact-tokens 0)")
        ax.set_title(f"exact tokens: {_fmt_r(corr.get(key))}", fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    fig.suptitle("Token entropy vs gradient magnitude (paper Fig. 3d)")
    return save_png(fig, path)


def plot_high_entropy_tokens(top_tokens: Sequence[Mapping[str, Any]], path: str | Path,
                             frac: float = 0.2) -> Path:
    """Horizontal bars: the most frequent tokens among the top ``frac`` by entropy, connectors highlighted."""
    rows = list(top_tokens)[::-1]  # most frequent at the top
    fig = _figure(7, max(2.5, 0.28 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        colors = [CONNECTOR_COLOR if r["connector"] else OTHER_COLOR for r in rows]
        ax.barh(range(len(rows)), [r["count"] for r in rows], color=colors)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([str(r["token"])[:24] for r in rows], fontsize=8)
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=CONNECTOR_COLOR, label="connector"), Patch(color=OTHER_COLOR, label="other")],
                  fontsize=8, loc="lower right")
    else:
        _empty(ax, "no tokens")
    ax.set_xlabel("count")
    ax.set_title(f"Most frequent tokens in the top {frac:.0%} by entropy (paper Fig. 3e)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return save_png(fig, path)


def _run_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_run_curves(runs: Sequence[Mapping[str, Any]], panels: Sequence[tuple[str, Sequence[str]]],
                    path: str | Path, smooth: int = 1) -> Path:
    """One panel per ``(title, metric keys)``, one colour per run (``run["series"][key]`` =
    ``[[step, value], ...]``; a panel's second key is drawn dashed); dotted vertical lines where
    a run changes stage (paper Fig. 3b)."""
    cols = 1 if len(panels) == 1 else 2 if len(panels) <= 4 else 3
    rows_n = (len(panels) + cols - 1) // cols
    fig = _figure(5.2 * cols, 3.6 * rows_n)
    colors = _run_colors(len(runs))
    for k, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        drawn = False
        for run, color in zip(runs, colors):
            for j, key in enumerate(keys):
                pts = run["series"].get(key) or []
                if pts:
                    label = run["name"] if j == 0 else f"{run['name']} ({key.rsplit('/', 1)[-1]})"
                    ax.plot([p[0] for p in pts], moving_average([p[1] for p in pts], smooth), "-" if j == 0 else "--",
                            color=color, lw=1.4, label=label)
                    drawn = True
            for step, _stage in run.get("stage_changes", []):
                ax.axvline(step, ls=":", color=color, lw=1)
        if drawn:
            ax.legend(fontsize=7)
        else:
            _empty(ax, f"no '{keys[0]}' in any run")
        ax.set_title(title + (f" (moving average {smooth})" if smooth > 1 else ""), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle("Training curves per run (paper Fig. 3b); dotted: stage changes")
    return save_png(fig, path)


def plot_objective_counts(runs: Sequence[Mapping[str, Any]], keys: tuple[str, str], path: str | Path,
                          smooth: int = 1) -> Path:
    """Per step, how many samples the compression and the accuracy objective selected in each run
    that logged them (solid: compression, dashed: accuracy; paper Fig. 3a). Run colours match
    :func:`plot_run_curves` for the same ``runs``."""
    fig = _figure(8, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    colors = _run_colors(len(runs))
    drawn = False
    for run, color in zip(runs, colors):
        for key, style, what in ((keys[0], "-", "compression"), (keys[1], "--", "accuracy")):
            pts = run["series"].get(key) or []
            if pts:
                ax.plot([p[0] for p in pts], moving_average([p[1] for p in pts], smooth), style, color=color,
                        lw=1.4, label=f"{run['name']}: {what}")
                drawn = True
    if drawn:
        ax.legend(fontsize=8)
    else:
        _empty(ax, "no entangled run (no per-objective sample counts)")
    ax.set_xlabel("step")
    ax.set_ylabel("samples selected")
    ax.set_title("Samples per objective in entangled training (paper Fig. 3a)"
                 + (f" (moving average {smooth})" if smooth > 1 else ""), fontsize=10)
    ax.grid(alpha=0.3)
    return save_png(fig, path)
