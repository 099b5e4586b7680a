"""A model source that cannot load is one line naming the problem and the fix (exit 2, no traceback), found by
the cheap checks of :func:`egrc_lite.backends.sources.resolve_model_source` before any weights or tokenizer
are loaded: a path that does not exist, a folder that is not a checkpoint, a bad ``config.json``, an empty
or corrupt ``.gguf``, a hub id that is not cached while the hub is off or unreachable. Valid sources (a
local checkpoint folder, a cached hub id) still pass."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from bad_input import one_error_line

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tests" / "assets" / "mini_bench.jsonl"
runner = CliRunner()


class LoadedWeights(AssertionError):
    """Raised by the patched loaders: the bad source got as far as loading a model or tokenizer."""


@pytest.fixture
def no_loading(monkeypatch, tmp_path):
    """Model and tokenizer loading raise :class:`LoadedWeights`; the hub cache is an empty folder."""
    import transformers
    from huggingface_hub import constants

    from egrc_lite.backends import sources

    def boom(*args, **kwargs):
        raise LoadedWeights(f"from_pretrained{args[:1]} was called")

    for cls in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer, transformers.AutoConfig):
        monkeypatch.setattr(cls, "from_pretrained", boom)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("EGRC_CACHE", str(tmp_path / "egrc-cache"))
    monkeypatch.setattr(sources, "_PROBED", {}, raising=False)
    return tmp_path


def _eval(model: str, out: Path):
    return runner.invoke(app, ["eval", "--model", model, "--benchmarks", str(MINI), "--limit", "1", "--out", str(out)])


def _compress(model: str, out: Path):
    return runner.invoke(app, ["compress", "--preset", "smoke", "--model", model, "--out", str(out)])


def _assert_one_line(result, *words: str) -> str:
    """Exit 2 with exactly one ``error:`` line on stderr holding ``words``; nothing was loaded."""
    assert not isinstance(result.exception, LoadedWeights), f"a model or tokenizer was loaded: {result.exception}"
    return one_error_line(result, 2, *words)


# ------------------------------------------------------------------------------------------ local paths


def test_a_missing_local_path_is_not_taken_for_a_hub_id(no_loading):
    missing = "./no/such/model"
    _assert_one_line(_eval(missing, no_loading / "eval"), missing, "does not exist", "check the path")
    _assert_one_line(_compress(str(no_loading / "nope"), no_loading / "run"), "does not exist", "check the path")


def test_a_folder_without_config_json_is_not_a_model(no_loading):
    folder = no_loading / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "not a model checkpoint", "no config.json",
                     "folder holding config.json")
    _assert_one_line(_compress(str(folder), no_loading / "run"), "no config.json")


def test_a_lora_adapter_passed_as_the_model_points_at_adapter(no_loading):
    folder = no_loading / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "builtin:tiny"}))
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "LoRA adapter", "--adapter")


def test_a_config_json_that_is_not_json(no_loading):
    folder = no_loading / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2",')
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "config.json is not valid JSON", "download")
    _assert_one_line(_compress(str(folder), no_loading / "run"), "not valid JSON")


def test_a_config_json_without_model_type(no_loading):
    folder = no_loading / "untyped"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "has no model_type", "download")


def test_a_config_json_without_weights(no_loading):
    folder = no_loading / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (folder / "training_args.bin").write_bytes(b"not weights")
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "has a config.json but no weights", "incomplete")
    _assert_one_line(_compress(str(folder), no_loading / "run"), "no weights")


def test_a_sharded_checkpoint_missing_a_shard(no_loading):
    folder = no_loading / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    shards = {"a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "missing 1 weight shard",
                     "model-00002-of-00002.safetensors", "incomplete")
    (folder / "model.safetensors.index.json").write_text("[1, 2")
    _assert_one_line(_eval(str(folder), no_loading / "eval"), "not a valid weight index", "download")


def test_a_damaged_tokenizer_json(tmp_path, monkeypatch):
    """The config is fine but tokenizer.json is not JSON: one line from the tokenizer loader, no weights loaded."""
    import transformers

    def boom(*args, **kwargs):
        raise LoadedWeights("a model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    folder = tmp_path / "badtok"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    (folder / "tokenizer.json").write_text("{bad")
    (folder / "model.safetensors").write_bytes(b"")  # never read: the tokenizer fails first
    _assert_one_line(_eval(str(folder), tmp_path / "eval"), "could not load the tokenizer", "damaged",
                     "model.tokenizer")
    _assert_one_line(_compress(str(folder), tmp_path / "run"), "could not load the tokenizer")


# ------------------------------------------------------------------------------------------------ GGUF


def test_an_empty_gguf_file(no_loading):
    empty = no_loading / "model.gguf"
    empty.write_bytes(b"")
    _assert_one_line(_eval(str(empty), no_loading / "eval"), str(empty), "empty", "download it again")
    _assert_one_line(_compress(str(empty), no_loading / "run"), "empty")


def test_a_gguf_file_without_the_magic_bytes(no_loading):
    fake = no_loading / "model.gguf"
    fake.write_text("<html>404 Not Found</html>\n" * 4)
    _assert_one_line(_eval(str(fake), no_loading / "eval"), "is not a GGUF file", "download the .gguf again")


def test_a_git_lfs_pointer_named_gguf(no_loading):
    pointer = no_loading / "model.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 98362432\n")
    _assert_one_line(_eval(str(pointer), no_loading / "eval"), "Git LFS pointer", "git lfs pull")


def test_a_truncated_gguf_file(no_loading):
    """The magic bytes and version are fine but the file stops in its metadata (a cut download)."""
    cut = no_loading / "cut.gguf"
    cut.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 5, 3) + b"\x00" * 10)
    _assert_one_line(_eval(str(cut), no_loading / "eval"), str(cut), "truncated or corrupt", "download it again")
    _assert_one_line(_compress(str(cut), no_loading / "run"), "truncated or corrupt")


def test_a_gguf_file_cut_in_its_tensor_data(no_loading):
    """A whole header and tensor table, but the tensor data it describes is not all there."""
    name, key = b"w", b"general.alignment"
    header = (b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", len(key)) + key + struct.pack("<II", 4, 32)
              + struct.pack("<Q", len(name)) + name + struct.pack("<I", 2) + struct.pack("<QQ", 64, 64)
              + struct.pack("<IQ", 0, 0))  # a 64x64 float32 tensor at offset 0: 16384 bytes of data
    cut = no_loading / "cut.gguf"
    cut.write_bytes(header + b"\x00" * (-len(header) % 32) + b"\x00" * 1000)
    _assert_one_line(_eval(str(cut), no_loading / "eval"), "truncated or corrupt", "needs", "download it again")


# ------------------------------------------------------------------------------------------------- hub


def test_a_hub_id_while_hf_hub_offline_is_set(no_loading, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for result in (_eval("nosuch-org/nosuch-model", no_loading / "eval"),
                   _compress("nosuch-org/nosuch-model", no_loading / "run")):
        _assert_one_line(result, "'nosuch-org/nosuch-model'", "not in the local Hugging Face cache",
                         "hub is unreachable (offline", "download it first", "pass a local path")


def test_a_hub_id_when_the_hub_cannot_be_reached(no_loading, monkeypatch):
    """No HF_HUB_OFFLINE, but nothing answers at the endpoint (port 9 on localhost refuses at once)."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    _assert_one_line(_eval("nosuch-org/nosuch-model", no_loading / "eval"), "not in the local Hugging Face cache",
                     "offline: no network", "download it first")


def _hub_error(cls):
    err = cls.__new__(cls)
    Exception.__init__(err, "404 Client Error")
    return err


@pytest.mark.parametrize(("error", "words"), [
    ("RepositoryNotFoundError", ("neither a local folder nor a model on the Hugging Face hub", "check the spelling")),
    ("GatedRepoError", ("is gated", "hf auth login")),
    ("RevisionNotFoundError", ("no revision 'v9'", "model.revision")),
])
def test_a_hub_id_the_reachable_hub_does_not_have(no_loading, monkeypatch, error, words):
    """With the hub reachable, its definite answers (no such model, gated, no such revision) are one line."""
    import huggingface_hub
    from huggingface_hub import errors

    from egrc_lite.backends import sources

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_offline", lambda: False, raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda *a: True, raising=False)

    def model_info(self, repo_id, **kwargs):
        raise _hub_error(getattr(errors, error))

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    if error == "RevisionNotFoundError":
        result = runner.invoke(app, ["compress", "--preset", "smoke", "--model", "nosuch-org/nosuch-model", "--set",
                                     "model.revision=v9", "--out", str(no_loading / "run")])
    else:
        result = _eval("nosuch-org/nosuch-model", no_loading / "eval")
    _assert_one_line(result, "nosuch-org/nosuch-model", *words)


def test_a_name_that_is_neither_a_path_nor_a_hub_id(no_loading):
    _assert_one_line(_eval("my model", no_loading / "eval"), "neither an existing local path nor a valid "
                     "Hugging Face id")


def test_the_cli_prints_one_line_within_seconds():
    """The real command line, in a fresh process: one ``error:`` line, exit 2, no traceback (time is printed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "eval", "--model", "nosuch-org/nosuch-model",
                           "--benchmarks", str(MINI), "--limit", "1", "--out", "/tmp/egrc-never"],
                          check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    print(f"failed after {time.monotonic() - start:.1f} s")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "not in the local Hugging Face cache" in proc.stderr


# ---------------------------------------------------------------------------------------- valid sources


def _cfg(name: str, **model):
    from egrc_lite.config import validate_config

    return validate_config({"model": {"name_or_path": name, **model}})


def test_valid_sources_still_resolve(tmp_path, monkeypatch):
    """A cached hub id passes even offline; a local checkpoint folder and builtin:tiny resolve as before."""
    from huggingface_hub import constants

    from egrc_lite.backends import sources

    cache = tmp_path / "hf-cache"
    snap = cache / "models--org--cached" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EGRC_CACHE", str(tmp_path / "egrc-cache"))
    assert sources.resolve_model_source(_cfg("org/cached")) == ("org/cached", "hf:org/cached")
    sources.check_model_source(_cfg("org/cached"))

    tiny_path, source = sources.resolve_model_source(_cfg("builtin:tiny"))
    assert source.startswith("builtin:tiny")
    loaded, source = sources.resolve_model_source(_cfg(tiny_path))
    assert loaded == str(Path(tiny_path).resolve()) and source == f"local:{loaded}"
    sources.check_model_source(_cfg(tiny_path, tokenizer=tiny_path))


def test_a_cached_hub_id_with_the_hub_unreachable_loads_from_the_cache(tmp_path, monkeypatch):
    """No HF_HUB_OFFLINE and no hub: the cached copy is used at once (offline mode is switched on), instead of
    every file being retried online first (minutes)."""
    import shutil

    from huggingface_hub import constants

    from egrc_lite.backends import sources

    monkeypatch.setenv("EGRC_CACHE", str(tmp_path / "egrc-cache"))
    tiny_path, _ = sources.resolve_model_source(_cfg("builtin:tiny"))
    cache = tmp_path / "hf-cache"
    snap = cache / "models--org--cached" / "snapshots" / ("b" * 40)
    shutil.copytree(tiny_path, snap)
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("b" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(sources, "_PROBED", {}, raising=False)
    cfg = _cfg("org/cached")
    assert sources.resolve_model_source(cfg) == ("org/cached", "hf:org/cached")
    assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    start = time.monotonic()
    tokenizer = sources.load_tokenizer("org/cached", cfg)
    print(f"tokenizer from the cache in {time.monotonic() - start:.1f} s")
    assert tokenizer.pad_token is not None


def test_check_model_source_imports_nothing_heavy():
    """``check_model_source`` (for a command to call first) fails without importing torch or transformers."""
    code = ("import sys; from egrc_lite.config import validate_config; "
            "from egrc_lite.backends.sources import check_model_source, BackendError\n"
            "try:\n    check_model_source(validate_config({'model': {'name_or_path': './no/such'}}))\n"
            "except BackendError as e:\n    print('ok', e)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.startswith("ok model path './no/such' does not exist") and out.stdout.strip().endswith("[]"), \
        (out.stdout, out.stderr)
