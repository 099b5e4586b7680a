"""What :func:`egrc_lite.analysis.run.analyze_model` reports as it goes (the CLI draws progress from it).

The calls are those of evaluation's ``EvalProgress`` (``start``, ``advance``, ``finish``), so the
CLI's one progress bar serves both; this layer may not import evaluation, hence its own protocol.
"""

from __future__ import annotations

from typing import Any, Protocol


class AnalysisProgress(Protocol):
    """What :func:`analyze_model` reports as it goes, phase by phase: ``generate`` (samples generated, per
    batch), ``score`` (responses scored, per problem) and ``exact-grad`` (responses whose chosen tokens
    got their exact gradient norm). The calls of evaluation's ``EvalProgress``, so one progress bar
    serves both: ``advance`` counts responses and their tokens; ``finish`` gets ``{"acc", "len"}``
    (percent, tokens) after ``generate`` and ``{"tokens": n}`` after the other phases."""

    def start(self, benchmark: str, total: int, reused: int) -> None: ...
    def advance(self, samples: int, tokens: int) -> None: ...
    def finish(self, benchmark: str, summary: dict[str, Any]) -> None: ...


class NullProgress:
    """Reports nothing (the default)."""

    def start(self, benchmark: str, total: int, reused: int) -> None:
        pass

    def advance(self, samples: int, tokens: int) -> None:
        pass

    def finish(self, benchmark: str, summary: dict[str, Any]) -> None:
        pass
