"""What the training tests on builtin:tiny share: their config, nested overrides and fixed reward functions."""

from __future__ import annotations

from egrc_lite.config import EgrcConfig


def merge_dicts(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, section by section (neither is changed)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def tiny_config(compress_steps: int, explore_steps: int, train_defaults: dict, /, **over) -> EgrcConfig:
    """builtin:tiny on 32 built-in problems: compress (L 12) then explore (L 6), G 4, 2 prompts a step,
    learning rate 1e-2, with ``train_defaults`` and then ``over`` merged in."""
    base = {
        "model": {"name_or_path": "builtin:tiny"},
        "data": {"builtin_size": 32},
        "schedule": {"stages": [{"mode": "compress", "steps": compress_steps, "length_clip": 12},
                                {"mode": "explore", "steps": explore_steps, "length_clip": 6}]},
        "train": {"num_generations": 4, "prompts_per_step": 2, "learning_rate": 1e-2, **train_defaults},
    }
    return EgrcConfig.model_validate(merge_dicts(base, over))


class FixedReward:
    """A TRL reward function returning queued reward lists, one per call (the last repeats)."""

    def __init__(self, *batches: list[float], name: str = "fixed") -> None:
        self.batches, self.calls, self.__name__ = list(batches), 0, name

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        batch = self.batches[min(self.calls, len(self.batches) - 1)]
        self.calls += 1
        return list(batch)[: len(completions)]


class EvenReward:
    """Reward 0.5 for every even completion, 0 for the others: the compress stage keeps half, and every
    step updates the adapter."""

    __name__ = "fixed"

    def __call__(self, prompts=None, completions=None, **kwargs):
        return [0.5 if i % 2 == 0 else 0.0 for i in range(len(completions))]
