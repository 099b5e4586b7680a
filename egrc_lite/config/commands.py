"""Settings of the commands that run outside a training run: ``eval``, ``sweep`` and ``analyze``."""

from __future__ import annotations

from dataclasses import dataclass

from egrc_lite.config.base import DEFAULT_PROMPT_SUFFIX, PAPER_TEMPERATURE, PAPER_TOP_P, ConfigError

PAPER_BENCHMARKS = ("aime24", "amc", "math500", "minerva", "olympiadbench", "gsm8k")
"""The paper's six benchmarks (method.md s6): ``eval``'s default ``--benchmarks``."""
EVAL_GENERATOR = "hf"
"""The generator ``eval`` and ``sweep`` use unless told otherwise (``--backend`` / ``--eval-backend``)."""
ANALYSIS_PROBLEMS = 8
"""Problems ``analyze`` takes unless told otherwise (``--limit``)."""
GENERATION_BATCH = 8
"""Sequences the hf generator samples together unless told otherwise (``--batch-size``)."""


def _check(checks: list[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


@dataclass(frozen=True)
class EvalSettings:
    """Sampling and grading settings of one evaluation (method.md s6 defaults; ``eval`` and ``sweep`` options)."""

    n: int = 4
    max_tokens: int = 32768
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    seed: int = 0
    batch_size: int = GENERATION_BATCH
    limit: int | None = None
    answer_rule: str = "boxed"
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        _check([(self.n >= 1, "--n must be >= 1"), (self.max_tokens >= 1, "--max-tokens must be >= 1"),
                (self.temperature >= 0, "--temperature must be >= 0"), (0 < self.top_p <= 1, "--top-p must be in (0, 1]"),
                (self.batch_size >= 1, "--batch-size must be >= 1"),
                (self.answer_rule in ("boxed", "last_number"), "--answer-rule must be boxed or last_number")])


@dataclass(frozen=True)
class AnalysisSettings:
    """Sampling and measurement settings of ``analyze`` (method.md s7)."""

    samples: int = 4
    exact_tokens: int = 32
    max_tokens: int = 1024
    temperature: float = PAPER_TEMPERATURE
    top_p: float = PAPER_TOP_P
    seed: int = 0
    batch_size: int = GENERATION_BATCH
    answer_rule: str = "boxed"
    prompt_suffix: str = DEFAULT_PROMPT_SUFFIX
    top_frac: float = 0.2
    top_k: int = 20

    def __post_init__(self) -> None:
        _check([(self.samples >= 1, "--samples must be >= 1"), (self.exact_tokens >= 0, "--exact-tokens must be >= 0"),
                (self.max_tokens >= 1, "--max-tokens must be >= 1"),
                (self.temperature > 0, "--temperature must be > 0 (entropy is measured at the sampling temperature)"),
                (0 < self.top_p <= 1, "--top-p must be in (0, 1]"), (self.batch_size >= 1, "--batch-size must be >= 1"),
                (self.answer_rule in ("boxed", "last_number"), "--answer-rule must be boxed or last_number"),
                (0 < self.top_frac <= 1, "top_frac must be in (0, 1]"), (self.top_k >= 1, "top_k must be >= 1")])
