"""Bad input files and a bad environment give one line and the right exit status, never a traceback,
and leave every file that was there before untouched: non-UTF-8 presets and JSONL, ``--plots`` naming a
file, a broken ``adapter_config.json``, huge JSONL lines, and environment errors (disk full, read-only
file system, no permission: exit 1)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.config import DataConfig
from egrc_lite.data import MAX_LINE_BYTES, DataError, load_problems
from egrc_lite.errors import environment_error
from bad_input import assert_untouched, one_error_line, snapshot

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
GOOD = {"id": "a", "problem": "What is 1+1?", "answer": "2"}


def _bad_utf8_preset(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "latin1.yaml"
    path.write_bytes("# caf\u00e9 preset\nmodel:\n  name_or_path: builtin:tiny\n".encode("latin-1"))
    return path


# ------------------------------------------------------------------------------------------- presets


def test_a_non_utf8_preset_is_left_out_of_the_list_with_a_warning(tmp_path):
    bad = _bad_utf8_preset(tmp_path / "presets")
    before = snapshot(tmp_path)
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "presets", "list"], capture_output=True, text=True,
                          check=False, cwd=REPO,
                          env={**os.environ, "EGRC_PRESETS_DIR": str(bad.parent), "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "smoke" in proc.stdout and "latin1" not in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if str(bad) in line]
    assert len(warnings) == 1 and "UTF-8" in warnings[0] and "left out" in warnings[0], proc.stderr
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("args", [["presets", "show", "latin1"], ["compress", "--preset", "latin1"],
                                  ["presets", "show", "PATH"]])
def test_asking_for_a_non_utf8_preset_is_one_line_naming_the_file(tmp_path, monkeypatch, args):
    bad = _bad_utf8_preset(tmp_path / "presets")
    monkeypatch.setenv("EGRC_PRESETS_DIR", str(bad.parent))
    before = snapshot(tmp_path)
    args = [str(bad) if a == "PATH" else a for a in args]
    out = ["--out", str(tmp_path / "run")] if args[0] == "compress" else []
    result = runner.invoke(app, [*args, *out])
    one_error_line(result, 2, str(bad), "line 1", "not UTF-8", "re-save it as UTF-8")
    assert_untouched(tmp_path, before)


def test_an_unknown_preset_still_lists_the_valid_ones_beside_a_non_utf8_file(tmp_path, monkeypatch):
    bad = _bad_utf8_preset(tmp_path / "presets")
    monkeypatch.setenv("EGRC_PRESETS_DIR", str(bad.parent))
    result = runner.invoke(app, ["compress", "--preset", "nope", "--out", str(tmp_path / "run")])
    line = one_error_line(result, 2, "unknown preset 'nope'", "smoke")
    assert "latin1" not in line


# ---------------------------------------------------------------------------------------------- JSONL


def _bad_utf8_jsonl(path: Path) -> Path:
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"id": "b", "problem": "caf\u00e9?", "answer": "1"}\n'
                     .encode("latin-1"))
    return path


def test_a_non_utf8_benchmark_file_is_one_line_naming_file_and_line(tmp_path):
    bad = _bad_utf8_jsonl(tmp_path / "bench.jsonl")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--benchmarks", str(bad),
                                 "--out", str(tmp_path / "eval")])
    one_error_line(result, 2, f"{bad}:2", "not UTF-8", "re-save the file as UTF-8")
    assert_untouched(tmp_path, before)


def test_a_non_utf8_training_file_is_one_line_naming_file_and_line(tmp_path):
    bad = _bad_utf8_jsonl(tmp_path / "train.jsonl")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--set", f"data.source={bad}",
                                 "--out", str(tmp_path / "run")])
    one_error_line(result, 2, f"{bad}:2", "not UTF-8", "re-save the file as UTF-8")
    assert_untouched(tmp_path, before)


def _huge_line_file(path: Path, size: int, good_around: bool = True) -> Path:
    huge = json.dumps({"id": "huge", "problem": "x" * size, "answer": "1"}).encode()
    rows = [json.dumps(GOOD).encode(), huge, json.dumps({**GOOD, "id": "c"}).encode()] if good_around else [huge]
    path.write_bytes(b"\n".join(rows) + b"\n")
    return path


def test_a_huge_jsonl_line_is_skipped_with_a_warning_without_reading_it_whole(tmp_path, caplog):
    path = _huge_line_file(tmp_path / "big.jsonl", 8 * MAX_LINE_BYTES)
    cfg = DataConfig(source=str(path), shuffle=False)
    tracemalloc.start()
    try:
        problems = load_problems(cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.id for p in problems] == ["a", "c"]
    assert peak < 3 * MAX_LINE_BYTES, peak  # the 8 MiB line was never held (as bytes or str)
    assert any("skipped 1 line" in r.getMessage() and "line 2" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records), caplog.text


def test_a_line_just_under_the_cap_is_kept(tmp_path):
    path = _huge_line_file(tmp_path / "edge.jsonl", MAX_LINE_BYTES - 100)
    problems = load_problems(DataConfig(source=str(path), shuffle=False))
    assert [p.id for p in problems] == ["a", "huge", "c"]


def test_a_file_of_only_huge_lines_is_one_line_error_on_the_cli(tmp_path, monkeypatch):
    from egrc_lite import generate

    def no_generation(*args, **kwargs):
        raise AssertionError("a prompt no context holds reached generation")

    monkeypatch.setattr(generate, "get_generator", no_generation)
    path = _huge_line_file(tmp_path / "big.jsonl", 2 * MAX_LINE_BYTES, good_around=False)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--benchmarks", str(path),
                                 "--out", str(tmp_path / "eval")])
    one_error_line(result, 2, str(path), "no problems")
    assert_untouched(tmp_path, before)
    with pytest.raises(DataError, match="holds no problems"):
        load_problems(DataConfig(source=str(path)))


def test_a_prompt_longer_than_the_context_is_one_line_before_generation(tmp_path, monkeypatch):
    from egrc_lite.generate.hf import HFGenerator

    generated = []
    monkeypatch.setattr(HFGenerator, "_generate_batch", lambda self, batch, *a: generated.append(batch) or [])
    path = tmp_path / "long.jsonl"
    rows = [{"id": "short", "problem": "What is 2 + 3?", "answer": "5"},
            {"id": "long", "problem": "Add these: " + " + ".join(["7"] * 3000), "answer": "21000"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["eval", "--model", "builtin:tiny", "--benchmarks", str(path), "--n", "1",
                                 "--out", str(tmp_path / "eval")])
    one_error_line(result, 2, "1 prompt does not fit the model's context of 1024 tokens", "'Add these: 7 + 7",
                   "longer context")
    assert generated == []  # nothing allocated for any prompt
    assert_untouched(tmp_path, before)


# ------------------------------------------------------------------------------------------- report


def test_report_plots_naming_a_file_is_one_line(tmp_path):
    base = tmp_path / "base-eval"
    base.mkdir()
    (base / "summary.json").write_text(json.dumps({"benchmarks": {"math500": {"acc": 50.0, "len": 1000.0}}}))
    target = tmp_path / "plots.png"
    target.write_bytes(b"not a folder")
    for plots in (target, target / "sub"):
        before = snapshot(tmp_path)
        result = runner.invoke(app, ["report", "--base", str(base), "--plots", str(plots)])
        one_error_line(result, 2, f"--plots {plots}", "not a folder", "give a folder")
        assert_untouched(tmp_path, before)


# -------------------------------------------------------------------------------------------- merge


@pytest.mark.parametrize("text, words", [("{not json", ("not valid JSON", "line 1")),
                                         ("[1, 2]", ("not a JSON object",)),
                                         (b"{\"r\": \"\xff\"}", ("not UTF-8",))])
def test_merge_with_a_broken_adapter_config_says_so(tmp_path, text, words):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = adapter / "adapter_config.json"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["merge", "--adapter", str(adapter), "--out", str(tmp_path / "merged")])
    line = one_error_line(result, 2, str(config), *words)
    assert "base_model_name_or_path" not in line and "re-save the adapter" in line
    assert_untouched(tmp_path, before)


# ------------------------------------------------------------------------------------- environment


@pytest.mark.parametrize("code, filename, words", [
    (errno.ENOSPC, None, ("cannot write RUN", "No space left on device", "free some space or choose another --out")),
    (errno.EROFS, "FILE", ("cannot write FILE", "read-only", "choose another --out")),
    (errno.EACCES, "FILE", ("cannot access FILE", "Permission denied", "permissions")),
    (errno.EDQUOT, None, ("cannot write RUN", "quota",)),
])
def test_environment_errors_exit_1_with_one_line_naming_the_path(tmp_path, monkeypatch, code, filename, words):
    """A full disk (or read-only, or forbidden) write inside a command: exit 1, one line, no traceback, no
    temp file left behind; the path is the error's own, else the command's --out."""
    from egrc_lite import runs, train

    out = tmp_path / "run"
    (tmp_path / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    config = out / "config.yaml"
    real_fdopen = os.fdopen

    class FailingFile:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, text):
            raise OSError(code, os.strerror(code), *([str(config)] if filename else []))

    def fake_run_schedule(cfg, run_dir, **kwargs):
        monkeypatch.setattr(runs.os, "fdopen", lambda fd, *a, **k: FailingFile(real_fdopen(fd, *a, **k)))
        runs.write_config(run_dir, cfg)

    monkeypatch.setattr(train, "run_schedule", fake_run_schedule)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(out)])
    words = [w.replace("RUN", str(out)).replace("FILE", str(config)) for w in words]
    one_error_line(result, 1, *words)
    assert_untouched(tmp_path, before)
    assert not [name for name in snapshot(tmp_path) if name.endswith(".tmp")]  # the atomic write's temp file is gone


def _safetensor_error(text):
    from safetensors import SafetensorError

    return SafetensorError(text)


@pytest.mark.parametrize("make_error, library", [
    # torch's zip writer on a full disk (both messages seen in the wild; neither is an OSError)
    (lambda: RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), "torch"),
    (lambda: RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), "torch"),
    (lambda: _safetensor_error('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                               '"No space left on device" })'), "safetensors"),
])
def test_a_checkpoint_save_on_a_full_disk_is_one_line(tmp_path, monkeypatch, make_error, library):
    """torch and safetensors report a failed write as their own errors, not an OSError: raised while
    compress saves its first checkpoint, it is still exit 1 and one line naming --out."""
    import torch

    def save_on_a_full_disk(*args, **kwargs):
        raise make_error()

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    out = tmp_path / "run"
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(out),
                                 "--set", "train.save_steps=1", "--set", "schedule.stages.0.steps=1",
                                 "--set", "schedule.stages.1.steps=0"])
    one_error_line(result, 1, f"cannot write {out}", f"{library} could not finish writing", "full disk",
                   "free some space")


def test_a_runtime_error_that_is_not_a_failed_save_keeps_its_traceback(tmp_path, monkeypatch):
    from egrc_lite import train

    def broken(cfg, run_dir, **kwargs):
        raise RuntimeError("shape mismatch: a bug")

    monkeypatch.setattr(train, "run_schedule", broken)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(tmp_path / "run")])
    assert isinstance(result.exception, RuntimeError) and "error:" not in result.stderr


def test_other_os_errors_are_bugs_and_keep_their_traceback(tmp_path, monkeypatch):
    from egrc_lite import train

    def broken(cfg, run_dir, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(train, "run_schedule", broken)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and isinstance(result.exception, OSError) and "error:" not in result.stderr


def test_environment_error_message():
    err = OSError(errno.ENOSPC, "No space left on device", "runs/x/config.yaml")
    assert environment_error(err) == ("cannot write runs/x/config.yaml: No space left on device "
                                      "(free some space or choose another --out)")
    assert environment_error(OSError(errno.EROFS, "Read-only file system"), "runs/x") == (
        "cannot write runs/x: Read-only file system (the file system is read-only; choose another --out)")
    assert environment_error(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert environment_error(ValueError("no")) is None
