"""Query: filters, ordering, results, find / find_one / check_exists, paginate, keyset, delete, hostile
input."""

from __future__ import annotations

import doctest
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import psycopg
import pytest

import dbplugins._query.builder
import dbplugins._query.conditions
import dbplugins._query.query
import dbplugins._query.shapes
import dbplugins._query.statements
import dbplugins._upsert.one
from dbplugins import (
    Column,
    DbpError,
    MultipleResultsFound,
    NoResultFound,
    QueryError,
    SQLConnection,
    UnknownColumnError,
    model,
)
from dbplugins._query.query import KeysetPage, Pagination, Query
from dbplugins._session.session import Session


@model("tq_star", primary_key=["sid"], unique=[("name",)])
@dataclass
class Star:
    sid: Annotated[int, Column("bigint")]
    name: str
    mag: Optional[float] = None  # noqa: UP045 - Optional[...], the annotation style of the documented models
    ndet: Optional[int] = None  # noqa: UP045
    tags: Optional[list[str]] = None  # noqa: UP045


@model("tq_obs", primary_key=["oid", "fid", "mjd"])
@dataclass
class Obs:
    oid: str
    fid: int
    mjd: float
    flux: Optional[float] = None  # noqa: UP045


@model("watchlist", primary_key=["wid"])
@dataclass
class Watchlist:
    """The model of the docstring examples in dbplugins._query.query and dbplugins._upsert.one."""

    wid: Annotated[int, Column("bigint")]
    name: str
    score: Optional[float] = None  # noqa: UP045


DDL = """
CREATE TABLE tq_star (sid bigint PRIMARY KEY, name varchar NOT NULL UNIQUE, mag double precision,
                      ndet integer, tags varchar[]);
CREATE TABLE tq_obs (oid varchar, fid integer, mjd double precision, flux double precision,
                     PRIMARY KEY (oid, fid, mjd));
"""

# 25 stars: sid 1..25, name s01..s25, mag sid/2 except every 5th (NULL), ndet sid % 5.
STARS = [
    {
        "sid": i,
        "name": f"s{i:02d}",
        "mag": None if i % 5 == 0 else i / 2,
        "ndet": i % 5,
        "tags": [f"t{i % 3}"],
    }
    for i in range(1, 26)
]


@pytest.fixture
def tdb(module_db: SQLConnection, module_dsn: str) -> Iterator[SQLConnection]:
    """The module's connection with a fresh session and freshly seeded tables: 25 stars, 12 observations."""
    with psycopg.connect(module_dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE tq_star, tq_obs")
        cur.executemany(
            "INSERT INTO tq_star (sid, name, mag, ndet, tags)"
            " VALUES (%(sid)s, %(name)s, %(mag)s, %(ndet)s, %(tags)s)",
            STARS,
        )
        cur.executemany(
            "INSERT INTO tq_obs (oid, fid, mjd, flux) VALUES (%s, %s, %s, %s)",
            [(f"ZTF{o}", f, 59000.0 + m, float(m)) for o in "ab" for f in (1, 2) for m in range(3)],
        )
    module_db.create_session()
    yield module_db
    module_db.end_session()


def sids(rows: list[Star]) -> list[int]:
    return [r.sid for r in rows]


# -- docs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [dbplugins._query.query, dbplugins._query.builder, dbplugins._upsert.one],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: Any) -> None:
    globs = {"Watchlist": Watchlist, "Query": Query}
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# -- filters -------------------------------------------------------------------------------------------------


def test_filter_by_dict_and_kwargs(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    assert sids(q.filter_by({"ndet": 2}).all()) == [2, 7, 12, 17, 22]
    assert sids(q.filter_by(ndet=2, name="s07").all()) == [7]
    assert sids(q.filter_by({"ndet": 2}).filter_by(name="s12").all()) == [12]
    assert q.filter_by({}).count() == 25


def test_filter_by_none_is_null(tdb: SQLConnection) -> None:
    assert sids(tdb.query(Star).filter_by(mag=None).all()) == [5, 10, 15, 20, 25]
    assert tdb.query(Star).filter("mag", "!=", None).count() == 20


def test_builders_do_not_modify_the_query(tdb: SQLConnection) -> None:
    base = tdb.query(Star)
    narrowed = base.filter_by(ndet=1).order_by("-sid").limit(2)
    assert base.count() == 25
    assert sids(narrowed.all()) == [21, 16]


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("=", 3, [3]),
        ("==", 3, [3]),
        ("!=", 3, [s for s in range(1, 26) if s != 3]),
        ("<>", 3, [s for s in range(1, 26) if s != 3]),
        ("<", 3, [1, 2]),
        ("<=", 3, [1, 2, 3]),
        (">", 23, [24, 25]),
        (">=", 23, [23, 24, 25]),
        ("in", [2, 4, 99], [2, 4]),
        ("IN", (2, 4), [2, 4]),
        ("in", [], []),
        ("not in", [s for s in range(1, 24)], [24, 25]),
        ("between", (10, 12), [10, 11, 12]),
        ("BETWEEN", [12, 10], []),
    ],
)
def test_operators_on_the_primary_key(tdb: SQLConnection, op: str, value: Any, expected: list[int]) -> None:
    assert sids(tdb.query(Star).filter("sid", op, value).order_by("sid").all()) == expected


def test_operators_on_text_and_nulls(tdb: SQLConnection) -> None:
    q = tdb.query(Star).order_by("sid")
    assert sids(q.filter("mag", "is null").all()) == [5, 10, 15, 20, 25]
    assert q.filter("mag", "is not null").count() == 20
    assert q.filter("mag", "is", None).count() == 5
    assert q.filter("mag", "is not", None).count() == 20
    assert sids(q.filter("name", "like", "s1%").all()) == list(range(10, 20))
    assert sids(q.filter("name", "ilike", "S2%").all()) == list(range(20, 26))
    assert sids(q.filter("name", "in", ["s01", "s03"]).all()) == [1, 3]
    # SQL semantics: NULL is neither equal nor unequal to a value
    assert q.filter("mag", "!=", 1.0).count() == 19
    assert sids(q.filter("mag", ">", 10.0).filter("ndet", "in", [1, 2]).all()) == [21, 22]
    assert sids(q.filter("mag", "between", (1, 2)).all()) == [2, 3, 4]


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [
        ("~", 1, "unknown filter operator"),
        ("; DROP TABLE tq_star", 1, "unknown filter operator"),
        ("in", "abc", "needs a list"),
        ("in", 5, "needs a list"),
        ("between", (1, 2, 3), "pair"),
        ("between", 1, "pair"),
        ("<", None, "compare with None"),
        ("is null", 5, "takes no value"),
        ("is", 5, "only None"),
        (">", dbplugins._query.conditions.MISSING, "needs a value"),
    ],
)
def test_bad_operators_and_values(tdb: SQLConnection, op: str, value: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        tdb.query(Star).filter("sid", op, value)


def test_a_list_for_an_equality_filter_points_to_in(tdb: SQLConnection) -> None:
    with pytest.raises(QueryError, match="'in'"):
        tdb.query(Star).filter_by(sid=[1, 2]).all()
    with pytest.raises(QueryError, match="'in'"):
        tdb.query(Star).find(filter_by={"name": ("s01", "s02")})


def test_in_is_refused_on_array_columns(tdb: SQLConnection) -> None:
    with pytest.raises(QueryError, match="array column"):
        tdb.query(Star).filter("tags", "in", [["t1"]]).all()
    assert sids(tdb.query(Star).filter_by(tags=["t1"]).order_by("sid").all())[:3] == [1, 4, 7]


def test_find_takes_a_list_of_conditions(tdb: SQLConnection) -> None:
    rows = tdb.query(Star).find(
        filter_by=[("sid", ">=", 20), ("mag", "is null"), ("ndet", "=", 0)], paginate=False
    )
    assert sorted(sids(rows)) == [20, 25]
    with pytest.raises(QueryError, match="triples"):
        tdb.query(Star).find(filter_by=[("sid",)])
    with pytest.raises(QueryError, match="filter_by must be"):
        tdb.query(Star).find(filter_by="sid = 1")
    with pytest.raises(QueryError, match="takes a dict"):
        tdb.query(Star).filter_by([("sid", 1)])  # type: ignore[arg-type]


# -- ordering, limits, results -------------------------------------------------------------------------------


def test_order_by_forms(tdb: SQLConnection) -> None:
    q = tdb.query(Star).filter("sid", "<=", 6)
    assert sids(q.order_by("sid").all()) == [1, 2, 3, 4, 5, 6]
    assert sids(q.order_by("-sid").all()) == [6, 5, 4, 3, 2, 1]
    assert sids(q.order_by("sid DESC").all()) == [6, 5, 4, 3, 2, 1]
    assert sids(q.order_by("ndet", "-sid").all()) == [5, 6, 1, 2, 3, 4]
    assert sids(q.order_by("ndet").order_by("sid desc").all()) == [5, 6, 1, 2, 3, 4]
    assert q.order_by("-sid").order_by(None)._order == ()
    with pytest.raises(UnknownColumnError):
        q.order_by("nope")
    with pytest.raises(QueryError):
        q.order_by(3)  # type: ignore[arg-type]


def test_limit_offset(tdb: SQLConnection) -> None:
    q = tdb.query(Star).order_by("sid")
    assert sids(q.limit(3).all()) == [1, 2, 3]
    assert sids(q.limit(3).offset(22).all()) == [23, 24, 25]
    assert sids(q.offset(24).all()) == [25]
    assert q.limit(0).all() == []
    assert sids(q.limit(3).limit(None).all()) == list(range(1, 26))
    with pytest.raises(QueryError):
        q.limit(-1)
    with pytest.raises(QueryError):
        q.offset(-1)


def test_results_are_model_instances(tdb: SQLConnection) -> None:
    star = tdb.query(Star).filter_by(sid=3).one()
    assert star == Star(sid=3, name="s03", mag=1.5, ndet=3, tags=["t0"])
    assert (
        list(tdb.query(Star).filter("sid", "<", 3).order_by("sid"))
        == tdb.query(Star).filter("sid", "<", 3).order_by("sid").all()
    )


def test_first_one_one_or_none(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    first = q.order_by("-sid").first()
    assert first is not None and first.sid == 25
    assert q.filter_by(sid=99).first() is None
    assert q.filter_by(sid=7).one().name == "s07"
    assert q.filter_by(sid=99).one_or_none() is None
    with pytest.raises(NoResultFound):
        q.filter_by(sid=99).one()
    with pytest.raises(MultipleResultsFound, match="more than one"):
        q.filter_by(ndet=1).one()
    with pytest.raises(MultipleResultsFound):
        q.filter_by(ndet=1).one_or_none()
    assert issubclass(MultipleResultsFound, DbpError) and issubclass(NoResultFound, DbpError)


def test_get_by_primary_key(tdb: SQLConnection) -> None:
    star = tdb.query(Star).get(4)
    assert star is not None and star.name == "s04"
    assert tdb.query(Star).get(404) is None
    obs = tdb.query(Obs).get(("ZTFa", 2, 59001.0))
    assert obs is not None and obs.flux == 1.0
    assert tdb.query(Obs).get({"oid": "ZTFb", "fid": 1, "mjd": 59002.0}) is not None
    with pytest.raises(QueryError, match="composite key"):
        tdb.query(Obs).get("ZTFa")
    with pytest.raises(QueryError, match="3 column"):
        tdb.query(Obs).get(("ZTFa", 1))


def test_columns_return_tuples(tdb: SQLConnection) -> None:
    rows = tdb.query(Star).columns("sid", "name").filter("sid", "<=", 2).order_by("sid").all()
    assert rows == [(1, "s01"), (2, "s02")]
    page = tdb.query(Star).columns("name").filter("sid", "<=", 2).order_by("sid").paginate()
    assert page.items == [("s01",), ("s02",)] and page.total == 2
    with pytest.raises(UnknownColumnError):
        tdb.query(Star).columns("sid", "secret")
    with pytest.raises(QueryError):
        tdb.query(Star).columns()


def test_count(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    assert q.count() == 25
    assert q.filter_by(ndet=0).count() == 5
    assert q.limit(7).count() == 7
    assert q.offset(20).count() == 5
    assert q.order_by("-sid").limit(30).offset(3).count() == 22


def test_delete_runs_in_the_session_transaction(tdb: SQLConnection, module_dsn: str) -> None:
    assert tdb.query(Star).filter("sid", ">", 20).delete() == 5
    assert tdb.query(Star).count() == 20  # the session sees its own deletion
    with psycopg.connect(module_dsn) as other:
        assert other.execute("SELECT count(*) FROM tq_star").fetchone() == (25,)
    tdb.session.rollback()  # type: ignore[union-attr]
    assert tdb.query(Star).count() == 25
    assert tdb.query(Star).filter_by(ndet=0).delete() == 5
    tdb.session.commit()  # type: ignore[union-attr]
    with psycopg.connect(module_dsn) as other:
        assert other.execute("SELECT count(*) FROM tq_star").fetchone() == (20,)
    with pytest.raises(QueryError, match="delete"):
        tdb.query(Star).limit(1).delete()


# -- db-plugins' methods -------------------------------------------------------------------------------------


def test_find_paginates_by_default(tdb: SQLConnection) -> None:
    page = tdb.query(Star).find()
    assert isinstance(page, Pagination)
    assert (page.page, page.per_page, page.total, page.pages, len(page.items)) == (1, 10, 25, 3, 10)
    assert page.has_next and page.next_num == 2 and not page.has_prev and page.prev_num is None
    rows = tdb.query(Star).find(filter_by={"ndet": 4}, paginate=False)
    assert isinstance(rows, list) and sorted(sids(rows)) == [4, 9, 14, 19, 24]
    assert sorted(sids(tdb.query(Star).find_all(filter_by={"ndet": 4}, paginate=False))) == sorted(sids(rows))
    page2 = tdb.query(Star).order_by("sid").find(filter_by={"ndet": 4}, page=2, per_page=2)
    assert sids(page2.items) == [14, 19] and page2.total == 5


def test_find_one(tdb: SQLConnection) -> None:
    found = tdb.query(Star).find_one(filter_by={"name": "s05"})
    assert found is not None and found.sid == 5
    assert tdb.query(Star).find_one(filter_by={"name": "nope"}) is None
    with pytest.raises(MultipleResultsFound):
        tdb.query(Star).find_one(filter_by={"ndet": 0})
    with pytest.raises(MultipleResultsFound):
        tdb.query(Star).find_one()  # db-plugins: the default {} filter on a table of many rows


def test_check_exists(tdb: SQLConnection) -> None:
    assert tdb.query(Star).check_exists(filter_by={"sid": 1})
    assert not tdb.query(Star).check_exists(filter_by={"sid": 1, "ndet": 4})
    assert tdb.query().check_exists(Star, {"name": "s25"})
    assert tdb.query(Star).check_exists(filter_by=[("mag", ">", 11)])
    assert tdb.query(Star).filter_by(sid=2).exists()


def test_unbound_query_takes_model(tdb: SQLConnection) -> None:
    q = tdb.query()
    assert sorted(sids(q.find(model=Star, filter_by={"ndet": 3}, paginate=False))) == [3, 8, 13, 18, 23]
    assert q.find(Star).total == 25
    obs = q.find_one(model=Obs, filter_by={"oid": "ZTFa", "fid": 1, "mjd": 59000.0})
    assert obs is not None and obs.flux == 0.0
    assert q.find_all(model=Obs, paginate=False).__len__() == 12
    with pytest.raises(QueryError, match="no model"):
        q.all()
    with pytest.raises(QueryError, match="no model"):
        q.find()
    with pytest.raises(QueryError, match="cannot run on model=Obs"):
        tdb.query(Star).find(model=Obs)
    assert tdb.query(Star).find(model=Star).total == 25


def test_query_needs_a_model_class(tdb: SQLConnection) -> None:
    with pytest.raises(DbpError, match="not a model"):
        tdb.query(dict)
    with pytest.raises(DbpError, match="at most one"):
        tdb.query(Star, Obs)


# -- pagination ----------------------------------------------------------------------------------------------


def test_paginate_pages(tdb: SQLConnection) -> None:
    q = tdb.query(Star).order_by("sid")
    p1 = q.paginate(1, 10)
    assert sids(p1.items) == list(range(1, 11))
    p2 = p1.next()
    assert (p2.page, sids(p2.items), p2.has_prev, p2.prev_num, p2.has_next, p2.next_num) == (
        2,
        list(range(11, 21)),
        True,
        1,
        True,
        3,
    )
    p3 = p2.next()
    assert sids(p3.items) == list(range(21, 26)) and not p3.has_next and p3.next_num is None
    assert sids(p3.prev().items) == sids(p2.items)
    assert q.paginate(4, 10).items == []


def test_paginate_edges(tdb: SQLConnection) -> None:
    q = tdb.query(Star).order_by("sid")
    p = q.paginate(page=0)
    assert p.page == 1 and sids(p.items)[0] == 1
    assert q.paginate(page=-3).page == 1
    p = q.paginate(per_page=-1)
    assert p.per_page == 10 and len(p.items) == 10
    p = q.paginate(per_page=0)
    assert p.items == [] and p.pages == 0 and not p.has_next and p.total == 25
    # the total is capped at max_results + 1, as db-plugins counted over LIMIT max_results + 1
    p = q.paginate(per_page=2, max_results=5)
    assert p.total == 6 and p.pages == 3
    assert q.paginate(max_results=100).total == 25
    p = q.paginate(count=False)
    assert p.total is None and p.pages == 0 and not p.has_next and len(p.items) == 10
    assert p.next().total == 25  # next() and prev() always count, as in db-plugins
    assert "page=1" in repr(p)
    with pytest.raises(AssertionError):
        Pagination(None, 1, 10, 20, []).next()


# -- keyset pagination ---------------------------------------------------------------------------------------


def test_keyset_single_key(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    page = q.keyset(per_page=10)
    assert isinstance(page, KeysetPage)
    assert sids(page.items) == list(range(1, 11)) and page.has_next and page.next_after == (10,)
    page = page.next()
    assert sids(page.items) == list(range(11, 21)) and page.after == (10,)
    page = page.next()
    assert sids(page.items) == list(range(21, 26)) and not page.has_next
    assert len(page) == 5 and list(page) == page.items
    assert page.next().items == []
    # after= a row, a bare key, a dict or a tuple
    row = q.get(20)
    for after in (row, 20, {"sid": 20}, (20,)):
        assert sids(q.keyset(3, after=after).items) == [21, 22, 23]
    assert sids(q.filter_by(ndet=1).keyset(2, after=6).items) == [11, 16]


def test_keyset_composite_key(tdb: SQLConnection) -> None:
    q = tdb.query(Obs)
    seen: list[tuple[str, int, float]] = []
    page = q.keyset(per_page=5)
    while True:
        seen.extend((o.oid, o.fid, o.mjd) for o in page.items)
        if not page.has_next:
            break
        page = page.next()
    assert seen == sorted((f"ZTF{o}", f, 59000.0 + m) for o in "ab" for f in (1, 2) for m in range(3))
    assert [o.mjd for o in q.keyset(2, after=("ZTFa", 1, 59000.0)).items] == [59001.0, 59002.0]
    assert [(o.oid, o.fid) for o in q.filter_by(fid=2).keyset(10, after=("ZTFa", 2, 59002.0)).items] == [
        ("ZTFb", 2)
    ] * 3
    assert len(list(q.iter_keyset(per_page=5))) == 12
    second_page = q.columns("oid", "fid", "mjd").keyset(4).next().items
    assert [r[0] for r in second_page] == ["ZTFa", "ZTFa", "ZTFb", "ZTFb"]


def test_keyset_misuse(tdb: SQLConnection) -> None:
    q = tdb.query(Star)
    with pytest.raises(QueryError, match="orders by the primary key"):
        q.order_by("name").keyset(5)
    assert q.order_by("sid").keyset(2).next_after == (2,)
    with pytest.raises(QueryError, match="limit"):
        q.limit(5).keyset(5)
    with pytest.raises(QueryError, match="per_page"):
        q.keyset(0)
    with pytest.raises(QueryError, match="None"):
        q.keyset(5, after=(None,))
    with pytest.raises(QueryError, match="include the primary key"):
        q.columns("name").keyset(5)


# -- safety --------------------------------------------------------------------------------------------------

HOSTILE = ['name"; DROP TABLE tq_star; --', "sid) OR (1=1", "", "SID", "tq_star.sid", 'na"me', "\x00"]


@pytest.fixture
def no_sql(tdb: SQLConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a statement is about to run (the checks must come first)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("SQL was about to run")

    monkeypatch.setattr(Session, "connection", refuse)
    monkeypatch.setattr(Session, "begin", refuse)
    monkeypatch.setattr(Session, "atomic", refuse)


@pytest.mark.parametrize("key", HOSTILE)
def test_hostile_keys_raise_before_any_sql(tdb: SQLConnection, key: str, no_sql: None) -> None:
    q = tdb.query(Star)
    star = Star(sid=1, name="s01")
    as_kwargs: dict[str, Any] = {key: 1}
    calls: list[Callable[[], Any]] = [
        lambda: q.filter_by({key: 1}),
        lambda: q.filter(key, "=", 1),
        lambda: q.order_by(key),
        lambda: q.columns(key),
        lambda: q.find(filter_by={key: 1}),
        lambda: q.find(filter_by=[(key, ">", 1)]),
        lambda: q.find_one(filter_by={key: 1}),
        lambda: q.check_exists(filter_by={key: 1}),
        lambda: tdb.query().find(model=Star, filter_by={key: 1}, paginate=False),
        lambda: q.get_or_create(filter_by={key: 1}),
        lambda: q.get_or_create(filter_by={"sid": 1}, **as_kwargs),
        lambda: q.get_or_create_many([{"sid": 1, "name": "x", key: 1}]),
        lambda: q.get_or_create_many([{"sid": 1, "name": "x"}], key=[key]),
        lambda: tdb.query().update(star, {key: 1}),
    ]
    for call in calls:
        with pytest.raises(UnknownColumnError) as info:
            call()
        assert info.value.model == "tq_star"


def test_unbound_query_checks_keys_when_the_model_is_known(tdb: SQLConnection, no_sql: None) -> None:
    q = tdb.query().filter_by({"nope": 1})  # no model yet: checked when it runs
    with pytest.raises(UnknownColumnError):
        q.find(model=Star)
    with pytest.raises(UnknownColumnError):
        q.check_exists(model=Star)


@pytest.mark.parametrize("value", ["x'; DROP TABLE tq_star; --", "%s", "%(x)s", "{}", "\\", "' OR '1'='1"])
def test_hostile_values_are_bound(tdb: SQLConnection, value: str) -> None:
    q = tdb.query(Star)
    assert q.filter_by(name=value).all() == []
    assert q.filter("name", "in", [value]).count() == 0
    assert q.filter("name", "like", value).count() == 0
    star, created = q.get_or_create(filter_by={"sid": 1000}, name=value)
    assert created and star.name == value
    found = q.find_one(filter_by={"name": value})
    assert found is not None and found.sid == 1000
    assert q.count() == 26


def test_nul_in_a_filter_value_is_a_data_error(tdb: SQLConnection) -> None:
    from dbplugins import DataError

    with pytest.raises(DataError, match="'name'") as info:
        tdb.query(Star).filter_by(name="a\x00b").all()
    assert info.value.column == "name"
    assert tdb.query(Star).count() == 25


# -- sessions ------------------------------------------------------------------------------------------------


def test_reads_see_the_sessions_uncommitted_writes(tdb: SQLConnection, module_dsn: str) -> None:
    star = tdb.query(Star).get(1)
    tdb.query().update(star, {"mag": 99.0})
    assert tdb.query(Star).filter("mag", ">", 50).count() == 1
    with psycopg.connect(module_dsn) as other:
        assert other.execute("SELECT mag FROM tq_star WHERE sid = 1").fetchone() == (0.5,)
    tdb.session.rollback()  # type: ignore[union-attr]
    assert tdb.query(Star).filter("mag", ">", 50).count() == 0


def test_scoped_sessions_query_per_thread(tdb: SQLConnection, module_dsn: str) -> None:
    import threading

    db = SQLConnection()
    db.connect(dsn=module_dsn, create_session=False, min_size=1, max_size=4)
    try:
        db.create_session(use_scoped=True)
        db.query(Star).filter_by(sid=1).delete()
        db.session.commit()  # type: ignore[union-attr]
        db.query(Star).get_or_create(filter_by={"sid": 1}, name="a")
        star = db.query(Star).get(1)
        db.query().update(star, {"mag": 5.0})  # uncommitted in this thread's session
        seen: list[Any] = []
        t = threading.Thread(target=lambda: seen.append(db.query(Star).get(1)))
        t.start()
        t.join()
        assert seen[0].mag is None and db.query(Star).get(1).mag == 5.0  # type: ignore[union-attr]
        db.session.commit()  # type: ignore[union-attr]
    finally:
        db.close()


def test_query_without_a_connection() -> None:
    with pytest.raises(QueryError, match="not attached"):
        Query(None, Star).all()


# -- misc ----------------------------------------------------------------------------------------------------


def test_repr(tdb: SQLConnection) -> None:
    assert repr(tdb.query()) == "<dbplugins.Query (no model)>"
    assert 'FROM "tq_star" WHERE "sid" = %s' in repr(tdb.query(Star).filter_by(sid=1))


def test_statement_shapes_are_cached(tdb: SQLConnection) -> None:
    q = tdb.query(Star).filter("sid", ">", 1).order_by("-sid").limit(3)
    q.all()
    before = dbplugins._query.shapes.query_statement.cache_info()
    for i in range(5):
        tdb.query(Star).filter("sid", ">", i).order_by("-sid").limit(3).all()
    after = dbplugins._query.shapes.query_statement.cache_info()
    assert after.hits - before.hits >= 5 and after.misses == before.misses


def test_bulk_insert_delegates(tdb: SQLConnection) -> None:
    rows = [{"sid": 100 + i, "name": f"b{i}"} for i in range(5)]
    assert tdb.query(Star).bulk_insert(rows) == 5
    assert tdb.query().bulk_insert([Star(sid=200, name="c")], model=Star) == 1
    assert tdb.query(Star).bulk_insert(rows) == 0  # on_conflict="ignore": re-delivered rows are skipped
    assert tdb.query(Star).count() == 31
    with pytest.raises(DbpError):
        tdb.query(Star).bulk_insert(rows, on_conflict="error")
    assert tdb.query(Star).count() == 31
