"""``train.report_to``'s loggers around the stages: where they write (``<run>/logs``), wandb's defaults and
the tensorboard callback the trainer gets.

TRL and transformers do the logging; this module only points them at the run folder, keeps wandb from
prompting for a login (offline without an API key) and closes wandb's run at each stage's end.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from egrc_lite.config import EgrcConfig
from egrc_lite.runs import RunDir

logger = logging.getLogger(__name__)

LOGGER_PROJECT = "egrc-lite"
"""The project of trackio's runs, and of wandb's unless ``WANDB_PROJECT`` says otherwise."""


def logs_dir(run_dir: RunDir) -> Path:
    """Where ``train.report_to``'s loggers write: ``<run>/logs`` (tensorboard: ``logs/<i>-<stage>``; wandb: ``logs/wandb``)."""
    return run_dir.path / "logs"


def _wandb_has_key() -> bool:
    """Whether wandb can find an API key: ``WANDB_API_KEY``, or a ``wandb login`` entry in the netrc file."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


@contextlib.contextmanager
def logger_env(cfg: EgrcConfig, run_dir: RunDir, is_main: bool = True) -> Iterator[None]:
    """Defaults for wandb while the stages train, for the variables the user left unset (restored afterwards).

    ``WANDB_DIR`` = ``<run>/logs``, ``WANDB_PROJECT`` = ``egrc-lite``, ``WANDB_RUN_GROUP`` = the run folder's
    name (one wandb run per stage, grouped), and ``WANDB_MODE=offline`` when there is no API key
    (``WANDB_API_KEY`` or ``wandb login``): never a login prompt; ``wandb sync <run>/logs/wandb/offline-run-*``
    uploads later. Other loggers need nothing here.
    """
    if "wandb" not in cfg.train.loggers:
        yield
        return
    defaults = {"WANDB_DIR": str(logs_dir(run_dir)), "WANDB_PROJECT": LOGGER_PROJECT,
                "WANDB_RUN_GROUP": run_dir.path.name}
    if "WANDB_MODE" not in os.environ and not _wandb_has_key():
        defaults["WANDB_MODE"] = "offline"
        logger.info("wandb: no API key (WANDB_API_KEY or `wandb login`): logging offline under %s; "
                    "set WANDB_MODE=online to change", logs_dir(run_dir) / "wandb")
    if is_main:
        logs_dir(run_dir).mkdir(parents=True, exist_ok=True)
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def finish_wandb_run(cfg: EgrcConfig) -> None:
    """End the stage's wandb run (transformers leaves it open), so the next stage starts its own."""
    wandb = sys.modules.get("wandb") if "wandb" in cfg.train.loggers else None
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


@functools.cache
def _tensorboard_callback_class() -> type:
    from transformers.integrations import TensorBoardCallback

    def on_log(self: Any, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = {k: v for k, v in (logs or {}).items() if v is not None}
        TensorBoardCallback.on_log(self, args, state, control, logs=logs, **kwargs)

    return type("EgrcTensorBoardCallback", (TensorBoardCallback,), {"__module__": __name__, "on_log": on_log})


def tensorboard_callback(logging_dir: str | None = None) -> Any:
    """transformers' ``TensorBoardCallback`` writing to ``logging_dir`` (its default when ``None``: the env
    ``TENSORBOARD_LOGGING_DIR``, else ``output_dir/runs/<time>_<host>``), quiet about TRL's ``None`` metrics
    (e.g. ``clip_ratio/low_min`` of a step that kept no token), which it would warn about at every step."""
    callback = _tensorboard_callback_class()()
    if logging_dir is not None:
        callback.logging_dir = logging_dir  # read at on_train_begin (transformers 5 has no args.logging_dir)
    return callback
