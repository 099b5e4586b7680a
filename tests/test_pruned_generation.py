"""Sampling with finished rows dropped from the batch (``egrc_lite.generate.pruned``) against transformers
``generate``, on builtin:tiny: the same tokens wherever the random draws line up, a fallback otherwise."""

from __future__ import annotations

import pytest
import torch

from egrc_lite.config import EgrcConfig
from egrc_lite.generate.pruned import generate_pruned, pruning_plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = torch.tensor([[0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [0, 0, 0, 20, 21, 22], [30, 31, 32, 33, 34, 35]])
MASK = (PROMPTS != 0).long()


@pytest.fixture(scope="module")
def tiny():
    from egrc_lite.backends.hf import load_policy

    torch.manual_seed(0)
    model, tok, _ = load_policy(EgrcConfig.model_validate({"model": {"name_or_path": "builtin:tiny"}}))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    model.eval()
    return model, tok


def _both(model, seed: int = 0, **kwargs):
    outs = []
    for fn in (lambda **kw: model.generate(**kw), lambda **kw: generate_pruned(model, **kw)):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(fn(input_ids=PROMPTS, attention_mask=MASK, **kwargs))
    return outs


def _eos_often(model, eos: int, bias: float):
    column = torch.zeros(model.config.vocab_size)
    column[eos] = bias
    return model.get_output_embeddings().register_forward_hook(lambda module, args, out: out + column)


def test_same_tokens_as_generate_when_no_row_ends_early(tiny):
    model, tok = tiny
    never = model.config.vocab_size - 1  # an EOS the model does not sample here: nothing is pruned
    hf, pruned = _both(model, max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9, top_k=0,
                       eos_token_id=never, pad_token_id=0)
    assert hf.shape == pruned.shape == (4, 6 + 12)
    assert torch.equal(hf, pruned)


def test_greedy_and_top_k_1_match_generate_while_rows_end(tiny):
    """Deterministic choices make the draws irrelevant: the pruned batch must give each row exactly what
    generate gives it, EOS included, padding after it, while rows end at different steps."""
    model, tok = tiny
    eos = tok.eos_token_id
    hook = _eos_often(model, eos, 0.5)
    try:
        for kwargs in ({"do_sample": False}, {"do_sample": True, "top_k": 1, "temperature": 1.3}):
            hf, pruned = _both(model, max_new_tokens=16, eos_token_id=eos, pad_token_id=0, **kwargs)
            ends = [(row == eos).nonzero().flatten()[:1].tolist() for row in hf[:, 6:]]
            assert torch.equal(hf, pruned), kwargs
            assert len({tuple(e) for e in ends}) > 1, ends  # rows did end at different steps
    finally:
        hook.remove()


def test_sampled_rows_end_with_eos_and_pad_after_it(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    hook = _eos_often(model, eos, 0.5)
    try:
        torch.manual_seed(1)
        out = generate_pruned(model, PROMPTS, MASK, max_new_tokens=20, do_sample=True, temperature=1.0,
                              eos_token_id=eos, pad_token_id=0)
    finally:
        hook.remove()
    assert torch.equal(out[:, :6], PROMPTS)
    ended = 0
    for row in out[:, 6:].tolist():
        if eos in row:
            ended += 1
            assert set(row[row.index(eos) + 1:]) <= {0}
    assert 0 < ended


def test_unsupported_settings_fall_back_to_generate(tiny):
    model, tok = tiny
    _, _, reason = pruning_plan(model, max_new_tokens=4, num_beams=2, do_sample=False)
    assert reason == "beam search"
    _, _, reason = pruning_plan(model, max_new_tokens=4, do_sample=True, no_repeat_ngram_size=2)
    assert reason == "logits processors NoRepeatNGramLogitsProcessor"
    hf, pruned = _both(model, max_new_tokens=5, num_beams=2, do_sample=False, eos_token_id=tok.eos_token_id,
                       pad_token_id=0)
    assert torch.equal(hf, pruned)


@pytest.mark.parametrize("drop", [True, False])
def test_trainer_rollouts_drop_finished_rows_when_asked(tmp_path, monkeypatch, drop):
    from egrc_lite.config import StageConfig
    from egrc_lite.data import load_problems, to_prompt_dataset
    from egrc_lite.generate import pruned
    from egrc_lite.train import trainer as training

    calls = []
    real = pruned.generate_pruned
    monkeypatch.setattr(pruned, "generate_pruned", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = EgrcConfig.model_validate({
        "model": {"name_or_path": "builtin:tiny"}, "data": {"builtin_size": 8},
        "train": {"num_generations": 2, "prompts_per_step": 2, "save_steps": 100, "drop_finished_rows": drop}})
    from egrc_lite.backends.hf import load_policy

    model, tok, _ = load_policy(cfg)
    dataset = to_prompt_dataset(load_problems(cfg.data), cfg.data)
    trainer = training.build_trainer(cfg, StageConfig(mode="compress", steps=1, length_clip=6), model, tok, dataset,
                                     output_dir=str(tmp_path), reward_funcs=[lambda completions=None, **kw: [0.5] * len(completions)])
    trainer.train()
    assert len(calls) == (1 if drop else 0)
    assert "generate" not in vars(model)  # the patch is gone after the rollout
