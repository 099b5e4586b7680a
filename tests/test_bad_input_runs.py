"""Bad run folders give one line and the right exit status, never a traceback, and never lose a file:
``--out`` naming a folder that is not a run (``.``, ``""``), a run that lost or broke its ``state.json``,
a JSONL log torn inside a UTF-8 character, ``--out`` naming a file or a read-only folder; and ``--resume``
says where it restarts."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.runs import JsonlLog, RunDir, RunError
from bad_input import assert_untouched, snapshot

runner = CliRunner()


def _assert_one_line(result, status: int, *words: str) -> str:
    """The CliRunner result ended with ``status`` and one ``error:`` line holding ``words``, no traceback."""
    assert result.exit_code == status, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    err = result.stderr.strip()
    assert err.startswith("error:") and "Traceback" not in err, err
    line = " ".join(err.split())  # rich may wrap the one line
    for word in words:
        assert word in line, (word, line)
    return line


@pytest.fixture
def no_training(monkeypatch):
    """Training must not start: the refusals come before anything is loaded or written."""
    from egrc_lite import train

    def refuse(*args, **kwargs):
        raise AssertionError("run_schedule was called")

    monkeypatch.setattr(train, "run_schedule", refuse)


@pytest.fixture
def fake_training(monkeypatch):
    """A stand-in for training that records its calls (``resume``) and touches nothing."""
    from egrc_lite import train

    calls: list[bool] = []

    def record(cfg, run_dir, *, resume=False, **kwargs):
        calls.append(resume)
        return {"steps": 0, "stages": []}

    monkeypatch.setattr(train, "run_schedule", record)
    return calls


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished smoke run (two stages, checkpoints at compress 2 and 3, explore 2)."""
    from egrc_lite import train
    from egrc_lite.presets import resolve

    run = tmp_path_factory.mktemp("finished") / "run"
    train.run_schedule(resolve("smoke"), RunDir(run))
    assert RunDir(run).is_finished()
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _user_folder(root: Path) -> Path:
    """A folder of someone's own files that happen to share names with a run's."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("mine\n")
    (root / "metrics.jsonl").write_text('{"mine": 1}\n')
    (root / "config.yaml").write_text("mine: true\n")
    (root / "stages").mkdir()
    (root / "stages" / "plan.md").write_text("# my plan\n")
    return root


# ------------------------------------------------------------------- 1. a folder that is not a run


def test_new_run_refuses_a_folder_that_is_not_a_run(tmp_path, no_training):
    out = _user_folder(tmp_path / "mine")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(out)])
    _assert_one_line(result, 2, str(out), "not empty", "holds no egrc-lite run", "notes.txt", "choose a new or empty")
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("out", [".", ""])
def test_out_dot_or_empty_is_the_current_folder_and_is_refused(tmp_path, monkeypatch, no_training, out):
    """``--out .`` and ``--out "$UNSET"`` name the current folder: refused when it holds someone's files."""
    here = _user_folder(tmp_path / "project")
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", out])
    _assert_one_line(result, 2, "the current folder", "unset shell variable", "choose a new or empty")
    assert_untouched(tmp_path, before)


def test_new_or_empty_folder_or_pre_checkpoint_leftovers_start_a_run(tmp_path, fake_training):
    """Guard (passes before the fix too): what may be started over still is, e.g. a sweep's failed combination."""
    (tmp_path / "empty").mkdir()
    left = tmp_path / "left"
    (left / "stages" / "0-compress").mkdir(parents=True)
    for name in ("config.yaml", "metrics.jsonl", "error.txt"):
        (left / name).write_text("x\n")
    for out in (tmp_path / "new", tmp_path / "empty", left):
        result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(out)])
        assert result.exit_code == 0, (out, result.output, result.exception)
    assert fake_training == [False, False, False]


def test_run_that_lost_its_state_json_is_resumed_never_started_over(finished_run, tmp_path, no_training):
    run = _copy(finished_run, tmp_path)
    (run / "state.json").unlink()
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(run)])
    _assert_one_line(result, 2, str(run), "state.json is missing", "pass --resume")
    assert_untouched(tmp_path, before)


def test_library_refuses_to_start_over_a_run_or_someone_elses_folder(finished_run, tmp_path):
    """``run_schedule`` itself (every process, before the main one writes) refuses; nothing is deleted."""
    from egrc_lite import train
    from egrc_lite.presets import resolve

    lost = _copy(finished_run, tmp_path)
    (lost / "state.json").unlink()
    mine = _user_folder(tmp_path / "mine")
    before = snapshot(tmp_path)
    for out, words in ((lost, "pass --resume"), (mine, "holds no egrc-lite run")):
        with pytest.raises(RunError, match=words):
            train.run_schedule(resolve("smoke"), RunDir(out))
    assert_untouched(tmp_path, before)


def test_resume_rebuilds_a_lost_state_json_from_the_checkpoints(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    (run / "state.json").unlink()
    (run / "notes.txt").write_text("mine\n")
    checkpoints = {k: v for k, v in snapshot(tmp_path).items() if "/checkpoint-" in k or k.endswith("notes.txt")}
    result = runner.invoke(app, ["compress", "--resume", "--out", str(run)])
    assert result.exit_code == 0, (result.output, result.exception)
    line = " ".join(result.stdout.split())
    assert f"resuming {run}: every stage is done" in line and "1-explore/checkpoint-2" in line, line
    assert RunDir(run).is_finished()
    assert_untouched(tmp_path, checkpoints)


# ------------------------------------------- 2 + 3. a broken state.json or log, and the resume line


@pytest.mark.parametrize("text", ["", '{"finished": fal', "[1, 2]", '"state"', '{"finished": true, "plan": 5}'])
def test_resume_with_a_broken_state_json_goes_on_from_the_checkpoints(finished_run, tmp_path, fake_training, text):
    run = _copy(finished_run, tmp_path)
    (run / "state.json").write_text(text)
    result = runner.invoke(app, ["compress", "--resume", "--out", str(run)])
    assert result.exit_code == 0 and "Traceback" not in result.output, (result.output, result.exception)
    line = " ".join(result.stdout.split())
    assert "state.json unreadable" in line and "rebuilt from the checkpoints" in line, line
    assert fake_training == [True]
    assert RunDir(run).read_state() is None and not RunDir(run).is_finished()


def test_resume_mid_stage_with_torn_state_and_samples_says_where_it_restarts(finished_run, tmp_path):
    """A crash at compress step 3: state.json cut short, samples.jsonl torn inside a UTF-8 character."""
    run = _copy(finished_run, tmp_path)
    for gone in ("stages/1-explore", "stages/0-compress/checkpoint-3", "adapter"):
        shutil.rmtree(run / gone)
    state = (run / "state.json").read_bytes()
    (run / "state.json").write_bytes(state[: len(state) // 2])
    with (run / "samples.jsonl").open("ab") as fh:
        fh.write('{"step": 3, "completion": "√'.encode()[:-1])  # torn inside the 3-byte "√"
    result = runner.invoke(app, ["compress", "--resume", "--out", str(run)])
    assert result.exit_code == 0, (result.output, result.exception)
    line = " ".join(result.stdout.split())
    assert f"resuming {run}: stage compress, step 3 of 3 (global step 3), from " in line, line
    assert "0-compress/checkpoint-2" in line and "state.json unreadable" in line, line
    assert RunDir(run).is_finished()
    rows = JsonlLog(run / "samples.jsonl").rows()
    assert rows and all(r["step"] <= 5 for r in rows)
    assert [r["step"] for r in JsonlLog(run / "metrics.jsonl").rows()] == [1, 2, 3, 4, 5]


def test_jsonl_log_drops_a_tail_torn_inside_a_utf8_character(tmp_path, caplog):
    log = JsonlLog(tmp_path / "samples.jsonl")
    log.append({"step": 1, "text": "√2"})
    with log.path.open("ab") as fh:
        fh.write('{"step": 2, "text": "√'.encode()[:-1])
    with caplog.at_level("WARNING"):
        assert log.rows() == [{"step": 1, "text": "√2"}]
    assert "torn last line" in caplog.text
    log.append({"step": 3})  # not glued to the torn line
    with log.path.open("ab") as fh:
        fh.write(b'\xff\xfe{"step": 4}\n[5]\n')  # garbled bytes and a row that is no object are skipped
    assert [r["step"] for r in log.rows()] == [1, 3]
    assert log.truncate(lambda r: r["step"] <= 1) == 1
    assert log.path.read_text(encoding="utf-8") == '{"step": 1, "text": "√2"}\n'


# ------------------------------------------------------------- 4. --out a file or a read-only folder


@pytest.mark.parametrize("resume", [False, True])
def test_out_naming_a_file_is_a_user_error(tmp_path, no_training, resume):
    target = tmp_path / "results.csv"
    target.write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(target), *(["--resume"] * resume)])
    _assert_one_line(result, 2, f"{target} is a file", "choose a folder for --out")
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("new", [False, True])
def test_read_only_out_folder_is_an_environment_error_before_training(tmp_path, monkeypatch, no_training, new):
    """Exit 1 and the folder's path, before any training; simulated (root may write anywhere)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    out = folder / "run" if new else folder
    before = snapshot(tmp_path)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if Path(os.fsdecode(path)).parent == folder and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(out)])
    _assert_one_line(result, 1, str(folder), "Permission denied")
    assert "ro/." not in result.stderr  # the folder, not the probe file
    assert_untouched(tmp_path, before)
    assert snapshot(tmp_path).keys() == before.keys()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_for_real(tmp_path, no_training):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = runner.invoke(app, ["compress", "--preset", "smoke", "--out", str(folder)])
    finally:
        folder.chmod(0o755)
    _assert_one_line(result, 1, str(folder))



def test_resume_of_a_run_without_config_yaml_says_how_to_restore_it(finished_run, tmp_path, no_training):
    run = _copy(finished_run, tmp_path)
    (run / "config.yaml").unlink()
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["compress", "--resume", "--out", str(run)])
    _assert_one_line(result, 2, f"{run} holds a run but no config.yaml", "presets show", "resume again")
    assert_untouched(tmp_path, before)
