"""``builtin:tiny``: a randomly initialised tiny Qwen2 model with an in-process BPE tokenizer.

Nothing is downloaded. The tokenizer is a byte-level BPE trained with ``tokenizers`` on
generated arithmetic word problems and ``<think>`` / ``\\boxed{}`` answers, so every text
round-trips and the think/answer split of the graders is exercised. The chat template is
ChatML-like and its generation prompt opens ``<think>\\n`` as DeepSeek-R1-distill models do.

The model and tokenizer are written once to ``<cache>/models/tiny-<hash>`` (see
:func:`cache_root`) and reused; building takes well under a second.

>>> render_chat([{"role": "user", "content": "1+1?"}], add_generation_prompt=True)
'<|im_start|>user\\n1+1?<|im_end|>\\n<|im_start|>assistant\\n<think>\\n'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from egrc_lite.config import TinyModelConfig
from egrc_lite.runs import respect_umask

logger = logging.getLogger(__name__)

TINY_SEED = 0
TINY_FORMAT_VERSION = 5  # bump when the builder changes, so stale caches are not reused

BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
THINK_TOKENS = ["<think>", "</think>"]
SPECIAL_TOKENS = [PAD, BOS, EOS, *THINK_TOKENS]

QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n<think>\\n' }}{%- endif -%}"
)


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """What :data:`CHAT_TEMPLATE` renders, in plain Python (used for the tokenizer's corpus and docs)."""
    text = "".join(f"{BOS}{m['role']}\n{m['content']}{EOS}\n" for m in messages)
    return text + (f"{BOS}assistant\n<think>\n" if add_generation_prompt else "")


def cache_root() -> Path:
    """``$EGRC_CACHE`` if set, else ``~/.cache/egrc-lite``."""
    env = os.environ.get("EGRC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "egrc-lite"


def _corpus(n: int = 600, seed: int = TINY_SEED) -> list[str]:
    """Chat-formatted arithmetic dialogues with think content and boxed answers."""
    from egrc_lite.config import DEFAULT_PROMPT_SUFFIX
    from egrc_lite.data import arithmetic_problems

    rng = random.Random(seed)
    texts = []
    for p in arithmetic_problems(n, seed):
        # connector words ("wait", "so", "therefore", "now", "then") appear as whole tokens, whatever the wordings
        think = rng.choice(["Let me add.", "So the answer is", "Wait, check again.", "Therefore", "First, compute.",
                            "I have it now.", "Add them, then check."])
        answer = f"{think} {p.answer}\n</think>\nThe answer is \\boxed{{{p.answer}}}."
        user = f"{p.problem}\n{DEFAULT_PROMPT_SUFFIX}"
        texts.append(render_chat([{"role": "user", "content": user}], add_generation_prompt=True) + answer + EOS)
    texts += [str(i) for i in range(200)]
    return texts


def tiny_key(shapes: TinyModelConfig) -> str:
    """Short hash of everything that determines the built model (shapes, seed, builder version)."""
    payload = json.dumps([shapes.model_dump(), TINY_SEED, TINY_FORMAT_VERSION], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def build_tokenizer(vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with the chat template, eos and pad set."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # The same normaliser and pre-tokeniser as transformers' Qwen2Tokenizer, which AutoTokenizer
    # picks for a qwen2 checkpoint: the saved tokenizer then encodes identically however it is loaded.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    # Like R1-distill: <think> and </think> are single tokens but not special, so decoding with
    # skip_special_tokens=True (as TRL does) keeps them in the completion text.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=EOS, pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_model(shapes: TinyModelConfig, tokenizer):
    """A randomly initialised ``Qwen2ForCausalLM`` (seeded) sized to ``tokenizer``."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shapes.hidden_size,
        num_hidden_layers=shapes.num_hidden_layers,
        num_attention_heads=shapes.num_attention_heads,
        num_key_value_heads=shapes.num_key_value_heads,
        intermediate_size=shapes.intermediate_size,
        max_position_embeddings=shapes.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(TINY_SEED)
        model = Qwen2ForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    return model


def ensure_tiny(shapes: TinyModelConfig) -> Path:
    """The cache directory holding the tiny model and tokenizer, building it on first use.

    Concurrent builders (e.g. two ``accelerate`` ranks) each write a temp folder and rename it;
    the first rename wins and the others discard theirs.
    """
    target = cache_root() / "models" / f"tiny-{tiny_key(shapes)}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    def build() -> tuple[Any, Any]:
        tokenizer = build_tokenizer(shapes.vocab_size)
        return build_model(shapes, tokenizer), tokenizer

    publish_checkpoint(target, build)
    logger.info("builtin:tiny is in %s", target)
    return target


def publish_checkpoint(target: Path, build: Callable[[], tuple[Any, Any]]) -> Path:
    """Save the ``(model, tokenizer)`` that ``build`` returns into ``target`` atomically.

    Concurrent builders (e.g. two ``accelerate`` ranks) each write a temp folder and rename it;
    the first rename wins and the others discard theirs.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model, tokenizer = build()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        respect_umask(tmp)  # mkdtemp is 0700, safetensors 0600
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
