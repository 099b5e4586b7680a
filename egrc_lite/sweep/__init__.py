"""Ablation sweeps: a grid of config values, each combination trained, evaluated, compared.

Owns: planning a grid into resolved configs (``plan``: pure, fails before anything runs) and
running it resumably, with the base model evaluated once and one comparison report (``run``).

May import: train, evaluation, generate, presets, config, runs, errors.
"""
