from pathlib import Path

import pytest

from egrc_lite.config import ConfigError
from egrc_lite.presets import apply_override, deep_merge, find_preset, list_presets, resolve

REPO = Path(__file__).resolve().parents[1]


def test_every_shipped_preset_is_found_recursively_and_validates():
    files = sorted(p.relative_to(REPO / "presets").with_suffix("").as_posix()
                   for p in (REPO / "presets").rglob("*.yaml"))
    names = [p.name for p in list_presets()]
    assert files and set(files) <= set(names)
    for name in files:
        cfg = resolve(name)
        assert cfg.schedule.stages


def test_every_preset_has_a_header_with_hardware_time_and_purpose():
    for info in list_presets():
        header = info.header.lower()
        assert "hardware" in header and "time" in header and "purpose" in header, info.name


def test_required_presets_exist():
    names = {p.name for p in list_presets()}
    assert {"default", "smoke", "r1-1.5b", "r1-7b-qlora"} <= names
    smoke = resolve("smoke")
    assert smoke.model.name_or_path == "builtin:tiny"
    r1 = resolve("r1-1.5b")
    assert r1.schedule.stages[0].length_clip == 4096 and r1.train.num_generations == 8
    q = resolve("r1-7b-qlora")
    assert q.model.load_in_4bit and "7B" in q.model.name_or_path
    assert q.schedule == r1.schedule  # inherited through extends


@pytest.mark.parametrize("name", ["r1-1.5b", "r1-7b-qlora"])
def test_gpu_presets_roll_out_64_completions_in_micro_batches_of_8(name):
    """~5k-token sequences: 64 in one micro-batch (and in TRL's no-grad log-prob pass) do not fit one GPU."""
    from egrc_lite.train.arguments import batch_shape

    cfg = resolve(name)
    micro, accum = batch_shape(cfg)
    assert micro * accum == cfg.train.prompts_per_step * cfg.train.num_generations == 64
    assert micro <= 8


def test_precedence_defaults_preset_set_flags():
    cfg = resolve("smoke", ["train.seed=5", "train.seed=6", "schedule.stages.0.length_clip=10"],
                  {"train.seed": 9, "backend": None})
    assert cfg.train.seed == 9  # flag beats --set; later --set beats earlier
    assert cfg.schedule.stages[0].length_clip == 10
    assert cfg.schedule.stages[0].max_completion_length == 10  # mode default follows the new clip
    assert cfg.train.max_grad_norm == 1.0  # from the defaults


def test_overrides_parse_yaml_values_and_reject_malformed_ones():
    assert apply_override({}, "a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert apply_override({}, "a=true") == {"a": True}
    assert apply_override({}, "a=1e-5") == {"a": 1e-5}
    for bad in ["novalue", "=3", "a..b=1"]:
        with pytest.raises(ConfigError, match="dotted.key=value"):
            apply_override({}, bad)
    with pytest.raises(ConfigError, match="not an index"):
        resolve("smoke", ["schedule.stages.7.steps=1"])
    with pytest.raises(ConfigError, match="'-3' is not an index of a list of 2 items"):
        resolve("smoke", ["schedule.stages.-3.steps=1"])


def test_list_items_by_negative_index_or_stage_name():
    """Documented in --set's help and the README: ``-1`` is the last item, a stage can be named by its mode."""
    cfg = resolve("smoke", ["schedule.stages.-1.steps=7", "schedule.stages.compress.length_clip=11"])
    assert [s.mode for s in cfg.schedule.stages] == ["compress", "explore"]
    assert cfg.schedule.stages[1].steps == 7 and cfg.schedule.stages[0].length_clip == 11
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        resolve("smoke", ["train.nope=1"])


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: .*smoke"):
        find_preset("no-such-preset")


def test_extends_chain_cycles_and_paths(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\ntrain: {seed: 1}\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        resolve(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("# header\nextends: smoke\ntrain: {seed: 4}\n")
    cfg = resolve(str(tmp_path / "c.yaml"))
    assert cfg.train.seed == 4 and cfg.model.name_or_path == "builtin:tiny"
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(str(tmp_path / "bad.yaml"))


def test_deep_merge_replaces_lists_and_keeps_inputs():
    base = {"a": {"x": 1, "l": [1, 2]}}
    out = deep_merge(base, {"a": {"l": [3]}})
    assert out == {"a": {"x": 1, "l": [3]}} and base == {"a": {"x": 1, "l": [1, 2]}}


def test_set_on_the_compression_clip_reaches_an_inheriting_exploration_stage():
    """``--set schedule.stages.compress.length_clip`` moves the explore stage's L and 2L cap too (method.md s3),
    on the built-in defaults and on a preset's own stage list; an explicit explore value wins."""
    for presets in ([], ["r1-1.5b"]):
        compress, explore = resolve(presets, ["schedule.stages.compress.length_clip=2048"]).schedule.stages
        assert (compress.length_clip, compress.max_completion_length) == (2048, 2048), presets
        assert (explore.length_clip, explore.max_completion_length) == (2048, 4096), presets
    own = resolve("r1-1.5b", ["schedule.stages.compress.length_clip=2048",
                              "schedule.stages.explore.max_completion_length=5000"]).schedule.stages[1]
    assert (own.length_clip, own.max_completion_length) == (2048, 5000)
    own = resolve("r1-1.5b", ["schedule.stages.compress.length_clip=2048",
                              "schedule.stages.explore.length_clip=1000"]).schedule.stages[1]
    assert (own.length_clip, own.max_completion_length) == (1000, 2000)


def test_presets_show_composes_presets_like_compress():
    """``presets show`` takes NAME arguments and repeated --preset, composed as ``compress --preset`` composes."""
    import yaml
    from typer.testing import CliRunner

    from egrc_lite.cli.app import app

    def shown(*args):
        result = CliRunner().invoke(app, ["presets", "show", *args])
        assert result.exit_code == 0, result.output
        return result.output, yaml.safe_load("\n".join(l for l in result.output.splitlines() if not l.startswith("#")))

    for args in (["r1-1.5b", "--preset", "ablations/lc2048"], ["r1-1.5b", "ablations/lc2048"],
                 ["-p", "r1-1.5b", "-p", "ablations/lc2048"]):
        output, body = shown(*args)
        explore = body["schedule"]["stages"][1]
        assert (explore["mode"], explore["length_clip"], explore["max_completion_length"]) == ("explore", 2048, 4096)
        assert body == resolve(["r1-1.5b", "ablations/lc2048"]).model_dump(mode="json")
        assert "# ---- preset ablations/lc2048" in output and "Paper setting" in output
    output, body = shown("smoke", "--set", "train.seed=3")  # one NAME, as before
    assert body["train"]["seed"] == 3 and "# ----" not in output
    _, body = shown()
    assert body == resolve("default").model_dump(mode="json")
