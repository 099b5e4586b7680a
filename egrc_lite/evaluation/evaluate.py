"""Evaluation (method.md s6): sample -> grade -> per-sample records -> summary; resumable.

An evaluation directory a person can read::

    <out>/
      settings.json        what the samples depend on (model, adapter, max tokens, sampling, prompt)
      <benchmark>.jsonl    one record per sample (append-only): problem_id, sample, response,
                           total_tokens, think_tokens, answer_tokens, truncated, extracted,
                           correct, steps, gold
      summary.json         per-benchmark ACC (percent), LEN (tokens), ..., and the thinking-efficiency
                           metrics (accuracy at token budgets, first-answer position: see
                           :mod:`egrc_lite.evaluation.efficiency`) (written atomically)

Rerunning the same command reuses every record already written and generates only the missing
``(problem_id, sample)`` pairs; a crash loses at most the call in flight. Each ``generate`` call
gets the generator's ``request_chunk`` pending samples (vllm: at least 512, so its scheduler
batches them), else ``--batch-size`` of them (hf). Raising ``--n`` or ``--limit`` extends an
evaluation; changing what the samples depend on is refused. A rerun with every record done
generates nothing and rewrites the summary from the records, so an evaluation made before a metric
existed gains it.

>>> batch_seed(0, "math500", "p1", 0) == batch_seed(0, "math500", "p1", 0) != batch_seed(0, "math500", "p1", 1)
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from egrc_lite.evaluation.tasks import Benchmark
from egrc_lite.config import DataConfig, EvalSettings
from egrc_lite.data import Problem, build_messages
from egrc_lite.errors import EgrcError
from egrc_lite.generate import Generator, Messages, Sample, request_chunk
from egrc_lite.generate.base import BatchProgress as EvalProgress, NullProgress
from egrc_lite.evaluation.efficiency import efficiency_summary
from egrc_lite.evaluation.metrics import l_acc, reasoning_steps, summarize
from egrc_lite.runs import JsonlLog, atomic_write_json

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
SETTINGS = "settings.json"
# What the samples depend on: an out directory holding samples made otherwise is not reused.
SAMPLE_KEYS = ("model", "adapter", "max_tokens", "temperature", "top_p", "answer_rule", "prompt_suffix",
               "system_prompt")


class EvalError(EgrcError, ValueError):
    """A problem with an evaluation directory or a summary; one line naming the file and the fix."""


@dataclass
class EvalResult:
    summary: dict[str, Any]
    reused: dict[str, int] = field(default_factory=dict)
    generated: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)


def batch_seed(seed: int, benchmark: str, problem_id: str, sample: int) -> int:
    """A sampling seed that depends only on the first job of a call, so reruns are reproducible."""
    digest = hashlib.sha256(f"{seed}:{benchmark}:{problem_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------- summaries

def find_summary(path: str | Path) -> Path:
    """``path`` itself (a .json file), ``path/summary.json`` (an eval dir) or ``path/eval/summary.json`` (a run)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    for candidate in (p / SUMMARY, p / "eval" / SUMMARY):
        if candidate.is_file():
            return candidate
    raise EvalError(f"no summary found for {p}: expected {p / SUMMARY} (an eval directory) or "
                    f"{p / 'eval' / SUMMARY} (a run directory); run `egrc-lite eval` first")


def validate_summary(data: Any, where: str | Path) -> dict[str, Any]:
    """Check the shape of a summary (``benchmarks`` with numeric ``acc`` and ``len``); returns it."""
    if not isinstance(data, dict):
        raise EvalError(f"{where}: malformed summary: expected a JSON object")
    benches = data.get("benchmarks")
    if not isinstance(benches, dict) or not benches:
        raise EvalError(f"{where}: malformed summary: 'benchmarks' must be a non-empty object")
    for name, entry in benches.items():
        if not isinstance(entry, dict):
            raise EvalError(f"{where}: malformed summary: benchmarks.{name} must be an object")
        for key in ("acc", "len"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise EvalError(f"{where}: malformed summary: benchmarks.{name}.{key} must be a number "
                                f"(got {json.dumps(value)[:40]})")
    return data


def read_summary(path: str | Path) -> dict[str, Any]:
    """The validated summary of an eval directory, a run directory or a summary file."""
    file = find_summary(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"{file}: cannot read summary ({type(err).__name__})") from None
    except json.JSONDecodeError as err:
        raise EvalError(f"{file}: malformed summary: not valid JSON ({err.msg} at line {err.lineno})") from None
    return validate_summary(data, file)


def add_l_acc(benchmarks: Mapping[str, dict[str, Any]], base: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A copy of ``benchmarks`` with ``l_acc`` from the base model's LEN (None where the base lacks it).

    >>> out = add_l_acc({"aime24": {"acc": 36.7, "len": 3634.0}}, {"aime24": {"acc": 33.3, "len": 16927.0}})
    >>> round(out["aime24"]["l_acc"], 1)
    32.5
    """
    out = {}
    for name, entry in benchmarks.items():
        entry = dict(entry)
        base_len = (base.get(name) or {}).get("len")
        if isinstance(base_len, (int, float)) and base_len > 0 and entry.get("len") is not None:
            entry["l_acc"] = l_acc(entry["acc"], entry["len"], base_len)
        else:
            entry["l_acc"] = None  # the base was not evaluated on this benchmark
        out[name] = entry
    return out


# ---------------------------------------------------------------------------------------- records

def make_record(problem: Problem, sample_index: int, sample: Sample, correct: bool, extracted: str | None) -> dict[str, Any]:
    """The per-sample record written to ``<benchmark>.jsonl``."""
    return {
        "problem_id": problem.id, "sample": sample_index, "response": sample.text,
        "total_tokens": sample.num_tokens, "think_tokens": sample.think_tokens,
        "answer_tokens": sample.answer_tokens, "truncated": sample.truncated,
        "extracted": extracted, "correct": bool(correct), "steps": reasoning_steps(sample.text),
        "gold": problem.answer,
    }


def _grade(pairs: list[tuple[str, str]], answer_rule: str) -> tuple[list[bool], list[str | None]]:
    from egrc_lite import grading

    return grading.grade_each(pairs, answer_rule=answer_rule), [_extract(grading, r, answer_rule) for r, _ in pairs]


def _extract(grading: Any, response: str, answer_rule: str) -> str | None:
    """The answer the grader read (informative only; capped at 200 characters)."""
    extract = grading.extract_answer if answer_rule == "boxed" else grading.extract_last_number
    try:
        found = extract(response)
    except Exception:  # noqa: BLE001 - the extracted answer is informative only
        return None
    if found is None:
        return None
    text = str(found)
    return text if len(text) <= 200 else text[:200] + "..."


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete records of ``path`` (a torn last line or a garbled line is dropped; it is rewritten)."""
    log = JsonlLog(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows = log.rows()
    if raw and (not raw.endswith(b"\n") or raw.count(b"\n") != len(rows)):
        log.truncate(lambda row: True)
        logger.warning("%s: dropped a torn or garbled line left by an interrupted run", path)
        rows = log.rows()
    return rows


# ---------------------------------------------------------------------------------------- the loop

def _data_config(settings: EvalSettings) -> DataConfig:
    return DataConfig(prompt_suffix=settings.prompt_suffix, system_prompt=settings.system_prompt)


def eval_prompts(benchmarks: Sequence[Benchmark], settings: EvalSettings) -> list[Messages]:
    """The chat prompt of every problem of ``benchmarks`` as :func:`evaluate` sends it (for sizing an engine:
    ``get_generator(..., prompts=eval_prompts(...), max_tokens=settings.max_tokens)``)."""
    data_cfg = _data_config(settings)
    return [build_messages(p.problem, data_cfg) for bench in benchmarks for p in bench.problems]


def _check_settings(out: Path, current: dict[str, Any]) -> None:
    path = out / SETTINGS
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            saved = None
        if isinstance(saved, dict):
            diff = [k for k in SAMPLE_KEYS if saved.get(k) != current.get(k)]
            if diff:
                detail = "; ".join(f"{k}: {saved.get(k)!r} there, {current.get(k)!r} now" for k in diff)
                raise EvalError(f"{out} holds samples made with other settings ({detail}); "
                                "choose another --out or delete that directory")
            return
    atomic_write_json(path, {k: current.get(k) for k in SAMPLE_KEYS})


def _previous_summary(out: Path) -> dict[str, Any]:
    """The summary already in ``out`` (its benchmarks are kept beside the ones evaluated now)."""
    path = out / SUMMARY
    if not path.is_file():
        return {}
    try:
        return validate_summary(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, json.JSONDecodeError, EvalError):
        logger.warning("%s is unreadable; it will be rewritten", path)
        return {}


def evaluate(generator: Generator, benchmarks: Sequence[Benchmark], out_dir: str | Path, settings: EvalSettings,
             *, model: str, adapter: str | None = None, base: str | Path | None = None,
             extra_settings: dict[str, Any] | None = None, progress: EvalProgress | None = None) -> EvalResult:
    """Sample, grade and summarise every benchmark into ``out_dir``; resumes what is already there.

    ``base`` (an eval or run directory of the base model) adds ``l_acc`` to each benchmark.
    """
    progress = progress or NullProgress()
    names = [b.name for b in benchmarks]
    if len(set(names)) != len(names):
        raise EvalError(f"two benchmarks share a name ({', '.join(names)}); their records would mix: "
                        "rename one of the .jsonl files")
    out = Path(out_dir).expanduser()
    base_benches = read_summary(base)["benchmarks"] if base is not None else None
    for name in names if base_benches is not None else []:
        if name not in base_benches:
            logger.warning("the base summary has no %s: its l_acc stays empty", name)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {"model": model, "adapter": adapter, **asdict(settings)})
    data_cfg = _data_config(settings)
    previous = _previous_summary(out)
    summary = {
        "model": model, "adapter": adapter,
        "settings": {**asdict(settings), "model_source": generator.model_source, "backend": generator.name,
                     "base": str(base) if base is not None else None, **(extra_settings or {}),
                     "data": dict((previous.get("settings") or {}).get("data") or {})},
        "benchmarks": dict(previous.get("benchmarks") or {}),
    }
    result = EvalResult(summary=summary)
    for bench in benchmarks:
        entry = _run_benchmark(generator, bench, out, settings, data_cfg, progress, result)
        summary["benchmarks"][bench.name] = entry
        summary["settings"]["data"][bench.name] = bench.source
        if base_benches is not None:
            summary["benchmarks"] = add_l_acc(summary["benchmarks"], base_benches)
        atomic_write_json(out / SUMMARY, summary)
        progress.finish(bench.name, summary["benchmarks"][bench.name])
    return result


def _run_benchmark(generator: Generator, bench: Benchmark, out: Path, settings: EvalSettings,
                   data_cfg: DataConfig, progress: EvalProgress, result: EvalResult) -> dict[str, Any]:
    path = out / f"{bench.name}.jsonl"
    wanted = [(p, s) for p in bench.problems for s in range(settings.n)]
    keys = {(p.id, s) for p, s in wanted}
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for row in read_records(path):
        key = (str(row.get("problem_id")), row.get("sample"))
        if key in keys and key not in done:
            done[key] = row
    todo = [(p, s) for p, s in wanted if (p.id, s) not in done]
    result.reused[bench.name] = len(done)
    progress.start(bench.name, total=len(wanted), reused=len(done))
    log = JsonlLog(path)
    t0, tokens = time.perf_counter(), 0
    size = request_chunk(generator, settings.batch_size)
    for start in range(0, len(todo), size):
        chunk = todo[start:start + size]
        first, first_s = chunk[0]
        samples = generator.generate([build_messages(p.problem, data_cfg) for p, _ in chunk], n=1,
                                     max_tokens=settings.max_tokens, temperature=settings.temperature,
                                     top_p=settings.top_p, seed=batch_seed(settings.seed, bench.name, first.id, first_s))
        flat = [row[0] for row in samples]
        verdicts, extracted = _grade([(s.text, p.answer) for s, (p, _) in zip(flat, chunk)], settings.answer_rule)
        for (problem, index), sample, ok, ext in zip(chunk, flat, verdicts, extracted):
            record = make_record(problem, index, sample, ok, ext)
            log.append(record)
            done[(problem.id, index)] = record
        batch_tokens = sum(s.num_tokens for s in flat)
        tokens += batch_tokens
        progress.advance(len(chunk), batch_tokens)
    result.generated[bench.name] = len(todo)
    result.seconds[bench.name] = time.perf_counter() - t0
    result.tokens[bench.name] = tokens
    records = [done[(p.id, s)] for p, s in wanted]
    entry = summarize(records)
    entry.update(efficiency_summary(records, max_tokens=settings.max_tokens, count_tokens=token_counter(generator)))
    return entry


def token_counter(generator: Generator) -> Callable[[str], int] | None:
    """``text -> number of tokens`` by the generator's tokenizer (``.tokenizer``, as the hf and vllm
    generators have), or None (first-answer positions are then estimated from characters).

    >>> class Chars:
    ...     def encode(self, text, add_special_tokens=False):
    ...         return list(text)
    >>> class Gen:
    ...     tokenizer = Chars()
    >>> token_counter(Gen())("abc"), token_counter(object())
    (3, None)
    """
    tokenizer = getattr(generator, "tokenizer", None)
    if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
        return None
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
