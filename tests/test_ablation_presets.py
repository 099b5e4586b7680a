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
}


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
    assert diff(resolve(base), resolve([base, ablation])) == EXPECTED[ablation]


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
