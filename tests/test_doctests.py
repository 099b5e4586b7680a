"""Every ``>>>`` example in the package's docstrings runs and gives what it says."""

import doctest
import importlib
import pkgutil

import pytest

import egrc_lite
from egrc_lite.errors import EgrcError

MODULES = sorted(m.name for m in pkgutil.walk_packages(egrc_lite.__path__, "egrc_lite."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except (ImportError, EgrcError) as err:  # an optional extra (e.g. unsloth) is not installed
        pytest.skip(f"{name} needs an optional dependency: {err}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
