"""The ``>>>`` examples in the modules' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "dbplugins._types.schema",
        "dbplugins._query.statements",
        "dbplugins.config",
        "dbplugins._types.column",
        "dbplugins.errors",
    ],
)
def test_module_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
