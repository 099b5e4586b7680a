"""Peak GPU memory of one training run, by component, from the config and the model's shapes (no weights).

Notation: ``P`` parameters, ``b`` bytes per element of the compute dtype (bf16/fp16 2, float32 4; 4-bit
loading computes in bf16), ``h`` hidden size, ``i`` intermediate size, ``q``/``kv`` the query and key/value
widths, ``n_l`` layers, ``V`` vocabulary, ``B`` the micro-batch (completions per forward), ``T`` prompt + the
longest completion of the schedule, ``T_c`` that completion, ``G`` completions per prompt.

weights          ``P * b``; 4-bit (bitsandbytes NF4 with double quantisation): the decoder's linear weights at
                 ``1/2 + 1/64 + 4/(64*256)`` bytes each (4 bits, an 8-bit absmax per 64, a float32 per 256
                 absmax), everything else (embedding, head, norms, biases) at 2 bytes
LoRA             ``r * (in + out)`` per targeted linear layer and layer; 16 bytes each: float32 weights (PEFT
                 keeps adapters in float32), their gradients, and AdamW's two moments
activations      what backward keeps per token and layer, ``b * (6h + 3q + 3kv + 4i)`` (norm inputs and outputs,
                 attention inputs, rotated q/k, v, attention output, gate/up outputs, the SiLU product), times
                 ``B * T * n_l``; with gradient checkpointing ``B * T * (n_l * h * b)`` (each layer's input) plus
                 one layer's full set for the recompute; unsloth's checkpointing keeps the layer inputs in CPU
                 memory, so only the recomputed layer's set stays on the GPU
logits           the LM head over the completion tokens: logits and their gradient in the compute dtype and a
                 float32 log-softmax, ``(2b + 4) * V`` per token; ``B * T_c`` tokens at once (TRL's forward) or a
                 chunk of :data:`LOGIT_CHUNK_TOKENS` (unsloth's chunked loss)
vLLM             ``gpu_memory_utilization * card``, held for the whole run (released during training steps with
                 ``unsloth.vllm_standby``); it holds the weights (shared with training by unsloth),
                 :data:`VLLM_OVERHEAD` of its own, and a KV cache of ``2 * n_l * kv * b`` bytes per token, which
                 should hold a step's ``prompts_per_step * G * T`` tokens (else rollouts queue: slower, no crash)
hf generation    without vLLM, ``generate``'s KV cache for the same tokens, during generation only
CUDA context     :data:`CUDA_CONTEXT` (driver context and allocator slack)

Peak = persistent (weights, LoRA, context; vLLM's share) + the larger of the training transient (activations +
logits) and the generation transient (hf generation's KV cache). The parameter and optimizer parts are exact
(tested against real models); activations, logits and the constants are estimates of the usual order
(``benchmarks/gpu_check.py`` measures a real step where a GPU is available).

>>> from egrc_lite.train.shapes import ModelShape
>>> tiny = ModelShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=384, tied=True, qkv_bias=True)
>>> lora_params(tiny, r=16, targets="all-linear")  # 2 layers x 16 x (128 + 96 + 96 + 128 + 192 x 3)
32768
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from egrc_lite.config import ConfigError, EgrcConfig
from egrc_lite.train.shapes import DTYPE_BYTES, LINEARS, ModelShape

GIB = 2**30
CUDA_CONTEXT = int(0.75 * GIB)
"""CUDA context and allocator slack [our estimate]."""
VLLM_OVERHEAD = 1 * GIB
"""vLLM's own activations and CUDA graphs inside its share [our estimate]."""
LOGIT_CHUNK_TOKENS = 4096
"""Completion tokens per LM-head chunk in unsloth's chunked loss [our estimate of the order]."""
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
LORA_BYTES_PER_PARAM = 16  # float32 weight + gradient + AdamW's exp_avg and exp_avg_sq
Backend = Literal["hf", "unsloth"]


@dataclass(frozen=True)
class Component:
    name: str
    bytes: float
    note: str


@dataclass
class Estimate:
    """Components (bytes), the peak, and, for a card size, the verdict and vLLM's KV-cache check."""

    backend: Backend
    components: list[Component]
    peak: float
    gpu_bytes: float | None = None
    kv_capacity_tokens: int | None = None
    kv_needed_tokens: int = 0
    longest_sequence: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        if self.gpu_bytes is None:
            return None
        kv_ok = self.kv_capacity_tokens is None or self.kv_capacity_tokens >= self.longest_sequence
        return self.peak <= self.gpu_bytes and kv_ok


def lora_params(shape: ModelShape, *, r: int, targets: str | list[str]) -> int:
    """Trainable LoRA parameters: ``sum over layers and targets of r * (in + out)``."""
    names = list(LINEARS) if targets == "all-linear" else list(targets)
    unknown = [n for n in names if n not in shape.linears]
    if unknown:
        raise ConfigError(f"lora.target_modules {unknown}: `plan` knows the decoder's linear layers "
                          f"({', '.join(LINEARS)}) or all-linear")
    return shape.layers * sum(r * sum(shape.linears[n]) for n in names)


def compute_bytes(cfg: EgrcConfig, shape: ModelShape) -> int:
    """Bytes per element of the compute dtype (4-bit loading computes in bfloat16)."""
    if cfg.model.load_in_4bit:
        return 2
    dtype = shape.dtype if cfg.model.dtype == "auto" else cfg.model.dtype
    return DTYPE_BYTES.get(dtype, 2)


def weight_bytes(cfg: EgrcConfig, shape: ModelShape) -> float:
    if cfg.model.load_in_4bit:
        return shape.linear_params() * NF4_BYTES + shape.other_params() * 2
    return (shape.exact_params or shape.total_params()) * compute_bytes(cfg, shape)


def activation_bytes(shape: ModelShape, *, tokens: int, b: int, checkpointing: bool, offloaded: bool = False) -> float:
    """What backward keeps on the GPU for ``tokens`` (micro-batch x sequence) tokens; ``offloaded``: the layer
    inputs saved by checkpointing live in CPU memory (unsloth's checkpointing)."""
    per_layer = b * (6 * shape.hidden + 3 * shape.q_dim + 3 * shape.kv_dim + 4 * shape.intermediate)
    if checkpointing:
        return tokens * ((0 if offloaded else shape.layers * shape.hidden * b) + per_layer)
    return tokens * shape.layers * per_layer


def resolve_backend(cfg: EgrcConfig, backend: str | None) -> Backend:
    """``hf`` or ``unsloth`` (vLLM sampling); ``auto`` plans for a GPU with the gpu extra: unsloth."""
    chosen = backend or cfg.backend
    if chosen not in ("auto", "hf", "unsloth"):
        raise ConfigError(f"--backend {chosen}: valid backends are auto, hf, unsloth")
    return "hf" if chosen == "hf" else "unsloth"


def estimate(cfg: EgrcConfig, shape: ModelShape, *, gpu_gib: float | None = None, backend: str | None = None) -> Estimate:
    """The components and the peak for ``cfg`` on a card of ``gpu_gib`` GiB (vLLM's share needs the card size)."""
    from egrc_lite.train.arguments import batch_shape

    if gpu_gib is not None and not gpu_gib > 0:
        raise ConfigError(f"--gpu-memory {gpu_gib}: give the card's memory in GiB, a number > 0 (e.g. 24)")
    which = resolve_backend(cfg, backend)
    b = compute_bytes(cfg, shape)
    micro, _ = batch_shape(cfg)
    completion = max(s.max_completion_length or 0 for s in cfg.schedule.stages)
    seq = cfg.data.max_prompt_length + completion
    needed = cfg.train.prompts_per_step * cfg.train.num_generations * seq
    kv_per_token = 2 * shape.layers * shape.kv_dim * b

    weights = weight_bytes(cfg, shape)
    n_lora = lora_params(shape, r=cfg.lora.r, targets=cfg.lora.target_modules)
    ckpt = cfg.model.gradient_checkpointing
    offloaded = ckpt and which == "unsloth"
    acts = activation_bytes(shape, tokens=micro * seq, b=b, checkpointing=ckpt, offloaded=offloaded)
    logit_tokens = micro * completion if which == "hf" else min(micro * completion, LOGIT_CHUNK_TOKENS)
    logits = logit_tokens * shape.vocab * (2 * b + 4)
    quant = "4-bit NF4 linear layers, 16-bit rest" if cfg.model.load_in_4bit else f"{b} bytes x {shape.total_params():,}"
    parts = [
        Component("LoRA + grads + AdamW", n_lora * LORA_BYTES_PER_PARAM, f"{n_lora:,} parameters x 16 bytes"),
        Component("activations", acts, f"micro-batch {micro} x {seq} tokens, checkpointing "
                  + ("on (layer inputs offloaded to CPU memory by unsloth)" if offloaded else "on" if ckpt else "off")),
        Component("logits", logits, f"{logit_tokens:,} tokens x {shape.vocab:,} x {2 * b + 4} bytes"
                  + (" (TRL: the whole micro-batch)" if which == "hf" else " (chunked)")),
        Component("CUDA context", CUDA_CONTEXT, "driver context and allocator slack (estimate)"),
    ]
    train_transient = acts + logits
    result = Estimate(which, [], 0.0, kv_needed_tokens=needed, longest_sequence=seq,
                      gpu_bytes=None if gpu_gib is None else gpu_gib * GIB)
    if which == "hf":
        gen_kv = needed * kv_per_token
        parts.insert(0, Component("weights", weights, quant))
        parts.append(Component("generation KV cache", gen_kv, f"{needed:,} tokens x {kv_per_token:,} bytes "
                               "(during sampling only)"))
        result.peak = weights + n_lora * LORA_BYTES_PER_PARAM + CUDA_CONTEXT + max(train_transient, gen_kv)
    else:
        util = cfg.unsloth.gpu_memory_utilization
        if gpu_gib is None:
            parts.insert(0, Component("weights", weights, quant))
            result.notes.append("vLLM's share (gpu_memory_utilization x the card) needs the card size: "
                                "egrc-lite plan --gpu-memory GiB")
            result.peak = weights + n_lora * LORA_BYTES_PER_PARAM + CUDA_CONTEXT + train_transient
        else:
            region = util * gpu_gib * GIB
            kv_bytes = region - weights - VLLM_OVERHEAD
            result.kv_capacity_tokens = max(0, int(kv_bytes // kv_per_token))
            parts.insert(0, Component(f"vLLM share ({util:g} x {gpu_gib:g} GiB)", region,
                                      f"weights {weights / GIB:.2f} GiB ({quant}), overhead {VLLM_OVERHEAD / GIB:g} GiB, "
                                      f"KV cache {max(kv_bytes, 0) / GIB:.2f} GiB"))
            rest = n_lora * LORA_BYTES_PER_PARAM + CUDA_CONTEXT
            if cfg.unsloth.vllm_standby:  # vLLM's KV cache is released while a training step runs
                result.peak = rest + max(region, weights + train_transient)
            else:
                result.peak = region + rest + train_transient
            if kv_bytes < 0:
                result.notes.append(f"gpu_memory_utilization {util:g} leaves vLLM no KV cache: the weights alone "
                                    f"need {(weights + VLLM_OVERHEAD) / GIB:.2f} GiB of its {region / GIB:.2f} GiB")
    result.components = parts
    return result


def fix_candidates(cfg: EgrcConfig, est: Estimate, gpu_gib: float) -> list[str]:
    """``--set`` lines that each lower the peak or grow vLLM's KV cache, in the order they are tried."""
    from egrc_lite.train.arguments import batch_shape

    out = []
    if not cfg.model.load_in_4bit and est.backend == "unsloth":
        out.append("model.load_in_4bit=true")
    if not cfg.model.gradient_checkpointing:
        out.append("model.gradient_checkpointing=true")
    micro, accum = batch_shape(cfg)
    completions = micro * accum
    for more in range(accum + 1, completions + 1):
        if completions % more == 0:
            out.append(f"train.gradient_accumulation_steps={more}")
    if est.backend == "unsloth" and est.gpu_bytes:
        for step in range(1, 20):
            util = round(step * 0.05, 2)
            if util != cfg.unsloth.gpu_memory_utilization:
                out.append(f"unsloth.gpu_memory_utilization={util:g}")
    clips = [s for s in cfg.schedule.stages if s.mode in ("compress", "entangled") and s.length_clip]
    if clips:
        out.append(f"schedule.stages.{clips[0].name or clips[0].mode}.length_clip={max(1, clips[0].length_clip // 2)}")
    return out
