"""The benchmark registry (method.md s6): each name knows its local file and its Hugging Face source.

A benchmark is read, in this order, from

1. a local directory of JSONL files in the format of ``../shared/data`` (one object per line with
   ``id``, ``problem`` and ``answer`` strings): ``--data-dir``, else ``$EGRC_DATA_DIR``, else
   ``../shared/data`` beside the checkout when it exists;
2. its Hugging Face dataset (needs the hub; ``datasets`` is imported only then), with the
   registry's field mapping and answer normalisation.

A path to a ``.jsonl`` file in the same format is a benchmark too; its name is the file's stem.

``amc`` is an alias of ``amc83`` (AMC 2022+2023, 83 problems): the paper's AMC accuracy of
66.3 = 55/83 fits 83 problems, not the 40 of ``amc23`` (which is registered as well).

>>> resolve_name("amc")
'amc83'
>>> BENCHMARKS["gsm8k"].hf_id, BENCHMARKS["gsm8k"].size
('openai/gsm8k', 1319)
>>> gsm8k_answer("She has 3+4=7 apples.\\n#### 1,234")
'1234'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egrc_lite.config import DataConfig
from egrc_lite.data import Problem, Wording, load_problems, word_problems
from egrc_lite.errors import EgrcError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "EGRC_DATA_DIR"
CHECKOUT = Path(__file__).resolve().parents[2]


class BenchmarkError(EgrcError, ValueError):
    """An unknown benchmark name, a missing file or an unreadable dataset; one line naming the fix."""


def gsm8k_answer(text: str) -> str:
    """The gold answer of a GSM8K worked solution: the text after the last ``####``, commas removed."""
    return text.rsplit("####", 1)[-1].strip().replace(",", "")


def first_dollar_stripped(value: Any) -> str:
    """OlympiadBench's ``final_answer`` is a list of ``$...$`` strings: the first one, unwrapped.

    >>> first_dollar_stripped(["$2^{1009}$"])
    '2^{1009}'
    """
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value).strip().strip("$").strip()


def plain_number(value: Any) -> str:
    """AMC answers are stored as floats on the hub: ``27.0`` -> ``'27'``.

    >>> plain_number(27.0), plain_number("3.5")
    ('27', '3.5')
    """
    text = str(value).strip()
    try:
        num = float(text)
    except ValueError:
        return text
    return str(int(num)) if num.is_integer() else text


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how its rows map to :class:`~egrc_lite.data.Problem`."""

    name: str
    title: str
    size: int
    file: str
    hf_id: str
    split: str
    problem_field: str
    answer_field: str
    id_field: str | None = None
    hf_subset: str | None = None
    answer_transform: Callable[[Any], str] | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("aime24", "AIME 2024", 30, "aime24.jsonl", "HuggingFaceH4/aime_2024", "train",
                      "problem", "answer", "id", answer_transform=plain_number),
        BenchmarkSpec("amc23", "AMC 2023 (40 problems)", 40, "amc23.jsonl", "math-ai/amc23", "test",
                      "question", "answer", "id", answer_transform=plain_number),
        BenchmarkSpec("amc83", "AMC 2022+2023 (83 problems)", 83, "amc83.jsonl", "AI-MO/aimo-validation-amc",
                      "train", "problem", "answer", "id", answer_transform=plain_number),
        BenchmarkSpec("math500", "MATH500", 500, "math500.jsonl", "HuggingFaceH4/MATH-500", "test",
                      "problem", "answer", "unique_id"),
        BenchmarkSpec("minerva", "Minerva Math", 272, "minerva.jsonl", "math-ai/minervamath", "test",
                      "question", "answer"),
        BenchmarkSpec("olympiadbench", "OlympiadBench (math, English, open-ended)", 675, "olympiadbench.jsonl",
                      "Hothan/OlympiadBench", "train", "question", "final_answer", "id",
                      hf_subset="OE_TO_maths_en_COMP", answer_transform=first_dollar_stripped),
        BenchmarkSpec("gsm8k", "GSM8K test", 1319, "gsm8k.jsonl", "openai/gsm8k", "test",
                      "question", "answer", hf_subset="main", answer_transform=gsm8k_answer),
    )
}
ALIASES = {"amc": "amc83"}


def valid_names() -> list[str]:
    """Registered names and aliases, for help texts and errors."""
    return [*BENCHMARKS, *(f"{a} (= {t})" for a, t in ALIASES.items()),
            *(f"{b.name} (built-in, {b.short})" for b in BUILTIN_BENCHMARKS.values())]


def resolve_name(name: str) -> str:
    """The registry name for ``name`` (aliases resolved); unknown names raise :class:`BenchmarkError`."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in BUILTIN_BENCHMARKS:
        return key
    if key not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark '{name}'; valid: {', '.join(valid_names())}, "
                             "or a path to a .jsonl file with id/problem/answer fields")
    return key


def is_file_benchmark(name: str) -> bool:
    return name.endswith(".jsonl") or os.sep in name or "/" in name


def parse_benchmarks(text: str) -> list[str]:
    """Split ``--benchmarks a,b,...``, resolve aliases, keep order, drop repeats; paths stay paths.

    >>> parse_benchmarks("aime24, amc,AMC83")
    ['aime24', 'amc83']
    """
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name = part if is_file_benchmark(part) else resolve_name(part)
        if name not in names:
            names.append(name)
    if not names:
        raise BenchmarkError(f"--benchmarks {text!r} names no benchmark; valid: {', '.join(valid_names())}")
    return names


def default_data_dir() -> Path | None:
    """``$EGRC_DATA_DIR`` if set, else ``../shared/data`` beside the checkout if it exists."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    beside = CHECKOUT.parent / "shared" / "data"
    return beside if beside.is_dir() else None


@dataclass(frozen=True)
class Benchmark:
    """A loaded benchmark: its name, where it came from, and its problems (file order)."""

    name: str
    source: str
    problems: list[Problem]


def _check_ids(problems: list[Problem], where: str) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise BenchmarkError(f"{where}: problem id '{p.id}' appears twice; ids must be unique for resuming")
        seen.add(p.id)


def _from_jsonl(path: Path, limit: int | None) -> list[Problem]:
    cfg = DataConfig(source=str(path), shuffle=False, limit=limit, problem_field="problem",
                     answer_field="answer", id_field="id")
    return load_problems(cfg)


def _from_hub(spec: BenchmarkSpec, limit: int | None) -> list[Problem]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a core dependency
        raise BenchmarkError("the 'datasets' package is missing: pip install -e .") from err
    try:
        ds = datasets.load_dataset(spec.hf_id, spec.hf_subset, split=spec.split)
    except Exception as err:  # noqa: BLE001 - hub and cache errors have many types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BenchmarkError(
            f"benchmark '{spec.name}': no local {spec.file} (pass --data-dir DIR or set {DATA_DIR_ENV}) "
            f"and the Hugging Face dataset {spec.hf_id} could not be loaded: {first}") from None
    problems = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        missing = [k for k in (spec.problem_field, spec.answer_field) if k not in row]
        if missing:
            raise BenchmarkError(f"{spec.hf_id}[{i}] lacks field(s) {', '.join(missing)}; "
                                 f"fields: {', '.join(sorted(row))}")
        raw = row[spec.answer_field]
        answer = spec.answer_transform(raw) if spec.answer_transform else str(raw)
        pid = row.get(spec.id_field) if spec.id_field else None
        problems.append(Problem(id=str(pid if pid is not None else f"{spec.name}-{i}"),
                                problem=str(row[spec.problem_field]), answer=answer))
    return problems


ARITHMETIC = "arithmetic"
ARITHMETIC_SIZE = 200
ARITHMETIC_SEED = 20261128
TRAIN_EXCLUDE = (1234, 4096)  # (seed, size): the default training problems, never in the held-out set


def heldout_arithmetic(limit: int | None = None) -> list[Problem]:
    """The built-in held-out arithmetic word problems (for the CPU demo): generated by code with a seed
    of their own, with every problem text that the default training set (``builtin:arithmetic``,
    seed 1234, first 4096) contains removed. Same wordings, names and items as training.

    >>> probs = heldout_arithmetic(5)
    >>> len(probs), probs[0].id
    (5, 'arith-heldout-0')
    """
    from egrc_lite.data import arithmetic_problems

    seen = {p.problem for p in arithmetic_problems(TRAIN_EXCLUDE[1], TRAIN_EXCLUDE[0])}
    fresh = [p for p in arithmetic_problems(4 * ARITHMETIC_SIZE, ARITHMETIC_SEED) if p.problem not in seen]
    fresh = fresh[:ARITHMETIC_SIZE][:limit]
    return [Problem(id=f"arith-heldout-{i}", problem=p.problem, answer=p.answer) for i, p in enumerate(fresh)]


ARITHMETIC_WORDING = "arithmetic-wording"
ARITHMETIC_WORDING_SIZE = 200
ARITHMETIC_WORDING_SEED = 20261205
HELDOUT_NAMES = ["Aisha", "Bruno", "Carmen", "Diego", "Elif", "Felix", "Hana", "Ivan", "Kofi", "Mei"]
HELDOUT_ITEMS = ["peaches", "erasers", "candles", "ribbons", "tickets", "walnuts"]
HELDOUT_WORDINGS = [
    Wording("add", "{name} picks {a} {item} before lunch and {b} {item} after lunch. "
                   "What is the total number of {item} {name} picked?"),
    Wording("add", "A jar holds {a} {item}. {name} drops another {b} {item} into the jar. "
                   "What is the number of {item} in the jar?"),
    Wording("add", "{name} counts {a} {item} in one room and {b} {item} in another room. "
                   "Altogether, how many {item} did {name} count?"),
    Wording("add", "{other} owns {b} {item}, and {name} owns {a} {item}. "
                   "Combined, how many {item} do {name} and {other} own?"),
    Wording("sub", "Out of {a} {item}, {name} sold {b}. How many {item} were not sold?"),
    Wording("sub", "A crate contains {a} {item}. {name} throws {b} of them out. How many {item} remain in the crate?"),
    Wording("sub", "{other} owns {a} {item}, which is {b} more than {name} owns. How many {item} does {name} own?"),
    Wording("sub", "{name} must hand out {a} {item} and has handed out {b} so far. "
                   "How many {item} are still to be handed out?"),
    Wording("mul", "Each of {a} children gets {b} {item} from {name}. How many {item} does {name} give out?"),
    Wording("mul", "A shelf has {a} trays, and every tray carries {b} {item}. "
                   "What is the total number of {item} on the shelf?"),
    Wording("mul", "If one crate holds {b} {item}, how many {item} do {a} crates hold?"),
    Wording("mul", "{name} makes {a} piles of {item}, putting {b} {item} in each pile. "
                   "How many {item} are in all the piles?"),
]
"""Wordings (4 per operation), names and items that the training generator (``egrc_lite.data``, which
cannot import this module) never uses; the operands are drawn from the same ranges as in training."""


def heldout_wordings(limit: int | None = None) -> list[Problem]:
    """The ``arithmetic-wording`` set: one-step arithmetic word problems as hard as the training ones but
    worded in :data:`HELDOUT_WORDINGS`, with :data:`HELDOUT_NAMES` and :data:`HELDOUT_ITEMS` (none of
    which training uses), generated with a seed of their own. It checks that a trained adapter learned the
    arithmetic rather than the training templates.

    >>> probs = heldout_wordings(5)
    >>> len(probs), probs[0].id
    (5, 'arith-wording-0')
    """
    problems = word_problems(ARITHMETIC_WORDING_SIZE, ARITHMETIC_WORDING_SEED, HELDOUT_WORDINGS, HELDOUT_NAMES,
                             HELDOUT_ITEMS, id_prefix="arith-wording")
    return problems[:limit]


@dataclass(frozen=True)
class BuiltinBenchmark:
    """A benchmark generated by code (no file, works offline): ``load(limit)`` gives its first problems."""

    name: str
    title: str
    short: str
    size: int
    seed: int
    load: Callable[[int | None], list[Problem]]

    @property
    def source(self) -> str:
        return f"builtin:{self.name} ({self.short}, seed {self.seed})"


BUILTIN_BENCHMARKS: dict[str, BuiltinBenchmark] = {
    b.name: b
    for b in (
        BuiltinBenchmark(ARITHMETIC, "generated arithmetic word problems, held out from training", "held out",
                         ARITHMETIC_SIZE, ARITHMETIC_SEED, heldout_arithmetic),
        BuiltinBenchmark(ARITHMETIC_WORDING, "generated arithmetic word problems, wordings unseen in training",
                         "held-out wordings", ARITHMETIC_WORDING_SIZE,
                         ARITHMETIC_WORDING_SEED, heldout_wordings),
    )
}
"""The built-in benchmarks, for the CPU demo: ``arithmetic`` (the training wordings, problems held out)
and ``arithmetic-wording`` (wordings held out)."""


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None,
                   allow_hub: bool = True) -> Benchmark:
    """Load benchmark ``name`` (a registry name, an alias or a ``.jsonl`` path): its first ``limit`` problems.

    Problems keep the file's order, so ``limit=2`` then ``limit=4`` extends the same set.
    """
    if limit is not None and limit < 1:
        raise BenchmarkError(f"--limit must be >= 1, got {limit}")
    builtin = BUILTIN_BENCHMARKS.get(name.strip().lower())
    if builtin is not None:
        return Benchmark(builtin.name, builtin.source, builtin.load(limit))
    if is_file_benchmark(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise BenchmarkError(f"benchmark file not found: {path}")
        problems = _from_jsonl(path, limit)
        _check_ids(problems, str(path))
        return Benchmark(path.stem, str(path.resolve()), problems)
    spec = BENCHMARKS[resolve_name(name)]
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise BenchmarkError(f"--data-dir {data_dir} is not a directory")
    if folder is not None and (folder / spec.file).is_file():
        path = folder / spec.file
        problems = _from_jsonl(path, limit)
        _check_ids(problems, str(path))
        if limit is None and len(problems) != spec.size:
            logger.warning("%s holds %d problems; %s has %d", path, len(problems), spec.title, spec.size)
        return Benchmark(spec.name, str(path.resolve()), problems)
    if data_dir is not None or not allow_hub:
        where = folder if folder is not None else "(no data directory)"
        raise BenchmarkError(f"benchmark '{spec.name}': {spec.file} not found in {where}; pass --data-dir "
                             f"with a folder holding it (format of shared/data) or set {DATA_DIR_ENV}")
    logger.info("benchmark %s: no local file, loading %s from the Hugging Face hub", spec.name, spec.hf_id)
    problems = _from_hub(spec, limit)
    _check_ids(problems, spec.hf_id)
    return Benchmark(spec.name, f"hf:{spec.hf_id}", problems)
