"""Problems from JSONL files, Hugging Face datasets or a built-in generator, and prompts.

A problem is an ``id``, a ``problem`` text and a gold ``answer`` string. Prompts follow
method.md s6: the model's chat template, the user turn is the problem followed by
``prompt_suffix``; generation starts after the template's assistant prefix. A run with
``reward.length_term: l1`` also states a token budget per prompt (:class:`TokenBudget`).

The built-in generator (``builtin:arithmetic``) words each one-step problem in one of
:data:`TRAIN_WORDINGS` (5 per operation) with :data:`TRAIN_NAMES` and :data:`TRAIN_ITEMS`; the
``arithmetic-wording`` benchmark (``evaluation.tasks``) uses wordings, names and items it never does.

>>> probs = arithmetic_problems(3, seed=0)
>>> len(probs), all(p.answer.lstrip("-").isdigit() for p in probs)
(3, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.config import DataConfig, EgrcConfig
from egrc_lite.errors import EgrcError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20
"""JSONL lines longer than this (1 MiB, some 250k tokens: more than any model's context) are skipped with a
warning while reading, never held whole in memory; a prompt that long could not be generated from anyway."""
_SKIP_CHUNK = 1 << 16


class DataError(EgrcError, ValueError):
    """A problem with the user's data; its message is one line naming the fix."""


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class Wording:
    """One way to word a one-step problem: ``op`` (``add``, ``sub`` or ``mul``) and a ``text`` with the
    fields ``{name}``, ``{other}`` (two different people), ``{item}`` (a plural noun), ``{a}`` and ``{b}``.

    The answer is ``a + b``, ``a - b`` or ``a * b``; the text may name ``b`` before ``a``.
    """

    op: str
    text: str


def _draw_add(rng: random.Random) -> tuple[int, int]:
    return rng.randint(2, 40), rng.randint(2, 40)


def _draw_sub(rng: random.Random) -> tuple[int, int]:
    a = rng.randint(10, 40)
    return a, rng.randint(1, a - 1)


def _draw_mul(rng: random.Random) -> tuple[int, int]:
    return rng.randint(2, 12), rng.randint(2, 9)


OPERATIONS: dict[str, tuple[Callable[[random.Random], tuple[int, int]], Callable[[int, int], int]]] = {
    "add": (_draw_add, lambda a, b: a + b),
    "sub": (_draw_sub, lambda a, b: a - b),
    "mul": (_draw_mul, lambda a, b: a * b),
}
"""Each operation's operands (add: 2-40 and 2-40; sub: 10-40 minus 1 to one less; mul: 2-12 times 2-9) and answer."""

TRAIN_NAMES = ["Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack", "Lena", "Max",
               "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Victor"]
TRAIN_ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells", "cards",
               "oranges", "crayons", "buttons", "coins", "beads"]
TRAIN_WORDINGS = [
    Wording("add", "{name} has {a} {item}. {other} gives {name} {b} more {item}. "
                   "How many {item} does {name} have now?"),
    Wording("add", "{name} collected {a} {item} on Monday and {b} {item} on Tuesday. "
                   "How many {item} did {name} collect in all?"),
    Wording("add", "There are {a} {item} in a basket. {name} puts {b} more {item} in the basket. "
                   "How many {item} are in the basket now?"),
    Wording("add", "{name} has {a} {item} and {other} has {b} {item}. How many {item} do they have together?"),
    Wording("add", "{name} bought {a} {item} in the morning and {b} {item} in the afternoon. "
                   "How many {item} did {name} buy that day?"),
    Wording("sub", "{name} has {a} {item} and gives {b} of them to {other}. How many {item} does {name} have left?"),
    Wording("sub", "There were {a} {item} on the table. {name} took {b} of them away. "
                   "How many {item} are on the table now?"),
    Wording("sub", "{name} had {a} {item} and lost {b} of them. How many {item} does {name} still have?"),
    Wording("sub", "{name} needs {a} {item} and already has {b} of them. How many more {item} does {name} need?"),
    Wording("sub", "A shop had {a} {item}. {name} bought {b} of them. How many {item} does the shop have left?"),
    Wording("mul", "{name} has {a} boxes with {b} {item} in each box. How many {item} does {name} have in total?"),
    Wording("mul", "{name} fills {a} bags with {b} {item} each. How many {item} are in the bags altogether?"),
    Wording("mul", "{name} arranges the {item} in {a} rows with {b} {item} in every row. "
                   "How many {item} does {name} arrange?"),
    Wording("mul", "{name} buys {a} packs of {item}. Each pack holds {b} {item}. How many {item} does {name} buy?"),
    Wording("mul", "{name} gets {b} {item} every day for {a} days. How many {item} does {name} get in total?"),
]
"""The training generator's wordings (5 per operation). Held-out wordings live in ``evaluation.tasks``,
which this module cannot import (tests/test_layout.py), so training never sees them."""


def word_problem(rng: random.Random, index: int, wordings: list[Wording], names: list[str], items: list[str],
                 id_prefix: str = "arith") -> Problem:
    """One problem: an operation (uniform), one of its ``wordings``, two ``names``, an item, operands, answer."""
    name, other = rng.sample(names, 2)
    item = rng.choice(items)
    op = rng.choice(sorted({w.op for w in wordings}))
    wording = rng.choice([w for w in wordings if w.op == op])
    draw, solve = OPERATIONS[op]
    a, b = draw(rng)
    text = wording.text.format(name=name, other=other, item=item, a=a, b=b)
    return Problem(id=f"{id_prefix}-{index}", problem=text, answer=str(solve(a, b)))


def word_problems(n: int, seed: int, wordings: list[Wording], names: list[str], items: list[str],
                  id_prefix: str = "arith") -> list[Problem]:
    """``n`` one-step word problems from ``wordings``, ``names`` and ``items``; the same seed gives the same set."""
    rng = random.Random(seed)
    return [word_problem(rng, i, wordings, names, items, id_prefix) for i in range(n)]


def arithmetic_problems(n: int, seed: int) -> list[Problem]:
    """``n`` generated one-step arithmetic word problems (add, subtract or multiply numbers up to 40) in the
    training wordings; the same seed gives the same set."""
    return word_problems(n, seed, TRAIN_WORDINGS, TRAIN_NAMES, TRAIN_ITEMS)


BUILTIN_SOURCES = {"builtin:arithmetic": arithmetic_problems}


def _read_jsonl(path: Path, cfg: DataConfig) -> list[Problem]:
    if not path.is_file():
        raise DataError(f"data file not found: {path} (set data.source to an existing JSONL file)")
    problems: list[Problem] = []
    skipped: list[int] = []
    for lineno, line in jsonl_lines(path, skipped):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line")
        problems.append(_row_to_problem(row, cfg, f"{path}:{lineno}", default_id=f"{path.stem}-{lineno}"))
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        logger.warning("%s: skipped %d line(s) longer than %d bytes (line %s): no model context holds such a "
                       "prompt", path, len(skipped), MAX_LINE_BYTES, shown)
    return problems


def jsonl_lines(path: Path, skipped: list[int]) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 text file, reading at most :data:`MAX_LINE_BYTES`
    of a line: longer lines are read past in chunks and their numbers appended to ``skipped``.

    A line that is not UTF-8 is a :class:`DataError` naming the file and line.
    """
    with path.open("rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                _skip_rest_of_line(fh, raw)
                skipped.append(lineno)
                continue
            yield lineno, _decode_line(raw, path, lineno)


def _skip_rest_of_line(fh: Any, head: bytes) -> None:
    """Read ``fh`` up to and including the end of the line that ``head`` began, a chunk at a time."""
    chunk = head
    while chunk and not chunk.endswith(b"\n"):
        chunk = fh.readline(_SKIP_CHUNK)


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                        "re-save the file as UTF-8") from None


def _row_to_problem(row: dict[str, Any], cfg: DataConfig, where: str, default_id: str) -> Problem:
    for field, key in (("problem_field", cfg.problem_field), ("answer_field", cfg.answer_field)):
        if key not in row or row[key] is None:
            fields = ", ".join(sorted(map(str, row)))
            raise DataError(f"{where}: missing field '{key}' (fields here: {fields}; set data.{field})")
    pid = row.get(cfg.id_field) if cfg.id_field else None
    return Problem(id=str(pid if pid is not None else default_id), problem=str(row[cfg.problem_field]),
                   answer=str(row[cfg.answer_field]))


def _read_hf(name: str, cfg: DataConfig) -> list[Problem]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a core dependency
        raise DataError("the 'datasets' package is missing: pip install -e .") from err
    try:
        ds = datasets.load_dataset(name, cfg.subset, split=cfg.split)
    except Exception as err:  # noqa: BLE001 - hub and file errors have many types
        raise DataError(f"could not load Hugging Face dataset '{name}' split '{cfg.split}': "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return [_row_to_problem(row, cfg, f"{name}[{i}]", default_id=f"{name}-{i}") for i, row in enumerate(ds)]


def load_problems(cfg: DataConfig) -> list[Problem]:
    """The training problems ``cfg`` names, shuffled with ``builtin_seed`` and cut to ``limit``.

    ``source`` is ``builtin:arithmetic``, a path to a ``.jsonl`` file, or ``hf:<dataset id>``.
    """
    src = cfg.source
    if src in BUILTIN_SOURCES:
        problems = BUILTIN_SOURCES[src](cfg.builtin_size, cfg.builtin_seed)
    elif src.startswith("builtin:"):
        raise DataError(f"unknown built-in data source '{src}'; valid: {', '.join(BUILTIN_SOURCES)}")
    elif src.startswith("hf:"):
        problems = _read_hf(src[3:], cfg)
    else:
        problems = _read_jsonl(Path(src).expanduser(), cfg)
    if not problems:
        raise DataError(f"data source '{src}' holds no problems (check the file or data.split)")
    if cfg.shuffle:
        random.Random(cfg.builtin_seed).shuffle(problems)
    if cfg.limit is not None:
        problems = problems[: cfg.limit]
    return problems


BUDGET_COLUMN = "token_budget"
"""The dataset column with the budget each prompt states (the ``l1`` reward reads it)."""


@dataclass(frozen=True)
class TokenBudget:
    """L1/LCPO's per-prompt token budgets (Aggarwal & Welleck 2025): each problem gets one budget ``n_gold``,
    uniform on ``[low, high]`` tokens, stated in its prompt (``data.budget_prompt``: "Think for N tokens.")
    and read by the ``l1`` reward from the dataset column ``token_budget``.

    A budget is drawn from ``(seed, problem id)`` alone: the same problem gets the same budget in every run
    with that seed (``train.seed``), whatever the data order, ``data.limit`` or a resume.

    >>> tb = TokenBudget(100, 4000, seed=0)
    >>> tb.draw("p1") == tb.draw("p1") and 100 <= tb.draw("p1") <= 4000
    True
    """

    low: int
    high: int
    seed: int

    def draw(self, problem_id: str) -> int:
        return random.Random(f"l1-budget:{self.seed}:{problem_id}").randint(self.low, self.high)


def token_budget(cfg: EgrcConfig) -> TokenBudget | None:
    """The run's :class:`TokenBudget` when ``reward.length_term`` is ``l1``, else ``None``: ``reward.l1_budget``
    ``[lo, hi]`` times the largest generation cap of the schedule's stages (those with steps), rounded, at least 1.

    >>> from egrc_lite.config import EgrcConfig
    >>> cfg = EgrcConfig.model_validate({"reward": {"length_term": "l1", "l1_budget": [0.25, 0.5]},
    ...     "schedule": {"stages": [{"mode": "explore", "steps": 1, "max_completion_length": 40}]}})
    >>> token_budget(cfg), token_budget(EgrcConfig())
    (TokenBudget(low=10, high=20, seed=0), None)
    """
    if cfg.reward.length_term != "l1":
        return None
    stages = [s for s in cfg.schedule.stages if s.steps > 0] or cfg.schedule.stages
    cap = max(int(s.max_completion_length) for s in stages)
    lo, hi = cfg.reward.l1_budget
    low = max(1, round(lo * cap))
    return TokenBudget(low, max(low, round(hi * cap)), cfg.train.seed)


def build_messages(problem: str, cfg: DataConfig, budget: int | None = None) -> list[dict[str, str]]:
    """Chat messages for one problem: optional system turn, then problem + suffix (+ the budget sentence).

    >>> build_messages("1+1?", DataConfig(prompt_suffix="Box it."))
    [{'role': 'user', 'content': '1+1?\\nBox it.'}]
    >>> build_messages("1+1?", DataConfig(prompt_suffix="Box it."), budget=64)[-1]["content"]
    '1+1?\\nBox it. Think for 64 tokens.'
    """
    user = f"{problem}\n{cfg.prompt_suffix}" if cfg.prompt_suffix else problem
    if budget is not None:
        user += (" " if cfg.prompt_suffix else "\n") + cfg.budget_prompt.format(budget=budget)
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    messages.append({"role": "user", "content": user})
    return messages


def _budget(problem: Problem, budget: TokenBudget | None) -> int | None:
    return budget.draw(problem.id) if budget is not None else None


def fit_prompt_length(problems: list[Problem], cfg: DataConfig,
                      count_tokens: Callable[[list[dict[str, str]]], int],
                      budget: TokenBudget | None = None) -> tuple[list[Problem], int]:
    """The problems whose prompt (``count_tokens(build_messages(...))``, chat template and budget included) fits
    ``cfg.max_prompt_length``, and how many were dropped; none fitting is a :class:`DataError`.

    >>> probs = [Problem("a", "1+1?", "2"), Problem("b", "x" * 50, "1")]
    >>> kept, dropped = fit_prompt_length(probs, DataConfig(max_prompt_length=20, prompt_suffix=""),
    ...                                   lambda m: len(m[-1]["content"]))
    >>> [p.id for p in kept], dropped
    (['a'], 1)
    """
    lengths = [count_tokens(build_messages(p.problem, cfg, _budget(p, budget))) for p in problems]
    kept = [p for p, n in zip(problems, lengths) if n <= cfg.max_prompt_length]
    if problems and not kept:
        raise DataError(f"no training prompt fits data.max_prompt_length={cfg.max_prompt_length} tokens (the "
                        f"shortest has {min(lengths)}); raise data.max_prompt_length")
    return kept, len(problems) - len(kept)


def to_prompt_dataset(problems: list[Problem], cfg: DataConfig, budget: TokenBudget | None = None) -> datasets.Dataset:
    """A ``datasets.Dataset`` with conversational ``prompt``, ``answer`` and ``id`` columns (TRL's format), and with
    ``budget`` a ``token_budget`` column: the budget each prompt states (TRL hands it to the rewards)."""
    import datasets

    columns: dict[str, list[Any]] = {
        "prompt": [build_messages(p.problem, cfg, _budget(p, budget)) for p in problems],
        "answer": [p.answer for p in problems],
        "id": [p.id for p in problems],
    }
    if budget is not None:
        columns[BUDGET_COLUMN] = [budget.draw(p.id) for p in problems]
    return datasets.Dataset.from_dict(columns)


def data_fingerprint(problems: list[Problem]) -> str:
    """sha256 over ids, problems and answers, in order: what the manifest records."""
    h = hashlib.sha256()
    for p in problems:
        h.update(json.dumps([p.id, p.problem, p.answer], ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
