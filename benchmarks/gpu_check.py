"""GPU check of the hf backend at the shapes of DeepSeek-R1-Distill-Qwen-1.5B (random weights, bf16).

Everything runs through egrc-lite's own trainer (``train.trainer.build_trainer``) with the
``r1-1.5b`` preset's LoRA (r 32 on all projections), stage-1 sampling (temperature 0.6, top-p
0.95), gradient checkpointing and batch shape: the micro-batch is read from the preset with
``train.arguments.batch_shape`` (``prompts_per_step x G / gradient_accumulation_steps``), never
hard-coded. Every completion is forced to exactly L tokens (``min_new_tokens`` = max = L; a
random model never stops by itself, and a forced length makes the figures comparable).

For each sequence count n (default 8 and 64), one stage-1 GRPO step of n completions
(n / G prompts x G) at the preset's micro-batch, so the step trains n / micro-batch micro-batches
(8 sequences: one micro-batch of 8; 64 sequences: the preset's whole step, 8 micro-batches of 8):

- generate tokens/s: n x k / seconds until the k-th new token, for k = 1024 and k = L = 4096,
  read off one generation (a timestamp at every forward of ``transformers`` ``generate``, the
  rollout of the hf backend: the first 1024 tokens of a 4096-token generation are exactly a
  1024-token generation, so one generation per n gives both figures);
- training: the step's wall time after the rollout (loss + backward with gradient checkpointing
  for each micro-batch, then the AdamW update), per micro-batch too;
- peak GPU memory (``torch.cuda.max_memory_allocated``, and reserved) of the generation and,
  separately (the peak is reset after the rollout), of the training part.

A warm-up step (L = 32, the largest n; --tiny: L = 8, the smallest) runs first so one-time
costs (CUDA/cuBLAS init, Triton kernels) stay out of the figures.

Time budget: the whole script stays within ``--budget-s`` (default 420 s, so that with the wheel
install ``benchmarks/gpu_check.sh`` finishes in 8 minutes on an H100). Estimated on an H100 (not
yet measured): setup and warm-up ~1 min; each 4096-token generation ~2-3 min (transformers
``generate`` of a 1.5B model is bound by Python and kernel launches, ~30-45 ms a token, so 8 and
64 sequences cost about the same); training ~5 s a micro-batch. Each generation gets a time cap
(``max_time``) from what is left of the budget; a generation that reaches it stops early, and the
run then says ``cut`` and reports the length it reached instead of L (the 1024-token figure comes
first and survives). A run that fails (e.g. out of memory) is recorded with its error and the
next one still runs. Results are printed and written as JSON after every run.

Usage::

    python benchmarks/gpu_check.py --out gpu_check.json    # on the GPU (via benchmarks/gpu_check.sh)
    python benchmarks/gpu_check.py --tiny                   # a CPU dry run with tiny shapes (~1 min)

Needs: torch, transformers, peft, trl, datasets, pydantic, math-verify (see benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESET = "r1-1.5b"
R1_1P5B = dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
               intermediate_size=8960, vocab_size=151936, max_position_embeddings=131072, rope_theta=10000.0,
               rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False,
               bos_token_id=151646, eos_token_id=151643)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, max_position_embeddings=8192, tie_word_embeddings=False)
DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "deepseek-r1-distill-qwen"
# (full, tiny) defaults
LENGTH = (4096, 32)
CHECKPOINTS = ("1024", "8")
WARMUP_LENGTH = (32, 8)
BUDGET_S = (420.0, None)
TRAIN_GUESS_S = 10.0  # reserve per micro-batch (GPU) until one has been measured
MARGIN_S = 15.0  # kept free at the end of the budget
MIN_CAP_S = 10.0  # a generation always gets at least this


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- pure helpers (tested without torch)
def plan_runs(sequences: list[int], group: int, micro: int) -> list[dict[str, int]]:
    """For each sequence count n: ``n / G`` prompts and ``n / micro`` micro-batches of the preset's micro-batch.

    >>> plan_runs([8, 64], 8, 8)
    [{'sequences': 8, 'prompts': 1, 'micro_batch': 8, 'accumulation': 1}, \
{'sequences': 64, 'prompts': 8, 'micro_batch': 8, 'accumulation': 8}]
    """
    runs = []
    for n in sequences:
        if n % group:
            raise ValueError(f"{n} sequences is not a whole number of prompts of G = {group} completions")
        accum = max(1, n // micro)
        if n % accum or (n >= micro and n % micro):
            raise ValueError(f"{n} sequences do not split into micro-batches of {micro}")
        runs.append({"sequences": n, "prompts": n // group, "micro_batch": n // accum, "accumulation": accum})
    return runs


def generation_cap(remaining_s: float, generations_left: int, train_reserve_s: float,
                   margin_s: float = MARGIN_S, min_cap_s: float = MIN_CAP_S) -> float:
    """Seconds the next generation may take: an equal share of what the budget leaves after the
    training still to come and a margin, never below ``min_cap_s``.

    >>> generation_cap(370, 2, 90)
    132.5
    >>> generation_cap(5, 1, 90)
    10.0
    """
    share = (remaining_s - train_reserve_s - margin_s) / max(1, generations_left)
    return max(min_cap_s, share)


def token_rates(n: int, t0: float, t1: float, forward_starts: list[float], new_tokens: int,
                checkpoints: list[int]) -> dict[str, dict[str, float]]:
    """Tokens/s and seconds until the k-th new token, for each checkpoint k <= ``new_tokens`` and
    for ``new_tokens`` itself (all n sequences together).

    ``forward_starts[i]`` is when the model's forward i began (0: the prompt; i: after token i was
    sampled); generate waits for each token on the host, so forward i starts once token i exists.

    >>> token_rates(2, 0.0, 4.0, [0.0, 1.0, 2.0, 3.0], 4, [2, 8])
    {'2': {'seconds': 2.0, 'tokens_per_s': 2.0}, '4': {'seconds': 4.0, 'tokens_per_s': 2.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for k in sorted({k for k in checkpoints if 0 < k < new_tokens} | {new_tokens}):
        end = t1 if k >= new_tokens or k >= len(forward_starts) else forward_starts[k]
        seconds = end - t0
        out[str(k)] = {"seconds": seconds, "tokens_per_s": n * k / seconds if seconds > 0 else float("nan")}
    return out


# ---------------------------------------------------------------- model, tokenizer, config
def load_tokenizer(path: str | None, tiny: bool) -> tuple[Any, str]:
    """The R1-distill tokenizer when available (real prompt lengths), else (and with --tiny unless
    --tokenizer is given) the builtin one."""
    from egrc_lite.backends.sources import load_tokenizer as load
    from egrc_lite.presets import resolve

    candidates = [path] if tiny else [path, os.environ.get("EGRC_R1_TOKENIZER"), str(DEFAULT_TOKENIZER)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "tokenizer.json").is_file():
            cfg = resolve(PRESET, [f"model.tokenizer={candidate}"], {"backend": "hf"})
            return load(candidate, cfg), f"R1-distill tokenizer ({candidate})"
    from egrc_lite.backends.tiny import build_tokenizer

    return build_tokenizer(384), "builtin tiny tokenizer (ids past its vocabulary decode to nothing)"


def build_model(tiny: bool, tokenizer: Any, device: str) -> Any:
    """A randomly initialised Qwen2 with the 1.5B shapes (bf16, built on the device) or tiny shapes."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    shapes = dict(TINY, vocab_size=len(tokenizer)) if tiny else dict(R1_1P5B)
    dtype = torch.float32 if tiny else torch.bfloat16
    config = Qwen2Config(**shapes, pad_token_id=tokenizer.pad_token_id)
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    return model


def make_config(tiny: bool, run: dict[str, int] | None = None, length: int | None = None) -> tuple[Any, Any]:
    """The ``r1-1.5b`` preset on builtin prompts; with ``run``, its prompts and micro-batch count
    (the micro-batch is checked to stay the preset's); with ``length``, stage 1 at that length."""
    from egrc_lite.presets import resolve
    from egrc_lite.train.arguments import batch_shape

    overrides = ["data.source=builtin:arithmetic", "data.builtin_size=64", "schedule.auto_switch.enabled=false",
                 "train.num_samples_logged=0"]
    if run is not None:
        overrides += [f"train.prompts_per_step={run['prompts']}",
                      f"train.gradient_accumulation_steps={run['accumulation']}"]
    if tiny:
        overrides += ["model.dtype=float32"]
    cfg = resolve(PRESET, overrides, {"backend": "hf"})
    if run is not None and batch_shape(cfg) != (run["micro_batch"], run["accumulation"]):
        raise AssertionError(f"batch shape {batch_shape(cfg)} != planned {run}")
    stage = cfg.schedule.stages[0]
    if length is not None:
        stage = stage.model_copy(update={"length_clip": length, "max_completion_length": length, "steps": 1})
    return cfg, stage


# ---------------------------------------------------------------- timers
class GenerateTimer:
    """Times each ``generate`` of ``model`` (the PEFT model TRL unwraps and calls), with a timestamp
    at the start of every forward (a pre-hook on the input embeddings) while it runs."""

    def __init__(self, model: Any, sync: Any) -> None:
        self.records: list[dict[str, Any]] = []
        self._sync, self._stamps, self._active = sync, [], False
        self._hook = model.get_input_embeddings().register_forward_pre_hook(self._stamp)
        original = model.generate
        timer = self

        def generate(*args: Any, **kwargs: Any) -> Any:
            timer._sync()
            timer._stamps, timer._active = [], True
            t0 = time.perf_counter()
            try:
                out = original(*args, **kwargs)
                timer._sync()
            finally:
                timer._active = False
            t1 = time.perf_counter()
            ids = out.sequences if hasattr(out, "sequences") else out
            prompt_len = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
            timer.records.append({"t0": t0, "t1": t1, "stamps": list(timer._stamps), "n": int(ids.shape[0]),
                                  "prompt_len": int(prompt_len), "new_tokens": int(ids.shape[1] - prompt_len)})
            return out

        self._model, self._had = model, "generate" in model.__dict__
        model.generate = generate  # an instance attribute: TRL calls unwrapped_model.generate

    def _stamp(self, module: Any, args: Any) -> None:
        if self._active:
            self._stamps.append(time.perf_counter())

    def close(self) -> None:
        self._hook.remove()
        if not self._had:
            del self._model.generate


class StepTimer:
    """Times each optimiser step and each rollout (``_generate_and_score_completions``) of a trainer;
    records the generation's peak GPU memory and resets the peak, so the step's peak is the training's."""

    def __init__(self, trainer: Any, cuda: bool) -> None:
        import torch
        from transformers import TrainerCallback

        self.steps: list[float] = []
        self.rollouts: list[dict[str, Any]] = []
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)
        timer = self
        original = trainer._generate_and_score_completions

        def timed(inputs: Any) -> Any:
            timer._sync()
            t0 = time.perf_counter()
            out = original(inputs)
            timer._sync()
            mask = out["completion_mask"]
            record = {"seconds": time.perf_counter() - t0, "tokens": int(mask.sum()), "completions": int(mask.shape[0])}
            if cuda:
                record["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                record["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
                torch.cuda.reset_peak_memory_stats()
            timer.rollouts.append(record)
            return out

        trainer._generate_and_score_completions = timed  # instance attribute: TRL calls self.<name>

        class Cb(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                timer._sync()
                timer._t0 = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                timer._sync()
                timer.steps.append(time.perf_counter() - timer._t0)

        trainer.add_callback(Cb())


def run_step(model: Any, tokenizer: Any, dataset: Any, tiny: bool, run: dict[str, int], length: int,
             checkpoints: list[int], cuda: bool, max_time: float | None) -> dict[str, Any]:
    """One stage-1 GRPO step of ``run['sequences']`` completions forced to ``length`` tokens."""
    import torch

    from egrc_lite.train.trainer import build_trainer

    cfg, stage = make_config(tiny, run, length)
    gen_kwargs: dict[str, Any] = {"min_new_tokens": length}
    if max_time is not None:
        gen_kwargs["max_time"] = float(max_time)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gen_timer = GenerateTimer(model, sync)
    try:
        with tempfile.TemporaryDirectory() as out:
            trainer = build_trainer(cfg, stage, model, tokenizer, dataset, output_dir=out, seed=0,
                                    generation_kwargs=gen_kwargs, save_strategy="no")
            timer = StepTimer(trainer, cuda)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
            del trainer
    finally:
        gen_timer.close()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    if len(gen_timer.records) != 1 or len(timer.rollouts) != 1 or len(timer.steps) != 1:
        raise RuntimeError(f"expected one generate, rollout and step; got {len(gen_timer.records)}, "
                           f"{len(timer.rollouts)}, {len(timer.steps)}")
    gen, rollout, step = gen_timer.records[0], timer.rollouts[0], timer.steps[0]
    if len(gen["stamps"]) != gen["new_tokens"]:
        log(f"note: {len(gen['stamps'])} forwards for {gen['new_tokens']} new tokens; rates before the end are "
            "read off the forward count")
    rates = token_rates(gen["n"], gen["t0"], gen["t1"], gen["stamps"], gen["new_tokens"], checkpoints)
    reached = gen["new_tokens"]
    train_s = step - rollout["seconds"]
    row: dict[str, Any] = {
        **run, "G": cfg.train.num_generations, "completion_length": length, "cut": reached < length,
        "reached_length": reached, "max_time_s": max_time, "prompt_length_padded": gen["prompt_len"],
        "mean_completion_len": rollout["tokens"] / rollout["completions"],
        "completion_tokens_per_step": rollout["tokens"],
        "generate_s": gen["t1"] - gen["t0"], "gen_tokens_per_s": {k: v["tokens_per_s"] for k, v in rates.items()},
        "gen_seconds_to": {k: v["seconds"] for k, v in rates.items()},
        "rollout_s": rollout["seconds"], "rollout_tokens_per_s": rollout["tokens"] / rollout["seconds"],
        "step_s": step, "train_part_s": train_s, "train_s_per_micro_batch": train_s / run["accumulation"],
        "gradient_checkpointing": cfg.model.gradient_checkpointing,
    }
    if cuda:
        row.update(peak_gen_mem_gib=rollout["peak_gib"], peak_gen_reserved_gib=rollout["peak_reserved_gib"],
                   peak_train_mem_gib=torch.cuda.max_memory_allocated() / 2**30,
                   peak_train_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
        row["peak_gpu_mem_gib"] = max(row["peak_gen_mem_gib"], row["peak_train_mem_gib"])
        row["peak_gpu_reserved_gib"] = max(row["peak_gen_reserved_gib"], row["peak_train_reserved_gib"])
    else:
        row.update(peak_gen_mem_gib=None, peak_train_mem_gib=None, peak_gpu_mem_gib=None, peak_gpu_reserved_gib=None)
    return row


def describe(row: dict[str, Any], cuda: bool) -> str:
    if "error" in row:
        return f"{row['sequences']} seq: FAILED ({row['error']})"
    rates = ", ".join(f"{k} tok {v:,.0f} tok/s" for k, v in row["gen_tokens_per_s"].items())
    cut = f" CUT at {row['reached_length']} of {row['completion_length']} tokens (time cap)" if row["cut"] else ""
    mem = (f"; peak gen {row['peak_gen_mem_gib']:.1f} GiB, train {row['peak_train_mem_gib']:.1f} GiB "
           f"(reserved {row['peak_gpu_reserved_gib']:.1f})") if cuda else ""
    return (f"{row['sequences']} seq (prompt {row['prompt_length_padded']} tokens): generate {rates}{cut}; "
            f"train {row['accumulation']} x micro-batch {row['micro_batch']} = {row['train_part_s']:.1f} s "
            f"({row['train_s_per_micro_batch']:.2f} s each); step {row['step_s']:.1f} s{mem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (a dry run of this script)")
    parser.add_argument("--sequences", default="8,64", help="sequence counts, comma-separated (default 8,64)")
    parser.add_argument("--length", type=int, default=None, help="completion length L (default 4096; --tiny: 32)")
    parser.add_argument("--checkpoints", default=None, help="also report tokens/s at these lengths (default 1024; "
                        "--tiny: 8)")
    parser.add_argument("--budget-s", type=float, default=None, help="time budget of this script in seconds "
                        "(default 420; --tiny: none); generations are capped to fit")
    parser.add_argument("--max-gen-s", type=float, default=None, help="cap each generation at this many seconds "
                        "(default: from the budget)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: $EGRC_R1_TOKENIZER, the "
                        "R1-distill tokenizer in ../shared, else the builtin tiny one; --tiny: the builtin one)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        sys.exit("no CUDA GPU visible: run with --tiny for a CPU dry run")
    which = 1 if args.tiny else 0
    length = args.length or LENGTH[which]
    checkpoints = [int(x) for x in (args.checkpoints or CHECKPOINTS[which]).split(",") if x]
    budget = args.budget_s if args.budget_s is not None else BUDGET_S[which]
    if args.tiny:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    import peft
    import transformers
    import trl

    from egrc_lite.backends.hf import lora_config
    from egrc_lite.data import load_problems, to_prompt_dataset
    from egrc_lite.train.arguments import batch_shape

    preset_cfg, _ = make_config(args.tiny)
    micro, accum = batch_shape(preset_cfg)
    group = preset_cfg.train.num_generations
    runs = plan_runs([int(x) for x in args.sequences.split(",")], group, micro)
    tokenizer, tok_source = load_tokenizer(args.tokenizer, args.tiny)
    device = "cuda" if cuda else "cpu"
    card = torch.cuda.get_device_name(0) if cuda else "CPU"
    result: dict[str, Any] = {
        "card": card, "shapes": "tiny" if args.tiny else "DeepSeek-R1-Distill-Qwen-1.5B (random weights)",
        "dtype": "float32" if args.tiny else "bfloat16", "tokenizer": tok_source, "backend": "hf",
        "preset": PRESET, "preset_batch": {"completions_per_step": micro * accum, "G": group, "micro_batch": micro,
                                           "gradient_accumulation_steps": accum},
        "completion_length": length, "checkpoints": checkpoints, "budget_s": budget,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
                     "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__},
        "runs": [],
    }
    log(f"card {card}; torch {torch.__version__} (cuda {torch.version.cuda}), transformers {transformers.__version__}, "
        f"trl {trl.__version__}, peft {peft.__version__}; {tok_source}")
    log(f"preset {PRESET}: {micro * accum} completions/step (G {group}) in {accum} micro-batches of {micro}; "
        f"runs: {', '.join(str(r['sequences']) for r in runs)} sequences x {length} tokens; "
        f"budget {budget if budget is not None else 'none'} s")

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    def elapsed() -> float:
        return time.perf_counter() - T_START

    t0 = time.perf_counter()
    model = build_model(args.tiny, tokenizer, device)
    model = peft.get_peft_model(model, lora_config(preset_cfg))
    result["params"] = sum(p.numel() for p in model.parameters())
    result["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
    dataset = to_prompt_dataset(load_problems(preset_cfg.data), preset_cfg.data)
    result["setup_s"] = elapsed()
    log(f"model built in {time.perf_counter() - t0:.1f} s: {result['params'] / 1e9:.3f} B parameters, "
        f"{result['trainable_params'] / 1e6:.1f} M trainable (LoRA r {preset_cfg.lora.r}); "
        f"attention {result['attn_implementation']}; {elapsed():.0f} s since start")

    t0 = time.perf_counter()
    warm = (max if cuda else min)(runs, key=lambda r: r["sequences"])  # the CPU dry run only checks the path
    run_step(model, tokenizer, dataset, args.tiny, warm, WARMUP_LENGTH[which], [], cuda, None)
    result["warmup_s"] = time.perf_counter() - t0
    log(f"warm-up step ({warm['sequences']} x {WARMUP_LENGTH[which]} tokens) done in {result['warmup_s']:.1f} s")
    save()

    train_per_micro = TRAIN_GUESS_S if cuda else 0.0
    for i, run in enumerate(runs):
        max_time = args.max_gen_s
        if max_time is None and budget is not None:
            reserve = train_per_micro * sum(r["accumulation"] for r in runs[i:])
            max_time = generation_cap(budget - elapsed(), len(runs) - i, reserve)
        log(f"run {i + 1}/{len(runs)}: {run['sequences']} sequences x {length} tokens"
            + (f" (generation capped at {max_time:.0f} s)" if max_time is not None else ""))
        try:
            row = run_step(model, tokenizer, dataset, args.tiny, run, length, checkpoints, cuda, max_time)
            if not row["cut"]:
                train_per_micro = max(train_per_micro, 1.25 * row["train_s_per_micro_batch"])
        except Exception as exc:  # noqa: BLE001 - record it (OOM on a small card, say) and go on
            traceback.print_exc()
            row = {**run, "completion_length": length, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            if cuda:
                gc.collect()
                torch.cuda.empty_cache()
        result["runs"].append(row)
        save()
        log(describe(row, cuda))

    done = [r for r in result["runs"] if "error" not in r]
    single = next((r for r in done if r["accumulation"] == 1 and r["micro_batch"] == micro), None)
    if single:
        result["train_step"] = {"micro_batch": micro, "completion_length": single["reached_length"],
                                "seconds": single["train_part_s"], "peak_gpu_mem_gib": single["peak_train_mem_gib"],
                                "gradient_checkpointing": single["gradient_checkpointing"]}
    result["total_s"] = elapsed()
    save()
    log("\nsummary (random weights; forced lengths; transformers generate through TRL; tokens/s = all sequences):")
    for row in result["runs"]:
        log("  " + describe(row, cuda))
    if single:
        mem = f", peak {single['peak_train_mem_gib']:.1f} GiB" if cuda else ""
        log(f"  one training step at the preset's micro-batch ({micro} x {single['reached_length']} tokens, loss + "
            f"backward, gradient checkpointing {'on' if single['gradient_checkpointing'] else 'off'}, + AdamW): "
            f"{single['train_part_s']:.2f} s{mem}")
    log(f"gpu_check done in {result['total_s']:.0f} s" + (f" (budget {budget:.0f} s)" if budget else ""))


if __name__ == "__main__":
    main()
