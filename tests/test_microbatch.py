"""Micro-batches grouped by completion length and cut to it (``egrc_lite.train.microbatch``, ``train.group_by_length``).

The regrouping must keep every row whole (each entry of a row moves with it), cut only columns that
are padding in every row of a micro-batch, leave prompts and unknown batches alone, and give the
same training update as TRL's own split.
"""

from __future__ import annotations

import pytest
import torch

from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.train import trainer as training
from egrc_lite.train.microbatch import MEASURE, group_by_length, loss_rows, sample_dropped

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batches(lengths: list[int], per_batch: int, width: int = 10) -> list[dict]:
    """TRL-shaped micro-batches: row i has a completion of ``lengths[i]`` tokens, every entry tagged with i."""
    rows = []
    for i, n in enumerate(lengths):
        mask = torch.zeros(width, dtype=torch.long)
        mask[:n] = 1
        rows.append({"prompt_ids": torch.full((4,), i), "prompt_mask": torch.ones(4, dtype=torch.long),
                     "completion_ids": torch.where(mask.bool(), 100 + i, 0), "completion_mask": mask,
                     "old_per_token_logps": torch.full((width,), -float(i)) * mask, "advantages": torch.tensor(float(i))})
    out = []
    for start in range(0, len(rows), per_batch):
        part = rows[start:start + per_batch]
        batch = {key: torch.stack([r[key] for r in part]) for key in part[0]}
        batch["num_items_in_batch"] = torch.tensor(float(sum(lengths)))
        out.append(batch)
    return out


def test_rows_regrouped_longest_first_and_cut_to_their_longest():
    lengths = [3, 10, 1, 6, 2, 9, 0, 4]
    out = group_by_length(_batches(lengths, per_batch=2))
    assert [b["completion_ids"].shape for b in out] == [(2, 10), (2, 6), (2, 3), (2, 1)]
    seen = []
    for batch in out:
        assert batch["num_items_in_batch"].item() == sum(lengths)  # shared, not split
        for r in range(2):
            i = int(batch["advantages"][r])
            seen.append(i)
            assert torch.equal(batch["prompt_ids"][r], torch.full((4,), i))  # prompts move with their row, whole
            assert batch["prompt_ids"].shape == (2, 4)
            n = lengths[i]
            assert int(batch["completion_mask"][r].sum()) == n  # no real token is cut
            assert torch.equal(batch["completion_ids"][r][:n], torch.full((n,), 100 + i))
            assert torch.equal(batch["old_per_token_logps"][r][:n], torch.full((n,), -float(i)))
    assert sorted(seen) == list(range(8))
    assert [lengths[i] for i in seen] == sorted(lengths, reverse=True)


def test_a_fully_masked_micro_batch_keeps_one_column():
    out = group_by_length(_batches([0, 0, 5, 0], per_batch=2))
    assert [b["completion_mask"].shape[1] for b in out] == [5, 1]


def test_unknown_entries_leave_trls_split_alone():
    batches = _batches([3, 1, 2, 4], per_batch=2)
    for batch in batches:
        batch["pixel_values"] = torch.zeros(2, 3)
    assert group_by_length(batches) is batches
    assert group_by_length([]) == []


def test_rows_with_loss_weight_come_first():
    batches = _batches([3, 10, 1, 6], per_batch=2)
    for batch in batches:
        batch["tool_mask"] = torch.ones_like(batch["completion_mask"])
    batches[1]["tool_mask"][0] = 0  # row 2 (length 1) is dropped by the advantage rule... but row 1 is kept
    batches[0]["tool_mask"][1] = 0  # ...and row 1 (length 10) is dropped too
    out = group_by_length(batches)
    assert [int(a) for b in out for a in b["advantages"]] == [3, 0, 1, 2]
    assert [b["completion_mask"].size(1) for b in out] == [6, 10]
    assert loss_rows(out[0]).tolist() == [True, True] and loss_rows(out[1]).tolist() == [False, False]


def test_dropped_rows_sampled_for_entropy_with_weights_that_add_up():
    batches = _batches([3, 10, 1, 6, 2, 9], per_batch=2)
    for batch in batches:
        batch["tool_mask"] = torch.ones_like(batch["completion_mask"])
    batches[0]["tool_mask"][0] = 1  # row 0 keeps its loss weight; the other five are dropped
    for batch in batches[1:]:
        batch["tool_mask"].zero_()
    batches[0]["tool_mask"][1] = 0
    every = sample_dropped(batches, None)
    assert [b[MEASURE].tolist() for b in every] == [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    assert [b[MEASURE].tolist() for b in sample_dropped(batches, 5)] == [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    for seed in range(5):
        some = torch.cat([b[MEASURE] for b in sample_dropped(batches, 2, torch.Generator().manual_seed(seed))])
        assert some[0] == 0 and sorted(some.tolist()) == [0.0] * 4 + [2.5, 2.5]  # 2 of 5 stand for 5
    assert "completion_ids" in every[0] and MEASURE not in batches[0]


def tiny_cfg(group: bool, dropped_entropy_rows: int | None = None) -> EgrcConfig:
    return EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 16},
        "train": {"num_generations": 4, "prompts_per_step": 2, "gradient_accumulation_steps": 4, "save_steps": 100,
                  "learning_rate": 1e-2, "group_by_length": group},
        "analysis": {"dropped_entropy_rows": dropped_entropy_rows}})


EOS_BIAS = 3.5


def _eos_column(logits: torch.Tensor, eos: int) -> torch.Tensor:
    column = torch.zeros(logits.size(-1), dtype=logits.dtype)
    column[eos] = 1.0
    return column


def _train(tmp_path, group: bool, rewards=(0.5, 0.0, 0.0, 0.0), dropped_entropy_rows: int | None = None):
    """Two compress steps of builtin:tiny (eight completions in four micro-batches); ``rewards`` repeat over
    each step's completions. Returns the rows and width of each loss micro-batch, the losses, the step
    metrics and the adapter."""
    from transformers import TrainerCallback

    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = tiny_cfg(group, dropped_entropy_rows)
    torch.manual_seed(1)
    model, tok, _ = load_policy(cfg)
    with torch.no_grad():  # a random B, so the first rollout already comes from a non-trivial adapter
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    eos = tok.eos_token_id  # builtin:tiny rarely ends early: raise its EOS logit, so completion lengths vary
    model.get_output_embeddings().register_forward_hook(lambda module, args, out: out + EOS_BIAS * _eos_column(out, eos))
    stage = StageConfig(mode="compress", steps=2, length_clip=24)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(
        cfg, stage, model, tok, dataset, output_dir=str(tmp_path / str(group)),
        reward_funcs=[lambda completions=None, **kw: [rewards[i % len(rewards)] for i in range(len(completions))]])
    shapes, stats, forward, measured = [], [], trainer._get_per_token_logps_and_entropies, []

    def logps(model, input_ids, *args, **kwargs):
        if torch.is_grad_enabled():
            shapes.append((input_ids.size(0), args[1] if len(args) > 1 else kwargs["logits_to_keep"]))
        return forward(model, input_ids, *args, **kwargs)

    add = trainer._egrc_add_entropies

    def add_entropies(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        before = trainer._egrc_entropy[1]  # the step's token count so far
        out = add(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs)
        if not torch.is_grad_enabled():  # a dropped rows' forward: its tokens count weight times
            weight = kwargs.get("weight", 1.0)
            tokens = int(attention_mask[:, -logits_to_keep:].sum())
            assert trainer._egrc_entropy[1] - before == pytest.approx(weight * tokens)
            measured.append((input_ids.size(0), weight))
        return out

    trainer._egrc_add_entropies = add_entropies

    class Stats(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stats.append(trainer.egrc_pop_step_stats())

    trainer._get_per_token_logps_and_entropies = logps
    trainer.add_callback(Stats())
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return shapes, losses, stats, state, measured


def test_training_update_is_the_same_grouped_or_not(tmp_path):
    """Two steps of four micro-batches, TRL's split vs grouped (rows with loss weight only, cut to their
    length): the same losses, metrics and adapter up to float summation order, for far less loss work."""
    shapes_on, loss_on, stats_on, state_on, measured = _train(tmp_path, True)
    shapes_off, loss_off, stats_off, state_off, _ = _train(tmp_path, False)
    assert measured == [(2, 1.0)] * 6  # per step, the 6 dropped rows, in the 3 micro-batches after the kept ones
    assert len(shapes_off) == 8 and {rows for rows, _ in shapes_off} == {2}
    assert [rows for rows, _ in shapes_on] == [2, 2]  # per step, the 2 kept rows of 8, in one micro-batch
    assert all(width <= shapes_off[0][1] for _, width in shapes_on)
    assert sum(w for _, w in shapes_on) < sum(w for _, w in shapes_off[::4]), (shapes_on, shapes_off)  # cut
    assert loss_on == pytest.approx(loss_off, rel=1e-5, abs=1e-7)
    assert len(stats_on) == len(stats_off) == 2
    for on, off in zip(stats_on, stats_off):  # the entropies of dropped rows are still measured
        assert on.keys() == off.keys() and "entropy/mean" in on
        assert on == pytest.approx(off, rel=1e-5, abs=1e-7, nan_ok=True)
    for name, value in state_off.items():
        torch.testing.assert_close(state_on[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_a_step_where_nothing_trains_runs_no_loss_forward(tmp_path):
    shapes, losses, stats, _, _ = _train(tmp_path, True, rewards=(0.0,))
    assert shapes == [] and losses == [0.0, 0.0]
    assert all(s["skipped_update"] == 1.0 and s["entropy/mean"] > 0 for s in stats)


def test_a_sample_of_dropped_rows_stands_for_all_of_them(tmp_path):
    """analysis.dropped_entropy_rows=2: two of each step's six dropped rows get an entropy forward, weighted 3;
    the update is unchanged and the entropy is an estimate near the exact one."""
    shapes_all, loss_all, stats_all, state_all, _ = _train(tmp_path / "all", True)
    shapes, losses, stats, state, measured = _train(tmp_path / "two", True, dropped_entropy_rows=2)
    assert sum(n for n, _ in measured) == 4 and {w for _, w in measured} == {3.0}
    assert shapes == shapes_all and losses == pytest.approx(loss_all, rel=1e-6)
    for name, value in state_all.items():
        torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-6, msg=name)
    for exact, estimate in zip(stats_all, stats):
        assert estimate["entropy/mean"] == pytest.approx(exact["entropy/mean"], rel=0.5)
