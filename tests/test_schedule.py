"""Schedule: stage plan, auto-switch decision on hand-made curves, resumable state (CPU, pure)."""

from __future__ import annotations

import json
import math
import random

import pytest

from egrc_lite.config import AutoSwitchConfig, ScheduleConfig
from egrc_lite.train.schedule import (
    AutoSwitch,
    ScheduleState,
    plan_stages,
    should_switch,
    smooth,
    steps_since_low,
)


def _cfg(**kw):
    base = dict(enabled=True, window=1, patience=3, min_delta=0.0, min_steps=0)
    base.update(kw)
    return AutoSwitchConfig(**base)


def _schedule(stages, **auto):
    return ScheduleConfig.model_validate({"stages": stages, "auto_switch": auto})


# ---------------------------------------------------------------------------- plan


def test_default_plan_is_compress_then_explore():
    plan = plan_stages(ScheduleConfig())
    assert [(p.mode, p.steps, p.start_step, p.auto_switch) for p in plan] == [
        ("compress", 40, 0, False),
        ("explore", 20, 40, False),
    ]
    assert plan[1].config.temperature == 1.0


def test_plan_reverse_order_ablation_and_auto_switch_only_on_compress():
    plan = plan_stages(
        _schedule([{"mode": "explore", "steps": 3}, {"mode": "compress", "steps": 4}], enabled=True)
    )
    assert [(p.name, p.mode, p.start_step, p.auto_switch) for p in plan] == [
        ("explore", "explore", 0, False),
        ("compress", "compress", 3, True),
    ]


def test_plan_unique_names_and_dropped_empty_stages():
    plan = plan_stages(
        _schedule(
            [
                {"mode": "compress", "steps": 2},
                {"mode": "explore", "steps": 0},
                {"mode": "compress", "steps": 2, "name": "compress"},
                {"mode": "entangled", "steps": 1, "name": "base"},
            ]
        )
    )
    assert [(p.index, p.name) for p in plan] == [(0, "compress"), (2, "compress-2"), (3, "base")]


def _clips(schedule: ScheduleConfig) -> list[tuple[str, int, int]]:
    return [(s.name, s.length_clip, s.max_completion_length) for s in schedule.stages]


def test_explore_stage_inherits_the_preceding_compression_clip():
    """method.md s3: stage 2 penalises length beyond stage 1's L and generates up to 2L."""
    sched = _schedule([{"mode": "compress", "steps": 2, "length_clip": 100}, {"mode": "explore", "steps": 1}])
    assert _clips(sched) == [("compress", 100, 100), ("explore", 100, 200)]
    plan = plan_stages(sched)
    assert (plan[1].config.length_clip, plan[1].config.max_completion_length) == (100, 200)


def test_inheritance_follows_run_order_and_the_closest_compression_stage():
    stages = [{"mode": "compress", "steps": 1, "length_clip": 100, "name": "a"},
              {"mode": "explore", "steps": 1, "name": "x"},
              {"mode": "compress", "steps": 0, "length_clip": 300, "name": "b"},  # 0 steps still counts
              {"mode": "explore", "steps": 1, "name": "y"},
              {"mode": "entangled", "steps": 1, "length_clip": 50, "name": "e"},
              {"mode": "explore", "steps": 1, "name": "z", "max_completion_length": 70}]
    assert _clips(_schedule(stages)) == [("a", 100, 100), ("x", 100, 200), ("b", 300, 300), ("y", 300, 600),
                                         ("e", 50, 50), ("z", 50, 70)]
    reordered = ScheduleConfig.model_validate({"stages": stages, "order": ["x", "b", "y", "a", "z", "e"]})
    assert _clips(reordered) == [("x", 4096, 8192), ("b", 300, 300), ("y", 300, 600), ("a", 100, 100),
                                 ("z", 100, 70), ("e", 50, 50)]


def test_explicit_explore_clip_wins_and_explore_first_keeps_the_default():
    own = _schedule([{"mode": "compress", "steps": 1, "length_clip": 100},
                     {"mode": "explore", "steps": 1, "length_clip": 30}])
    assert _clips(own)[1] == ("explore", 30, 60)
    first = ScheduleConfig.model_validate({"order": ["explore", "compress"], "stages": [
        {"mode": "compress", "steps": 1, "length_clip": 100}, {"mode": "explore", "steps": 1}]})
    assert _clips(first) == [("explore", 4096, 8192), ("compress", 100, 100)]


def test_inheritance_from_stage_objects_and_round_trip():
    """Stages given as StageConfig objects inherit too (a derived value is not 'set'); dumping and
    validating again gives the same schedule."""
    from egrc_lite.config import StageConfig

    explore = StageConfig(mode="explore", steps=1)
    assert (explore.length_clip, explore.max_completion_length) == (4096, 8192)  # on its own: the paper's L
    assert "length_clip" not in explore.model_fields_set
    sched = ScheduleConfig(stages=[StageConfig(mode="compress", steps=1, length_clip=64), explore])
    assert _clips(sched) == [("compress", 64, 64), ("explore", 64, 128)]
    assert explore.length_clip == 4096  # the object passed in is not changed
    assert ScheduleConfig.model_validate(sched.model_dump(mode="json")) == sched


# ---------------------------------------------------------------------------- decision on curves


def test_smooth():
    assert smooth([1, 2, 3, 4, 5], 3) == [2.0, 3.0, 4.0]
    assert smooth([1, 2], 3) == []
    assert math.isnan(smooth([1, float("nan"), 3], 2)[0])


def test_falling_curve_never_switches():
    cfg = _cfg(window=3, patience=3, min_delta=0.01)
    curve = [2.0 * 0.95**i for i in range(60)]
    assert not any(should_switch(curve[:n], cfg) for n in range(1, 61))


def test_plateau_switches_exactly_after_patience():
    cfg = _cfg(window=1, patience=3)
    curve = [5.0, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    decisions = [should_switch(curve[:n], cfg) for n in range(1, len(curve) + 1)]
    # last new low at step 3; the third step without one is step 6
    assert decisions == [False, False, False, False, False, True, True]


def test_min_delta_is_relative():
    cfg = _cfg(window=1, patience=2, min_delta=0.1)
    # 100 -> 95 is only 5%: not a new low; 100 -> 89 is 11%: a new low
    assert should_switch([100.0, 95.0, 94.0], cfg)
    assert not should_switch([100.0, 95.0, 89.0], cfg)
    assert not should_switch([100.0, 95.0, 94.0], _cfg(window=1, patience=2, min_delta=0.0))


def test_min_steps_delays_the_switch():
    curve = [3.0] * 12
    assert should_switch(curve[:5], _cfg(patience=3))
    assert not should_switch(curve[:9], _cfg(patience=3, min_steps=10))
    assert should_switch(curve[:10], _cfg(patience=3, min_steps=10))


def test_disabled_never_switches():
    assert not should_switch([3.0] * 50, _cfg(enabled=False))


def test_noisy_falling_curve_smoothing_prevents_early_switch():
    rng = random.Random(0)
    trend = [2.0 - 0.02 * i for i in range(60)]
    noisy = [t + rng.uniform(-0.15, 0.15) for t in trend]
    raw = _cfg(window=1, patience=4, min_delta=0.0)
    smoothed = _cfg(window=10, patience=4, min_delta=0.0)
    # raw noise stalls the running minimum for a few steps; the moving average keeps falling
    assert any(should_switch(noisy[:n], raw) for n in range(1, 61))
    assert not any(should_switch(noisy[:n], smoothed) for n in range(1, 61))


def test_noisy_plateau_switches():
    rng = random.Random(1)
    curve = [2.0 - 0.05 * i for i in range(20)] + [1.0 + rng.uniform(-0.1, 0.1) for _ in range(40)]
    cfg = _cfg(window=5, patience=10, min_delta=0.01)
    first = next(n for n in range(1, 61) if should_switch(curve[:n], cfg))
    assert 30 <= first <= 45  # plateau starts at 20; window 5 + patience 10 + noise


def test_nan_steps_count_as_no_progress():
    assert steps_since_low([float("nan")] * 5, 1, 0.0) is None
    assert not should_switch([float("nan")] * 10, _cfg())
    assert should_switch([3.0, 2.0, float("nan"), float("nan"), float("nan")], _cfg(patience=3))


# ---------------------------------------------------------------------------- AutoSwitch and state


def test_auto_switch_tracker_and_round_trip():
    sw = AutoSwitch(_cfg(window=2, patience=2))
    out = [sw.update(v) for v in (4.0, 3.0, 2.0, None, 2.0, 2.0)]
    # smoothed: 3.5, 2.5, nan, nan, 2.0 -> two NaN windows exhaust patience, then 2.0 is a new low
    assert out == [False, False, False, False, True, False]
    data = json.loads(json.dumps(sw.to_dict()))  # NaN stored as null: valid JSON
    assert data["history"][3] is None
    clone = AutoSwitch.from_dict(data, sw.cfg)
    assert math.isnan(clone.history[3])
    assert [clone.update(2.0), clone.update(2.0)] == [False, True]
    sw.reset()
    assert sw.history == [] and sw.update(2.0) is False


def test_schedule_state_fixed_steps():
    cfg = _schedule([{"mode": "compress", "steps": 2}, {"mode": "explore", "steps": 2}])
    plan, state = plan_stages(cfg), ScheduleState()
    reasons = [state.observe(plan, cfg.auto_switch, 1.0) for _ in range(4)]
    assert reasons == [None, "steps", None, "steps"]
    assert state.done(plan) and state.global_step == 4
    assert [f["name"] for f in state.finished] == ["compress", "explore"]
    with pytest.raises(ValueError, match="finished"):
        state.observe(plan, cfg.auto_switch, 1.0)


def test_schedule_state_auto_switch_and_resume():
    cfg = _schedule(
        [{"mode": "compress", "steps": 100}, {"mode": "explore", "steps": 3}],
        enabled=True, window=1, patience=2, min_delta=0.0, min_steps=3,
    )
    plan, state = plan_stages(cfg), ScheduleState()
    curve = [5.0, 4.0, 3.0, 3.0]
    assert [state.observe(plan, cfg.auto_switch, v) for v in curve[:3]] == [None, None, None]
    saved = json.dumps(state.to_dict())
    resumed = ScheduleState.from_dict(json.loads(saved))
    assert resumed == state and resumed.history == [5.0, 4.0, 3.0]
    assert resumed.observe(plan, cfg.auto_switch, 3.0) is None  # one step without a new low
    assert resumed.observe(plan, cfg.auto_switch, 3.0) == "auto_switch"
    assert resumed.finished[-1] == {"name": "compress", "mode": "compress", "steps": 5, "end_step": 5,
                                    "reason": "auto_switch"}
    assert resumed.current(plan).mode == "explore" and resumed.history == []
    # the explore stage ignores the plateau and runs its steps
    assert [resumed.observe(plan, cfg.auto_switch, 3.0) for _ in range(3)] == [None, None, "steps"]


def test_switch_metric_keys_cover_config_choices():
    """Every auto_switch.metric a config may name has the metrics key the runner's switch reads."""
    from typing import get_args

    from egrc_lite.train.runner import SWITCH_METRIC_KEYS

    assert set(SWITCH_METRIC_KEYS) == set(get_args(AutoSwitchConfig.model_fields["metric"].annotation))
