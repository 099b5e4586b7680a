import pytest

from egrc_lite.config import ConfigError, EgrcConfig, StageConfig, check_keys, validate_config


def test_stage_mode_defaults_follow_method_md():
    compress = StageConfig(mode="compress", steps=1, length_clip=4096)
    explore = StageConfig(mode="explore", steps=1, length_clip=4096)
    assert (compress.temperature, compress.top_p, compress.max_completion_length) == (0.6, 0.95, 4096)
    assert (explore.temperature, explore.top_p, explore.max_completion_length) == (1.0, 1.0, 8192)
    assert (explore.epsilon_low, explore.epsilon_high) == (0.2, 0.28)
    assert compress.epsilon_high == compress.epsilon_low
    assert compress.kl_beta == 0.0 and compress.beta == 1.0


def test_explicit_stage_values_win_over_mode_defaults():
    s = StageConfig(mode="explore", steps=1, temperature=0.7, max_completion_length=100)
    assert s.temperature == 0.7 and s.max_completion_length == 100


@pytest.mark.parametrize("data, key", [
    ({"trian": {}}, "'trian'"),
    ({"train": {"lr": 1}}, "'train.lr'"),
    ({"schedule": {"stages": [{"mode": "compress", "steps": 1, "temp": 1}]}}, "'schedule.stages.0.temp'"),
    ({"model": {"tiny": {"layers": 3}}}, "'model.tiny.layers'"),
])
def test_unknown_keys_name_the_key_and_the_valid_ones(data, key):
    with pytest.raises(ConfigError) as err:
        check_keys(data)
    msg = str(err.value)
    assert key in msg and "valid keys" in msg and "\n" not in msg


def test_bad_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="reward.r"):
        validate_config({"reward": {"r": 1.5}})
    with pytest.raises(ConfigError, match="schedule.stages.0.mode"):
        validate_config({"schedule": {"stages": [{"mode": "shrink", "steps": 1}]}})
    with pytest.raises(ConfigError, match="schedule.stages"):
        validate_config({"schedule": {"stages": []}})


def test_defaults_validate_and_round_trip():
    cfg = EgrcConfig()
    again = validate_config(cfg.model_dump(mode="json"))
    assert again == cfg
