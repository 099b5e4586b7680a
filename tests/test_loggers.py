"""``train.report_to``: TRL's loggers (tensorboard, wandb, trackio), validated early, writing under the run.

The smoke run trains builtin:tiny for 2 + 1 steps with tensorboard on and reads the event files back
offline; the rest checks the config and the environment without training.
"""

from __future__ import annotations

import importlib.util
import os
import time

import pytest

from egrc_lite.config import sections as config_module
from egrc_lite.config import ConfigError, EgrcConfig, TrainConfig, check_loggers_installed, validate_config
from egrc_lite.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(**train) -> EgrcConfig:
    return EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"builtin_size": 16},
        "schedule": {"stages": [{"mode": "compress", "steps": 2, "length_clip": 6},
                                {"mode": "explore", "steps": 1, "length_clip": 4}]},
        "train": {"num_generations": 2, "prompts_per_step": 2, "save_steps": 2, "num_samples_logged": 0, **train},
    })


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the tensorboard event files in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_run_writes_training_scalars_under_the_run(tmp_path):
    pytest.importorskip("tensorboard")
    from egrc_lite import train

    run_dir = RunDir(tmp_path / "run")
    t0 = time.perf_counter()
    train.run_schedule(_cfg(report_to="tensorboard"), run_dir)
    print(f"tiny run with tensorboard: {time.perf_counter() - t0:.1f} s")
    logs = run_dir.path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["0-compress", "1-explore"]
    for stage, steps in (("0-compress", [1, 2]), ("1-explore", [1])):
        folder = logs / stage
        # the events lie in the stage's folder itself (not a new runs/<time>_<host>), so a resume appends there
        assert list(folder.glob("events.out.tfevents.*")), list(folder.rglob("*"))
        scalars = _scalars(folder)
        for tag in ("train/loss", "train/reward"):
            assert [step for step, _ in scalars[tag]] == steps, (stage, tag, scalars.get(tag))
        assert all(v == v for _, v in scalars["train/reward"])  # not NaN
    assert not list((run_dir.path / "stages").rglob("events.out.tfevents.*"))


def test_grpo_config_gets_report_to():
    from egrc_lite.train.arguments import build_grpo_config

    stage = _cfg().schedule.stages[0]
    assert build_grpo_config(_cfg(), stage, output_dir="unused").report_to == []
    args = build_grpo_config(_cfg(report_to="tensorboard"), stage, output_dir="unused")
    assert args.report_to == ["tensorboard"]


@pytest.mark.parametrize("value, loggers", [
    ("none", []), (None, []), ("tensorboard", ["tensorboard"]), (["tensorboard", "wandb"], ["tensorboard", "wandb"]),
    ("wandb,trackio", ["wandb", "trackio"]), (["none"], []), (["trackio", "none", "trackio"], ["trackio"]),
])
def test_report_to_accepts_a_name_a_list_or_none(value, loggers):
    cfg = validate_config({"train": {"report_to": value}})
    assert cfg.train.loggers == loggers
    assert validate_config(cfg.model_dump(mode="json")) == cfg  # round trip (config.yaml of a run)


def test_default_is_none():
    assert TrainConfig().report_to == "none" and TrainConfig().loggers == []


@pytest.mark.parametrize("value", ["tensorbord", ["tensorboard", "mlflow"], "all", 3])
def test_unknown_logger_is_a_one_line_error_listing_the_valid_ones(value):
    with pytest.raises(ConfigError) as err:
        validate_config({"train": {"report_to": value}})
    msg = str(err.value)
    assert "train.report_to" in msg and "\n" not in msg
    if value != 3:
        assert all(name in msg for name in ("tensorboard", "wandb", "trackio", "none"))


def _without(monkeypatch, *missing: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in missing else real(name, *a, **k))


def test_missing_logger_package_names_the_extra(monkeypatch):
    _without(monkeypatch, "wandb", "trackio")
    with pytest.raises(ConfigError) as err:
        check_loggers_installed(TrainConfig(report_to=["wandb"]))
    msg = str(err.value)
    assert "wandb" in msg and "pip install 'egrc-lite[loggers]'" in msg and "\n" not in msg
    check_loggers_installed(TrainConfig())  # none: nothing to check
    _without(monkeypatch, "tensorboard", "tensorboardX")
    with pytest.raises(ConfigError, match="tensorboard"):
        check_loggers_installed(TrainConfig(report_to="tensorboard"))


def test_missing_logger_package_stops_the_run_before_the_model_loads(monkeypatch, tmp_path):
    from egrc_lite import backends, train

    _without(monkeypatch, "wandb")
    monkeypatch.setattr(backends, "load_backend", lambda cfg: pytest.fail("the model was about to load"))
    with pytest.raises(ConfigError, match=r"egrc-lite\[loggers\]"):
        train.run_schedule(_cfg(report_to=["tensorboard", "wandb"]), RunDir(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_wandb_defaults_to_offline_under_the_run_without_an_api_key(monkeypatch, tmp_path):
    from egrc_lite.train.loggers import logger_env

    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    run_dir = RunDir(tmp_path / "run")
    with logger_env(_cfg(report_to="wandb"), run_dir):
        assert os.environ["WANDB_MODE"] == "offline"
        assert os.environ["WANDB_DIR"] == str(run_dir.path / "logs") and (run_dir.path / "logs").is_dir()
        assert os.environ["WANDB_RUN_GROUP"] == "run"
    assert "WANDB_MODE" not in os.environ and "WANDB_DIR" not in os.environ  # restored
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password k3y\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with logger_env(_cfg(report_to="wandb"), run_dir):  # `wandb login` was run: online, as wandb decides
        assert "WANDB_MODE" not in os.environ
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with logger_env(_cfg(report_to="wandb"), run_dir):  # the user's choice stands
        assert os.environ["WANDB_MODE"] == "disabled"
    with logger_env(_cfg(report_to="tensorboard"), run_dir):
        assert "WANDB_DIR" not in os.environ
