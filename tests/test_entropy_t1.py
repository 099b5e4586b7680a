"""Token entropy at temperature 1 (``train/entropy_t1/mean``) beside the stage-temperature one, from the same
loss forward (its captured last hidden states), on builtin:tiny (CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from trl import GRPOTrainer

from egrc_lite import train
from egrc_lite.analysis.run import compare_runs
from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.evaluation import plots as eval_plots
from egrc_lite.runs import RunDir
from egrc_lite.train import rewards
from egrc_lite.train import trainer as training
from tiny_training import EvenReward

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_TRL_LOGPS = GRPOTrainer._get_per_token_logps_and_entropies


def _without_entropies(self, *args, **kwargs):
    """TRL's seam as unsloth's ``compute_efficient=True`` leaves it: no entropies."""
    logps, _, aux = _TRL_LOGPS(self, *args, **kwargs)
    return logps, None, aux


def tiny_cfg(**over) -> EgrcConfig:
    data = {"model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 32},
            "train": {"num_generations": 4, "prompts_per_step": 2, "learning_rate": 1e-2, "num_samples_logged": 0},
            "schedule": {"stages": [{"mode": "compress", "steps": 2, "length_clip": 8},
                                    {"mode": "explore", "steps": 1, "length_clip": 4}]}}
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value}
    return EgrcConfig.model_validate(data)


def _hand_entropies(model, input_ids, attention_mask, logits_to_keep, temperature):
    """``sum_t H_t`` and the token count over the completion tokens, from a plain forward's full logits."""
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, P+T, V]
    logits = logits[:, -logits_to_keep - 1:-1].float() / temperature  # [B, T, V]
    logp = torch.log_softmax(logits, dim=-1)
    ents = -(logp.exp() * logp).sum(-1)  # [B, T]
    mask = attention_mask[:, -logits_to_keep:].float()  # [B, T]
    return float((ents * mask).sum()), float(mask.sum())


def _one_step(tmp_path, monkeypatch, temperature: float, accum: int = 1) -> tuple[dict, dict]:
    """One optimiser step; the step's metrics and the hand-computed means at T and at 1 (weights of that forward)."""
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    torch.manual_seed(0)
    cfg = tiny_cfg(train={"gradient_accumulation_steps": accum})
    model, tok, _ = load_policy(cfg)
    stage = StageConfig(mode="compress", steps=1, length_clip=8, temperature=temperature)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, stage, model, tok, dataset, output_dir=str(tmp_path / "out"),
                                     reward_funcs=[EvenReward()])
    sums = {"t": [0.0, 0.0], "t1": [0.0, 0.0]}
    original = training.EgrcTrainerMixin._egrc_add_entropies

    def spy(self, model_, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        for key, temp in (("t", temperature), ("t1", 1.0)):  # before this micro-batch's backward and update
            total, count = _hand_entropies(model, input_ids, attention_mask, logits_to_keep, temp)
            sums[key] = [sums[key][0] + total, sums[key][1] + count]
        return original(self, model_, input_ids, attention_mask, logits_to_keep, *args, **kwargs)

    monkeypatch.setattr(training.EgrcTrainerMixin, "_egrc_add_entropies", spy)
    trainer.train()
    hand = {k: total / count for k, (total, count) in sums.items()}
    return trainer.egrc_pop_step_stats(), hand


@pytest.mark.parametrize("accum", [1, 2], ids=["one-micro-batch", "two-micro-batches"])
def test_at_stage_temperature_06_the_t1_entropy_is_the_hand_computed_one(tmp_path, monkeypatch, accum):
    stats, hand = _one_step(tmp_path, monkeypatch, 0.6, accum)
    assert stats["entropy/mean"] == pytest.approx(hand["t"], rel=1e-5)
    assert stats["entropy_t1/mean"] == pytest.approx(hand["t1"], rel=1e-5)
    assert abs(stats["entropy_t1/mean"] - stats["entropy/mean"]) > 1e-3  # T = 0.6 sharpens the distribution
    assert stats["entropy_t1/mean"] > stats["entropy/mean"]


def test_at_stage_temperature_1_both_keys_agree(tmp_path, monkeypatch):
    stats, hand = _one_step(tmp_path, monkeypatch, 1.0)
    assert stats["entropy_t1/mean"] == stats["entropy/mean"]
    assert stats["entropy_t1/mean"] == pytest.approx(hand["t1"], rel=1e-5)


def test_t1_entropy_without_loss_entropies_equals_the_loss_forward_one(tmp_path, monkeypatch):
    """The unsloth-like path (the loss returns no entropies, egrc-lite's no-grad pass measures them) gives
    the same T = 1 entropy, from that pass's hidden states."""
    normal, _ = _one_step(tmp_path / "normal", monkeypatch, 0.6)
    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", _without_entropies)
    fallback, hand = _one_step(tmp_path / "fallback", monkeypatch, 0.6)
    assert fallback["entropy_t1/mean"] == pytest.approx(normal["entropy_t1/mean"], rel=1e-5)
    assert fallback["entropy_t1/mean"] == pytest.approx(hand["t1"], rel=1e-5)


def test_runs_log_and_plot_the_t1_entropy(tmp_path, monkeypatch):
    """metrics.jsonl has train/entropy_t1/mean every step (= train/entropy/mean where T = 1: explore);
    the training-curve plots draw it."""
    monkeypatch.setattr(rewards, "build_reward_funcs", lambda *a, **k: [EvenReward()])
    run_dir = RunDir(tmp_path / "run")
    train.run_schedule(tiny_cfg(), run_dir)
    rows = run_dir.metrics.rows()
    assert [r["stage"] for r in rows] == ["compress", "compress", "explore"]
    for row in rows:
        assert row["train/entropy_t1/mean"] is not None and math.isfinite(row["train/entropy_t1/mean"]), row
    assert all(r["train/entropy_t1/mean"] != r["train/entropy/mean"] for r in rows[:2])  # T = 0.6
    assert rows[2]["train/entropy_t1/mean"] == rows[2]["train/entropy/mean"]  # T = 1
    report = compare_runs([run_dir.path], tmp_path / "cmp")
    assert "train/entropy_t1/mean" in [k for panel in report["panels"] for k in panel["keys"]]
    assert len(json.loads((tmp_path / "cmp" / "runs_report.json").read_text())["runs"][0]["series"]
               ["train/entropy_t1/mean"]) == 3
    assert "train/entropy_t1/mean" in [k for keys, _ in eval_plots.TRAINING_KEYS for k in
                                       ((keys,) if isinstance(keys, str) else keys)]
    png = eval_plots.plot_training_curves(rows, tmp_path / "training.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
