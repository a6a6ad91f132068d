"""The ``>>>`` examples in the modules' docstrings run and print what they say: every module of the
package."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dbplugins

# Their examples need a model defined by the test that runs them (tests/test_query.py,
# tests/test_expressions.py).
_ELSEWHERE = {
    "dbplugins._query.query",
    "dbplugins._query.builder",
    "dbplugins._upsert.one",
    "dbplugins._query.expressions",
}
_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(dbplugins.__path__, "dbplugins.")
    if not m.name.endswith("__main__") and m.name not in _ELSEWHERE
)


@pytest.mark.parametrize("name", _MODULES)
def test_module_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_modules_with_examples_are_found() -> None:
    with_examples = {
        name
        for name in _MODULES
        if doctest.DocTestFinder().find(importlib.import_module(name))
        and any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    }
    expected = {"dbplugins._types.schema", "dbplugins._types.column", "dbplugins.errors", "dbplugins.models"}
    assert expected <= with_examples
