"""``train.loss_aggregation`` (method.md s2): the mean over all kept tokens (default) or per kept sequence.

Hand-computed values on tiny tensors and on ``builtin:tiny`` (CPU, seconds): the mask and count the
trainer hands to TRL, the loss and gradient of a hand-made batch, micro-batches and processes (TRL's
"dapo" formula with a global count), and gradient accumulation 1 vs 2 vs 4 in ``trainer.train()``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.presets import resolve
from egrc_lite.train import trainer as training
from egrc_lite.train.loss_mask import SCORED, kept_loss_mask
from tiny_training import FixedReward, merge_dicts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = [3, 5, 2, 4, 6, 1, 3, 2]
REWARDS = [0.0, 0.5, 0.8, 0.0, 0.0, -0.1, 0.3, 0.0]  # compress, beta 2: kept rows 1, 2, 6 with A = 1.0, 1.6, 0.6
KEPT = {1: 1.0, 2: 1.6, 6: 0.6}


# ---------------------------------------------------------------------------- helpers (as in test_training)


def tiny_cfg(**over) -> EgrcConfig:
    base = {
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"builtin_size": 32},
        "schedule": {"stages": [{"mode": "compress", "steps": 1, "length_clip": 8}]},
        "train": {"num_generations": 4, "prompts_per_step": 2, "learning_rate": 1e-2, "num_samples_logged": 0,
                  "max_grad_norm": 1e9},  # gradients are compared before the optimiser: no clipping
    }
    return EgrcConfig.model_validate(merge_dicts(base, over))


def make_trainer(tmp_path, mode: str, rewards: list[list[float]], *, cfg: EgrcConfig | None = None, steps: int = 1,
                 beta: float = 2.0, trainer_class: type | None = None, overrides: dict | None = None, **stage_kw):
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = cfg or tiny_cfg()
    model, tokenizer, _ = load_policy(cfg)
    stage = StageConfig(mode=mode, steps=steps, length_clip=8, beta=beta, **stage_kw)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, stage, model, tokenizer, dataset, output_dir=str(tmp_path / "out"),
                                     reward_funcs=[FixedReward(*rewards)], trainer_class=trainer_class,
                                     **(overrides or {}))
    return trainer, model, tokenizer


def fix_generation(trainer, tokenizer, lengths: list[int], *, token_offset: int = 10, dropped_offset=None) -> None:
    """Every rollout of ``trainer`` returns completions of ``lengths`` tokens (each ends with EOS); rows
    whose reward drops them may get other tokens (``dropped_offset``, rows not in ``KEPT``)."""
    eos = tokenizer.eos_token_id

    def row(i: int, n: int) -> list[int]:
        offset = dropped_offset if dropped_offset is not None and i not in KEPT else token_offset
        return [offset + (j % 50) for j in range(n - 1)] + [eos]

    completions = [row(i, n) for i, n in enumerate(lengths)]

    def fake_generate(prompts):
        texts = [[{"role": "assistant", "content": f"c{i}"}] for i in range(len(prompts))]
        return [[5, 6, 7]] * len(prompts), completions[: len(prompts)], None, texts, None, {}, None, None

    trainer._generate = fake_generate


def handmade(trainer, tokenizer, lengths: list[int], **kw):
    """Run the scoring seam once on fixed completions (as ``test_training._handmade``)."""
    fix_generation(trainer, tokenizer, lengths, **kw)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = [{"prompt": [{"role": "user", "content": "q"}], "answer": "1", "id": f"p{i}"} for i in range(len(lengths))]
    return trainer._generate_and_score_completions(inputs)


def lora_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def lora_grads(model) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model.named_parameters() if p.requires_grad}


def expected_loss(trainer, model, batch: dict, aggregation: str) -> torch.Tensor:
    """The step loss written out from method.md s2 at ratio 1 (``-A * log pi`` per token, value and gradient):
    token ``-(1/N_kept) sum_i A_i sum_t logp``; sequence ``-(1/S_kept) sum_i A_i / |o_i| sum_t logp``."""
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    width = batch["completion_ids"].size(1)
    logps = trainer._get_per_token_logps_and_entropies(model, ids, attention, width)[0]  # [B, T]
    kept = batch["tool_mask"].amax(dim=1) > 0  # [B]
    mask = batch["completion_mask"].float()  # [B, T]
    per_row = (logps * mask).sum(dim=1)  # [B] sum_t log pi
    adv = batch["advantages"].float()
    if aggregation == "token":
        return -(adv * per_row)[kept].sum() / mask[kept].sum()
    return -(adv * per_row / mask.sum(dim=1))[kept].sum() / kept.sum()


def max_diff(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


def max_abs(a: dict) -> float:
    return max(t.abs().max().item() for t in a.values())


# ---------------------------------------------------------------------------- tiny tensors


def test_kept_loss_mask_by_hand_with_tool_tokens_and_padding():
    cm = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])  # completion (attention) mask
    tool = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])  # row 0: token 1 is a tool result
    keep = torch.tensor([True, False, True])
    mask, n = kept_loss_mask(cm, tool, keep, "token", lambda x: x)
    assert (mask * cm).tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]] and int(n) == 2 + 4
    mask, n = kept_loss_mask(cm, tool, keep, "sequence", lambda x: x)
    assert (mask * cm).tolist() == [[0.5, 0, 0.5, 0], [0, 0, 0, 0], [0.25] * 4] and int(n) == 2
    with pytest.raises(ValueError, match="unknown loss aggregation 'batch'"):
        kept_loss_mask(cm, tool, keep, "batch", lambda x: x)


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_processes_and_micro_batches_add_up_to_the_step_mean(aggregation):
    """TRL's dapo loss per micro-batch, ``sum(l * mask) / (num_items / P)``, summed over micro-batches and averaged
    over processes (DDP), is the hand-written step mean for any split, because the count is global."""
    gen = torch.Generator().manual_seed(0)
    lengths = [3, 5, 2, 4, 6, 1, 3, 2]
    cm = torch.tensor([[1] * n + [0] * (6 - n) for n in lengths])  # [8, 6]
    keep = torch.tensor([False, True, True, False, False, False, True, True])  # uneven over every split
    loss = torch.randn(8, 6, generator=gen)  # per-token terms l[i, t]
    rows = [i for i in range(8) if keep[i]]
    if aggregation == "token":
        by_hand = sum(loss[i, :lengths[i]].sum() for i in rows) / sum(lengths[i] for i in rows)
    else:
        by_hand = sum(loss[i, :lengths[i]].mean() for i in rows) / len(rows)
    for processes, micro in ((1, 1), (1, 2), (2, 1), (2, 2), (4, 2)):
        shards = [list(range(8))[r::processes] for r in range(processes)]  # rows of each process
        local = [kept_loss_mask(cm[s], None, keep[s], aggregation, lambda x: x)[1] for s in shards]
        total = torch.stack(local).sum()  # what accelerator.gather(x).sum() returns on every process
        step = 0.0
        for shard in shards:
            mask, n = kept_loss_mask(cm[shard], None, keep[shard], aggregation, lambda x, t=total: t)
            for part in torch.tensor(shard).chunk(micro):  # micro-batches of this process
                rows_mb = [shard.index(i) for i in part.tolist()]
                step = step + (loss[part] * cm[part] * mask[rows_mb]).sum() / (n.clamp(min=1.0) / processes)
        step = step / processes  # DDP averages the processes' gradients
        assert float(step) == pytest.approx(float(by_hand), abs=1e-6), (processes, micro)


# ---------------------------------------------------------------------------- the trainer's seam


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_scored_batch_loss_by_hand(tmp_path, aggregation):
    trainer, model, tok = make_trainer(tmp_path, "compress", [REWARDS], cfg=tiny_cfg(
        train={"loss_aggregation": aggregation}))
    out = handmade(trainer, tok, LENGTHS)
    assert bool(out[SCORED])
    weights = (out["tool_mask"] * out["completion_mask"]).amax(dim=1).tolist()
    loss = trainer.compute_loss(model, out).item()  # ratio 1: each kept token contributes -A
    if aggregation == "token":
        assert weights == [0, 1, 1, 0, 0, 0, 1, 0]
        assert int(out["num_items_in_batch"]) == 5 + 2 + 3
        assert loss == pytest.approx(-(1.0 * 5 + 1.6 * 2 + 0.6 * 3) / 10, abs=1e-5)
    else:
        assert weights == pytest.approx([0, 1 / 5, 1 / 2, 0, 0, 0, 1 / 3, 0])
        assert int(out["num_items_in_batch"]) == 3  # kept samples
        assert loss == pytest.approx(-(1.0 + 1.6 + 0.6) / 3, abs=1e-5)


@pytest.mark.parametrize("mode,rewards", [("compress", REWARDS), ("explore", [1.1, 0.0, 0.1, 0.0, 0.5, 0.9, 0.2, 0.5])])
@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_gradient_is_the_hand_written_mean(tmp_path, mode, rewards, aggregation):
    trainer, model, tok = make_trainer(tmp_path, mode, [rewards], cfg=tiny_cfg(train={"loss_aggregation": aggregation}))
    out = handmade(trainer, tok, LENGTHS)
    model.zero_grad()
    trainer.compute_loss(model, out).backward()
    got = lora_grads(model)
    model.zero_grad()
    expected_loss(trainer, model, out, aggregation).backward()
    want = lora_grads(model)
    assert max_abs(want) > 1e-6
    assert max_diff(got, want) < 1e-5 * max_abs(want) + 1e-9


def test_the_two_aggregations_give_different_gradients(tmp_path):
    grads = {}
    for aggregation in ("token", "sequence"):
        torch.manual_seed(0)
        trainer, model, tok = make_trainer(tmp_path / aggregation, "compress", [REWARDS],
                                           cfg=tiny_cfg(train={"loss_aggregation": aggregation}))
        out = handmade(trainer, tok, LENGTHS)
        model.zero_grad()
        trainer.compute_loss(model, out).backward()
        grads[aggregation] = lora_grads(model)
    assert max_diff(grads["token"], grads["sequence"]) > 1e-3 * max_abs(grads["token"])


# ---------------------------------------------------------------------------- gradient accumulation in train()


def _train_one_step(tmp_path, aggregation: str, accum: int):
    """One real optimiser step on fixed completions; the gradient before the update, the generation's batch and
    the hand-computed gradient of that batch at the initial weights."""
    from transformers import TrainerCallback

    torch.manual_seed(0)  # the same model and LoRA initialisation in every arm
    cfg = tiny_cfg(train={"loss_aggregation": aggregation, "gradient_accumulation_steps": accum, "optim": "sgd"})
    trainer, model, tok = make_trainer(tmp_path / f"{aggregation}-{accum}", "compress", [REWARDS], cfg=cfg)
    fix_generation(trainer, tok, LENGTHS)
    start = lora_state(model)
    seen: dict = {}
    scored = trainer._generate_and_score_completions
    trainer._generate_and_score_completions = lambda inputs: seen.setdefault("batch", scored(inputs))

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            seen["grad"] = lora_grads(model)

    trainer.add_callback(Grab())
    trainer.train()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in start:
                param.copy_(start[name])
    model.zero_grad()
    expected_loss(trainer, model, seen["batch"], aggregation).backward()
    return seen["grad"], lora_grads(model)


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
def test_accumulation_1_2_4_give_the_hand_computed_gradient(tmp_path, aggregation):
    """3 kept samples of 8: every split over 2 or 4 micro-batches is uneven, so a micro-batch count would show."""
    got = {accum: _train_one_step(tmp_path, aggregation, accum) for accum in (1, 2, 4)}
    reference = got[1][1]
    assert max_abs(reference) > 1e-6
    for accum, (grad, by_hand) in got.items():
        assert max_diff(by_hand, reference) < 1e-6 * max_abs(reference) + 1e-10  # same start, same batch
        assert max_diff(grad, by_hand) < 1e-5 * max_abs(reference), (aggregation, accum)


# ---------------------------------------------------------------------------- config and preset


def test_config_key_and_seq_mean_overlay():
    assert tiny_cfg().train.loss_aggregation == "token"
    with pytest.raises(Exception, match="loss_aggregation"):
        tiny_cfg(train={"loss_aggregation": "batch"})
    for base in ("default", "smoke", "r1-1.5b"):
        plain, seq = resolve(base), resolve([base, "ablations/seq-mean"])
        assert seq.train.loss_aggregation == "sequence"
        assert seq.model_copy(update={"train": plain.train}) == plain
        assert seq.train.model_copy(update={"loss_aggregation": plain.train.loss_aggregation}) == plain.train


# ---------------------------------------------------------------------------- two processes (slow)


DIST_SCRIPT = textwrap.dedent("""
    import os
    import sys
    import torch
    from accelerate import PartialState
    from transformers import TrainerCallback

    sys.path.insert(0, sys.argv[1])
    from test_loss_aggregation import LENGTHS, REWARDS, lora_grads, tiny_cfg
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.config import StageConfig
    from egrc_lite.data import load_problems, to_prompt_dataset
    from egrc_lite.train import trainer as training

    out = sys.argv[2]
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))  # torchrun's
    torch.set_num_threads(1)

    def by_row(prompts=None, completions=None, completion_ids=None, **kwargs):
        return [REWARDS[ids[0] - 20] for ids in completion_ids]  # the row's reward, wherever it runs

    by_row.__name__ = "by_row"
    for aggregation in ("token", "sequence"):
        torch.manual_seed(0)
        cfg = tiny_cfg(train={"loss_aggregation": aggregation, "prompts_per_step": 2 // world, "optim": "sgd"})
        model, tok, _ = load_policy(cfg)
        stage = StageConfig(mode="compress", steps=1, length_clip=8, beta=2.0)
        dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
        trainer = training.build_trainer(cfg, stage, model, tok, dataset, output_dir=f"{out}/{aggregation}{rank}",
                                         reward_funcs=[by_row])
        rows = [[20 + i] + [10 + j for j in range(n - 1)] + [tok.eos_token_id] for i, n in enumerate(LENGTHS)]
        mine = rows[rank * 8 // world:(rank + 1) * 8 // world]

        def fake_generate(prompts, mine=mine):
            assert len(prompts) == len(mine), (len(prompts), len(mine))
            texts = [[{"role": "assistant", "content": "c"}] for _ in mine]
            return [[5, 6, 7]] * len(mine), mine, None, texts, None, {}, None, None

        trainer._generate = fake_generate

        class Grab(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, peft=model, aggregation=aggregation, **kw):
                torch.save(lora_grads(peft), f"{out}/{aggregation}-world{world}-rank{rank}.pt")

        trainer.add_callback(Grab())
        trainer.train()
        assert (PartialState().num_processes, PartialState().process_index) == (world, rank)
""")


@pytest.mark.slow
def test_two_processes_give_the_one_process_gradient(tmp_path):
    """1 process x 2 prompts vs 2 processes x 1 prompt, the same 8 completions: rank 0 keeps 2 samples (9 tokens),
    rank 1 keeps 1 (4 tokens), so a per-process count would weigh them differently. DDP's averaged gradient
    must equal the one-process gradient for both aggregations."""
    beside = Path(sys.executable).parent / "accelerate"
    launcher = str(beside) if beside.exists() else shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the accelerate launcher is not installed")
    script = tmp_path / "dist_grad.py"
    script.write_text(DIST_SCRIPT)
    tests_dir = str(Path(__file__).resolve().parent)
    path = os.pathsep.join([str(Path(tests_dir).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for cmd in ([sys.executable, str(script)],
                [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]):
        proc = subprocess.run([*cmd, tests_dir, str(tmp_path)], env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for aggregation in ("token", "sequence"):
        one = torch.load(tmp_path / f"{aggregation}-world1-rank0.pt")
        two = [torch.load(tmp_path / f"{aggregation}-world2-rank{r}.pt") for r in (0, 1)]
        assert max_abs(one) > 1e-6
        assert max_diff(two[0], two[1]) < 1e-7 * max_abs(one)  # DDP all-reduced
        assert max_diff(one, two[0]) < 1e-5 * max_abs(one), aggregation
