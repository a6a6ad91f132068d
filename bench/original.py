"""The original library, ALeRCE db-plugins 4.2.7, in its own virtualenv, timed on the same data as ours.

Two roles in one file, so the bench needs nothing else:

- imported by :mod:`bench.run`: :func:`ensure_venv` creates ``bench/.venv-original`` with the pinned packages
  (once; a stamp records the pins) and :func:`run_original` runs this file there and returns its timings;
- run by that virtualenv's Python (``python -I bench/original.py --url ... --rows ... --keys ...``): connects
  with the original ``SQLConnection``, times ``bulk_insert`` of the detection rows and ``get_or_create`` of
  the object keys (first new, then the same keys again, existing), and prints the timings as one JSON object;
  with ``--reads OIDS`` instead: times the light-curve reads of :mod:`bench.reads` with the original's ORM
  query (``db.query(Detection).filter(Detection.oid == oid).all()`` per object, then
  ``Detection.oid.in_(oids)``).

This module imports only the standard library at the top: the original's virtualenv has neither dbplugins nor
psycopg 3. It runs with ``python -I`` from a temporary directory, so the repository's own ``db_plugins`` alias
package cannot shadow the original one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PINS = ("db-plugins==4.2.7", "SQLAlchemy==1.3.24", "psycopg2-binary")
VENV = Path(__file__).resolve().parent / ".venv-original"
_STAMP = ".bench-pins"


def venv_python(venv: Path = VENV) -> Path:
    """The Python interpreter of the original's virtualenv."""
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, *, log: Any = None) -> Path:
    """Create ``venv`` with :data:`PINS` installed unless it already has them; return its Python."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    stamp = venv / _STAMP
    wanted = "\n".join(PINS)
    if stamp.is_file() and stamp.read_text() == wanted and venv_python(venv).exists():
        _ignore(venv)
        return venv_python(venv)
    say(f"installing the original library into {venv} ({', '.join(PINS)}) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    _ignore(venv)
    pip = [str(venv_python(venv)), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    proc = subprocess.run([*pip, "install", *PINS], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"pip install {' '.join(PINS)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    stamp.write_text(wanted)
    return venv_python(venv)


def _ignore(venv: Path) -> None:
    """Keep git away from the virtualenv (as ``python -m venv`` does since 3.13)."""
    ignore = venv / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by bench/original.py\n*\n")


def run_original(url: str, rows_file: Path, keys_file: Path, *, venv: Path = VENV) -> dict[str, Any]:
    """Run this file inside the original's virtualenv; return its JSON timings."""
    return _run(venv, "--url", url, "--rows", str(rows_file), "--keys", str(keys_file))


def run_original_reads(url: str, oids_file: Path, *, venv: Path = VENV) -> dict[str, Any]:
    """Time the original's light-curve reads of the objects listed in ``oids_file`` (JSON) in its
    virtualenv."""
    return _run(venv, "--url", url, "--reads", str(oids_file))


def _run(venv: Path, *args: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [str(venv_python(venv)), "-I", str(Path(__file__).resolve()), *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the original library's run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- inside the original's virtualenv ------------------------------------------------------------------------


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _connect(url: str) -> Any:
    """The original ``SQLConnection`` on ``url``, connected (outside the timings)."""
    import sqlalchemy

    import db_plugins
    from db_plugins.db.sql.connection import SQLConnection

    if "site-packages" not in (db_plugins.__file__ or ""):
        raise RuntimeError(f"imported db_plugins from {db_plugins.__file__}, not the installed original")
    db = SQLConnection()
    db.connect(config={"SQLALCHEMY_DATABASE_URL": url})
    db.session.execute(sqlalchemy.text("SELECT 1"))
    return db


def measure(url: str, rows: list[dict[str, Any]], keys: list[dict[str, Any]]) -> dict[str, Any]:
    """Time the original's ``bulk_insert`` and ``get_or_create`` (new keys, then the same keys existing)."""
    import sqlalchemy

    from db_plugins.db.sql.models import Detection, Object

    db = _connect(url)

    def get_or_create_all() -> None:
        for row in keys:
            kwargs = {k: v for k, v in row.items() if k != "oid"}
            db.query(Object).get_or_create(filter_by={"oid": row["oid"]}, **kwargs)

    result = {
        "bulk_insert": {"n": len(rows), "seconds": _timed(lambda: db.query(Detection).bulk_insert(rows))},
        "get_or_create_new": {"n": len(keys), "seconds": _timed(get_or_create_all)},
        "get_or_create_existing": {"n": len(keys), "seconds": _timed(get_or_create_all)},
        "versions": {
            "db-plugins": "4.2.7",
            "sqlalchemy": sqlalchemy.__version__,
            "python": sys.version.split()[0],
        },
    }
    db.session.close()
    return result


def measure_reads(url: str, oids: list[str]) -> dict[str, Any]:
    """Time the original's ORM reads of the objects' detections: one query per object, then one ``in_``.

    Each pass starts from an empty identity map (``expunge_all``), as a fresh session would: otherwise the
    second pass would find every instance already built by the first.
    """
    from db_plugins.db.sql.models import Detection

    db = _connect(url)

    def per_object() -> int:
        return sum(len(db.query(Detection).filter(Detection.oid == oid).all()) for oid in oids)

    def all_at_once() -> int:
        return len(db.query(Detection).filter(Detection.oid.in_(oids)).all())

    result: dict[str, Any] = {}
    for name, fn in (("per_object", per_object), ("in", all_at_once)):
        db.session.expunge_all()
        gc.collect()
        start = time.perf_counter()
        n = fn()
        result[name] = {"n": n, "seconds": time.perf_counter() - start}
    db.session.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="SQLAlchemy URL of the bench database")
    parser.add_argument("--rows", type=Path, help="JSON list of detection rows")
    parser.add_argument("--keys", type=Path, help="JSON list of object rows (new oids)")
    parser.add_argument("--reads", type=Path, help="JSON list of oids: time the reads instead")
    args = parser.parse_args(argv)
    if args.reads is not None:
        print(json.dumps(measure_reads(args.url, json.loads(args.reads.read_text()))))
        return 0
    if args.rows is None or args.keys is None:
        parser.error("--rows and --keys are required without --reads")
    rows = json.loads(args.rows.read_text())
    keys = json.loads(args.keys.read_text())
    print(json.dumps(measure(args.url, rows, keys)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
