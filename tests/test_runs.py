import json
import os

import pytest

from egrc_lite.config import EgrcConfig
from egrc_lite.runs import JsonlLog, RunDir, atomic_write_json, current_umask, respect_umask, write_config, write_manifest


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "s.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_jsonl_log_appends_ignores_torn_line_and_truncates(tmp_path):
    log = JsonlLog(tmp_path / "m.jsonl")
    for step in range(1, 5):
        log.append({"step": step})
    with log.path.open("a") as fh:
        fh.write('{"step": 5')  # a crash mid-write
    assert [r["step"] for r in log.rows()] == [1, 2, 3, 4]
    dropped = log.truncate(lambda r: r["step"] <= 2)
    assert dropped == 2 and [r["step"] for r in log.rows()] == [1, 2]
    log.append({"step": 3})
    assert [r["step"] for r in log.rows()] == [1, 2, 3]


def test_run_dir_config_and_manifest(tmp_path):
    run = RunDir(tmp_path / "run").create()
    cfg = EgrcConfig()
    write_config(run, cfg)
    manifest = write_manifest(run, cfg, data_hash="abc", model_source="builtin:tiny")
    saved = json.loads(run.manifest_path.read_text())
    assert saved == json.loads(json.dumps(manifest, default=str))
    assert saved["packages"]["torch"].startswith("2.") and saved["data_hash"] == "abc"
    assert "trl" in saved["packages"] and saved["seed"] == 0
    assert run.config_path.read_text().startswith("description:")
    assert not run.is_finished()
    run.write_state({"finished": True})
    assert run.is_finished()


def test_read_metrics_is_the_one_reader_of_a_run(tmp_path):
    from egrc_lite.runs import metrics_file, read_metrics

    run = tmp_path / "run"
    assert read_metrics(run) == []  # no run yet
    run.mkdir()
    lines = ['{"step": 1, "train/len/mean": 9, "train/clip_rate": 0.5}',  # written before the rename
             '{"step": 2, "train/len/mean": 8}', '{"note": "no step"}',
             '{"step": 2, "train/len/mean": 7, "train/truncated_rate": 0.0}',  # a resumed run repeats step 2
             '{"step": 3, "train/len']  # torn by a crash
    metrics_file(run).write_text("\n".join(lines), encoding="utf-8")
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["train/truncated_rate"] == 0.5 and "train/clip_rate" not in rows[0]
    assert rows[1]["train/len/mean"] == 7
    assert read_metrics(metrics_file(run)) == rows


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_written_files_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    (tmp_path / "saved").mkdir(mode=0o700)  # as tempfile.mkdtemp makes it
    (tmp_path / "saved" / "w.safetensors").write_bytes(b"x")
    os.chmod(tmp_path / "saved" / "w.safetensors", 0o600)  # as safetensors writes it
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_json(tmp_path / "summary.json", {"a": 1})
        respect_umask(tmp_path / "saved")
    finally:
        os.umask(old)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "saved").stat().st_mode & 0o777 == dir_mode
    assert (tmp_path / "saved" / "w.safetensors").stat().st_mode & 0o777 == file_mode
