"""egrc-lite: entropy-guided reasoning compression on one GPU (or a CPU).

Importing this package is cheap: it never imports torch, trl, transformers,
unsloth or vllm. Heavy libraries are imported inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
