"""What ``eval`` evaluates when it is not told: defaults that fit the run an adapter came from.

Pure: :func:`run_eval_defaults` reads a run's config (a dict, as ``RUN/config.yaml`` holds it) and
:func:`choose_eval_settings` turns it and the options given into the settings of an evaluation,
plus the one line the CLI prints about what it chose. An option given always wins.

- Answer rule, prompt suffix and system prompt: the run's (``reward.answer_rule``,
  ``data.prompt_suffix``, ``data.system_prompt``), else the paper's (``boxed``, the default suffix).
- Benchmarks: for a run trained on ``builtin:arithmetic``, the two built-in held-out sets, ``arithmetic``
  (held-out problems in the training wordings) and ``arithmetic-wording`` (wordings, names and items
  training never uses); else the paper's six (method.md s6).
- On the built-in sets alone (chosen or given), settings that finish in minutes on a CPU:
  the first :data:`ARITHMETIC_LIMIT` problems, ``n`` :data:`ARITHMETIC_N`, a generation cap of
  :data:`ARITHMETIC_MAX_TOKENS` or the run's longest generation if that is longer; elsewhere the
  paper's ``n`` 4 and 32768 tokens.

>>> run = run_eval_defaults({"data": {"source": "builtin:arithmetic"}, "reward": {"answer_rule": "last_number"},
...                          "schedule": {"stages": [{"mode": "compress", "steps": 3, "length_clip": 192}]}})
>>> c = choose_eval_settings(run)
>>> c.benchmarks, c.limit, c.n, c.max_tokens, c.answer_rule
('arithmetic,arithmetic-wording', 100, 1, 256, 'last_number')
>>> c = choose_eval_settings(None)
>>> c.benchmarks, c.limit, c.n, c.max_tokens, c.answer_rule, c.note
('aime24,amc,math500,minerva,olympiadbench,gsm8k', None, 4, 32768, 'boxed', None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egrc_lite.config import DEFAULT_PROMPT_SUFFIX, PAPER_BENCHMARKS, ConfigError, EvalSettings, validate_config
from egrc_lite.evaluation.tasks import ARITHMETIC, ARITHMETIC_WORDING, BUILTIN_BENCHMARKS, parse_benchmarks

ARITHMETIC_SOURCE = "builtin:arithmetic"
"""The training data source (``data.source``) whose runs are evaluated on :data:`ARITHMETIC_BENCHMARKS`."""
ARITHMETIC_BENCHMARKS = f"{ARITHMETIC},{ARITHMETIC_WORDING}"
"""The held-out sets of a run trained on ``builtin:arithmetic``: its problems, then its wordings held out."""
ARITHMETIC_LIMIT = 100
ARITHMETIC_N = 1
ARITHMETIC_MAX_TOKENS = 256
"""The built-in held-out sets' quick settings (README's measured CPU demo evaluation: 100 problems, n 1,
256 tokens); the generation cap is raised to the run's longest one when that is longer."""
PAPER = EvalSettings()


@dataclass(frozen=True)
class RunEvalDefaults:
    """What a run's config says about evaluating its adapter (``None``: the config does not say)."""

    answer_rule: str | None = None
    prompt_suffix: str | None = None
    system_prompt: str | None = None
    data_source: str | None = None
    max_completion_length: int | None = None
    """The longest generation cap of the run's stages (the ones with steps)."""

    @property
    def arithmetic(self) -> bool:
        """Trained on the built-in arithmetic problems."""
        return self.data_source == ARITHMETIC_SOURCE


def _section(saved: dict[str, Any], key: str) -> Any:
    """``saved[key]`` validated with the config's defaults filled in; ``None`` when it does not validate
    (a config of another egrc-lite version): the paper defaults apply then."""
    value = saved.get(key)
    try:
        return getattr(validate_config({key: {} if value is None else value}), key)
    except ConfigError:
        return None


def run_eval_defaults(saved: dict[str, Any] | None) -> RunEvalDefaults | None:
    """The eval defaults a run's config (``RUN/config.yaml`` as a dict) implies; ``None`` without a config."""
    if saved is None:
        return None
    data, reward, schedule = (_section(saved, key) for key in ("data", "reward", "schedule"))
    stages = ([s for s in schedule.stages if s.steps > 0] or schedule.stages) if schedule is not None else []
    return RunEvalDefaults(
        answer_rule=reward.answer_rule if reward is not None else None,
        prompt_suffix=data.prompt_suffix if data is not None else None,
        system_prompt=data.system_prompt if data is not None else None,
        data_source=data.source if data is not None else None,
        max_completion_length=max((s.max_completion_length for s in stages), default=None))


@dataclass(frozen=True)
class EvalChoice:
    """The settings of one evaluation and ``note``: the one line saying what was chosen (``None``: nothing was)."""

    benchmarks: str
    n: int
    max_tokens: int
    limit: int | None
    answer_rule: str
    prompt_suffix: str
    system_prompt: str | None
    note: str | None = None


def _short(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[:width - 3] + "...")


def choose_eval_settings(run: RunEvalDefaults | None, *, benchmarks: str | None = None, n: int | None = None,
                         max_tokens: int | None = None, limit: int | None = None, answer_rule: str | None = None,
                         prompt_suffix: str | None = None) -> EvalChoice:
    """The evaluation's settings: each option given (not ``None``) as given, the rest chosen (see the module doc)."""
    run = run or RunEvalDefaults()
    chosen: list[str] = []  # what the note lists, as the options that would override it
    override: list[str] = []
    if benchmarks is None:
        benchmarks = ARITHMETIC_BENCHMARKS if run.arithmetic else ",".join(PAPER_BENCHMARKS)
        if run.arithmetic:
            chosen.append(f"--benchmarks {ARITHMETIC_BENCHMARKS} (the held-out sets, as the run trained on "
                          f"{ARITHMETIC_SOURCE})")
            override.append("--benchmarks")
    names = parse_benchmarks(benchmarks)
    quick = all(name in BUILTIN_BENCHMARKS for name in names)
    if quick:
        if limit is None:
            limit = ARITHMETIC_LIMIT
            sizes = sorted({BUILTIN_BENCHMARKS[name].size for name in names})
            chosen.append(f"--limit {limit} (of {'/'.join(map(str, sizes))}{' each' if len(names) > 1 else ''})")
            override.append("--limit")
        if n is None:
            n = ARITHMETIC_N
            chosen.append(f"--n {n}")
            override.append("--n")
        if max_tokens is None:
            longest = run.max_completion_length
            max_tokens = max(ARITHMETIC_MAX_TOKENS, longest or 0)
            why = f" (the run generated up to {longest})" if longest else ""
            chosen.append(f"--max-tokens {max_tokens}{why}")
            override.append("--max-tokens")
    n = PAPER.n if n is None else n
    max_tokens = PAPER.max_tokens if max_tokens is None else max_tokens
    if answer_rule is None:
        answer_rule = run.answer_rule or PAPER.answer_rule
        if run.answer_rule is not None and (quick or answer_rule != PAPER.answer_rule):
            chosen.append(f"--answer-rule {answer_rule} (the run's)")
            override.append("--answer-rule")
    if prompt_suffix is None:
        prompt_suffix = DEFAULT_PROMPT_SUFFIX if run.prompt_suffix is None else run.prompt_suffix
        if prompt_suffix != DEFAULT_PROMPT_SUFFIX:
            chosen.append(f"--prompt-suffix {_short(prompt_suffix)} (the run's)")
            override.append("--prompt-suffix")
    if run.system_prompt:
        chosen.append(f"system prompt {_short(run.system_prompt)} (the run's)")
    note = None
    if chosen:
        how = f"; pass {', '.join(override)} to override" if override else ""
        note = f"eval chose: {', '.join(chosen)}{how}"
    return EvalChoice(benchmarks=benchmarks, n=n, max_tokens=max_tokens, limit=limit, answer_rule=answer_rule,
                      prompt_suffix=prompt_suffix, system_prompt=run.system_prompt, note=note)
