"""Column expressions: Model.col on the class, the value on an instance; filter / order_by / projections /
distinct / to_dataframe against a real server."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

import psycopg
import pytest

import dbplugins
from dbplugins import (
    Column,
    MultipleResultsFound,
    NoResultFound,
    QueryError,
    SQLConnection,
    and_,
    cols,
    model,
    not_,
    or_,
)
from dbplugins._query.expressions import ColumnExpr, Condition, OrderExpr, params_of, sql_of
from dbplugins.models import Detection, Object


@model("te_star", primary_key=["sid"])
@dataclass
class Star:
    sid: Annotated[int, Column("bigint")]
    name: str
    mag: Optional[float] = None  # noqa: UP045 - the model annotation style of DESIGN.md §3a
    ndet: int | None = 7
    tags: list[str] = field(default_factory=list)


@model("te_frozen", primary_key=["fid"])
@dataclass(frozen=True)
class Frozen:
    fid: int
    label: str = "none"


@model("te_other", primary_key=["sid"])
@dataclass
class Other:
    sid: Annotated[int, Column("bigint")]
    name: str

# The typed spelling of Star.sid, Other.name (the same ColumnExpr objects, see
# test_cols_gives_the_typed_expressions): type checkers see Star.sid as an int, so the operator tests go
# through cols().
S = cols(Star)
OTHER = cols(Other)

DDL = """
CREATE TABLE te_star (sid bigint PRIMARY KEY, name varchar NOT NULL, mag double precision, ndet integer,
                      tags varchar[] NOT NULL);
CREATE TABLE te_frozen (fid integer PRIMARY KEY, label varchar NOT NULL);
CREATE TABLE te_other (sid bigint PRIMARY KEY, name varchar NOT NULL);
"""

# sid 1..20; name s01..s20; mag sid/2, NULL for every 4th; ndet sid % 3.
STARS: list[dict[str, Any]] = [
    {
        "sid": i,
        "name": f"s{i:02d}",
        "mag": None if i % 4 == 0 else i / 2,
        "ndet": i % 3,
        "tags": [f"t{i % 2}"],
    }
    for i in range(1, 21)
]


@pytest.fixture
def tdb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    with psycopg.connect(module_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE te_star, te_frozen, te_other")
        cur.executemany(
            "INSERT INTO te_star (sid, name, mag, ndet, tags)"
            " VALUES (%(sid)s, %(name)s, %(mag)s, %(ndet)s, %(tags)s)",
            STARS,
        )
    module_db.create_session()
    yield module_db
    module_db.end_session()


def sids(rows: list[Star]) -> list[int]:
    return sorted(r.sid for r in rows)


def where(pred: Any) -> list[int]:
    return [s["sid"] for s in STARS if pred(s)]


# -- the class / instance split ------------------------------------------------------------------------------


def test_class_attribute_is_an_expression_instance_attribute_is_the_value() -> None:
    # Star.sid itself is under test here; type checkers see a field without a default as instance-only.
    assert isinstance(Star.sid, ColumnExpr)  # type: ignore[misc]
    assert isinstance(Object.oid, ColumnExpr)
    star = Star(sid=1, name="a")
    assert star.sid == 1 and star.name == "a"
    assert isinstance(star.sid, int)


def test_dataclass_machinery_is_untouched() -> None:
    star = Star(sid=1, name="a")
    assert star.mag is None and star.ndet == 7 and star.tags == []  # __init__ defaults and factories
    assert [f.name for f in dataclasses.fields(Star)] == ["sid", "name", "mag", "ndet", "tags"]
    assert dataclasses.fields(Star)[3].default == 7
    assert dataclasses.replace(star, ndet=3).ndet == 3
    assert dataclasses.asdict(star) == {"sid": 1, "name": "a", "mag": None, "ndet": 7, "tags": []}
    assert pickle.loads(pickle.dumps(star)) == star
    assert copy.deepcopy(star) == star
    assert star == Star(sid=1, name="a") and star != Star(sid=2, name="a")
    assert repr(star) == "Star(sid=1, name='a', mag=None, ndet=7, tags=[])"
    star.ndet = 9
    assert star.ndet == 9 and isinstance(
        Star.ndet, ColumnExpr
    )  # setting on the instance leaves the class alone


def test_frozen_dataclass_model_keeps_working() -> None:
    f = Frozen(fid=1)
    assert f.label == "none" and isinstance(Frozen.label, ColumnExpr)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.label = "x"
    assert pickle.loads(pickle.dumps(f)) == f
    assert hash(f) == hash(Frozen(fid=1))


def test_condition_has_no_truth_value() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        bool(S.ndet > 3)
    with pytest.raises(TypeError):
        _ = (S.ndet > 3) and (S.mag < 2)


def test_sql_is_quoted_and_values_bound() -> None:
    cond = or_(S.name == "x'; DROP TABLE te_star; --", ~S.mag.between(1, 2))
    assert sql_of(cond) == '("name" = %s OR NOT ("mag" BETWEEN %s AND %s))'
    assert params_of(cond) == ["x'; DROP TABLE te_star; --", 1, 2]


# -- operators against the server ----------------------------------------------------------------------------

CASES: list[tuple[str, Any, Any]] = [
    ("eq", lambda: S.ndet == 1, lambda s: s["ndet"] == 1),
    ("ne", lambda: S.ndet != 1, lambda s: s["ndet"] != 1),
    ("lt", lambda: S.mag < 3, lambda s: s["mag"] is not None and s["mag"] < 3),
    ("le", lambda: S.mag <= 3, lambda s: s["mag"] is not None and s["mag"] <= 3),
    ("gt", lambda: S.mag > 8, lambda s: s["mag"] is not None and s["mag"] > 8),
    ("ge", lambda: S.mag >= 8, lambda s: s["mag"] is not None and s["mag"] >= 8),
    ("reversed", lambda: 8 <= S.mag, lambda s: s["mag"] is not None and s["mag"] >= 8),
    ("in_", lambda: S.sid.in_([2, 3, 99]), lambda s: s["sid"] in (2, 3)),
    ("in_ generator", lambda: S.sid.in_(i for i in (4, 5)), lambda s: s["sid"] in (4, 5)),
    ("in_ empty", lambda: S.sid.in_([]), lambda s: False),
    ("not_in", lambda: S.sid.not_in([1, 2]), lambda s: s["sid"] not in (1, 2)),
    ("notin_", lambda: S.sid.notin_([1, 2]), lambda s: s["sid"] not in (1, 2)),
    ("like", lambda: S.name.like("s1%"), lambda s: s["name"].startswith("s1")),
    ("ilike", lambda: S.name.ilike("S1%"), lambda s: s["name"].startswith("s1")),
    ("not_like", lambda: S.name.not_like("s1%"), lambda s: not s["name"].startswith("s1")),
    ("is_ None", lambda: S.mag.is_(None), lambda s: s["mag"] is None),
    ("== None", lambda: S.mag == None, lambda s: s["mag"] is None),  # noqa: E711 - SQLAlchemy idiom
    ("is_not None", lambda: S.mag.is_not(None), lambda s: s["mag"] is not None),
    ("isnot None", lambda: S.mag.isnot(None), lambda s: s["mag"] is not None),
    ("!= None", lambda: S.mag != None, lambda s: s["mag"] is not None),  # noqa: E711
    ("between", lambda: S.sid.between(3, 6), lambda s: 3 <= s["sid"] <= 6),
    ("column vs column", lambda: S.mag > S.sid, lambda s: False),
    ("and_", lambda: and_(S.ndet == 0, S.sid > 10), lambda s: s["ndet"] == 0 and s["sid"] > 10),
    ("&", lambda: (S.ndet == 0) & (S.sid > 10), lambda s: s["ndet"] == 0 and s["sid"] > 10),
    ("or_", lambda: or_(S.sid == 1, S.sid == 20), lambda s: s["sid"] in (1, 20)),
    ("|", lambda: (S.sid == 1) | (S.sid == 20), lambda s: s["sid"] in (1, 20)),
    ("not_", lambda: not_(S.ndet == 0), lambda s: s["ndet"] != 0),
    ("~", lambda: ~(S.ndet == 0), lambda s: s["ndet"] != 0),
    (
        "nested",
        lambda: or_(and_(S.ndet == 1, S.mag.is_(None)), ~S.sid.in_(range(1, 19))),
        lambda s: (s["ndet"] == 1 and s["mag"] is None) or s["sid"] >= 19,
    ),
]


@pytest.mark.parametrize(("name", "make", "pred"), CASES, ids=[c[0] for c in CASES])
def test_operator(tdb: SQLConnection, name: str, make: Any, pred: Any) -> None:
    q = tdb.query(Star).filter(make())
    assert sids(q.all()) == where(pred)
    assert q.count() == len(where(pred))


def test_several_conditions_mean_and_and_mix_with_the_old_forms(tdb: SQLConnection) -> None:
    q = tdb.query(Star).filter(S.ndet == 2, S.sid > 5).filter("mag", "is not null").filter_by(ndet=2)
    assert sids(q.all()) == where(lambda s: s["ndet"] == 2 and s["sid"] > 5 and s["mag"] is not None)


def test_hostile_values_are_data(tdb: SQLConnection) -> None:
    evil = "s01'; DROP TABLE te_star; --"
    assert tdb.query(Star).filter(S.name == evil).all() == []
    assert tdb.query(Star).filter(S.name.in_([evil, "s02"])).one().sid == 2
    assert tdb.query(Star).count() == 20


def test_results(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    assert q.filter(S.sid == 3).one().name == "s03"
    assert q.filter(S.sid == 99).one_or_none() is None
    with pytest.raises(NoResultFound, match="sid = 99"):
        q.filter(S.sid == 99).one()
    with pytest.raises(MultipleResultsFound, match="ndet = 1"):
        q.filter(S.ndet == 1).one_or_none()
    first = q.filter(S.ndet == 1).order_by(S.sid.desc()).first()
    assert first is not None and first.sid == 19
    assert q.filter(S.sid > 18).exists()
    assert not q.filter(S.sid > 30).exists()


# -- ordering ----------------------------------------------------------------------------------------------


def test_order_by_expressions(tdb: SQLConnection) -> None:
    q = tdb.query(Star).filter(S.sid <= 8)
    assert [s.sid for s in q.order_by(S.sid.desc()).all()] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert [s.sid for s in q.order_by(S.sid.asc()).all()] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [s.sid for s in q.order_by(S.ndet, S.sid.desc()).all()] == [6, 3, 7, 4, 1, 8, 5, 2]
    # NULL mags (sid 4, 8): PostgreSQL puts NULLs last ascending, first descending, unless told
    assert {s.sid for s in q.order_by(S.mag.desc()).all()[:2]} == {4, 8}
    last = [s.sid for s in q.order_by(S.mag.desc().nulls_last()).all()]
    assert last[:6] == [7, 6, 5, 3, 2, 1] and set(last[6:]) == {4, 8}
    assert {s.sid for s in q.order_by(S.mag.nulls_first()).all()[:2]} == {4, 8}
    assert {s.sid for s in q.order_by(S.mag.asc().nulls_first(), "sid").all()[:2]} == {4, 8}
    assert [s.sid for s in q.order_by("-sid").order_by(None).order_by(S.sid).all()] == list(range(1, 9))


def test_order_by_mixes_strings_and_expressions(tdb: SQLConnection) -> None:
    rows = tdb.query(Star).filter(S.sid <= 6).order_by("ndet", S.sid.desc().nulls_last()).all()
    assert [s.sid for s in rows] == [6, 3, 4, 1, 5, 2]


# -- projections, distinct, dataframes -----------------------------------------------------------------------


def test_projection_rows_have_attribute_access(tdb: SQLConnection) -> None:
    rows = tdb.query(S.sid, S.name).filter(S.sid < 3).order_by(S.sid).all()
    assert [(r.sid, r.name) for r in rows] == [(1, "s01"), (2, "s02")]
    assert rows[0][0] == 1 and tuple(rows[1]) == (2, "s02")
    sid, name = rows[0]
    assert (sid, name) == (1, "s01")
    one = tdb.query(S.name).filter(S.sid == 5).one()
    assert one.name == "s05"


def test_distinct(tdb: SQLConnection) -> None:
    q = tdb.query(S.ndet).distinct().order_by(S.ndet)
    assert [r.ndet for r in q.all()] == [0, 1, 2]
    assert q.count() == 3
    assert tdb.query(S.ndet).count() == 20


def test_projection_of_two_models_is_refused(tdb: SQLConnection) -> None:
    with pytest.raises(QueryError, match="no joins"):
        tdb.query(S.sid, OTHER.name)
    with pytest.raises(QueryError, match="at most one model"):
        tdb.query(Star, Other)


def test_to_dataframe(tdb: SQLConnection) -> None:
    pd = pytest.importorskip("pandas")
    df = tdb.query(Star).filter(S.sid <= 3).order_by(S.sid).to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["sid", "name", "mag", "ndet", "tags"]
    assert df["sid"].tolist() == [1, 2, 3] and df["name"].tolist() == ["s01", "s02", "s03"]
    assert df["tags"].tolist() == [["t1"], ["t0"], ["t1"]]
    proj = tdb.query(S.name, S.mag).filter(S.sid.in_([4, 5])).order_by(S.sid).to_dataframe()
    assert list(proj.columns) == ["name", "mag"]
    assert proj["name"].tolist() == ["s04", "s05"] and pd.isna(proj["mag"][0]) and proj["mag"][1] == 2.5
    empty = tdb.query(S.name).filter(S.sid > 100).to_dataframe()
    assert list(empty.columns) == ["name"] and len(empty) == 0


def test_delete_paginate_and_find_take_expressions(tdb: SQLConnection) -> None:
    page = tdb.query(Star).filter(S.ndet == 0).order_by(S.sid).paginate(1, 2)
    assert [s.sid for s in page.items] == [3, 6] and page.total == 6
    assert tdb.query(Star).filter(S.sid > 15).delete() == 5
    assert tdb.session is not None
    tdb.session.commit()
    assert tdb.query(Star).count() == 15


# -- refusals ----------------------------------------------------------------------------------------------


def test_other_models_columns_are_refused(tdb: SQLConnection) -> None:
    with pytest.raises(QueryError, match="no joins"):
        tdb.query(Star).filter(OTHER.sid == 1)
    with pytest.raises(QueryError, match="no joins"):
        tdb.query(Star).order_by(OTHER.sid.desc())
    with pytest.raises(QueryError, match="no joins"):
        S.sid == OTHER.sid  # noqa: B015
    with pytest.raises(QueryError, match="no joins"):
        and_(S.sid == 1, OTHER.sid == 1)
    with pytest.raises(QueryError, match="no joins"):
        tdb.query(Star).filter(S.sid == 1, OTHER.sid == 2)


def test_bad_conditions_are_refused(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    with pytest.raises(QueryError, match="column conditions"):
        q.filter(True)
    with pytest.raises(QueryError, match="list of values"):
        S.sid.in_("abc")
    with pytest.raises(QueryError, match="list of values"):
        S.sid.in_(5)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="None"):
        S.sid.in_([1, None])
    with pytest.raises(QueryError, match="array column"):
        S.tags.in_([["a"]])
    with pytest.raises(QueryError, match="in_"):
        S.sid == [1, 2]  # noqa: B015
    with pytest.raises(QueryError, match="None"):
        S.mag < None  # noqa: B015
    with pytest.raises(QueryError, match="only None"):
        S.mag.is_(3)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="str pattern"):
        S.name.like(3)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="needs at least one"):
        q.filter()
    with pytest.raises(QueryError, match="get_or_create"):
        q.filter(S.sid == 1).get_or_create(filter_by={"sid": 1})


def test_wrong_value_type_is_a_clear_error(tdb: SQLConnection) -> None:
    with pytest.raises(dbplugins.DbpError):
        tdb.query(Star).filter(S.sid == "not a number").all()


def test_cols_gives_the_typed_expressions() -> None:
    assert cols(Object).oid is vars(Object)["oid"] and cols(Star).ndet is vars(Star)["ndet"]
    assert S.sid is vars(Star)["sid"] and OTHER.name is vars(Other)["name"]
    with pytest.raises(dbplugins.UnknownColumnError, match="nope"):
        cols(Star).nope  # noqa: B018
    with pytest.raises(dbplugins.ConfigurationError):
        cols(dict)
    assert isinstance(cols(Object).oid.desc(), OrderExpr)
    assert isinstance(cols(Detection).oid == "x", Condition)


def test_shapes_share_one_statement_text(tdb: SQLConnection) -> None:
    a = tdb.query(Star).filter(S.sid.in_([1, 2]), S.mag > 0).order_by(S.mag.desc().nulls_last())
    b = tdb.query(Star).filter(S.sid.in_([7, 8, 9]), S.mag > 3).order_by(S.mag.desc().nulls_last())
    assert a.as_sql() == b.as_sql()
    assert sids(a.all()) == [1, 2] and sids(b.all()) == [7, 9]


# -- how rows become results ---------------------------------------------------------------------------------


@model("te_post", primary_key=["pid"])
@dataclass
class Post:
    pid: int
    label: str = ""

    def __post_init__(self) -> None:
        self.shout = self.label.upper()  # not a column: only __init__ sets it


@model("te_point", primary_key=["pid"])
@dataclass
class Point:
    pid: int
    where: Annotated[Optional[str], Column("point")] = None  # noqa: UP045 - no binary loader giving a str


def test_instances_equal_what_init_builds(tdb: SQLConnection) -> None:
    rows = tdb.query(Star).filter(S.sid <= 5).order_by(S.sid).all()
    assert rows == [Star(**{k: v for k, v in s.items()}) for s in STARS[:5]]
    assert all(type(r) is Star for r in rows)
    assert dataclasses.asdict(rows[3]) == STARS[3] and pickle.loads(pickle.dumps(rows[0])) == rows[0]
    frozen = Frozen(fid=1, label="x")
    tdb.query(Frozen).bulk_insert([frozen])
    got = tdb.query(Frozen).one()
    assert got == frozen and hash(got) == hash(frozen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.label = "y"  # type: ignore[misc]


def test_post_init_models_are_built_with_init(module_dsn: str, tdb: SQLConnection) -> None:
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS te_post;"
            " CREATE TABLE te_post (pid integer PRIMARY KEY, label varchar NOT NULL)"
        )
        conn.execute("INSERT INTO te_post VALUES (1, 'a')")
    row = tdb.query(Post).one()
    assert row.pid == 1 and row.shout == "A"  # __post_init__ ran, as with psycopg's class_row


def test_types_without_a_faithful_binary_loader_come_as_text(module_dsn: str, tdb: SQLConnection) -> None:
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute(
            'DROP TABLE IF EXISTS te_point; CREATE TABLE te_point (pid integer PRIMARY KEY, "where" point)'
        )
        conn.execute("INSERT INTO te_point VALUES (1, '(1,2)')")
    assert tdb.query(Point).one().where == "(1,2)"
    assert tdb.query(cols(Point).where).one().where == "(1,2)"


def test_projection_rows(tdb: SQLConnection) -> None:
    row = tdb.query(S.sid, S.name, S.tags).filter(S.sid == 2).one()
    assert row._fields == ("sid", "name", "tags")
    assert row._asdict() == {"sid": 2, "name": "s02", "tags": ["t0"]}
    assert repr(row) == "Row(sid=2, name='s02', tags=['t0'])"
    assert isinstance(row, tuple) and row == (2, "s02", ["t0"])
    # the old columns() keeps returning plain tuples
    assert type(tdb.query(Star).columns("sid").filter(S.sid == 2).one()) is tuple


def test_to_dataframe_null_handling(tdb: SQLConnection) -> None:
    pytest.importorskip("pandas")
    df = tdb.query(S.sid, S.mag, S.ndet).filter(S.sid.in_([3, 4])).order_by(S.sid).to_dataframe()
    assert str(df["sid"].dtype) == "int64" and str(df["mag"].dtype) == "float64"
    assert df["mag"].isna().tolist() == [False, True]
    tdb.query(Star).bulk_update([{"sid": 3, "ndet": None}])
    df = tdb.query(S.sid, S.ndet).filter(S.sid.in_([3, 4])).order_by(S.sid).to_dataframe()
    assert str(df["ndet"].dtype) == "float64" and df["ndet"].isna().tolist() == [True, False]


def test_module_examples() -> None:
    import doctest

    import dbplugins._query.expressions

    result = doctest.testmod(dbplugins._query.expressions, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
