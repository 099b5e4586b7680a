"""Rollouts from merged LoRA weights (``egrc_lite.train.fastgen``, ``train.merge_lora_for_generation``).

The merge must be invisible to training: the weights come back as the same tensor objects, bit for
bit; the sampled tokens are those of the unmerged adapter; and it steps aside wherever merging is not
exact (train-mode LoRA dropout, quantized or half-precision base layers, unsloth). All on builtin:tiny.
"""

from __future__ import annotations

import logging

import pytest
import torch

from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.train import trainer as training
from egrc_lite.train.fastgen import merged_lora_weights, plan_merge

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = torch.tensor([[5, 6, 7, 8, 20, 30, 40, 50], [9, 10, 11, 12, 13, 14, 15, 16]])


def tiny_cfg(**train) -> EgrcConfig:
    return EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 16},
        "train": {"num_generations": 4, "prompts_per_step": 2, "save_steps": 100, "learning_rate": 1e-2, **train}})


def policy(dropout: float = 0.0, seed: int = 0, scale: float = 0.05):
    """builtin:tiny with a LoRA adapter whose B is random (a fresh adapter is a no-op: B = 0)."""
    from egrc_lite.backends.hf import load_policy

    cfg = EgrcConfig.model_validate({"model": {"name_or_path": "builtin:tiny"}, "lora": {"dropout": dropout}})
    torch.manual_seed(seed)
    model, tok, _ = load_policy(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    return model, tok


def snapshot(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every parameter (base and LoRA): the tensor object and a copy of its values."""
    return {n: (p, p.detach().clone()) for n, p in model.named_parameters()}


def assert_unchanged(model, before) -> None:
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    for name, (obj, values) in before.items():
        assert after[name] is obj, f"{name}: another tensor object after generation"
        assert torch.equal(after[name], values), f"{name}: values changed by generation"


def sample(model, tok, seed: int = 3, **kw) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(input_ids=PROMPTS, attention_mask=torch.ones_like(PROMPTS), do_sample=True,
                              top_p=0.95, temperature=1.0, max_new_tokens=24, num_return_sequences=4,
                              pad_token_id=tok.pad_token_id, eos_token_id=None, **kw)


# ---------------------------------------------------------------------------- the context manager


def test_weights_are_the_same_objects_and_bits_after_generation():
    model, tok = policy()
    model.train()
    before = snapshot(model)
    layers, skipped = plan_merge(model)
    assert len(layers) == 14 and not skipped  # builtin:tiny, all-linear: 2 blocks x 7 projections
    with merged_lora_weights(model) as report:
        layer = layers[0][0]
        assert layer.merged and layer.get_base_layer().weight is not before[f"{_name(model, layer)}.base_layer.weight"][0]
        sample(model, tok)
    assert report.merged == 14 and report.note() is None
    assert_unchanged(model, before)
    assert not any(layer.merged for layer, _ in layers)


def test_weights_are_restored_when_generation_raises():
    model, _ = policy()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"), merged_lora_weights(model):
        raise RuntimeError("boom")
    assert_unchanged(model, before)


def _name(model, module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def test_merged_generation_samples_the_same_tokens():
    """Same seed, merged vs unmerged: identical tokens (float32; the two differ by float rounding only,
    so a token could flip only at a near-tie of the sampler, which this seed does not hit). The logits
    along the sampled sequences agree to 1e-5, and the adapter matters (disabled, the tokens differ)."""
    model, tok = policy()
    model.eval()
    unmerged = sample(model, tok)
    with merged_lora_weights(model) as report:
        merged = sample(model, tok)
        with torch.no_grad():
            logits_merged = model(input_ids=merged).logits
    assert report.merged == 14
    assert torch.equal(unmerged, merged)
    with torch.no_grad():
        logits = model(input_ids=merged).logits
    assert (logits - logits_merged).abs().max().item() < 1e-5
    with model.disable_adapter():
        assert not torch.equal(sample(model, tok), unmerged)  # the test would notice a lost adapter


def test_train_mode_dropout_falls_back_and_eval_mode_merges():
    model, _ = policy(dropout=0.1)
    model.train()
    layers, skipped = plan_merge(model)
    assert not layers and skipped == {"LoRA dropout > 0 in train mode": 14}
    with merged_lora_weights(model) as report:
        assert report.merged == 0 and "dropout" in report.note()
    model.eval()  # dropout off: merging is exact again
    assert len(plan_merge(model)[0]) == 14


def test_non_exact_layers_are_skipped_one_by_one():
    from peft import LoraConfig, get_peft_model

    class QuantLinear(torch.nn.Linear):  # stands in for bitsandbytes' Linear4bit (an nn.Linear subclass)
        pass

    net = torch.nn.Sequential(torch.nn.Linear(8, 8), QuantLinear(8, 8), torch.nn.Linear(8, 8).to(torch.bfloat16))
    model = get_peft_model(net, LoraConfig(r=2, target_modules=["0", "1", "2"]))
    layers, skipped = plan_merge(model)
    assert [_name(model, layer).rsplit(".", 1)[-1] for layer, _ in layers] == ["0"]
    assert skipped == {"non-plain base layer (quantized?)": 1, "bfloat16 base weight": 1}


# ---------------------------------------------------------------------------- in the trainer


def _trainer(tmp_path, cfg: EgrcConfig, model, tok, steps: int = 1):
    from egrc_lite.data import load_problems, to_prompt_dataset

    stage = StageConfig(mode="compress", steps=steps, length_clip=8)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    return training.build_trainer(cfg, stage, model, tok, dataset, output_dir=str(tmp_path / "out"),
                                  reward_funcs=[lambda completions=None, **kw: [0.5, 0.0] * (len(completions) // 2)])


def _spy(trainer) -> list:
    """Record each rollout's completions and merge report (``None``: generated unmerged)."""
    seen = []
    generate = trainer._generate_single_turn

    def single_turn(*args, **kwargs):
        out = generate(*args, **kwargs)
        seen.append({"completions": out[0], "report": trainer.egrc_merge_report})
        return out

    trainer._generate_single_turn = single_turn
    return seen


def test_trl_still_has_the_generation_seam():
    import inspect

    from trl import GRPOTrainer

    params = list(inspect.signature(GRPOTrainer._generate_single_turn).parameters)
    assert params[:2] == ["self", "prompt_ids"], params


def test_training_steps_are_identical_with_and_without_merging(tmp_path):
    """Two steps (the second samples from an updated adapter), merged vs unmerged rollouts under one
    seed: the same completions, hence the same loss and the same adapter, bit for bit."""
    runs = {}
    for merge in (True, False):
        model, tok = policy(seed=1)
        trainer = _trainer(tmp_path / str(merge), tiny_cfg(merge_lora_for_generation=merge), model, tok, steps=2)
        seen = _spy(trainer)
        trainer.train()
        losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
        runs[merge] = (seen, losses, {n: p.detach().clone() for n, p in model.named_parameters()})
    (seen_on, loss_on, state_on), (seen_off, loss_off, state_off) = runs[True], runs[False]
    assert [s["report"].merged for s in seen_on] == [14, 14]
    assert all(s["report"] is None for s in seen_off)
    assert [s["completions"] for s in seen_on] == [s["completions"] for s in seen_off]
    assert loss_on == loss_off and len(loss_on) == 2
    for name, value in state_off.items():
        assert torch.equal(state_on[name], value), name


def test_trainer_falls_back_with_dropout_in_train_mode(tmp_path, caplog):
    model, tok = policy(dropout=0.1)
    trainer = _trainer(tmp_path, tiny_cfg(), model, tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    seen = _spy(trainer)
    with caplog.at_level(logging.INFO, logger="egrc_lite.train.trainer"):
        trainer.train()
    report = seen[0]["report"]  # TRL samples in train mode: the dropout is live, so no layer merges
    assert report.merged == 0 and report.skipped == {"LoRA dropout > 0 in train mode": 14}
    assert sum("LoRA dropout > 0" in r.getMessage() for r in caplog.records) == 1
    for name, value in before.items():  # the frozen base weights are untouched either way
        assert torch.equal(dict(model.named_parameters())[name], value), name


def test_off_on_unsloth_trainer_classes():
    from trl import GRPOTrainer

    unsloth_like = type("UnslothGRPOTrainer", (GRPOTrainer,), {})
    assert training.make_trainer_class(unsloth_like).egrc_merge_lora_for_generation is False
    assert training.make_trainer_class().egrc_merge_lora_for_generation is True
