"""Baseline overlays (presets/baselines/): each loads on every base, changes exactly what its header says, and lists,
shows and composes like the ablation overlays."""

import pytest
import yaml
from typer.testing import CliRunner

from egrc_lite.cli.app import app
from egrc_lite.presets import list_presets, resolve
from egrc_lite.train.schedule import plan_stages

BASES = ["default", "smoke", "r1-1.5b"]


def flatten(value, prefix=""):
    if isinstance(value, (dict, list)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return {k2: v2 for k, v in items for k2, v2 in flatten(v, f"{prefix}{k}.").items()}
    return {prefix[:-1]: value}


def diff(base, other):
    a, b = flatten(base.model_dump(mode="json")), flatten(other.model_dump(mode="json"))
    return {k: b.get(k) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}

NO_COMPRESSION = {"schedule.stages.0.steps": 0}
THINKPRUNE = {"schedule.stages.1.cap_schedule.0.at": 0.33, "schedule.stages.1.cap_schedule.0.scale": 0.75,
              "schedule.stages.1.cap_schedule.1.at": 0.67, "schedule.stages.1.cap_schedule.1.scale": 0.5}
EXPECTED = {
    "baselines/dapo-filter": {"reward.length_term": "none", "reward.overlong_filter": True},
    "baselines/dapo-soft": {"reward.length_term": "dapo_soft"},  # buffer and weight: the defaults
    "baselines/l1": {"reward.length_term": "l1"},  # alpha and the budget range: the defaults
    "baselines/kimi": {"reward.length_term": "kimi"},
    "baselines/thinkprune": {"reward.length_term": "none", **THINKPRUNE},
}
SOURCES = {"baselines/dapo-filter": "DAPO", "baselines/dapo-soft": "DAPO", "baselines/l1": "L1",
           "baselines/kimi": "Kimi k1.5", "baselines/thinkprune": "ThinkPrune"}


def test_every_baseline_preset_is_tested():
    shipped = {p.name for p in list_presets() if p.name.startswith("baselines/")}
    assert shipped == set(EXPECTED) == set(SOURCES)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("baseline", sorted(EXPECTED))
def test_overlay_changes_exactly_its_keys_and_leaves_one_exploration_stage(base, baseline):
    plain, cfg = resolve(base), resolve([base, baseline])
    assert diff(plain, cfg) == {**NO_COMPRESSION, **EXPECTED[baseline]}
    [stage] = plan_stages(cfg.schedule)
    assert (stage.mode, stage.steps) == ("explore", plain.schedule.stages[1].steps)
    schedule = cfg.schedule.stages[1].cap_schedule
    assert stage.config == plain.schedule.stages[1].model_copy(update={"cap_schedule": schedule})


@pytest.mark.parametrize("baseline", sorted(EXPECTED))
def test_header_names_the_source_what_changes_and_how_to_run(baseline):
    [info] = [p for p in list_presets() if p.name == baseline]
    assert info.summary.startswith("Baseline: ") and SOURCES[baseline] in info.summary
    header = info.header
    assert "Source: " in header and "2025" in header and "What it changes:" in header
    assert f"Run: egrc-lite compress --preset r1-1.5b --preset {baseline}" in header


def test_presets_list_and_show_compose_a_baseline_on_the_smoke_preset():
    runner = CliRunner()
    listed = runner.invoke(app, ["presets", "list"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in EXPECTED), listed.output
    shown = runner.invoke(app, ["presets", "show", "smoke", "--preset", "baselines/thinkprune"])
    assert shown.exit_code == 0, shown.output
    assert "# ---- preset baselines/thinkprune" in shown.output and "ThinkPrune" in shown.output
    body = yaml.safe_load("\n".join(line for line in shown.output.splitlines() if not line.startswith("#")))
    compress, explore = body["schedule"]["stages"]
    assert compress["steps"] == 0 and explore["cap_schedule"] == [{"at": 0.33, "scale": 0.75},
                                                                  {"at": 0.67, "scale": 0.5}]
    assert body["model"]["name_or_path"] == "builtin:tiny" and body["reward"]["length_term"] == "none"


def test_set_after_a_baseline_overrides_it():
    cfg = resolve(["smoke", "baselines/l1"], ["reward.l1_budget=[0.5, 0.75]", "schedule.stages.explore.steps=5"])
    assert cfg.reward.l1_budget == (0.5, 0.75) and cfg.schedule.stages[1].steps == 5
