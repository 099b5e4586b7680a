"""Ablation overlays: each loads on every base and changes exactly what its header says."""

import pytest

from egrc_lite.config import ConfigError
from egrc_lite.presets import apply_override, list_presets, resolve

BASES = ["default", "smoke", "r1-1.5b"]
EXPECTED = {
    "ablations/lc2048": {"schedule.stages.0.length_clip": 2048, "schedule.stages.0.max_completion_length": 2048},
    "ablations/lc8192": {"schedule.stages.0.length_clip": 8192, "schedule.stages.0.max_completion_length": 8192},
    "ablations/shape-linear": {"reward.shape": "linear"},
    "ablations/shape-cosine": {"reward.shape": "cosine"},
    "ablations/auto-switch": {"schedule.auto_switch.enabled": True},
    "ablations/seq-mean": {"train.loss_aggregation": "sequence"},
}


CLIPS = {"ablations/lc2048": 2048, "ablations/lc8192": 8192}
EXPLORE_SETS_ITS_OWN_CLIP = {"default": True, "smoke": True, "r1-1.5b": False}
"""Whether the base's explore stage sets its own length_clip (the CPU presets do, see their comments);
if not, it inherits the compression stage's L and a clip ablation moves it too (method.md s3)."""


def expected(base, ablation):
    """What ``ablation`` changes on ``base``: its own keys, and an inheriting explore stage's L and 2L cap."""
    out = dict(EXPECTED[ablation])
    if ablation in CLIPS and not EXPLORE_SETS_ITS_OWN_CLIP[base]:
        out.update({"schedule.stages.1.length_clip": CLIPS[ablation],
                    "schedule.stages.1.max_completion_length": 2 * CLIPS[ablation]})
    return out


def flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: value}


def diff(base, other):
    a, b = flatten(base.model_dump(mode="json")), flatten(other.model_dump(mode="json"))
    return {k: b.get(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def test_every_ablation_preset_is_tested():
    shipped = {p.name for p in list_presets() if p.name.startswith("ablations/")}
    assert shipped == set(EXPECTED) | {"ablations/explore-first", "ablations/entangled"}


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("ablation", sorted(EXPECTED))
def test_overlay_changes_exactly_its_keys(base, ablation):
    assert diff(resolve(base), resolve([base, ablation])) == expected(base, ablation)


@pytest.mark.parametrize("base", BASES)
def test_which_bases_let_explore_inherit_the_clip(base):
    """The table above matches the preset files: an explore stage without its own length_clip inherits."""
    plain = resolve(base)
    moved = resolve(base, ["schedule.stages.compress.length_clip=777"]).schedule.stages[1]
    assert (moved.length_clip != 777) is EXPLORE_SETS_ITS_OWN_CLIP[base]
    if not EXPLORE_SETS_ITS_OWN_CLIP[base]:
        assert moved.max_completion_length == 2 * 777
    else:
        assert moved == plain.schedule.stages[1]


@pytest.mark.parametrize("ablation", sorted(CLIPS))
def test_clip_ablation_moves_the_exploration_stage_of_the_paper_setting(ablation):
    """Paper: stage 2 penalises length beyond stage 1's clip L and generates up to 2L."""
    compress, explore = resolve(["r1-1.5b", ablation]).schedule.stages
    clip = CLIPS[ablation]
    assert (compress.length_clip, compress.max_completion_length) == (clip, clip)
    assert (explore.length_clip, explore.max_completion_length) == (clip, 2 * clip)


def test_clip_ablation_then_explore_first_leaves_exploration_at_its_default():
    """Exploration run first has no compression stage before it: its own (default) L, not stage 1's."""
    explore, compress = resolve(["r1-1.5b", "ablations/lc2048", "ablations/explore-first"]).schedule.stages
    assert (explore.mode, explore.length_clip, explore.max_completion_length) == ("explore", 4096, 8192)
    assert (compress.mode, compress.length_clip) == ("compress", 2048)


@pytest.mark.parametrize("base", BASES)
def test_explore_first_swaps_the_stages_and_nothing_else(base):
    plain, swapped = resolve(base), resolve([base, "ablations/explore-first"])
    assert swapped.schedule.stages == list(reversed(plain.schedule.stages))
    assert swapped.schedule.order == ["explore", "compress"]
    rest = swapped.model_copy(update={"schedule": plain.schedule})
    assert rest == plain


@pytest.mark.parametrize("base", BASES)
def test_entangled_baseline_is_one_entangled_stage(base):
    plain, ent = resolve(base), resolve([base, "ablations/entangled"])
    changed = diff(plain, ent)
    assert changed == {"schedule.stages.0.mode": "entangled", "schedule.stages.0.name": "entangled",
                       "schedule.stages.1.steps": 0}
    from egrc_lite.train.schedule import plan_stages

    assert [(p.mode, p.steps) for p in plan_stages(ent.schedule)] == [("entangled", plain.schedule.stages[0].steps)]


def test_stage_addressing_by_name_and_errors():
    data = {"s": [{"mode": "compress"}, {"mode": "explore", "name": "late"}]}
    assert apply_override(data, "s.late.steps=3")["s"][1]["steps"] == 3
    assert apply_override(data, "s.compress.steps=4")["s"][0]["steps"] == 4
    with pytest.raises(ConfigError, match="names no item .*compress, late"):
        apply_override(data, "s.explore.steps=1")
    with pytest.raises(ConfigError, match="schedule.order"):
        resolve("smoke", ["schedule.order=[compress]"])
