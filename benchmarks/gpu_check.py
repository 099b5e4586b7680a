"""GPU benchmark of the hf backend at the shapes of DeepSeek-R1-Distill-Qwen-1.5B (random weights).

For each completion length L (default 1024 and 4096 tokens), one stage-1 (compress) GRPO step of
egrc-lite's trainer (``training.build_trainer``, LoRA r 32 on all projections as in the
``r1-1.5b`` preset, bf16, gradient checkpointing) with G = 8 completions of one prompt, every
completion forced to exactly L tokens (``min_new_tokens`` = max = L: a random model never stops
by itself, and a forced length makes the figures comparable). Measured per L:

- rollout tokens/s: completion tokens / wall time of ``_generate_and_score_completions``
  (transformers ``generate`` + reward scoring; the rollout of the hf backend);
- step time: wall time of the whole optimiser step (rollout + loss forward/backward + update);
- peak GPU memory: ``torch.cuda.max_memory_allocated`` (and reserved) over that step.

A short warm-up step (L = 32) runs first so one-time costs (CUDA/cuBLAS init, Triton kernels of
TRL's fused log-prob head) stay out of the figures. Results are printed and written as JSON.

Usage::

    python benchmarks/gpu_check.py --out gpu_check.json           # on the GPU (estimated 3-5 min)
    python benchmarks/gpu_check.py --tiny                          # a CPU dry run with tiny shapes (~1 min)

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

R1_1P5B = dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
               intermediate_size=8960, vocab_size=151936, max_position_embeddings=131072, rope_theta=10000.0,
               rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu", use_sliding_window=False,
               bos_token_id=151646, eos_token_id=151643)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, max_position_embeddings=8192, tie_word_embeddings=False)
DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "deepseek-r1-distill-qwen"


def log(msg: str) -> None:
    print(msg, flush=True)


def load_tokenizer(path: str | None, tiny: bool) -> tuple[Any, str]:
    """The R1-distill tokenizer when available (real prompt lengths), else (and with --tiny) the builtin one."""
    from transformers import AutoTokenizer

    candidates = [path] if tiny else [path, os.environ.get("EGRC_R1_TOKENIZER"), str(DEFAULT_TOKENIZER)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "tokenizer.json").is_file():
            tok = AutoTokenizer.from_pretrained(candidate)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            return tok, f"R1-distill tokenizer ({candidate})"
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


def make_config(tiny: bool, length: int, group: int, prompts: int) -> Any:
    from egrc_lite.presets import resolve

    overrides = [
        "data.source=builtin:arithmetic", "data.builtin_size=64", "data.max_prompt_length=1024",
        "schedule.auto_switch.enabled=false", f"train.num_generations={group}",
        f"train.prompts_per_step={prompts}", "train.gradient_accumulation_steps=1", "train.num_samples_logged=0",
    ]
    if tiny:
        overrides += ["model.dtype=float32", "model.gradient_checkpointing=false", "lora.r=8", "lora.alpha=16"]
    cfg = resolve("r1-1.5b", overrides, {"backend": "hf"})
    stage = cfg.schedule.stages[0].model_copy(update={"length_clip": length, "max_completion_length": length})
    return cfg, stage


class StepTimer:
    """Times each optimiser step and each rollout (``_generate_and_score_completions``) of a trainer."""

    def __init__(self, trainer: Any, cuda: bool) -> None:
        import torch
        from transformers import TrainerCallback

        self.cuda, self.steps, self.rollouts = cuda, [], []
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)
        timer = self
        original = trainer._generate_and_score_completions

        def timed(inputs: Any) -> Any:
            timer._sync()
            t0 = time.perf_counter()
            out = original(inputs)
            timer._sync()
            tokens = int(out["completion_mask"].sum())
            timer.rollouts.append({"seconds": time.perf_counter() - t0, "tokens": tokens,
                                   "completions": int(out["completion_mask"].shape[0])})
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


def run_length(model: Any, tokenizer: Any, dataset: Any, tiny: bool, length: int, group: int, prompts: int,
               steps: int, cuda: bool) -> dict[str, Any]:
    import torch

    from egrc_lite.train.trainer import build_trainer

    cfg, stage = make_config(tiny, length, group, prompts)
    stage = stage.model_copy(update={"steps": steps})
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, stage, model, tokenizer, dataset, output_dir=out, seed=0,
                                generation_kwargs={"min_new_tokens": length}, save_strategy="no")
        timer = StepTimer(trainer, cuda)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
        del trainer
    gc.collect()
    last = timer.rollouts[-1]
    return {
        "completion_length": length, "G": group, "prompts_per_step": prompts, "steps": len(timer.steps),
        "completion_tokens_per_step": last["tokens"], "mean_completion_len": last["tokens"] / last["completions"],
        "rollout_s": last["seconds"], "rollout_tokens_per_s": last["tokens"] / last["seconds"],
        "step_s": timer.steps[-1], "train_part_s": timer.steps[-1] - last["seconds"],
        "peak_gpu_mem_gib": peak, "peak_gpu_reserved_gib": reserved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (a dry run of this script)")
    parser.add_argument("--lengths", default=None, help="comma-separated completion lengths (default 1024,4096; "
                        "--tiny: 32,64)")
    parser.add_argument("--G", type=int, default=8, help="completions per prompt")
    parser.add_argument("--prompts", type=int, default=1, help="prompts per step")
    parser.add_argument("--steps", type=int, default=1, help="measured steps per length (the last is reported)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: $EGRC_R1_TOKENIZER, the "
                        "R1-distill tokenizer in ../shared, else the builtin tiny one; --tiny: the builtin one)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        sys.exit("no CUDA GPU visible: run with --tiny for a CPU dry run")
    lengths = [int(x) for x in (args.lengths or ("32,64" if args.tiny else "1024,4096")).split(",")]
    if args.tiny:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    t_start = time.perf_counter()
    import peft
    import transformers
    import trl

    from egrc_lite.data import load_problems, to_prompt_dataset

    tokenizer, tok_source = load_tokenizer(args.tokenizer, args.tiny)
    device = "cuda" if cuda else "cpu"
    card = torch.cuda.get_device_name(0) if cuda else "CPU"
    result: dict[str, Any] = {
        "card": card, "shapes": "tiny" if args.tiny else "DeepSeek-R1-Distill-Qwen-1.5B (random weights)",
        "dtype": "float32" if args.tiny else "bfloat16", "tokenizer": tok_source, "backend": "hf",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                     "peft": peft.__version__, "cuda": torch.version.cuda},
        "runs": [],
    }
    log(f"card {card}; torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"peft {peft.__version__}; {tok_source}")

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    t0 = time.perf_counter()
    model = build_model(args.tiny, tokenizer, device)
    cfg, _ = make_config(args.tiny, lengths[0], args.G, args.prompts)
    from egrc_lite.backends.hf import lora_config

    model = peft.get_peft_model(model, lora_config(cfg))
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result["params"], result["trainable_params"] = n_params, n_train
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    log(f"model built in {time.perf_counter() - t0:.1f} s: {n_params / 1e9:.3f} B parameters, "
        f"{n_train / 1e6:.1f} M trainable (LoRA r {cfg.lora.r})")

    t0 = time.perf_counter()
    run_length(model, tokenizer, dataset, args.tiny, 16 if args.tiny else 32, args.G, args.prompts, 1, cuda)
    result["warmup_s"] = time.perf_counter() - t0
    log(f"warm-up step done in {result['warmup_s']:.1f} s")
    save()
    for length in lengths:
        row = run_length(model, tokenizer, dataset, args.tiny, length, args.G, args.prompts, args.steps, cuda)
        result["runs"].append(row)
        save()
        mem = f"peak {row['peak_gpu_mem_gib']:.1f} GiB (reserved {row['peak_gpu_reserved_gib']:.1f})" if cuda else ""
        log(f"L={length}: {row['completion_tokens_per_step']} completion tokens/step; rollout "
            f"{row['rollout_s']:.1f} s = {row['rollout_tokens_per_s']:.0f} tok/s; step {row['step_s']:.1f} s "
            f"(loss+update {row['train_part_s']:.1f} s); {mem}")
    result["total_s"] = time.perf_counter() - t_start
    save()
    log(json.dumps(result["runs"], indent=1))
    log(f"gpu_check done in {result['total_s']:.0f} s")


if __name__ == "__main__":
    main()
