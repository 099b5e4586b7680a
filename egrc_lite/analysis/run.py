"""Run the entropy-conflict analysis on a model, or compare finished training runs (paper s4.3, Fig. 3).

:func:`analyze_model` samples ``K`` rollouts per problem from a model (plus an optional LoRA
adapter), scores every completion token (entropy at the sampling temperature, the logit-space
gradient proxy) and the exact LoRA gradient norm of ``N`` randomly chosen tokens, grades the
responses, and writes an analysis directory::

    <out>/
      report.json                  correlations (with n), connector table, entropy by correctness
      responses.jsonl              per response: text, grade, tokens, entropies, proxies, exact norms
      entropy_vs_gradient.png      entropy vs proxy (hexbin), entropy/proxy vs exact norm (Fig. 3d)
      high_entropy_tokens.png      most frequent tokens in the top 20% by entropy (Fig. 3e)

:func:`compare_runs` reads each run's ``metrics.jsonl`` and writes ``runs_report.json``,
``run_curves.png`` (length, accuracy, entropy vs step; Fig. 3b) and ``objective_counts.png``
(samples per objective in entangled runs; Fig. 3a).

>>> run_label(Path("runs/entangled/metrics.jsonl")), run_label(Path("runs/guided"))
('entangled', 'guided')
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from egrc_lite.analysis import plots
from egrc_lite.analysis.entropy import (
    connector_stats, exact_token_grad_norms, forward_logits, get_connector_matcher, gradient_proxy, token_entropy,
)
from egrc_lite.config import AnalysisSettings, DataConfig
from egrc_lite.analysis.correlation import correlation
from egrc_lite.errors import EgrcError
from egrc_lite.generate.base import BatchProgress, NullProgress
from egrc_lite.runs import atomic_write_json, atomic_write_text, metrics_file, read_metrics

if TYPE_CHECKING:  # pragma: no cover
    from egrc_lite.config import EgrcConfig
    from egrc_lite.data import Problem

logger = logging.getLogger(__name__)

REPORT = "report.json"
RUNS_REPORT = "runs_report.json"
CURVE_PANELS = (("mean length (tokens)", ("train/len/mean",)), ("accuracy", ("train/acc",)),
                ("mean token entropy at T = 1 (dashed: at the stage temperature)",
                 ("train/entropy_t1/mean", "train/entropy/mean")))
OPTIONAL_PANELS = (("connector share of completion tokens", ("train/connector/share",)),
                   ("mean entropy: connectors vs other tokens (dashed)", ("train/entropy/connector",
                                                                         "train/entropy/other")))
"""``(title, metric keys)`` of the run-curve panels; the optional ones appear when a run logged them."""
OBJECTIVE_KEYS = ("train/adv/compress_samples", "train/adv/accuracy_samples")
"""Per-step sample counts of the entangled estimator (advantages.entangled stats, train/ prefixed)."""
SCORE_CHUNK = 256  # completion positions per softmax chunk: bounds the [chunk, V] float32 buffers


class AnalysisError(EgrcError, ValueError):
    """Bad analysis settings or unreadable run metrics; one line naming the fix."""


def score_completion(model: Any, prompt_ids: Sequence[int], completion_ids: Sequence[int],
                     temperature: float) -> tuple[list[float], list[float]]:
    """Per completion token: entropy of ``softmax(z / tau)`` it was sampled from, and the gradient proxy."""
    import torch

    if not completion_ids:
        return [], []
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], device=device)  # [1, P + C]
    tokens = torch.tensor([list(completion_ids)], device=device)  # [1, C]
    n = tokens.size(1)
    with torch.inference_mode():
        logits = forward_logits(model, ids, n + 1)[:, :n]  # [1, C, V] logits at P-1 .. P+C-2
        ents, proxies = [], []
        for start in range(0, n, SCORE_CHUNK):
            chunk = logits[:, start:start + SCORE_CHUNK]  # [1, c, V]
            ents.extend(token_entropy(chunk, temperature)[0].tolist())
            proxies.extend(gradient_proxy(chunk, tokens[:, start:start + SCORE_CHUNK], temperature)[0].tolist())
    return ents, proxies


def _decoder(tokenizer: Any) -> Any:
    cache: dict[int, str] = {}

    def decode(token_id: int) -> str:
        if token_id not in cache:
            cache[token_id] = tokenizer.decode([token_id])
        return cache[token_id]

    return decode


def _sample(model: Any, tokenizer: Any, problems: Sequence[Problem], settings: AnalysisSettings,
            source: str, progress: BatchProgress) -> list[dict[str, Any]]:
    """Rollouts as dicts with ``problem``, ``sample``, ``prompt_ids`` and the generated :class:`Sample`."""
    from egrc_lite.data import build_messages
    from egrc_lite.generate.hf import HFGenerator

    gen = HFGenerator(model, tokenizer, batch_size=settings.batch_size, model_source=source,
                      on_batch=lambda batch: progress.advance(len(batch), sum(s.num_tokens for s in batch)))
    data_cfg = DataConfig(prompt_suffix=settings.prompt_suffix)
    prompts = [build_messages(p.problem, data_cfg) for p in problems]
    grouped = gen.generate(prompts, n=settings.samples, max_tokens=settings.max_tokens,
                           temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed)
    out = []
    for problem, messages, samples in zip(problems, prompts, grouped):
        prompt_ids = gen.encode_prompt(messages)
        out.extend({"problem": problem, "sample": k, "prompt_ids": prompt_ids, "gen": s} for k, s in enumerate(samples))
    return out


def _score(model: Any, rollouts: Sequence[dict[str, Any]], verdicts: Sequence[bool], temperature: float,
           decode: Any, connector_ids: Any, progress: BatchProgress) -> list[dict[str, Any]]:
    """The response records of ``rollouts`` with every token's entropy and proxy (phase ``score``)."""
    progress.start("score", total=len(rollouts), reused=0)
    responses: list[dict[str, Any]] = []
    reported = 0
    for k, (r, ok) in enumerate(zip(rollouts, verdicts)):
        ids = list(r["gen"].token_ids)
        ents, proxies = score_completion(model, r["prompt_ids"], ids, temperature)
        responses.append({"problem_id": r["problem"].id, "sample": r["sample"], "correct": ok,
                          "truncated": r["gen"].truncated, "num_tokens": len(ids), "response": r["gen"].text,
                          "token_ids": ids, "tokens": [decode(i) for i in ids],
                          "connector": [i in connector_ids for i in ids], "entropy": ents, "proxy": proxies,
                          "exact": {}})
        if k + 1 == len(rollouts) or rollouts[k + 1]["problem"] is not r["problem"]:  # a problem's samples done
            progress.advance(len(responses) - reported, sum(x["num_tokens"] for x in responses[reported:]))
            reported = len(responses)
    progress.finish("score", {"tokens": sum(r["num_tokens"] for r in responses)})
    return responses


def _exact(model: Any, rollouts: Sequence[dict[str, Any]], responses: list[dict[str, Any]],
           settings: AnalysisSettings, progress: BatchProgress) -> None:
    """Fill the ``exact`` gradient norms of ``settings.exact_tokens`` random tokens (phase ``exact-grad``)."""
    import torch

    picks = _pick_exact([r["num_tokens"] for r in responses], settings.exact_tokens, settings.seed)
    if not picks:
        return
    device = next(model.parameters()).device
    progress.start("exact-grad", total=len(picks), reused=0)
    for ri, positions in picks.items():
        r, p_len = responses[ri], len(rollouts[ri]["prompt_ids"])
        ids = torch.tensor([list(rollouts[ri]["prompt_ids"]) + r["token_ids"]], device=device)  # [1, P + C]
        norms = exact_token_grad_norms(model, ids, None, [(0, p_len + j) for j in positions], settings.temperature)
        r["exact"] = {j: float(v) for j, v in zip(positions, norms.tolist())}
        progress.advance(1, len(positions))
    progress.finish("exact-grad", {"tokens": sum(len(p) for p in picks.values())})


def _pick_exact(lengths: Sequence[int], n: int, seed: int) -> dict[int, list[int]]:
    """``n`` token positions drawn uniformly without replacement over all responses: ``{response: [j, ...]}``.

    >>> _pick_exact([2, 0, 3], 5, seed=0)
    {0: [0, 1], 2: [0, 1, 2]}
    """
    flat = [(r, j) for r, length in enumerate(lengths) for j in range(length)]
    chosen = sorted(random.Random(seed).sample(flat, min(n, len(flat))))
    out: dict[int, list[int]] = {}
    for r, j in chosen:
        out.setdefault(r, []).append(j)
    return out


def _by_correctness(responses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, flag in (("correct", True), ("incorrect", False)):
        group = [r for r in responses if r["correct"] is flag]
        ents = [h for r in group for h in r["entropy"]]
        out[name] = {"responses": len(group), "tokens": len(ents),
                     "mean_entropy": sum(ents) / len(ents) if ents else None,
                     "mean_length": sum(r["num_tokens"] for r in group) / len(group) if group else None}
    return out


def analyze_model(cfg: EgrcConfig, problems: Sequence[Problem], out_dir: str | Path,
                  settings: AnalysisSettings | None = None, *, adapter: str | Path | None = None,
                  connectors: Iterable[str] | None = None, data_source: str = "", model: Any = None,
                  tokenizer: Any = None, progress: BatchProgress | None = None) -> dict[str, Any]:
    """Sample, score, grade and write the analysis directory of ``out_dir``; returns ``report.json``'s dict.

    The model of ``cfg`` is loaded with a trainable LoRA adapter (``adapter``, or a fresh one whose
    ``B = 0`` makes the exact gradient flow to ``B`` only), unless ``model`` and ``tokenizer`` are
    given. ``connectors`` default to ``cfg.analysis.connectors``. ``progress`` hears each phase
    (:class:`~egrc_lite.generate.base.BatchProgress`: phases ``generate`` per batch, ``score`` per
    problem, ``exact-grad`` per response).
    """
    import torch

    settings = settings or AnalysisSettings()
    progress = progress or NullProgress()
    if not problems:
        raise AnalysisError("no problems to analyze; check --data / --benchmark / --limit")
    source = cfg.model.name_or_path
    if model is None or tokenizer is None:
        from egrc_lite.backends.hf import load_policy

        model, tokenizer, source = load_policy(cfg, init_adapter=str(adapter) if adapter else None)
        if torch.cuda.is_available() and not cfg.model.load_in_4bit:
            model.to("cuda")
    words = list(cfg.analysis.connectors if connectors is None else connectors)
    matcher = get_connector_matcher(tokenizer, words)
    decode = _decoder(tokenizer)
    out = Path(out_dir)
    model.eval()
    t0 = time.perf_counter()
    progress.start("generate", total=len(problems) * settings.samples, reused=0)
    rollouts = _sample(model, tokenizer, problems, settings, source, progress)
    t_sample = time.perf_counter() - t0
    from egrc_lite.grading import grade_each

    verdicts = grade_each([(r["gen"].text, r["problem"].answer) for r in rollouts], answer_rule=settings.answer_rule)
    n = len(rollouts)
    progress.finish("generate", {"acc": 100 * sum(verdicts) / n if n else 0.0,
                                 "len": sum(r["gen"].num_tokens for r in rollouts) / n if n else 0.0})
    responses = _score(model, rollouts, verdicts, settings.temperature, decode, matcher.ids, progress)
    t_score = time.perf_counter() - t0 - t_sample
    _exact(model, rollouts, responses, settings, progress)
    t_exact = time.perf_counter() - t0 - t_sample - t_score
    report = _model_report(responses, settings, words, source=source, adapter=adapter, data_source=data_source,
                           n_problems=len(problems), timing={"sample_s": t_sample, "score_s": t_score,
                                                             "exact_s": t_exact})
    _write_model_outputs(out, report, responses)
    logger.info("analysis of %d responses (%d tokens) written to %s", len(responses), report["tokens"], out)
    return report


def _model_report(responses: Sequence[dict[str, Any]], settings: AnalysisSettings, connectors: list[str], *,
                  source: str, adapter: Any, data_source: str, n_problems: int,
                  timing: dict[str, float]) -> dict[str, Any]:
    ents = [h for r in responses for h in r["entropy"]]
    proxies = [g for r in responses for g in r["proxy"]]
    exact = [(r["entropy"][j], r["proxy"][j], v) for r in responses for j, v in sorted(r["exact"].items())]
    tokens = [t for r in responses for t in r["tokens"]]
    stats = connector_stats(tokens, ents, connectors, top_frac=settings.top_frac, top_k=settings.top_k)
    n = len(responses)
    return {
        "model": source, "adapter": str(Path(adapter).resolve()) if adapter else None, "data": data_source,
        "settings": asdict(settings), "problems": n_problems, "responses": n, "tokens": len(ents),
        "accuracy": sum(r["correct"] for r in responses) / n if n else None,
        "mean_length": sum(r["num_tokens"] for r in responses) / n if n else None,
        "truncation_rate": sum(r["truncated"] for r in responses) / n if n else None,
        "mean_entropy": sum(ents) / len(ents) if ents else None,
        "correlation": {
            "entropy_vs_proxy": correlation(ents, proxies),
            "entropy_vs_exact": correlation([e[0] for e in exact], [e[2] for e in exact]),
            "proxy_vs_exact": correlation([e[1] for e in exact], [e[2] for e in exact]),
        },
        "connectors": stats,
        "entropy_by_correctness": _by_correctness(responses),
        "timing": timing,
    }


def _write_model_outputs(out: Path, report: dict[str, Any], responses: Sequence[dict[str, Any]]) -> None:
    ents = [h for r in responses for h in r["entropy"]]
    proxies = [g for r in responses for g in r["proxy"]]
    exact = [(r["entropy"][j], r["proxy"][j], v) for r in responses for j, v in sorted(r["exact"].items())]
    files = {
        "responses": out / "responses.jsonl",
        "entropy_vs_gradient": out / "entropy_vs_gradient.png",
        "high_entropy_tokens": out / "high_entropy_tokens.png",
    }
    lines = []
    for r in responses:
        row = {k: v for k, v in r.items() if k != "exact"}
        row["exact"] = {str(j): v for j, v in sorted(r["exact"].items())}
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(files["responses"], "".join(lines))
    plots.plot_entropy_vs_gradient(ents, proxies, exact, report["correlation"], files["entropy_vs_gradient"])
    high = report["connectors"]["high_entropy"]
    plots.plot_high_entropy_tokens(high["top_tokens"], files["high_entropy_tokens"], frac=high["frac"])
    report["files"] = {k: str(v) for k, v in files.items()}
    atomic_write_json(out / REPORT, report)


# ---------------------------------------------------------------------------------------------
# compare runs
# ---------------------------------------------------------------------------------------------
def run_label(path: Path) -> str:
    """A run's display name: its directory name (the parent's, for a ``metrics.jsonl`` path)."""
    return (path.parent if path.name.endswith(".jsonl") else path).name or str(path)


def read_run_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The metric rows of a run directory (or its ``metrics.jsonl``) by step (:func:`egrc_lite.runs.read_metrics`);
    an :class:`AnalysisError` when there are none."""
    file = metrics_file(path)
    if not file.is_file():
        raise AnalysisError(f"--runs {Path(path).expanduser()}: no metrics.jsonl there; point it at a training run "
                            "directory")
    rows = read_metrics(file)
    if not rows:
        raise AnalysisError(f"{file}: no metric rows with a 'step' (has the run finished a step yet?)")
    return rows


def _series(rows: Sequence[dict[str, Any]], key: str) -> list[list[float]]:
    return [[r["step"], float(r[key])] for r in rows
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def _stage_changes(rows: Sequence[dict[str, Any]]) -> list[tuple[float, str]]:
    out, previous = [], None
    for r in rows:
        stage = r.get("stage")
        if stage is not None and previous is not None and stage != previous:
            out.append((r["step"], str(stage)))
        previous = stage if stage is not None else previous
    return out


def summarize_run(name: str, path: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Series, first/last values and stage changes of one run's metric rows."""
    keys = [k for _, panel in CURVE_PANELS + OPTIONAL_PANELS for k in panel] + list(OBJECTIVE_KEYS)
    series = {k: _series(rows, k) for k in keys}
    stages: list[str] = []
    for r in rows:
        if r.get("stage") is not None and (not stages or stages[-1] != r["stage"]):
            stages.append(str(r["stage"]))
    entangled = bool(series[OBJECTIVE_KEYS[0]]) or any(r.get("mode") == "entangled" for r in rows)
    return {
        "name": name, "path": str(path), "steps": len(rows), "first_step": rows[0]["step"], "last_step": rows[-1]["step"],
        "stages": stages, "stage_changes": _stage_changes(rows), "entangled": entangled,
        "first": {k: s[0][1] for k, s in series.items() if s}, "last": {k: s[-1][1] for k, s in series.items() if s},
        "series": {k: s for k, s in series.items() if s},
    }


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names = [run_label(p) for p in paths]
    for i, name in enumerate(names):
        if names.count(name) > 1:
            names[i] = f"{name} ({i + 1})"
    return names


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path, *, smooth: int = 1) -> dict[str, Any]:
    """Training curves of several runs side by side (Fig. 3b) and entangled objective counts (Fig. 3a).

    Writes ``runs_report.json``, ``run_curves.png`` and ``objective_counts.png`` to ``out_dir``;
    returns the report. Panels for the connector metrics appear when any run logged them.
    """
    if not run_dirs:
        raise AnalysisError("--runs needs at least one run directory")
    if smooth < 1:
        raise AnalysisError(f"--smooth must be >= 1, got {smooth}")
    paths = [Path(p).expanduser() for p in run_dirs]
    runs = [summarize_run(name, p, read_run_metrics(p)) for name, p in zip(_unique_names(paths), paths)]
    panels = list(CURVE_PANELS) + [(title, keys) for title, keys in OPTIONAL_PANELS
                                   if any(k in r["series"] for r in runs for k in keys)]
    out = Path(out_dir)
    files = {"curves": plots.plot_run_curves(runs, panels, out / "run_curves.png", smooth=smooth),
             "objective_counts": plots.plot_objective_counts(runs, OBJECTIVE_KEYS, out / "objective_counts.png",
                                                             smooth=smooth)}
    report = {"runs": runs, "panels": [{"title": title, "keys": list(keys)} for title, keys in panels],
              "objective_keys": list(OBJECTIVE_KEYS), "smooth": smooth, "files": {k: str(v) for k, v in files.items()}}
    atomic_write_json(out / RUNS_REPORT, report)
    return report
