"""Ablation sweeps: a grid of config values, each combination trained, evaluated, compared.

Owns: planning a grid into resolved configs (``plan``: pure, fails before anything runs),
running it resumably with the base model evaluated once (``run``), each training and evaluation
in a spawned child process when isolated (``isolate``: GPU memory comes back when a child ends;
a crashed child fails its combination only), and the comparison report (``report``).

May import: train, evaluation, generate, presets, config, runs, errors.
"""
