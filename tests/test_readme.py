"""The README's Python examples run, in order, in one namespace, against a fresh empty database.

Each ```python block of README.md is a test step; a block that fails names its line in README.md. Blocks see
``DBP_DSN`` pointing at the fresh database and run in a temporary directory, as a reader's shell would. A block
whose first line is ``# <name>.py`` is a file to write, not code to run: tests/test_migrations_cli.py writes
those and drives ``dbp`` with them.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in _BLOCK.finditer(text)
        if not re.fullmatch(r"# \w+\.py", m.group(1).splitlines()[0].strip())
    ]


def test_readme_has_examples() -> None:
    assert len(python_blocks()) >= 8


def test_readme_examples_run(empty_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBP_DSN", empty_dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    # A real module, so dataclasses and typing.get_type_hints can resolve the examples' annotations.
    module = types.ModuleType("readme_examples")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    try:
        for line, source in python_blocks():
            code = compile("\n" * (line - 1) + source, str(README), "exec")
            exec(code, namespace)  # noqa: S102 - the README is ours; that is the point of the test
    finally:
        for value in list(namespace.values()):
            close = getattr(value, "close", None)
            if type(value).__name__ == "SQLConnection" and callable(close):
                close()
