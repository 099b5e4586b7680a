"""The paper's phenomena (a) and (b) on one CPU-demo run: training length and T = 1 entropy per step, with
held-out accuracy and length at checkpoints, in one figure and one JSON.

Hardware: any CPU; seconds (it reads files). Inputs: a run directory and eval directories of its checkpoints,
each made by ``egrc-lite eval`` (the same benchmark and settings for all), e.g.

    egrc-lite eval --model builtin:smollm2-135m --benchmarks arithmetic --n 2 --limit 200 --max-tokens 256 \\
        --answer-rule last_number --out runs/eval-base
    egrc-lite eval --adapter runs/default/stages/0-compress/checkpoint-10 --model builtin:smollm2-135m ... \\
        --out runs/ck10
    python benchmarks/demo_phenomena.py runs/default --eval 0=runs/eval-base --eval 10=runs/ck10 \\
        --eval 26=runs/default/eval --benchmark arithmetic --out docs/demo/phenomena.png

Prints, per stage, the mean training length and T = 1 entropy over its first and last three steps, and the
held-out ACC / LEN at each given step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stage_means(rows: list[dict], key: str, k: int = 3) -> dict[str, dict[str, float]]:
    """Per stage: the mean of ``key`` over its first and last ``k`` steps."""
    out: dict[str, dict[str, float]] = {}
    for stage in dict.fromkeys(r["stage"] for r in rows):
        values = [r[key] for r in rows if r["stage"] == stage and isinstance(r.get(key), (int, float))]
        if values:
            n = max(1, min(k, len(values) // 2))
            out[stage] = {"first": sum(values[:n]) / n, "last": sum(values[-n:]) / n}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--eval", action="append", default=[], metavar="STEP=DIR", help="held-out eval at a step")
    p.add_argument("--benchmark", default="arithmetic")
    p.add_argument("--out", type=Path, default=Path("runs/phenomena.png"))
    p.add_argument("--title", default=None, help="figure title (default: the run folder name)")
    args = p.parse_args(argv)

    from egrc_lite.evaluation.evaluate import read_summary
    from egrc_lite.runs import read_metrics, save_png

    rows = read_metrics(args.run)
    held: list[tuple[int, float, float]] = []
    for item in args.eval:
        step, _, where = item.partition("=")
        entry = read_summary(where)["benchmarks"][args.benchmark]
        held.append((int(step), float(entry["acc"]), float(entry["len"])))
    held.sort()
    report = {"length": stage_means(rows, "train/len/mean"), "entropy_t1": stage_means(rows, "train/entropy_t1/mean"),
              "held_out": [{"step": s, "acc": a, "len": n} for s, a, n in held]}
    print(json.dumps(report, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, layout="constrained")
    top.plot(steps, [r["train/len/mean"] for r in rows], color="C0", label="training samples: mean length")
    if held:
        top.plot([s for s, _, _ in held], [n for _, _, n in held], "s--", color="C0", alpha=0.6,
                 label=f"held-out {args.benchmark}: LEN")
    top.set_ylabel("tokens")
    acc_ax = top.twinx()
    if held:
        acc_ax.plot([s for s, _, _ in held], [a for _, a, _ in held], "o-", color="C3", label=f"held-out ACC (%)")
    acc_ax.set_ylabel("held-out ACC (%)", color="C3")
    lines = top.get_legend_handles_labels()[0] + acc_ax.get_legend_handles_labels()[0]
    top.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    bottom.plot(steps, [r.get("train/entropy_t1/mean") for r in rows], color="C2", label="token entropy at T = 1")
    bottom.plot(steps, [r.get("train/entropy/mean") for r in rows], "--", color="C2", alpha=0.5,
                label="at the stage's sampling temperature")
    bottom.set_ylabel("entropy (nats)")
    bottom.set_xlabel("optimiser step")
    bottom.legend(fontsize=7)
    for ax in (top, bottom):
        for i in range(1, len(rows)):
            if rows[i]["stage"] != rows[i - 1]["stage"]:
                ax.axvline(rows[i]["step"] - 0.5, color="grey", lw=0.8, ls=":")
    fig.suptitle(f"{args.title or args.run.name}: length, held-out accuracy and entropy per step")
    print(f"wrote {save_png(fig, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
