"""Find, list and load YAML presets; deep-merge them; apply ``--set`` overrides.

A preset is a YAML mapping of config values, optionally with ``extends: OTHER`` (a name or
a path) whose values it overrides, and ``set:``, a list of ``dotted.key=value`` overrides applied
after its values (so an overlay can change one stage of whatever base it lands on:
``schedule.stages.compress.length_clip=2048`` addresses a stage by name or mode). Its leading
``#`` comment block is its header (hardware, expected time, purpose). Presets compose left to
right (``--preset r1-1.5b --preset ablations/lc2048``). Precedence, lowest first: config defaults
< each preset's ``extends`` chain < the preset < later presets < ``--set`` overrides in order <
explicit command-line flags.

>>> merged = deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
>>> merged
{'a': {'b': 1, 'c': 3}}
>>> apply_override({"train": {"seed": 0}}, "train.seed=7")
{'train': {'seed': 7}}
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from egrc_lite.config import ConfigError, EgrcConfig, validate_config

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "default"
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
MODE_DERIVED = ("name", "length_clip", "max_completion_length", "temperature", "top_p", "epsilon_high")
"""Stage keys the defaults leave open for validation to fill (from the mode, or ``length_clip`` from the
compression stage before an explore stage), so a preset or ``--set`` that changes what they derive from
moves them too."""


def preset_dirs() -> list[Path]:
    """Where presets are looked up: ``$EGRC_PRESETS_DIR`` (colon-separated), then the checkout's ``presets/``."""
    dirs = [Path(p) for p in os.environ.get("EGRC_PRESETS_DIR", "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parent.parent / "presets")
    return [d for d in dirs if d.is_dir()]


@dataclass(frozen=True)
class PresetInfo:
    name: str
    path: Path
    header: str

    @property
    def summary(self) -> str:
        """The header's first sentence, e.g. ``Baseline (paper section 4.3): the entropy-entangled run.``

        >>> PresetInfo("x", Path("x.yaml"), "Ablation: clip\\nL = 2048. Hardware: one GPU.\\nRun: ...").summary
        'Ablation: clip L = 2048.'
        """
        text = " ".join(self.header.split())
        end = text.find(". ")
        return text if end < 0 else text[:end + 1]


def read_preset_text(path: Path) -> str:
    """The text of a preset file; a file that is not UTF-8 is a :class:`ConfigError` naming the file and line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"preset {path} line {line} is not UTF-8 text (byte 0x{raw[err.start]:02x}); "
                          "re-save it as UTF-8 or remove it") from None


def _header(path: Path) -> str:
    lines = []
    for line in read_preset_text(path).splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return "\n".join(lines).strip()


def list_presets() -> list[PresetInfo]:
    """Every preset found, searching preset folders recursively (first folder wins a name clash).

    A file that cannot be read as UTF-8 text is left out with a warning (asking for it by name is an error).
    """
    found: dict[str, PresetInfo] = {}
    for folder in preset_dirs():
        for path in sorted(folder.rglob("*.yaml")):
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in found:
                continue
            try:
                found[name] = PresetInfo(name, path, _header(path))
            except ConfigError as err:
                logger.warning("%s (left out of the list)", err)
            except OSError as err:
                logger.warning("preset %s cannot be read: %s (left out of the list)", path, err.strerror or err)
    return sorted(found.values(), key=lambda p: p.name)


def find_preset(name_or_path: str) -> Path:
    """The file of a preset given by name (``smoke``, ``ablations/lc2048``) or by path."""
    as_path = Path(name_or_path).expanduser()
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path
    for folder in preset_dirs():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    names = ", ".join(p.name for p in list_presets()) or "(none found)"
    raise ConfigError(f"unknown preset '{name_or_path}'; valid presets: {names} (or give a path to a .yaml file)")


@dataclass(frozen=True)
class Layer:
    """One preset file: its values and its ``set:`` overrides (dotted ``key=value`` strings)."""

    path: Path
    values: dict[str, Any]
    sets: tuple[str, ...]


def preset_layers(name_or_path: str, _seen: tuple[str, ...] = ()) -> list[Layer]:
    """The files of a preset's ``extends`` chain, base first."""
    path = find_preset(name_or_path)
    key = str(path.resolve())
    if key in _seen:
        raise ConfigError(f"preset '{name_or_path}' extends itself through a cycle; remove one 'extends'")
    try:
        data = yaml.safe_load(read_preset_text(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"preset {path}{where} is not valid YAML; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a YAML mapping of config keys")
    parent = data.pop("extends", None)
    sets = data.pop("set", None) or []
    if not isinstance(sets, list) or not all(isinstance(x, str) for x in sets):
        raise ConfigError(f"preset {path}: 'set' must be a list of 'dotted.key=value' strings")
    layer = Layer(path, data, tuple(sets))
    if parent is None:
        return [layer]
    if not isinstance(parent, str):
        raise ConfigError(f"preset {path}: 'extends' must be a preset name or path")
    if not Path(parent).is_absolute() and (path.parent / parent).suffix in (".yaml", ".yml"):
        parent = str(path.parent / parent)
    return preset_layers(parent, _seen + (key,)) + [layer]


def apply_layers(data: dict[str, Any], layers: list[Layer]) -> dict[str, Any]:
    """``data`` with each layer merged in turn, each followed by its ``set:`` overrides."""
    for layer in layers:
        data = deep_merge(data, layer.values)
        for text in layer.sets:
            try:
                data = apply_override(data, text)
            except ConfigError as err:
                raise ConfigError(f"preset {layer.path}: {err}") from None
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings merge, everything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``dotted.key=value``; the value is read as a YAML scalar or flow list/mapping."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' must look like dotted.key=value, e.g. train.seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads '1e-5' as a string
    return key.split("."), value


def apply_override(data: dict[str, Any], text: str) -> dict[str, Any]:
    """A copy of ``data`` with one ``dotted.key=value`` override applied (list items by index)."""
    parts, value = parse_override(text)
    return set_path(data, parts, value)


def set_path(data: dict[str, Any], parts: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the value at the key path ``parts`` replaced by ``value``."""
    out = copy.deepcopy(data)
    node: Any = out
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, ".".join(parts))] = value
    else:
        node[last] = value
    return out


def _index(node: list[Any], part: str, path: str) -> int:
    """A list position from an index (``0``, ``-1``) or an item's ``name`` / ``mode`` (``compress``)."""
    if part.lstrip("-").isdigit():
        if -len(node) <= int(part) < len(node):
            return int(part)
        raise ConfigError(f"override '{path}': '{part}' is not an index of a list of {len(node)} items")
    named = [i for i, item in enumerate(node) if isinstance(item, dict)
             and (item.get("name") == part or (not item.get("name") and item.get("mode") == part))]
    if len(named) == 1:
        return named[0]
    labels = [str(item.get("name") or item.get("mode")) for item in node if isinstance(item, dict)]
    what = "matches several items" if named else "names no item"
    raise ConfigError(f"override '{path}': '{part}' {what} of the list (items: {', '.join(labels) or 'none'}; "
                      "use an index or a unique stage name)")


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"override '{path}': its parent is a value, not a section")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def resolve(preset: str | list[str] | None = DEFAULT_PRESET, overrides: list[str] | None = None,
            flags: dict[str, Any] | None = None) -> EgrcConfig:
    """The validated config from presets, ``--set`` overrides and explicit flags (dotted keys).

    Several presets compose left to right: ``["r1-1.5b", "ablations/lc2048"]`` applies the
    ablation overlay on top of the 1.5B setting.
    """
    data = _base_dict()
    for name in [preset] if isinstance(preset, str) else list(preset or []):
        data = apply_layers(data, preset_layers(name))
    for text in overrides or []:
        data = apply_override(data, text)
    for key, value in (flags or {}).items():
        if value is not None:
            data = set_path(data, key.split("."), value)
    return validate_config(data)


def _base_dict() -> dict[str, Any]:
    """The defaults as a dict, with the derived stage values (:data:`MODE_DERIVED`) left open (None) for validation
    to fill."""
    base = EgrcConfig().model_dump(mode="python")
    for stage in base["schedule"]["stages"]:
        for key in MODE_DERIVED:
            stage[key] = None
    return base
