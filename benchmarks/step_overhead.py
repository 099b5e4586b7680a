"""Step-time overhead of egrc-lite's stage-1 trainer over plain TRL GRPOTrainer (goal: ratio <= 1.10).

Hardware: any CPU (2 cores is the reference) or a GPU. Time: ~1-2 min with builtin:tiny.

    python benchmarks/step_overhead.py                       # builtin:tiny, 6 rounds x 4 steps per arm
    python benchmarks/step_overhead.py --rounds 10 --threads 2
    python benchmarks/step_overhead.py --model builtin:smollm2-135m --rounds 2 --steps 2 --clip 32

Both arms get the same model (two identical copies), data, reward and GRPOConfig (built by
``egrc_lite.train.arguments.build_grpo_config`` from one compression stage). The arms alternate in rounds
(A B, then B A, ...) so drift of the machine's load hits both; each round builds a fresh trainer on the
arm's model and times its optimiser steps (on_step_begin -> on_step_end), dropping the first step of the
round as warm-up. The reward is a synthetic one with a mix of positive and zero values (``--reward
compression`` uses the real stage-1 reward, which a random tiny model never earns), so the egrc arm
exercises its kept/dropped bookkeeping. Prints median step time per arm, the ratio egrc / TRL, and the
median of the per-round ratios (less sensitive to other load on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import time


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:tiny")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4, help="optimiser steps per arm per round (first is warm-up)")
    p.add_argument("--clip", type=int, default=48, help="length clip L = max completion length")
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--reward", choices=["synthetic", "compression"], default="synthetic")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def synthetic_reward(prompts=None, completions=None, completion_ids=None, **kwargs):
    """Positive for about half the completions (by first token), zero otherwise; same for both arms."""
    return [0.5 + 0.01 * (len(ids) % 7) if ids and ids[0] % 2 else 0.0 for ids in completion_ids]


synthetic_reward.__name__ = "synthetic"


def main() -> None:
    args = parse_args()
    import tempfile

    import torch
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    from egrc_lite.backends.hf import load_policy
    from egrc_lite.config import EgrcConfig
    from egrc_lite.data import load_problems, to_prompt_dataset
    from egrc_lite.train.rewards import build_reward_funcs
    from egrc_lite.train.arguments import build_grpo_config
    from egrc_lite.train.trainer import make_trainer_class

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EgrcConfig.model_validate({
        "model": {"name_or_path": args.model},
        "data": {"builtin_size": 256},
        "schedule": {"stages": [{"mode": "compress", "steps": args.steps, "length_clip": args.clip}]},
        "train": {"num_generations": args.generations, "prompts_per_step": args.prompts, "seed": args.seed,
                  "learning_rate": 1e-5, "save_steps": 10_000},
    })
    stage = cfg.schedule.stages[0]
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    funcs = [synthetic_reward] if args.reward == "synthetic" else build_reward_funcs("compress", cfg.reward, stage)
    models = {arm: load_policy(cfg)[:2] for arm in ("trl", "egrc")}
    egrc_class = make_trainer_class()
    times: dict[str, list[float]] = {"trl": [], "egrc": []}
    per_round: list[float] = []  # egrc / trl median within each round (robust to slow drift of the load)
    lengths: dict[str, list[float]] = {"trl": [], "egrc": []}

    class Timer(TrainerCallback):
        def __init__(self, arm: str) -> None:
            self.arm, self.t0 = arm, 0.0

        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if state.global_step > 1:  # first step of a round: warm-up
                times[self.arm].append(time.perf_counter() - self.t0)

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths[self.arm].append(logs["completions/mean_length"])

    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            order = ("trl", "egrc") if rnd % 2 == 0 else ("egrc", "trl")
            round_times: dict[str, list[float]] = {}
            for arm in order:
                model, tok = models[arm]
                grpo_args = build_grpo_config(cfg, stage, output_dir=f"{tmp}/{arm}", seed=args.seed + rnd,
                                              save_strategy="no")
                kwargs = dict(model=model, reward_funcs=funcs, args=grpo_args, train_dataset=dataset,
                              processing_class=tok, callbacks=[Timer(arm)])
                if arm == "trl":
                    from egrc_lite.train.trainer import restore_forward

                    restore_forward(model)  # same fused-head handling as the egrc arm
                    trainer = GRPOTrainer(**kwargs)
                else:
                    trainer = egrc_class(mode="compress", adv_beta=stage.beta, **kwargs)
                for noisy in (PrinterCallback, ProgressCallback):
                    trainer.remove_callback(noisy)
                before = len(times[arm])
                trainer.train()
                round_times[arm] = times[arm][before:]
            per_round.append(statistics.median(round_times["egrc"]) / statistics.median(round_times["trl"]))
            done = {arm: statistics.median(v) for arm, v in times.items() if v}
            print(f"round {rnd + 1}/{args.rounds}: " + "  ".join(f"{a} {t * 1000:.0f} ms" for a, t in done.items()),
                  flush=True)

    trl_t, egrc_t = statistics.median(times["trl"]), statistics.median(times["egrc"])
    print(f"\nmodel {args.model}, threads {torch.get_num_threads()}, {args.prompts} prompts x {args.generations} "
          f"completions, clip {args.clip}, reward {args.reward}")
    print(f"{'arm':<6} {'steps':>5} {'median step':>12} {'mean len':>9}")
    for arm, t in (("trl", trl_t), ("egrc", egrc_t)):
        mean_len = statistics.mean(lengths[arm]) if lengths[arm] else float("nan")
        print(f"{arm:<6} {len(times[arm]):>5} {t * 1000:>9.1f} ms {mean_len:>9.1f}")
    print(f"ratio egrc / trl = {egrc_t / trl_t:.3f}  (goal <= 1.10); median of per-round ratios "
          f"{statistics.median(per_round):.3f}")


if __name__ == "__main__":
    main()
