"""``dbp load TABLE FILE``: CSV and JSON lines into a table through bulk_insert."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dbplugins._load import files as loadfile
from dbplugins.cli import cli

DET_HEADER = (
    "candid,oid,mjd,fid,pid,isdiffpos,ra,dec,magpsf,sigmapsf,corrected,dubious,has_stamp,step_id_corr,rb,nid"
)


def det_line(candid: int, oid: str = "ZTF20a", rb: str = "0.5", nid: str = "7") -> str:
    return f"{candid},{oid},59000.5,1,1.0,1,10.0,-5.0,18.2,0.1,f,false,TRUE,corr-1.0,{rb},{nid}"


def run(dsn: str, *args: str, input: str | bytes | None = None) -> Any:
    result = CliRunner().invoke(cli, ["load", *args, "--dsn", dsn], input=input)
    return result


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "detections.csv"
    lines = [DET_HEADER, det_line(1), det_line(2, rb="", nid=""), det_line(3, "ZTF20b", rb="nan")]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def with_objects(db: Any) -> Any:
    db.execute("INSERT INTO object (oid) VALUES ('ZTF20a'), ('ZTF20b')")
    return db


def test_csv_loads_with_types_and_nulls(with_objects: Any, dsn: str, csv_file: Path) -> None:
    result = run(dsn, "detection", str(csv_file))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("3 rows loaded into detection from detections.csv (3 read)")
    assert "rows/s" in result.stdout
    rows = with_objects.execute(
        "SELECT candid, oid, fid, rb, nid, corrected, dubious, has_stamp FROM detection ORDER BY 1"
    )
    assert rows[0] == (1, "ZTF20a", 1, 0.5, 7, False, False, True)
    assert rows[1][3:5] == (None, None)  # empty field = NULL in a nullable column
    assert math.isnan(rows[2][3])


def test_loading_the_same_file_again_skips_every_row(with_objects: Any, dsn: str, csv_file: Path) -> None:
    assert run(dsn, "detection", str(csv_file)).exit_code == 0
    result = run(dsn, "detection", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "0 rows loaded into detection from detections.csv (3 read, 3 already present)" in result.stdout
    assert with_objects.execute("SELECT count(*) FROM detection") == [(3,)]


def test_update_and_error_modes(with_objects: Any, dsn: str, csv_file: Path, tmp_path: Path) -> None:
    assert run(dsn, "detection", str(csv_file)).exit_code == 0
    changed = tmp_path / "changed.csv"
    changed.write_text(
        "\n".join([DET_HEADER, det_line(1, rb="0.9"), det_line(2, rb="", nid=""), det_line(4)])
    )
    result = run(dsn, "detection", str(changed), "--on-conflict", "update")
    assert result.exit_code == 0, result.output
    assert "2 rows inserted or changed into detection" in result.stdout
    assert with_objects.execute("SELECT rb FROM detection WHERE candid = 1") == [(0.9,)]

    result = run(dsn, "detection", str(changed), "--on-conflict", "error")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: ")
    assert "detection_pkey" in result.output
    assert with_objects.execute("SELECT count(*) FROM detection") == [(4,)]


def test_jsonl_with_timestamps_and_arrays(db: Any, dsn: str, tmp_path: Path) -> None:
    steps = tmp_path / "steps.jsonl"
    steps.write_text(
        json.dumps(
            {
                "step_id": "s1",
                "name": "corr",
                "version": "1",
                "comments": "ñ 🚀",
                "date": "2020-01-02T03:04:05",
            }
        )
        + "\n\n"
        + json.dumps(
            {"step_id": "s2", "name": "x", "version": "2", "comments": "", "date": "2021-06-01 00:00:00"}
        )
        + "\n",
        encoding="utf-8",
    )
    result = run(dsn, "step", str(steps))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2 rows loaded into step from steps.jsonl")
    assert db.execute("SELECT step_id, comments, date FROM step ORDER BY 1") == [
        ("s1", "ñ 🚀", datetime.datetime(2020, 1, 2, 3, 4, 5)),
        ("s2", "", datetime.datetime(2021, 6, 1)),
    ]
    taxonomy = tmp_path / "taxonomy.ndjson"
    taxonomy.write_text(
        json.dumps({"classifier_name": "lc", "classifier_version": "1", "classes": ["SN", None]})
    )
    result = run(dsn, "taxonomy", str(taxonomy))
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT classes FROM taxonomy") == [(["SN", None],)]


def test_csv_arrays_timestamps_and_empty_not_null_text(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "classifier_name,classifier_version,classes\n"
        'lc,1,"{SN,""A B"",NULL}"\n'
        'lc,2,"[""x""]"\n'
        "lc,3,{}\n"
        "lc,,{}\n"  # an empty NOT NULL varchar stays an empty string
    )
    result = run(dsn, "taxonomy", str(path))
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT classifier_version, classes FROM taxonomy ORDER BY 1") == [
        ("", []),
        ("1", ["SN", "A B", None]),
        ("2", ["x"]),
        ("3", []),
    ]
    steps = tmp_path / "steps.csv"
    steps.write_text("step_id,name,version,comments,date\ns1,n,1,c,2020-01-02T03:04:05\n")
    assert run(dsn, "step", str(steps)).exit_code == 0
    assert db.execute("SELECT date FROM step") == [(datetime.datetime(2020, 1, 2, 3, 4, 5),)]


def test_gzip_and_stdin(with_objects: Any, dsn: str, csv_file: Path, tmp_path: Path) -> None:
    gz = tmp_path / "detections.csv.gz"
    gz.write_bytes(gzip.compress(csv_file.read_bytes()))
    result = run(dsn, "detection", str(gz))
    assert result.exit_code == 0, result.output
    assert "3 rows loaded" in result.stdout
    lines = [json.dumps({"oid": f"ZTF20s{i}", "ndet": i}) for i in range(5)]
    result = run(dsn, "object", "-", "--format", "jsonl", input="\n".join(lines))
    assert result.exit_code == 0, result.output
    assert "5 rows loaded into object from stdin" in result.stdout
    assert with_objects.execute("SELECT count(*) FROM object WHERE oid LIKE 'ZTF20s%'") == [(5,)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.csv",
            DET_HEADER + "\n" + det_line(1) + "\n" + det_line(2).replace("59000.5", "soon"),
            "cannot read 'soon' as double precision (line 3 of bad.csv): "
            "could not convert string to float: 'soon' "
            "[model 'detection', column 'mjd', row 1]",
        ),
        (
            "bad.csv",
            DET_HEADER + "\n" + det_line(1).replace(",f,", ",maybe,"),
            "[model 'detection', column 'corrected', row 0]",
        ),
        (
            "bad.csv",
            DET_HEADER + "\n" + det_line(1) + "\n" + det_line(2).replace(",1.0,", ",,"),
            "missing value for NOT NULL column 'pid' [model 'detection', column 'pid', row 1]",
        ),
        ("bad.csv", DET_HEADER + ",colour\n" + det_line(1) + ",red", "header names column 'colour'"),
        ("bad.csv", DET_HEADER + "\n" + det_line(1) + ",extra", "line 2 has 17 fields, the header 16"),
        ("bad.csv", DET_HEADER + "\n" + det_line(1, "ZTF99none"), "detection_oid_fkey"),
        ("bad.jsonl", '{"oid": "ZTF20y", "ndet": 1}\n{not json', "line 2 is not valid JSON"),
        ("bad.jsonl", "[1, 2]", "line 1 is a JSON list, not an object"),
        ("bad.jsonl", '{"oid": "ZTF20x", "ndet": "three"}', "column 'ndet'"),
        ("bad.jsonl", '{"oid": "ZTF20x", "colour": "red"}', "unknown key 'colour' (columns: "),
    ],
)
def test_errors_are_one_line_and_load_nothing(
    with_objects: Any, dsn: str, tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content + "\n")
    table = "detection" if name.endswith(".csv") else "object"
    result = run(dsn, table, str(path))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1
    assert message in result.output
    assert with_objects.execute("SELECT count(*) FROM detection") == [(0,)]
    assert with_objects.execute("SELECT count(*) FROM object") == [(2,)]


def test_unknown_table_and_usage_errors(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("oid\nZTF20a\n")
    result = run(dsn, "objects", str(path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: no model has table 'objects' (tables: ")
    result = run(dsn, "object", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2
    other = tmp_path / "x.txt"
    other.write_text("oid\nZTF20a\n")
    result = run(dsn, "object", str(other))
    assert result.exit_code == 2
    assert "give --format csv|tsv|json|jsonl" in result.output
    result = run(dsn, "object", str(other), "--format", "csv")
    assert result.exit_code == 0, result.output


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["load", "--help"])
    assert result.exit_code == 0
    assert "Example: dbp load detection detections.csv" in result.output


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("silent", [False, True])
def test_progress_on_a_terminal_unless_silent(
    db: Any, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent: bool
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(loadfile, "_progress_file", lambda: terminal)
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps({"oid": f"o{i}"}) + "\n" for i in range(20)))
    result = run(dsn, "object", str(path), *(["--silent"] if silent else []))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("20 rows loaded into object")
    if silent:
        assert terminal.getvalue() == ""
        return
    drawn = terminal.getvalue()
    assert "[" in drawn and "100%" in drawn and drawn.endswith("\n")
    # The bar ends on the figures of the summary: the same rows and the same rate.
    final = drawn.rstrip().rsplit("\r", 1)[-1]
    rate = re.search(r"([\d,]+) rows/s", result.stdout)
    assert rate is not None
    assert f"20 rows  {rate.group(1)} rows/s" in final, (final, result.stdout)


def test_without_a_terminal_progress_is_a_line_now_and_then(
    db: Any, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps({"oid": f"o{i}"}) + "\n" for i in range(20)))
    monkeypatch.setattr(loadfile, "PROGRESS_INTERVAL", 3600.0)  # a quick load: no line, and no bar drawn
    result = run(dsn, "object", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    # A slow load (here: a period shorter than the load) prints plain lines, never a bar's carriage returns.
    monkeypatch.setattr(loadfile, "PROGRESS_INTERVAL", 0.001)
    slow = tmp_path / "slow.jsonl"
    slow.write_text("".join(json.dumps({"oid": f"s{i}"}) + "\n" for i in range(2000)))
    result = run(dsn, "object", str(slow))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines, "no progress line"
    assert all(line.startswith("dbp load object: ") and "rows/s" in line for line in lines), lines
    assert "\r" not in result.stderr


def test_a_registered_user_model(db: Any, dsn: str, tmp_path: Path) -> None:
    from dataclasses import dataclass

    from dbplugins import model

    @model("load_watchlist", primary_key=["wid"])
    @dataclass
    class Watchlist:
        wid: int
        name: str
        score: float | None = None
        seen: datetime.date | None = None

    db.execute(
        "CREATE TABLE load_watchlist "
        "(wid integer PRIMARY KEY, name varchar NOT NULL, score float8, seen date)"
    )
    path = tmp_path / "w.csv"
    path.write_text("wid,name,score,seen\n1,alpha,0.5,2024-02-29\n2,beta,,\n")
    result = run(dsn, "load_watchlist", str(path))
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT * FROM load_watchlist ORDER BY wid") == [
        (1, "alpha", 0.5, datetime.date(2024, 2, 29)),
        (2, "beta", None, None),
    ]


def test_verbose_adds_the_traceback(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("oid,ndet\nZTF20a,many\n")
    result = run(dsn, "object", str(path), "-v")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("Error: cannot read 'many' as integer")


def test_verbose_given_to_the_group(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("oid,ndet\nZTF20a,many\n")
    result = CliRunner().invoke(cli, ["-v", "load", "object", str(path), "--dsn", dsn])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert db.execute("SELECT count(*) FROM object") == [(0,)]
