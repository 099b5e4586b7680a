"""The length-control baselines in a real trainer on builtin:tiny (CPU, a few seconds each): each option reaches the
reward or the loss mask a training step uses.

- DAPO overlong filtering: a row cut at the cap without EOS gets zero loss weight (and nothing else changes);
- DAPO soft overlong punishment and Kimi's length reward: the trainer's reward functions give the formula's values;
- L1: every training prompt states its budget, and the reward is computed against that budget;
- ThinkPrune: the generation cap shrinks at the scheduled steps, and completions stay within it.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from egrc_lite import train
from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.runs import RunDir
from egrc_lite.train import trainer as training
from egrc_lite.train.advantages import group_relative
from tiny_training import FixedReward, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(**over) -> EgrcConfig:
    return tiny_config(0, 1, {"save_steps": 5, "sample_every": 1, "num_samples_logged": 8}, **over)


def _trainer(tmp_path, cfg: EgrcConfig, stage: StageConfig, reward_funcs=None):
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    model, tokenizer, _ = load_policy(cfg)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, stage, model, tokenizer, dataset, output_dir=str(tmp_path / "out"),
                                     reward_funcs=reward_funcs)
    return trainer, model, tokenizer


def _score(trainer, tokenizer, lengths: list[int], *, cut=(), texts=None, token_offset: int = 10):
    """The scoring seam on fixed completions of ``lengths`` tokens; each ends with EOS unless its row is in ``cut``."""
    eos = tokenizer.eos_token_id
    completions = [[token_offset + (j % 50) for j in range(n - (i not in cut))] + ([] if i in cut else [eos])
                   for i, n in enumerate(lengths)]
    texts = texts or [f"c{i}" for i in range(len(lengths))]

    def fake_generate(prompts):
        messages = [[{"role": "assistant", "content": t}] for t in texts]
        return [[5, 6, 7]] * len(prompts), completions, None, messages, None, {}, None, None

    trainer._generate = fake_generate
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = [{"prompt": [{"role": "user", "content": "q"}], "answer": "1", "id": f"p{i // 4}"}
              for i in range(len(lengths))]
    return trainer._generate_and_score_completions(inputs)


def _rewards_of(trainer, name: str) -> list[float]:
    return trainer._egrc_rewards_per_func[:, trainer.reward_func_names.index(name)].tolist()


# ---------------------------------------------------------------------------- DAPO overlong filtering

REWARDS = [1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.5]
LENGTHS = [8, 3, 5, 8, 2, 8, 4, 6]  # cap 8 (2 L): rows 0, 5 cut without EOS; row 3 ends with EOS at the cap
CUT = (0, 5)


@pytest.mark.parametrize("overlong_filter", [True, False], ids=["filter", "control-without-filter"])
def test_overlong_filter_gives_truncated_rows_zero_loss_weight(tmp_path, overlong_filter):
    cfg = tiny_cfg(reward={"overlong_filter": overlong_filter})
    trainer, model, tok = _trainer(tmp_path, cfg, StageConfig(mode="explore", steps=1, length_clip=4),
                                   [FixedReward(REWARDS)])
    out = _score(trainer, tok, LENGTHS, cut=CUT)
    expected = group_relative(torch.tensor(REWARDS), group_size=4).advantages.tolist()  # groups include cut rows
    weight = out["tool_mask"].amax(dim=1).tolist()
    stats = trainer.egrc_pop_step_stats()
    assert stats["truncated_rate"] == pytest.approx(2 / 8)
    if not overlong_filter:  # the control: cut rows train like any other
        assert weight == [1] * 8 and int(out["num_items_in_batch"]) == sum(LENGTHS)
        assert out["advantages"].tolist() == pytest.approx(expected, abs=1e-5) and expected[0] != 0
        return
    assert weight == [0, 1, 1, 1, 1, 0, 1, 1]  # row 3 reached the cap too, but with EOS: kept
    assert int(out["num_items_in_batch"]) == sum(LENGTHS) - 8 - 8  # out of the normaliser
    kept = [a if i not in CUT else 0.0 for i, a in enumerate(expected)]
    assert out["advantages"].tolist() == pytest.approx(kept, abs=1e-5)
    assert stats["adv/dropped"] == 2 and stats["kept_frac"] == pytest.approx(6 / 8)
    # zero weight: other tokens in the cut rows change neither the loss nor its gradient
    grads = []
    for offset in (10, 70):
        out = _score(trainer, tok, LENGTHS, cut=CUT)
        for i in CUT:
            out["completion_ids"][i] = torch.arange(8) + offset
        model.zero_grad()
        loss = trainer.compute_loss(model, out)
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    assert all(torch.allclose(g, grads[1][1][n], atol=1e-7) for n, g in grads[0][1].items())


# ---------------------------------------------------------------------------- reward terms in the trainer

@pytest.fixture
def graded(monkeypatch):
    """Grading: a completion is correct when it ends with ' 1' (no math-verify)."""
    from egrc_lite import grading

    monkeypatch.setattr(grading, "grade_each",
                        lambda pairs, answer_rule="boxed": [r.endswith(" 1") for r, _ in pairs])


def test_dapo_soft_overlong_reward_in_the_trainer(tmp_path, graded):
    cfg = tiny_cfg(reward={"length_term": "dapo_soft", "overlong_buffer": 0.25})
    trainer, _, tok = _trainer(tmp_path, cfg, StageConfig(mode="explore", steps=1, length_clip=4))  # cap 8, L_cache 2
    assert trainer.reward_func_names == ["format", "answer", "dapo_overlong"]
    _score(trainer, tok, [6, 7, 8, 8, 2, 5, 7, 6], cut=(2,))
    assert _rewards_of(trainer, "dapo_overlong") == pytest.approx([0, -0.5, -1, -1, 0, 0, -0.5, 0])


def test_kimi_length_reward_in_the_trainer(tmp_path, graded):
    cfg = tiny_cfg(reward={"length_term": "kimi"})
    trainer, _, tok = _trainer(tmp_path, cfg, StageConfig(mode="explore", steps=1, length_clip=8))
    assert trainer.reward_func_names == ["format", "answer", "kimi_length"]
    texts = ["a</think> 1", "b</think> 1", "c</think> 2", "d</think> 1",  # group 1: lengths 2..8
             "e</think> 2", "f</think> 2", "g</think> 1", "h</think> 1"]  # group 2: equal lengths
    _score(trainer, tok, [2, 8, 4, 5, 3, 3, 3, 3], texts=texts)  # one batch-wide group would give g, h 1/3
    assert _rewards_of(trainer, "answer") == [1, 1, 0, 1, 0, 0, 1, 1]
    # group 1: min 2, max 8: lambda = 0.5, -0.5, 1/6, 0; correct, correct, wrong (min(0, 1/6) = 0), correct
    assert _rewards_of(trainer, "kimi_length") == pytest.approx([0.5, -0.5, 0.0, 0.0, 0, 0, 0, 0], abs=1e-6)


# ---------------------------------------------------------------------------- L1: budgets in the prompt

def test_l1_prompts_state_their_budget_and_the_reward_uses_it(tmp_path):
    cfg = tiny_cfg(reward={"length_term": "l1", "l1_alpha": 0.01, "l1_budget": [0.25, 0.75]}, train={"seed": 5})
    run_dir = RunDir(tmp_path / "run")
    train.run_schedule(cfg, run_dir)
    samples = run_dir.samples.rows()
    assert len(samples) == 8  # one step of 2 prompts x 4
    budgets = set()
    for row in samples:
        found = re.findall(r"Think for (\d+) tokens\.", row["prompt"])
        assert len(found) == 1, row["prompt"]
        budget = int(found[0])
        budgets.add((row["id"], budget))
        assert 3 <= budget <= 9  # [0.25, 0.75] x the cap 12
        assert row["rewards"]["l1_length"] == pytest.approx(-0.01 * abs(budget - row["length"]), abs=1e-6)
    assert len({i for i, _ in budgets}) == len(budgets)  # one budget per problem
    manifest = json.loads(run_dir.manifest_path.read_text())
    assert manifest["token_budget"] == [3, 9]


# ---------------------------------------------------------------------------- ThinkPrune: the cap shrinks

def test_thinkprune_cap_shrinks_at_the_scheduled_steps(tmp_path):
    schedule = [{"at": 0.33, "scale": 0.75}, {"at": 0.67, "scale": 0.5}]
    cfg = tiny_cfg(schedule={"stages": [{"mode": "compress", "steps": 0},
                                        {"mode": "explore", "steps": 3, "length_clip": 8, "cap_schedule": schedule}]})
    run_dir = RunDir(tmp_path / "run")
    train.run_schedule(cfg, run_dir)
    rows = run_dir.metrics.rows()
    assert [r["train/cap"] for r in rows] == [16, 12, 8]
    longest = {}
    for row in run_dir.samples.rows():
        longest[row["step"]] = max(longest.get(row["step"], 0), row["length"])
    assert all(longest[step] <= cap for step, cap in zip((1, 2, 3), (16, 12, 8)))
    assert longest[1] > 12  # the random model runs to the cap: a cap that did not shrink would show
