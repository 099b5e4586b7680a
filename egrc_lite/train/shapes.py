"""A decoder's shapes without its weights: from a ``config.json`` (shipped, local or in the hub cache) and, for
a local model, the exact tensor sizes from its safetensors headers.

The families egrc-lite trains (Qwen2, Llama, Mistral: pre-norm decoder layers with grouped-query attention
and a gated MLP) have, per layer, the linear layers ``q k v o`` (``hidden -> heads x head_dim``, ...) and
``gate up down`` (``hidden <-> intermediate``), two RMSNorm weights, and biases on ``q k v`` for Qwen2;
then a final norm, the embedding and the LM head (absent when tied to the embedding).

>>> s = ModelShape(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=384, tied=True, qkv_bias=True)
>>> s.linears["q_proj"], s.linears["k_proj"], s.linears["down_proj"]
((64, 64), (64, 32), (128, 64))
>>> s.total_params()  # 2 x (2 x 64 x 64 + 2 x 64 x 32 + 3 x 64 x 128 + biases 128 + norms 128) + 64 + 384 x 64
98880
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from egrc_lite.config import ConfigError, EgrcConfig

SHIPPED_DIR = Path(__file__).resolve().parent.parent.parent / "presets" / "models"
"""Shapes of the shipped presets' models (``<org>--<name>.json``), so ``plan`` needs no network."""
BUILTIN_CONFIGS = {"builtin:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "F32": 4, "BF16": 2, "F16": 2, "F64": 8, "I64": 8,
               "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEADER_LIMIT = 100 * 2**20  # a safetensors header larger than this is not read (hostile or broken file)


@dataclass(frozen=True)
class ModelShape:
    """The sizes that memory depends on; ``source`` says where they came from."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    qkv_bias: bool = False
    head_dim: int | None = None
    dtype: str = "bfloat16"
    source: str = ""
    exact_params: int | None = None  # from safetensors headers, when read
    linears: dict[str, tuple[int, int]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        hd = self.head_dim or self.hidden // self.heads
        q, kv = self.heads * hd, self.kv_heads * hd
        h, i = self.hidden, self.intermediate
        object.__setattr__(self, "linears", {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)})

    @property
    def kv_dim(self) -> int:
        return self.linears["k_proj"][1]

    @property
    def q_dim(self) -> int:
        return self.linears["q_proj"][1]

    def linear_params(self) -> int:
        """Weights of the decoder layers' linear layers (the ones 4-bit loading quantises), all layers."""
        return self.layers * sum(i * o for i, o in self.linears.values())

    def other_params(self) -> int:
        """Everything else: qkv biases, norms, embedding, LM head (kept in 16 bits under 4-bit loading)."""
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        per_layer = bias + 2 * self.hidden
        head = 0 if self.tied else self.vocab * self.hidden
        return self.layers * per_layer + self.hidden + self.vocab * self.hidden + head

    def total_params(self) -> int:
        return self.linear_params() + self.other_params()


def shape_from_config(config: dict[str, Any], source: str) -> ModelShape:
    """A :class:`ModelShape` from a ``config.json`` mapping; a missing size is a one-line error."""
    need = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in need if not isinstance(config.get(k), int)]
    if missing:
        raise ConfigError(f"{source}: the model config lacks {', '.join(missing)}; `plan` estimates decoder models "
                          "with a Llama/Qwen2-style config.json")
    model_type = str(config.get("model_type", ""))
    return ModelShape(
        hidden=config["hidden_size"], intermediate=config["intermediate_size"], layers=config["num_hidden_layers"],
        heads=config["num_attention_heads"], kv_heads=int(config.get("num_key_value_heads") or config["num_attention_heads"]),
        vocab=config["vocab_size"], tied=bool(config.get("tie_word_embeddings", model_type != "qwen2")),
        qkv_bias=bool(config.get("attention_bias", model_type == "qwen2")), head_dim=config.get("head_dim"),
        dtype=str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), source=source)


def safetensors_params(directory: Path) -> int | None:
    """The number of parameters in ``directory``'s ``*.safetensors`` files, from their headers only (8 bytes of
    little-endian header length, then a JSON map of tensor name -> dtype, shape, offsets); ``None`` when there
    are none."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ConfigError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (size,) = struct.unpack("<Q", raw)
            if size > HEADER_LIMIT:
                raise ConfigError(f"{path}: a {size}-byte safetensors header; not a safetensors file")
            try:
                header = json.loads(f.read(size))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise ConfigError(f"{path}: unreadable safetensors header; re-download the file") from None
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info.get("shape", []):
                    count *= int(dim)
                total += count
    return total


def _hub_cached_config(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return Path(found) if isinstance(found, str) else None


def shipped_config(repo_id: str) -> Path:
    return SHIPPED_DIR / (repo_id.replace("/", "--") + ".json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: unreadable model config ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the model config is not a JSON object")
    return data


def model_shape(cfg: EgrcConfig) -> ModelShape:
    """The shapes of ``cfg.model`` without loading weights: ``builtin:tiny`` from its config section, a local
    directory from its ``config.json`` (and safetensors headers), a hub id from the configs shipped with the
    presets or the hub cache. Anything else is a one-line :class:`ConfigError` naming the fix."""
    name = cfg.model.name_or_path
    if name == "builtin:tiny":
        t = cfg.model.tiny
        return ModelShape(hidden=t.hidden_size, intermediate=t.intermediate_size, layers=t.num_hidden_layers,
                          heads=t.num_attention_heads, kv_heads=t.num_key_value_heads, vocab=t.vocab_size, tied=True,
                          qkv_bias=True, dtype="float32", source="builtin:tiny (model.tiny)")
    repo_id = BUILTIN_CONFIGS.get(name, name)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.name_or_path {name}: no config.json in that directory; `plan` reads the "
                              "model's config.json")
        shape = shape_from_config(_read_json(local / "config.json"), str(local / "config.json"))
        exact = safetensors_params(local)
        return shape if exact is None else replace(shape, exact_params=exact)
    if local.suffix == ".gguf" or name.startswith("builtin:") and name not in BUILTIN_CONFIGS:
        raise ConfigError(f"model.name_or_path {name}: `plan` reads a config.json; point it at a Hugging Face id or "
                          "a model directory")
    shipped = shipped_config(repo_id)
    if shipped.is_file():
        return shape_from_config(_read_json(shipped), f"{repo_id} (config shipped with the presets)")
    cached = _hub_cached_config(repo_id, cfg.model.revision)
    if cached is not None:
        return shape_from_config(_read_json(cached), f"{repo_id} (config in the Hugging Face cache)")
    raise ConfigError(f"model.name_or_path {name}: no config.json found offline (not a directory, not shipped, not in "
                      f"the Hugging Face cache); download it once (huggingface-cli download {repo_id} config.json) "
                      "or point --set model.name_or_path at a local model directory")

