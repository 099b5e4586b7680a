"""Entropy-conflict diagnostics (paper s4.3): token entropy, gradient magnitude, connector statistics.

Owns: the pure token-level statistics (``entropy``: entropy, the logit-space gradient proxy, the
exact per-token LoRA gradient norm, connector-token matching, also used by training's per-step
metrics), correlations (``correlation``), the analysis of a model and the comparison of finished
runs (``run``), and their plots (``plots``).

May import: generate, grading, backends, config, data, runs, errors.
"""
