"""``dbp load`` reads what people have: encodings, delimiters and TSV, JSON arrays, ``""`` versus NULL, empty
files; and the shared progress helper (a bar on a terminal, lines without one, the summary's rate)."""

from __future__ import annotations

import gzip
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dbplugins._load import textformats
from dbplugins._load.progress import Progress
from dbplugins.cli import cli
from dbplugins.errors import DataError


def run(dsn: str, *args: str, input: str | bytes | None = None) -> Any:
    return CliRunner().invoke(cli, ["load", *args, "--dsn", dsn], input=input)


def ok(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1, result.output
    return str(result.output)


def objects(db: Any) -> list[tuple[Any, ...]]:
    return list(db.execute("SELECT oid, step_id_corr, ndet FROM object ORDER BY oid"))


# -- encodings -----------------------------------------------------------------------------------------------

LATIN1 = "oid,step_id_corr,ndet\nZTF1,plain,1\nZTF2,Señal café,2\n".encode("latin-1")


def test_a_latin1_byte_names_the_file_and_line_and_suggests_encoding(
    db: Any, dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes(LATIN1)
    message = one_line_error(run(dsn, "object", str(path)))
    assert "legacy.csv: line 3 is not valid utf-8 (byte f1" in message
    assert "--encoding" in message
    assert objects(db) == []


def test_with_the_encoding_given_it_loads(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes(LATIN1)
    assert "2 rows loaded" in ok(run(dsn, "object", str(path), "--encoding", "latin-1"))
    assert objects(db) == [("ZTF1", "plain", 1), ("ZTF2", "Señal café", 2)]


def test_utf16_with_its_byte_order_mark(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    path.write_bytes('{"oid": "ZTF1", "step_id_corr": "ñ 🚀"}\n'.encode("utf-16"))
    ok(run(dsn, "object", str(path), "--encoding", "utf-16"))
    assert objects(db) == [("ZTF1", "ñ 🚀", None)]


def test_bad_bytes_in_a_gzipped_file_and_in_json_lines(db: Any, dsn: str, tmp_path: Path) -> None:
    gz = tmp_path / "legacy.csv.gz"
    gz.write_bytes(gzip.compress(LATIN1))
    assert "legacy.csv.gz: line 3 is not valid utf-8" in one_line_error(run(dsn, "object", str(gz)))
    lines = tmp_path / "o.jsonl"
    lines.write_bytes(b'{"oid": "a"}\n\n{"oid": "\xff"}\n')
    assert "o.jsonl: line 3 is not valid utf-8 (byte ff" in one_line_error(run(dsn, "object", str(lines)))
    assert objects(db) == []


def test_an_unknown_encoding_is_a_usage_error(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("oid\nZTF1\n")
    result = run(dsn, "object", str(path), "--encoding", "klingon")
    assert result.exit_code == 2
    assert "unknown encoding 'klingon'" in result.output


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64 * 1024])
def test_decoding_across_chunk_boundaries(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(textformats, "CHUNK", chunk)
    text = "\ufeffé\n🚀 two\nthree ñ\n"
    got = "".join(textformats.decoded(io.BytesIO(text.encode("utf-8")), "utf-8", "f"))
    assert got == text[1:]  # the byte-order mark is dropped, every character split across reads survives
    bad = "line one é\nline two\n".encode() + b"ok \xe9 not\n"
    with pytest.raises(DataError, match=r"^f: line 3 is not valid utf-8 \(byte e9"):
        "".join(textformats.decoded(io.BytesIO(bad), "utf-8", "f"))
    truncated = "ab\ncd é".encode()[:-1]  # the file ends inside a character
    with pytest.raises(DataError, match=r"^f: line 2 is not valid utf-8"):
        "".join(textformats.decoded(io.BytesIO(truncated), "utf-8", "f"))


# -- delimiters and TSV --------------------------------------------------------------------------------------


def test_tsv_by_extension_and_by_format(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "objects.tsv"
    path.write_text("oid\tstep_id_corr\tndet\nZTF1\ta, b\t1\nZTF2\t\t\n")
    assert "2 rows loaded into object from objects.tsv" in ok(run(dsn, "object", str(path)))
    other = tmp_path / "more.txt"
    other.write_text('oid\tstep_id_corr\tndet\nZTF3\t"q""uoted"\t3\n')
    ok(run(dsn, "object", str(other), "--format", "tsv"))
    assert objects(db) == [("ZTF1", "a, b", 1), ("ZTF2", None, None), ("ZTF3", 'q"uoted', 3)]


@pytest.mark.parametrize(
    ("given", "sep"), [(";", ";"), ("|", "|"), ("\\t", "\t"), ("tab", "\t"), ("\t", "\t")]
)
def test_delimiter(db: Any, dsn: str, tmp_path: Path, given: str, sep: str) -> None:
    path = tmp_path / "o.csv"
    path.write_text(sep.join(["oid", "step_id_corr", "ndet"]) + "\n" + sep.join(["ZTF1", "x,y", "4"]) + "\n")
    ok(run(dsn, "object", str(path), "--delimiter", given))
    assert objects(db) == [("ZTF1", "x,y", 4)]


def test_the_wrong_delimiter_says_which_option_helps(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("oid;ndet\nZTF1;4\n")
    message = one_line_error(run(dsn, "object", str(path)))
    assert "header names column 'oid;ndet'" in message and "--delimiter" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delimiter", "ab"], "is not one character"),
        (["--delimiter", '"'], "cannot separate fields"),
        (["--format", "jsonl", "--delimiter", ";"], "--delimiter applies to csv and tsv files, not jsonl"),
    ],
)
def test_bad_delimiters_are_usage_errors(dsn: str, tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "o.csv"
    path.write_text("oid\nZTF1\n")
    result = run(dsn, "object", str(path), *args)
    assert result.exit_code == 2
    assert message in result.output


# -- "" versus NULL ------------------------------------------------------------------------------------------


def test_a_quoted_empty_string_stays_an_empty_string(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        'oid,step_id_corr,ndet\nZTF1,"",1\nZTF2,,2\nZTF3,"""",3\n"ZTF4","",\n'
        'ZTF5,"a ""b""\n",\n'  # a quoted field over two lines, then an unquoted empty
    )
    ok(run(dsn, "object", str(path)))
    assert objects(db) == [
        ("ZTF1", "", 1),
        ("ZTF2", None, 2),
        ("ZTF3", '"', 3),
        ("ZTF4", "", None),
        ("ZTF5", 'a "b"\n', None),
    ]


@pytest.mark.parametrize("chunk", [3, 64 * 1024])
def test_quoted_and_unquoted_empties_over_many_reads(
    db: Any, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(textformats, "CHUNK", chunk)
    path = tmp_path / "o.csv"
    lines = ["oid,step_id_corr,ndet"]
    for i in range(500):
        lines.append([f'ZTF{i:03d},"",{i}', f"ZTF{i:03d},,", f'ZTF{i:03d},"x\n""y""",'][i % 3])
    path.write_text("\n".join(lines) + "\n")
    assert "500 rows loaded" in ok(run(dsn, "object", str(path)))
    got = objects(db)
    assert got[:3] == [("ZTF000", "", 0), ("ZTF001", None, None), ("ZTF002", 'x\n"y"', None)]
    assert got == [
        (f"ZTF{i:03d}", ["", None, 'x\n"y"'][i % 3], i if i % 3 == 0 else None) for i in range(500)
    ]


def test_a_quoted_empty_string_in_a_number_column_is_not_null(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text('oid,ndet\nZTF1,""\n')
    message = one_line_error(run(dsn, "object", str(path)))
    assert "cannot read '' as integer (line 2 of o.csv)" in message
    assert "model 'object', column 'ndet', row 0" in message
    assert "leave the field empty for NULL" in message
    assert objects(db) == []


def test_an_unquoted_empty_field_in_a_not_null_text_column_is_still_text(
    db: Any, dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text('classifier_name,classifier_version,classes\nlc,,{}\nlc2,"",{}\n')
    ok(run(dsn, "taxonomy", str(path)))
    assert db.execute("SELECT classifier_name, classifier_version FROM taxonomy ORDER BY 1") == [
        ("lc", ""),
        ("lc2", ""),
    ]


def test_quoted_fields_follows_the_csv_module() -> None:
    assert textformats.quoted_fields('a,"",,"x""y",b"c', ",") == [False, True, False, True, False]
    assert textformats.quoted_fields('"ab"c,', ",") == [True, False]
    assert textformats.quoted_fields("", ",") == [False]
    assert textformats.quoted_fields('"a\tb"\t""', "\t") == [True, True]


def _write_field(value: str | None, delimiter: str, quote_always: bool) -> str:
    if value is None:
        return ""
    if (
        value == ""
        or quote_always
        or any(c in value for c in (delimiter, '"', "\n", "\r"))
        or value.strip() != value
    ):
        return '"' + value.replace('"', '""') + '"'
    return value


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.none() | st.text(alphabet=st.sampled_from(list("ab ,;\t\"\n\r'é")), max_size=6),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=8,
    ),
    delimiter=st.sampled_from([",", "\t", ";"]),
    quote_always=st.booleans(),
    line_end=st.sampled_from(["\n", "\r\n"]),
    chunk=st.integers(min_value=1, max_value=9),
)
def test_csv_records_round_trip_none_and_empty(
    rows: list[list[str | None]], delimiter: str, quote_always: bool, line_end: str, chunk: int
) -> None:
    text = "".join(
        delimiter.join(_write_field(v, delimiter, quote_always) for v in row) + line_end for row in rows
    )
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    got = [fields for _line, fields in textformats.csv_records(chunks, delimiter, "f")]
    # A row of one unquoted empty field is a blank line, which is skipped; no such row here (3 fields).
    assert got == rows


# -- JSON ----------------------------------------------------------------------------------------------------


def test_a_json_array_file(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    rows = [{"oid": "ZTF1", "ndet": 1}, {"oid": "ZTF2", "step_id_corr": "", "ndet": None}]
    path.write_text(json.dumps(rows, indent=2))
    assert "2 rows loaded into object from objects.json (2 read)" in ok(run(dsn, "object", str(path)))
    assert objects(db) == [("ZTF1", None, 1), ("ZTF2", "", None)]
    gz = tmp_path / "more.json.gz"
    gz.write_bytes(gzip.compress(json.dumps([{"oid": "ZTF3"}]).encode()))
    ok(run(dsn, "object", str(gz)))
    ok(run(dsn, "object", "-", "--format", "json", input=' [ {"oid": "ZTF4"} ] '))
    assert [r[0] for r in objects(db)] == ["ZTF1", "ZTF2", "ZTF3", "ZTF4"]


def test_a_json_file_of_json_lines_still_loads(db: Any, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    path.write_text('{"oid": "ZTF1"}\n{"oid": "ZTF2"}\n')
    assert "2 rows loaded" in ok(run(dsn, "object", str(path)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"oid": "a"},\n {"oid": tru}]',
            "element 1 of the JSON array (line 2) is not valid JSON: Expecting value",
        ),
        ('[{"oid": "a"}, [1]]', "element 1 of the JSON array (line 1) is a JSON list, not an object"),
        (
            '[{"oid": "a"} {"oid": "b"}]',
            "line 1: expected , or ] after element 0 of the JSON array, found '{'",
        ),
        ('[{"oid": "a"},]', "element 1 of the JSON array (line 1) is not valid JSON"),
        ('[{"oid": "a"}', "expected , or ] after element 0 of the JSON array, the file ends"),
        ('[{"oid": "a"},\n', "the JSON array is not closed (no ]) after element 0"),
        ('[{"oid": "a"}]\n[]', "line 2: text after the end of the JSON array"),
        (
            '[{"oid": "a"}, {"oid": "b',
            "element 1 of the JSON array (line 1) is not valid JSON: Unterminated string",
        ),
        (
            '[{"oid": "a"}, {"oid":\n\n "b",\n}]',
            "element 1 of the JSON array (line 1) is not valid JSON: "
            "Expecting property name enclosed in double "
            "quotes at line 4",
        ),
        ('{"oid": "a",\n "ndet": 1}', "line 1 is not valid JSON"),
    ],
)
def test_json_array_errors_name_the_element_and_line(
    db: Any, dsn: str, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert message in one_line_error(run(dsn, "object", str(path)))
    assert objects(db) == []


def test_json_array_is_streamed_one_element_at_a_time() -> None:
    def chunks() -> Iterator[str]:
        yield '[{"oid": "a"}, {"oid"'
        yield ': "b"}, '
        raise AssertionError("read past the second element")

    elements = textformats.json_array(chunks(), "f")
    assert next(elements) == (1, 0, {"oid": "a"})
    assert next(elements) == (1, 1, {"oid": "b"})


def test_json_array_refuses_an_unbounded_element(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textformats, "MAX_JSON_ELEMENT", 1000)

    def endless() -> Iterator[str]:
        yield '[{"oid": "'
        while True:
            yield "x" * 100

    with pytest.raises(
        DataError, match=r"element 0 of the JSON array \(line 1\) is longer than 1,000 characters"
    ):
        list(textformats.json_array(endless(), "f"))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.dictionaries(
            st.text(max_size=4),
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=8)
            | st.lists(st.integers(), max_size=3),
            max_size=4,
        ),
        max_size=6,
    ),
    indent=st.sampled_from([None, 0, 2]),
    chunk=st.integers(min_value=1, max_value=17),
)
def test_json_array_matches_json_loads(rows: list[dict[str, Any]], indent: int | None, chunk: int) -> None:
    text = json.dumps(rows, indent=indent, ensure_ascii=False)
    chunks = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    got = [value for _line, _index, value in textformats.json_array(chunks, "f")]
    assert got == rows


# -- empty files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("empty.csv", "", "the file is empty"),
        ("blank.jsonl", "\n  \n", "the file is empty"),
        ("empty.json", "", "the file is empty"),
        ("header.csv", "oid,ndet\n", "the file has a header and no rows"),
        ("none.json", "[ ]", "the file holds no rows"),
    ],
)
def test_an_empty_file_says_0_rows(
    db: Any, dsn: str, tmp_path: Path, name: str, content: str, why: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert ok(run(dsn, "object", str(path))) == f"0 rows loaded into object from {name}: {why}\n"


# -- progress ------------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def slow(n: int, pause: float) -> Iterator[int]:
    for i in range(n):
        time.sleep(pause)
        yield i


def test_without_a_terminal_lines_appear_for_a_slow_loop() -> None:
    out = io.StringIO()
    with Progress(unit="rows", label="load", file=out, interval=0.01) as bar:
        assert list(bar.count(slow(10, 0.01))) == list(range(10))
    lines = out.getvalue().splitlines()
    assert lines, "silence"
    assert all(re.fullmatch(r"load: [\d,]+ rows?  [\d,]+ rows/s  [\d.]+ s", line) for line in lines), lines
    assert "\r" not in out.getvalue()


def test_without_a_terminal_a_quick_loop_prints_nothing_and_silent_never() -> None:
    out = io.StringIO()
    with Progress(file=out, interval=3600) as bar:
        list(bar.count(range(1000)))
    assert out.getvalue() == ""
    for stream in (io.StringIO(), Terminal()):
        with Progress(file=stream, enabled=False, interval=0.001, redraw=0.001) as bar:
            list(bar.count(slow(5, 0.005)))
        assert stream.getvalue() == ""
        assert bar.done == 5


def test_the_bar_ends_on_the_figures_a_summary_prints() -> None:
    term = Terminal()
    bar = Progress(total=10, unit="alerts", file=term, redraw=0.001)
    for _ in slow(10, 0.003):
        bar.advance(1)
    bar.close()
    elapsed, rate = bar.elapsed, bar.rate
    time.sleep(0.01)
    assert (bar.elapsed, bar.rate) == (elapsed, rate)  # the clock stopped at close()
    drawn = term.getvalue()
    assert drawn.count("100%") == 1 and drawn.endswith("\n")
    final = drawn.rstrip().rsplit("\r", 1)[-1]
    assert f"10/10 alerts  {rate:,.0f} alerts/s  {elapsed:,.1f} s" in final


def test_the_bar_follows_a_position_and_has_no_bar_without_a_total() -> None:
    term = Terminal()
    where = [0]
    bar = Progress(total=100, position=lambda: where[0], file=term, redraw=0.001)
    for _ in slow(5, 0.005):
        bar.advance(1)
        where[0] += 10
    time.sleep(0.02)
    assert re.search(r"\[#+-+\]  50%  5 rows", term.getvalue()), term.getvalue()
    bar.close()
    term = Terminal()
    with Progress(file=term, redraw=0.001) as bar:
        list(bar.count(slow(3, 0.005)))
    assert "#" not in term.getvalue() and "3 rows" in term.getvalue()


def test_lines_keep_coming_while_the_loop_waits_and_100_percent_waits_for_close() -> None:
    out = io.StringIO()
    where = [100]  # the whole file read: what is left is the COMMIT
    bar = Progress(total=100, position=lambda: where[0], label="load", file=out, interval=0.005)
    bar.advance(7)
    deadline = time.monotonic() + 10
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)  # nothing is counted meanwhile
    waiting = out.getvalue()
    assert waiting.startswith("load:  99%  7 rows  "), waiting
    assert "100%" not in waiting
    bar.close()
    after = out.getvalue()
    assert "100%" not in after  # without a terminal the summary line says the end, not a progress line


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_closed_stream_stops_the_lines_not_the_loop() -> None:
    out = io.StringIO()
    out.close()
    with Progress(file=out, interval=0.001) as bar:
        assert sum(bar.count(slow(5, 0.005))) == 10
    assert bar.done == 5
