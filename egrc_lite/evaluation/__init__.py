"""Evaluation: the length-accuracy trade-off of a model on benchmarks, and its report.

Owns: the benchmark registry (``tasks``: the paper's six benchmarks, local JSONL files, the
built-in held-out ``arithmetic`` set), sample -> grade -> per-sample records -> ``summary.json``,
resumable (``evaluate``), what ``eval`` evaluates when not told (``defaults``: the run's answer
rule and prompt, the held-out set for arithmetic runs), the pure metrics (``metrics``: ACC, LEN,
L-Acc, steps), thinking efficiency (``efficiency``: accuracy within token budgets, where the first
correct answer appears), report tables (``report``) and plots (``plots``: accuracy vs length with
the Pareto front, accuracy vs token budget, per-problem lengths, training curves).

May import: generate, grading, config, data, runs, errors.
"""
