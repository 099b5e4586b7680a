"""Token-entropy metrics when the loss forward returns no entropies (unsloth's ``compute_efficient``), and
the stage-start refusal of an auto switch whose metric cannot be computed (CPU, builtin:tiny)."""

from __future__ import annotations

import math

import pytest
import torch
from trl import GRPOTrainer

from egrc_lite import train
from egrc_lite.analysis.entropy import ConnectorMatcher, normalize_token
from egrc_lite.config import ConfigError, EgrcConfig, StageConfig
from egrc_lite.runs import RunDir
from egrc_lite.train import entropy_stats, runner as stage_runner, trainer as training
from egrc_lite.train.schedule import plan_stages
from tiny_training import EvenReward

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENTROPY_KEYS = ("entropy/mean", "connector/share", "entropy/connector", "entropy/other")
_TRL_LOGPS = GRPOTrainer._get_per_token_logps_and_entropies


def _without_entropies(self, *args, **kwargs):
    """TRL's seam as unsloth's ``compute_efficient=True`` leaves it: no entropies."""
    logps, _, aux = _TRL_LOGPS(self, *args, **kwargs)
    return logps, None, aux


# what unsloth installs as trl.GRPOTrainer, as far as egrc-lite can tell: the name and a loss without entropies
UnslothLike = type("UnslothGRPOTrainer", (GRPOTrainer,), {"_get_per_token_logps_and_entropies": _without_entropies})


def tiny_cfg(**over) -> EgrcConfig:
    data = {"model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 32},
            # group_by_length off: every row, kept or dropped, goes through the loss forward (and its entropies)
            "train": {"num_generations": 4, "prompts_per_step": 2, "learning_rate": 1e-2, "num_samples_logged": 0,
                      "group_by_length": False},
            "schedule": {"stages": [{"mode": "compress", "steps": 6, "length_clip": 8},
                                    {"mode": "explore", "steps": 1, "length_clip": 4}]}}
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value}
    return EgrcConfig.model_validate(data)


def _one_step(tmp_path, *, accum: int = 1) -> dict:
    """One optimiser step on builtin:tiny, seeded; the step's metrics (connectors: half the vocabulary)."""
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    torch.manual_seed(0)
    cfg = tiny_cfg(train={"gradient_accumulation_steps": accum})
    model, tok, _ = load_policy(cfg)
    stage = StageConfig(mode="compress", steps=1, length_clip=8)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, stage, model, tok, dataset, output_dir=str(tmp_path / "out"),
                                     reward_funcs=[EvenReward()])
    words = sorted({normalize_token(t) for t in tok.get_vocab()} - {""})
    trainer.egrc_connectors = ConnectorMatcher(tok, words[::2])  # connectors and other tokens in every step
    trainer.train()
    return trainer.egrc_pop_step_stats()


@pytest.mark.parametrize("accum", [1, 2], ids=["one-micro-batch", "two-micro-batches"])
def test_metrics_without_loss_entropies_equal_the_loss_forward_ones(tmp_path, monkeypatch, accum):
    """The seam's base drops the entropies (unsloth's compute_efficient=True): the same step, same seed, logs
    the same entropy and connector metrics as TRL's loss forward gives, from one no-grad pass per micro-batch."""
    calls = []
    original = entropy_stats.completion_entropies

    def counting(*args, **kwargs):
        calls.append(args[3])  # logits_to_keep
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "completion_entropies", counting, raising=False)
    normal = _one_step(tmp_path / "normal", accum=accum)
    assert calls == []  # stock TRL hands the entropies over: no extra forward
    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", _without_entropies)
    fallback = _one_step(tmp_path / "fallback", accum=accum)
    assert len(calls) == accum  # one no-grad forward per loss forward (micro-batch)
    assert fallback["len/mean"] == normal["len/mean"] and fallback["kept_frac"] == normal["kept_frac"] == 0.5
    for key in ENTROPY_KEYS:
        assert key in fallback and math.isfinite(fallback[key]), (key, fallback)
        assert fallback[key] == pytest.approx(normal[key], rel=1e-5, abs=1e-6), key
    assert 0 < fallback["connector/share"] < 1


def test_completion_entropies_match_full_softmax_and_skip_padding():
    """The chunked head pass equals H(softmax(logits / tau)) of a plain forward, 0 at padded positions."""
    from egrc_lite.backends.hf import load_policy

    torch.manual_seed(0)
    model, _, _ = load_policy(tiny_cfg())
    ids = torch.tensor([[0, 5, 6, 7, 20, 30, 40, 50], [5, 6, 7, 8, 21, 31, 0, 0]])  # [2, 8]
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]])  # left-padded prompt, padded tail
    ents = entropy_stats.completion_entropies(model, ids, mask, 4, temperature=0.7, chunk=3)  # [2, 4]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -5:-1]  # [2, 4, V]
    p = torch.softmax(logits.float() / 0.7, dim=-1)
    expected = -(p * p.log()).sum(-1) * mask[:, -4:]  # [2, 4]
    assert torch.allclose(ents, expected, atol=1e-5), (ents, expected)
    assert ents[1, 2:].tolist() == [0.0, 0.0]


def test_auto_switch_fires_when_the_backend_returns_no_entropies(tmp_path, monkeypatch):
    """End to end on an unsloth-like GRPOTrainer (named Unsloth*, no loss entropies): the switch still fires."""
    import trl

    from egrc_lite.train import rewards

    monkeypatch.setattr(trl, "GRPOTrainer", UnslothLike)
    monkeypatch.setattr(rewards, "build_reward_funcs", lambda *a, **k: [EvenReward()])
    cfg = tiny_cfg(schedule={"auto_switch": {"enabled": True, "metric": "entropy", "window": 1, "patience": 1,
                                             "min_delta": 0.5, "min_steps": 2}})
    run_dir = RunDir(tmp_path / "run")
    result = train.run_schedule(cfg, run_dir)
    assert result["switch_steps"] == {"compress": 2}
    rows = run_dir.metrics.rows()
    for row in rows:  # (entropy/connector is undefined in a step that sampled no connector)
        for key in ("entropy/mean", "connector/share", "entropy/other"):
            assert row.get(f"train/{key}") is not None, (key, row)


def test_stage_start_refuses_an_entropy_switch_without_entropy(tmp_path):
    cfg = tiny_cfg(analysis={"track_entropy": False},
                   schedule={"auto_switch": {"enabled": True, "metric": "entropy"}})
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^stage compress: schedule.auto_switch.metric=entropy needs "
                                          r"analysis.track_entropy=true") as err:
        train.run_schedule(cfg, run_dir)
    assert "\n" not in str(err.value)
    assert not run_dir.path.exists()  # refused before anything was loaded or written
    for ok in (tiny_cfg(analysis={"track_entropy": False}, schedule={"auto_switch": {"enabled": True,
                                                                                    "metric": "length"}}),
               tiny_cfg(analysis={"track_entropy": False})):  # a length switch, or no switch at all
        for stage in plan_stages(ok.schedule):
            stage_runner.check_switch_metric(ok, stage)


def test_entropy_source_and_the_stage_start_check_on_a_built_trainer(tmp_path, monkeypatch):
    """Where a trainer gets entropies from; a stage whose trainer has no source is refused before training."""
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = tiny_cfg(schedule={"auto_switch": {"enabled": True, "metric": "entropy"}})
    compress = plan_stages(cfg.schedule)[0]
    model, tok, _ = load_policy(cfg)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)

    def build(cls: type | None) -> object:
        return training.build_trainer(cfg, compress.config, model, tok, dataset, output_dir=str(tmp_path),
                                      reward_funcs=[EvenReward()], trainer_class=cls)

    assert build(None).egrc_entropy_source() == "loss"
    trainer = build(training.make_trainer_class(UnslothLike))
    assert trainer.egrc_zero_completion_mask and trainer.egrc_entropy_source() == "forward"
    stage_runner.check_switch_metric(cfg, compress, trainer)
    trainer.egrc_entropy_fallback = False  # what track_entropy: false would give it
    assert trainer.egrc_entropy_source() is None
    with pytest.raises(ConfigError, match="returns no token entropies"):
        stage_runner.check_switch_metric(cfg, compress, trainer)
    trainer.egrc_entropy_fallback = True
    monkeypatch.setattr(type(model.get_base_model()), "get_output_embeddings", lambda self: None)
    assert trainer.egrc_entropy_source() is None  # a policy without an LM head to measure with
    with pytest.raises(ConfigError, match="no backbone \\+ LM head"):
        stage_runner.check_switch_metric(cfg, compress, trainer)


DIST_SCRIPT = """
import json, sys
import torch
from trl import GRPOTrainer
from egrc_lite import train
from egrc_lite.config import EgrcConfig
from egrc_lite.runs import RunDir
from egrc_lite.train import rewards


def fixed(completions=None, **kwargs):
    return [0.5] * len(completions)


rewards.build_reward_funcs = lambda *a, **k: [fixed]
torch.set_num_threads(1)
cfg = EgrcConfig.model_validate(json.loads(sys.argv[2]))
trl_logps = GRPOTrainer._get_per_token_logps_and_entropies


def without_entropies(self, *args, **kwargs):
    logps, _, aux = trl_logps(self, *args, **kwargs)
    return logps, None, aux


for arm in ("normal", "fallback"):
    if arm == "fallback":
        GRPOTrainer._get_per_token_logps_and_entropies = without_entropies
    torch.manual_seed(0)
    train.run_schedule(cfg, RunDir(f"{sys.argv[1]}/{arm}"))
"""


@pytest.mark.slow
def test_two_processes_reduce_the_fallback_metrics_like_the_loss_ones(tmp_path):
    """Under ``accelerate launch`` (2 CPU processes, gloo) the fallback's sums are reduced like the loss ones."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    beside = Path(sys.executable).parent / "accelerate"
    launcher = str(beside) if beside.exists() else shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not installed")
    cfg = tiny_cfg(schedule={"stages": [{"mode": "compress", "steps": 2, "length_clip": 8}]})
    script = tmp_path / "arms.py"
    script.write_text(DIST_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(tmp_path),
                           cfg.model_dump_json()], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = {arm: [json.loads(line) for line in (tmp_path / arm / "metrics.jsonl").read_text().splitlines()]
            for arm in ("normal", "fallback")}
    assert len(rows["normal"]) == len(rows["fallback"]) == 2
    for normal, fallback in zip(rows["normal"], rows["fallback"]):
        assert fallback["train/len/mean"] == normal["train/len/mean"]
        for key in ("entropy/mean", "connector/share", "entropy/other"):
            assert fallback[f"train/{key}"] is not None, key
            assert fallback[f"train/{key}"] == pytest.approx(normal[f"train/{key}"], rel=1e-5), key
