"""Typed results: mypy --strict accepts the sample client script (tests/typing_sample.py) and catches
misuse."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_sample_client_passes_mypy_strict() -> None:
    result = _mypy(ROOT / "tests" / "typing_sample.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_sees_the_model_type_of_results(tmp_path: Path) -> None:
    bad = tmp_path / "bad_client.py"
    bad.write_text(
        "from dbplugins import SQLConnection\n"
        "from dbplugins.models import Detection, Object\n"
        "def client(db: SQLConnection) -> None:\n"
        "    a: list[Detection] = db.query(Object).all()\n"
        "    b: Object = db.query(Object).first()\n"
        "    c: str = db.query(Object).get_or_create(filter_by={'oid': 'x'})[0]\n"
        "    d: list[Detection] = db.query(Object).find(paginate=False)\n"
    )
    result = _mypy(bad)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "error" in line]
    assert [line.split(":")[1] for line in lines] == ["4", "5", "6", "7"], result.stdout
