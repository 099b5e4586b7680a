"""KL to a reference (``kl_beta > 0``) across stages and resume, on builtin:tiny (CPU).

TRL adds a ``ref`` adapter, a copy of the trainable one, to the PEFT policy as each trainer is built.
Every stage must refer to the adapter it started from: the second stage's trainer must not find the
first one's ``ref`` (PEFT refuses a second adapter of that name), and a stage resumed mid-way must get
back the weights it started from, not the freshly loaded adapter or the checkpoint's.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from egrc_lite import train
from egrc_lite.config import EgrcConfig
from egrc_lite.runs import RunDir
from egrc_lite.train import rewards, runner as stage_runner, trainer as training
from tiny_training import EvenReward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def kl_cfg() -> EgrcConfig:
    return EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"builtin_size": 32},
        "schedule": {"stages": [{"mode": "compress", "steps": 2, "length_clip": 6, "kl_beta": 0.1},
                                {"mode": "explore", "steps": 3, "length_clip": 3, "kl_beta": 0.2}]},
        "train": {"num_generations": 4, "prompts_per_step": 2, "save_steps": 2, "learning_rate": 1e-2,
                  "num_samples_logged": 0},
    })


def adapter(model, name: str) -> dict[str, torch.Tensor]:
    """The LoRA weights of adapter ``name``, keyed as those of ``default``."""
    marker = f".{name}."
    return {n.replace(marker, ".default."): p.detach().clone() for n, p in model.named_parameters() if marker in n}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def spy(monkeypatch):
    """Per generation (= optimiser step): ``(mode, default adapter, ref adapter)`` as the step starts; the
    generation number ``crash_at`` raises instead (a crash mid-run)."""
    monkeypatch.setattr(rewards, "build_reward_funcs", lambda *a, **k: [EvenReward()])
    cls = training.make_trainer_class()
    original = cls._generate_and_score_completions
    seen: list[tuple[str, dict, dict]] = []
    crash = {"at": None}

    def recording(self, inputs):
        model = self.accelerator.unwrap_model(self.model)
        seen.append((self.egrc_mode, adapter(model, "default"), adapter(model, "ref")))
        if crash["at"] == len(seen):
            raise KeyboardInterrupt("simulated crash")
        return original(self, inputs)

    monkeypatch.setattr(cls, "_generate_and_score_completions", recording)
    return seen, crash


def test_two_stages_with_kl_each_refer_to_their_start(tmp_path, spy):
    seen, _ = spy
    run_dir = RunDir(tmp_path / "run")
    result = train.run_schedule(kl_cfg(), run_dir)  # today's code: "Adapter with name ref already exists"
    assert result["steps"] == 5 and [m for m, _, _ in seen] == ["compress"] * 2 + ["explore"] * 3
    starts = {0: seen[0][1], 2: seen[2][1]}  # the adapter as each stage starts (no update yet)
    assert not same(starts[0], starts[2])  # compression changed the adapter
    for i, (mode, default, ref) in enumerate(seen):
        assert ref, "no ref adapter: TRL computed the KL against the base model"
        assert same(ref, starts[0 if mode == "compress" else 2]), (i, mode)
    assert not same(seen[1][1], seen[1][2]) and not same(seen[3][1], seen[3][2])  # the policy moved off it
    for i, stage in enumerate(("compress", "explore")):
        saved = run_dir.stage_dir(i, stage) / stage_runner.REFERENCE_FILE
        assert saved.is_file(), saved
    assert not (run_dir.adapter_dir / "ref").exists()  # the final adapter holds the trained one only
    rows = run_dir.metrics.rows()
    assert [r["stage"] for r in rows] == ["compress"] * 2 + ["explore"] * 3


@pytest.mark.parametrize("checkpoint_ref", [True, False], ids=["checkpoint-with-ref", "checkpoint-without-ref"])
def test_mid_stage_resume_refers_to_the_stage_start_not_the_checkpoint(tmp_path, spy, checkpoint_ref):
    """transformers reloads a ``ref/`` adapter a checkpoint holds; without one (another saver, or pruned)
    TRL's copy of the freshly loaded adapter would be the reference: the stage folder's copy is loaded."""
    seen, crash = spy
    run_dir = RunDir(tmp_path / "run")
    crash["at"] = 5  # explore step 3; its latest checkpoint is explore step 2 (mid-stage)
    with pytest.raises(KeyboardInterrupt):
        train.run_schedule(kl_cfg(), run_dir)
    explore_start = seen[2][1]
    assert same(seen[2][2], explore_start)
    checkpoint = run_dir.stage_dir(1, "explore") / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    if not checkpoint_ref:
        shutil.rmtree(checkpoint / "ref")
    crash["at"] = None
    del seen[:]
    result = train.run_schedule(kl_cfg(), run_dir, resume=True)
    assert result["resumed_from"] == str(checkpoint) and result["steps"] == 5
    assert len(seen) == 1
    mode, default, ref = seen[0]
    assert mode == "explore" and not same(default, explore_start)  # the checkpoint's adapter (2 explore updates)
    assert same(ref, explore_start), "the reference is not the adapter the stage started from"
    assert not same(ref, default)


def test_a_resume_at_a_stage_boundary_refers_to_the_previous_stage_end(tmp_path, spy):
    seen, crash = spy
    run_dir = RunDir(tmp_path / "run")
    crash["at"] = 3  # explore step 1: the latest checkpoint ended compression
    with pytest.raises(KeyboardInterrupt):
        train.run_schedule(kl_cfg(), run_dir)
    explore_start = seen[2][1]
    crash["at"] = None
    del seen[:]
    train.run_schedule(kl_cfg(), run_dir, resume=True)
    assert [m for m, _, _ in seen] == ["explore"] * 3
    assert same(seen[0][1], explore_start) and all(same(ref, explore_start) for _, _, ref in seen)
