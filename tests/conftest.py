"""Shared fixtures: where ../shared lives (tests skip their shared-data parts without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$EGRC_SHARED_DIR`` or the ``shared/`` folder beside the checkout, when present."""
    env = os.environ.get("EGRC_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return None


@pytest.fixture
def shared() -> Path:
    found = shared_dir()
    if found is None:
        pytest.skip("../shared is not present")
    return found


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are overhead-bound: one torch thread is as fast and immune to a busy machine.
    A module uses it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
