"""The README is a front page a newcomer can follow: the two commands first, and a quick start that works on
the database ``make run`` has just filled, as often as it is run.

Every example of README.md also runs against a fresh database in tests/test_docs.py; this file checks what
only the README promises.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bench.alerts import read_packets, synthetic_oid
from bench.ingest import ingest, night

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def quick_start() -> tuple[int, str]:
    """The line and source of the README's quick start: its first ```python block."""
    text = README.read_text()
    m = next(m for m in _BLOCK.finditer(text) if m.group(1) == "python")
    return text.count("\n", 0, m.start(2)) + 1, m.group(2)


def run_quick_start(monkeypatch: pytest.MonkeyPatch, dsn: str) -> dict[str, Any]:
    line, source = quick_start()
    monkeypatch.setenv("DBP_DSN", dsn)  # what connect() finds after `make run`: that night's database
    module = types.ModuleType("readme_quick_start")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    try:
        exec(compile("\n" * (line - 1) + source, str(README), "exec"), namespace)  # noqa: S102 - our README
    finally:
        db = namespace.get("db")
        if db is not None:
            db.close()
    return namespace


def test_the_two_commands_come_first() -> None:
    text = README.read_text()
    first_block = next(_BLOCK.finditer(text))
    assert first_block.group(1) == "sh"
    assert [line.split()[:2] for line in first_block.group(2).splitlines()] == [
        ["make", "run"],
        ["make", "test"],
    ]
    assert text.index("## Two commands") < text.index("## Quick start") < text.index("## Documentation")


def test_quick_start_uses_an_object_no_alert_has() -> None:
    """The oids it creates are neither real alerts' nor of the synthetic night's shape (``ZTF23`` + 7
    letters)."""
    _, source = quick_start()
    real = {packet["objectId"] for packet in read_packets()}
    assert "ZTF18abmmoot" in real
    created = re.findall(r'get_or_create\(filter_by=\{"oid": "(\w+)"\}', source)
    assert created, "the quick start shows get_or_create"
    for oid in created:
        assert oid not in real
        assert not re.fullmatch(r"ZTF23[a-z]{7}", oid), f"{oid} has the shape of a synthetic oid"
    assert re.fullmatch(r"ZTF23[a-z]{7}", synthetic_oid(1, 0))  # the shape checked above is the real one


def test_quick_start_runs_twice_after_make_run(
    db: Any, dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`make run` loads the real packets and a synthetic night; the quick start then works, and works
    again."""
    monkeypatch.chdir(tmp_path)
    report = ingest(db, night(60, seed=0), batch_size=50)  # `make run`'s worker, a shorter night
    assert report.totals["object"] > 3
    before = report.totals
    first = run_quick_start(monkeypatch, dsn)
    assert first["created"] is True
    second = run_quick_start(monkeypatch, dsn)
    assert second["created"] is True  # the first run cleaned up after itself
    from bench.ingest import table_counts

    assert table_counts(db) == before  # and left make run's data as it was
