"""The generation interface every generator implements, and what they share.

A :class:`Generator` turns chat prompts into sampled completions::

    generate(prompts, n=, max_tokens=, temperature=, top_p=, seed=) -> list[list[Sample]]

one inner list of ``n`` samples per prompt, in prompt order. Each :class:`Sample` carries the
decoded text, the generated token ids (the end-of-sequence token left out), whether the length
cap cut it off, and how many of its tokens belong to the think part (up to and including
``</think>``; all of them when there is no ``</think>``).

>>> think_token_count([5, 6, 99, 7], close_ids=[99])
3
>>> think_token_count([5, 6, 7], close_ids=[99])
3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from egrc_lite.errors import EgrcError

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig

Messages = list[dict[str, str]]
THINK_CLOSE = "</think>"


class GenerationError(EgrcError, RuntimeError):
    """A backend or model that cannot be used for generation; one line naming the fix."""


class BatchProgress(Protocol):
    """What a loop over generation batches reports as it goes (evaluation per benchmark, analysis per
    phase); the CLI draws one progress bar from it. ``finish`` gets a summary of the phase."""

    def start(self, benchmark: str, total: int, reused: int) -> None: ...
    def advance(self, samples: int, tokens: int) -> None: ...
    def finish(self, benchmark: str, summary: dict[str, Any]) -> None: ...


class NullProgress:
    """Reports nothing (the default), so a loop never branches on whether anyone listens."""

    def start(self, benchmark: str, total: int, reused: int) -> None:
        pass

    def advance(self, samples: int, tokens: int) -> None:
        pass

    def finish(self, benchmark: str, summary: dict[str, Any]) -> None:
        pass


@dataclass
class Sample:
    """One sampled completion."""

    text: str
    token_ids: list[int] = field(repr=False)
    truncated: bool
    think_tokens: int

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def answer_tokens(self) -> int:
        return self.num_tokens - self.think_tokens


class Generator(Protocol):
    """What evaluation needs from a backend.

    A generator may also have ``request_chunk`` (an int): how many prompts it wants per ``generate``
    call (vllm: max(512, batch size), so its scheduler batches them). Evaluation writes records after
    each call; a generator without it gets ``--batch-size`` prompts per call (hf). Read it with
    :func:`request_chunk`.
    """

    name: str
    model_source: str

    def generate(self, prompts: Sequence[Messages], *, n: int, max_tokens: int, temperature: float,
                 top_p: float, seed: int) -> list[list[Sample]]:
        """``n`` samples for each chat prompt (a list of ``{"role", "content"}`` messages)."""
        ...  # pragma: no cover


def request_chunk(generator: Generator, default: int) -> int:
    """Prompts ``generator`` wants per ``generate`` call: its ``request_chunk`` when it sets one, else ``default``.

    >>> class Engine:
    ...     request_chunk = 512
    >>> request_chunk(Engine(), 8), request_chunk(object(), 8)
    (512, 8)
    """
    chunk = getattr(generator, "request_chunk", None)
    return chunk if isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1 else default


def think_token_count(token_ids: Sequence[int], close_ids: Sequence[int]) -> int:
    """Tokens up to and including the first ``</think>`` (given as its token ids); all when absent."""
    k = len(close_ids)
    if k == 0:
        return len(token_ids)
    for i in range(len(token_ids) - k + 1):
        if list(token_ids[i:i + k]) == list(close_ids):
            return i + k
    return len(token_ids)


def encode_prompt(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of the chat template with the assistant turn opened (method.md s6), for every generator.

    A tokenizer without a chat template gets the messages' contents, one per line.
    """
    if not getattr(tokenizer, "chat_template", None):
        text = "\n".join(m["content"] for m in messages) + "\n"
    else:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_prompts_fit(prompts: Sequence[Messages], encoded: Sequence[Sequence[int]], positions: int | None,
                      what: str = "model's context") -> None:
    """Raise :class:`GenerationError` when a prompt leaves no room for a response in ``positions`` tokens,
    before anything is allocated for it (a longer prompt would be generated with a 1-token budget).

    >>> check_prompts_fit([[{"role": "user", "content": "a very long problem"}]], [[1] * 8], 8)
    Traceback (most recent call last):
    ...
    egrc_lite.generate.base.GenerationError: 1 prompt does not fit the model's context of 8 tokens with room for a response (the longest has 8 tokens, e.g. 'a very long problem'); drop such problems (e.g. from the JSONL) or use a model with a longer context
    """
    if not positions:
        return
    over = [i for i, ids in enumerate(encoded) if len(ids) >= positions]
    if over:
        longest = max(over, key=lambda i: len(encoded[i]))
        content = prompts[longest][-1]["content"] if prompts[longest] else ""
        head = content[:60] + ("..." if len(content) > 60 else "")
        raise GenerationError(
            f"{len(over)} prompt{'s do' if len(over) > 1 else ' does'} not fit the {what} of {positions} tokens "
            f"with room for a response (the longest has {len(encoded[longest])} tokens, e.g. {head!r}); drop such "
            "problems (e.g. from the JSONL) or use a model with a longer context")


def think_close_ids(tokenizer: Any) -> list[int]:
    """The token ids of ``</think>`` when the tokenizer round-trips it, else ``[]`` (no think part)."""
    close = tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
    return close if tokenizer.decode(close) == THINK_CLOSE else []


def load_model_tokenizer(cfg: EgrcConfig) -> tuple[str, str, Any]:
    """``(local path, source description, tokenizer)`` of the model of ``cfg``, for a generation backend;
    loading problems become one-line :class:`GenerationError` s."""
    from egrc_lite.backends import BackendError
    from egrc_lite.backends.sources import load_tokenizer, resolve_model_source

    try:
        path, source = resolve_model_source(cfg)
        return path, source, load_tokenizer(path, cfg)
    except BackendError as err:
        raise GenerationError(str(err)) from None
    except OSError as err:
        raise GenerationError(f"could not load the tokenizer of '{cfg.model.name_or_path}': "
                              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
