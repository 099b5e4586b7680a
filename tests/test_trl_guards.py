"""The TRL settings egrc-lite's loss is written for: refused at init when they differ, a batch that bypassed our
scoring refused at loss time, and ``train.num_iterations > 1`` (several passes per generation, where the clip
binds) with the kept mask and normaliser carried over to every pass (method.md s2). CPU, ``builtin:tiny``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from egrc_lite.config import ConfigError
from egrc_lite.train import trainer as training
from egrc_lite.train.loss_mask import SCORED, check_trl_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_loss_aggregation import (
    KEPT, LENGTHS, REWARDS, fix_generation, handmade, lora_grads, make_trainer, max_abs, max_diff, tiny_cfg)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- init


def _fake(**over):
    args = {"loss_type": "dapo", "steps_per_generation": 2, "gradient_accumulation_steps": 2, "num_iterations": 1,
            **over}
    return SimpleNamespace(args=SimpleNamespace(**args))


@pytest.mark.parametrize("over,setting", [
    ({"loss_type": "grpo"}, "loss_type='grpo'"),
    ({"loss_type": "bnpo"}, "loss_type='bnpo'"),
    ({"steps_per_generation": 4}, "steps_per_generation=4"),
    ({"num_iterations": 0}, "num_iterations=0"),
    ({"num_iterations": 1.5}, "num_iterations=1.5"),
])
def test_check_refuses_what_the_normaliser_is_not_written_for(over, setting):
    with pytest.raises(ConfigError, match=f"^GRPOConfig.{setting}: ") as err:
        check_trl_settings(_fake(**over))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mu", [1, 2, 3, 8])
def test_check_allows_every_supported_num_iterations(mu):
    check_trl_settings(_fake(num_iterations=mu))


def test_check_reads_the_trainers_own_attributes():
    """TRL copies loss_type and num_iterations onto the trainer; a TRL that changed them there is caught too."""
    fake = _fake()
    fake.loss_type = "grpo"
    with pytest.raises(ConfigError, match="loss_type='grpo'"):
        check_trl_settings(fake)


@pytest.mark.parametrize("overrides,setting", [
    ({"loss_type": "grpo"}, "loss_type"),
    ({"steps_per_generation": 2}, "steps_per_generation"),
    ({"num_iterations": 0}, "num_iterations"),
])
def test_trainer_init_refuses_a_mismatched_grpo_config(tmp_path, overrides, setting):
    with pytest.raises(ConfigError, match=f"GRPOConfig.{setting}=") as err:
        make_trainer(tmp_path, "compress", [REWARDS], overrides=overrides)
    assert "\n" not in str(err.value)


def test_trainer_init_accepts_num_iterations_from_the_config(tmp_path):
    cfg = tiny_cfg(train={"num_iterations": 3, "gradient_accumulation_steps": 2})
    trainer, _, _ = make_trainer(tmp_path, "explore", [REWARDS], cfg=cfg)
    assert (trainer.num_iterations, trainer.args.steps_per_generation, trainer.args.gradient_accumulation_steps) \
        == (3, 2, 2)


def test_loss_aggregation_must_be_known_and_sequence_needs_trls_loss():
    from trl import GRPOTrainer

    with pytest.raises(ValueError, match="train.loss_aggregation='batch' is not supported"):
        training.make_trainer_class()(model=None, reward_funcs=[], loss_aggregation="batch")
    unsloth_like = training.make_trainer_class(type("UnslothGRPOTrainer", (GRPOTrainer,), {}))
    with pytest.raises(ValueError, match="'sequence' is not supported on this backend; valid: token"):
        unsloth_like(model=None, reward_funcs=[], loss_aggregation="sequence")


# ---------------------------------------------------------------------------- loss time


def test_loss_refuses_a_batch_without_the_marker(tmp_path):
    trainer, model, tok = make_trainer(tmp_path, "compress", [REWARDS])
    out = handmade(trainer, tok, LENGTHS)
    trainer.compute_loss(model, out)  # scored: fine
    del out[SCORED]
    with pytest.raises(RuntimeError, match="not scored by egrc-lite's _generate_and_score_completions"):
        trainer.compute_loss(model, out)


@pytest.mark.parametrize("guard", [True, False], ids=["guard", "control-without-guard"])
def test_a_trl_that_bypasses_the_override_fails_clearly(tmp_path, monkeypatch, guard):
    """A TRL whose loss batches no longer come from our ``_generate_and_score_completions`` (simulated by a class
    that falls back to TRL's own) fails at the first loss; without the guard it trains on TRL's advantages."""
    from trl import GRPOTrainer

    if not guard:
        monkeypatch.setattr(training, "require_scored", lambda inputs, num_iterations=1: None)
    bypass = type("Bypass", (training.make_trainer_class(),),
                  {"_generate_and_score_completions": GRPOTrainer._generate_and_score_completions})
    trainer, _, tok = make_trainer(tmp_path, "compress", [REWARDS], trainer_class=bypass)
    fix_generation(trainer, tok, LENGTHS)
    if guard:
        with pytest.raises(RuntimeError, match=r"no 'egrc_scored' marker.*TRL's own advantages"):
            trainer.train()
    else:
        trainer.train()  # silently: TRL's own group-normalised advantages, no sample dropped
        assert trainer.state.global_step == 1


def test_later_passes_need_the_generation_time_logprobs(tmp_path):
    cfg = tiny_cfg(train={"num_iterations": 2})
    trainer, model, tok = make_trainer(tmp_path, "compress", [REWARDS], cfg=cfg)
    out = handmade(trainer, tok, LENGTHS)
    assert out.get("old_per_token_logps") is not None  # TRL keeps them when a generation serves 2 steps
    trainer.compute_loss(model, out)
    out.pop("old_per_token_logps")
    with pytest.raises(RuntimeError, match="num_iterations=2 .*ratio 1"):
        trainer.compute_loss(model, out)


# ---------------------------------------------------------------------------- several passes


EPS = 0.2  # the compression stage's clip range; one SGD step at lr 0.05 moves some ratios past it


def _two_passes(tmp_path, aggregation: str = "token", *, dropped_offset=None):
    """Two optimiser steps over ONE generation (num_iterations 2); per pass: the loss batch, the policy's
    log-probs at that pass, the loss, the gradient and the hand-computed gradient of the kept rows alone."""
    from transformers import TrainerCallback

    torch.manual_seed(0)
    cfg = tiny_cfg(train={"num_iterations": 2, "optim": "sgd", "learning_rate": 0.05,
                          "loss_aggregation": aggregation})
    trainer, model, tok = make_trainer(tmp_path, "compress", [REWARDS], cfg=cfg, steps=2,
                                       epsilon_low=EPS, epsilon_high=EPS)
    fix_generation(trainer, tok, LENGTHS, dropped_offset=dropped_offset)
    passes: list[dict] = []
    generations = []
    scored = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: generations.append(scored(inputs)) or generations[-1]
    loss_fn = trainer.compute_loss

    def spy(model_, inputs, *args, **kwargs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad():
            logps = trainer._get_per_token_logps_and_entropies(model_, ids, attention,
                                                               inputs["completion_ids"].size(1))[0]
        loss = loss_fn(model_, inputs, *args, **kwargs)
        passes.append({"inputs": inputs, "logps": logps, "loss": loss.item()})
        return loss

    trainer.compute_loss = spy

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            got = lora_grads(model)
            model.zero_grad()
            _kept_only_loss(trainer, model, passes[-1]["inputs"], aggregation).backward()
            passes[-1].update(grad=got, by_hand=lora_grads(model))
            for name, param in model.named_parameters():  # put the trainer's gradient back
                if name in got:
                    param.grad = got[name].clone()

    trainer.add_callback(Grab())
    stats = []
    trainer.add_callback(type("Stats", (TrainerCallback,), {
        "on_step_end": lambda self, *a, **k: stats.append(trainer.egrc_pop_step_stats())})())
    trainer.train()
    return trainer, generations, passes, stats


def _kept_only_loss(trainer, model, inputs: dict, aggregation: str) -> torch.Tensor:
    """The clipped surrogate over the KEPT rows only (dropped rows removed from the batch), by hand."""
    kept = inputs["tool_mask"].amax(dim=1) > 0
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)[kept]
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)[kept]
    logps = trainer._get_per_token_logps_and_entropies(model, ids, attention, inputs["completion_ids"].size(1))[0]
    ratio = torch.exp(logps - inputs["old_per_token_logps"][kept])
    adv = inputs["advantages"][kept].unsqueeze(1)
    term = -torch.min(ratio * adv, ratio.clamp(1 - EPS, 1 + EPS) * adv)  # [K, T]
    mask = inputs["completion_mask"][kept].float()
    if aggregation == "token":
        return (term * mask).sum() / mask.sum()
    return ((term * mask).sum(dim=1) / mask.sum(dim=1)).mean()


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_two_passes_over_one_generation_clip_and_keep_dropped_samples_out(tmp_path, aggregation):
    _, generations, passes, stats = _two_passes(tmp_path, aggregation)
    assert len(generations) == 1 and len(passes) == 2  # one generation, two optimiser steps
    first, second = passes
    for key in ("tool_mask", "num_items_in_batch", "advantages", "old_per_token_logps"):
        assert torch.equal(first["inputs"][key], second["inputs"][key]), key  # carried over unchanged
    assert int(first["inputs"]["num_items_in_batch"]) == (10 if aggregation == "token" else 3)
    mask = (second["inputs"]["tool_mask"] * second["inputs"]["completion_mask"]) > 0  # kept tokens
    old = first["inputs"]["old_per_token_logps"]
    ratio1 = torch.exp(first["logps"] - old)[mask]
    ratio2 = torch.exp(second["logps"] - old)[mask]
    assert (ratio1 - 1).abs().max().item() < 1e-5  # pass 1 is on-policy
    assert (ratio2 - 1).abs().max().item() > 1e-3  # pass 2 is not
    assert (ratio2 > 1 + EPS).any() and (ratio2 < 1 + EPS).any()  # the clip binds on some kept tokens
    for one in passes:  # the trainer's gradient is the kept-only clipped surrogate's, in both passes
        assert max_abs(one["by_hand"]) > 1e-7
        assert max_diff(one["grad"], one["by_hand"]) < 1e-4 * max_abs(one["by_hand"]), aggregation
    # the loss of pass 2 by hand: kept rows only, clipped
    inputs = second["inputs"]
    r = torch.exp(second["logps"] - old)
    adv = inputs["advantages"].unsqueeze(1)
    term = -torch.min(r * adv, r.clamp(1 - EPS, 1 + EPS) * adv)
    weight = inputs["tool_mask"] * inputs["completion_mask"]
    by_hand = (term * weight).sum() / inputs["num_items_in_batch"]
    unclipped = (-(r * adv) * weight).sum() / inputs["num_items_in_batch"]
    assert second["loss"] == pytest.approx(by_hand.item(), abs=1e-6)
    assert abs(by_hand.item() - unclipped.item()) > 1e-6  # the clip changed the loss
    assert [s.get("pass") for s in stats] == [1.0, 2.0]  # the generation's metrics on both passes
    assert stats[0]["kept_frac"] == stats[1]["kept_frac"] == pytest.approx(3 / 8)


def test_dropped_rows_change_nothing_in_any_pass(tmp_path):
    """Other tokens in the dropped rows: the same losses and gradients in both passes."""
    runs = [_two_passes(tmp_path / str(offset), dropped_offset=offset)[2] for offset in (10, 60)]
    assert not torch.equal(runs[0][0]["inputs"]["completion_ids"], runs[1][0]["inputs"]["completion_ids"])
    for a, b in zip(*runs):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert max_diff(a["grad"], b["grad"]) < 1e-6 * max_abs(a["grad"]) + 1e-10
    assert len(KEPT) == 3
