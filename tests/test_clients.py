"""The patterns ALeRCE's db-plugins clients (pipeline steps, the ZTF API, test fixtures) actually ran, as they
wrote them, against a real server: issue 14's table, row by row, then the session compatibility in detail.

The clients' spelling is kept on purpose: ``Object.oid.in_(oids)``, ``Object.lastmjd.desc()``,
``Object.query``. Type checkers see ``Object.oid`` as the field's ``str`` (typed code writes
``cols(Object).oid``) and do not know the ``query`` property installed at runtime, so the lines using that
spelling carry a ``# type: ignore``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import dbplugins._session.compat
from dbplugins import ConstraintError, DbpError, QueryError, ScopedSession, Session, SQLConnection


def _obj(oid: str, **kw: Any) -> dict[str, Any]:
    return {"oid": oid, **kw}


def _det(oid: str, candid: int, mjd: float) -> dict[str, Any]:
    return {
        "candid": candid, "oid": oid, "mjd": mjd, "fid": 1 + candid % 2, "pid": 1.0, "isdiffpos": 1,
        "ra": 10.0, "dec": -5.0, "magpsf": 18.0, "sigmapsf": 0.1, "corrected": False, "dubious": False,
        "has_stamp": True, "step_id_corr": "s",
    }  # fmt: skip


@pytest.fixture
def seeded(db: SQLConnection) -> SQLConnection:
    from db_plugins.db.sql.models import Detection, Object

    db.query(Object).bulk_insert(
        [_obj(f"ZTF{i}", ndet=i, meanra=float(i), lastmjd=59000.0 + i) for i in range(1, 6)]
    )
    db.query(Detection).bulk_insert(
        [_det(f"ZTF{i}", i * 10 + k, 59000.0 + k) for i in range(1, 4) for k in range(3)]
    )
    return db


# -- 1. the most common read ---------------------------------------------------------------------------------


def test_filter_in_and_eq_one_or_none_distinct(seeded: SQLConnection) -> None:
    from db_plugins.db.sql.models import Detection, Object

    db = seeded
    assert isinstance(db.session, Session)  # a plain session: db.connect() without use_scoped
    oids = ["ZTF1", "ZTF3", "ZTF9"]
    objects = db.query(Object).filter(Object.oid.in_(oids)).all()  # type: ignore[misc, attr-defined]
    assert sorted(o.oid for o in objects) == ["ZTF1", "ZTF3"]
    obj = db.query(Object).filter(Object.oid == "ZTF2").one_or_none()  # type: ignore[misc]
    assert obj is not None and obj.ndet == 2
    assert db.query(Object).filter(Object.oid == "nope").one_or_none() is None  # type: ignore[misc]
    detections = db.query(Detection).filter(Detection.oid == "ZTF1").all()  # type: ignore[misc]
    assert len(detections) == 3 and {d.oid for d in detections} == {"ZTF1"}
    with_oids = db.query(Detection.oid).filter(Detection.oid.in_(oids)).distinct().all()  # type: ignore[misc, attr-defined]
    assert sorted(r.oid for r in with_oids) == ["ZTF1", "ZTF3"]
    last = db.query(Object).filter(Object.ndet > 2).order_by(Object.lastmjd.desc()).first()  # type: ignore[operator, union-attr]
    assert last is not None and last.oid == "ZTF5"
    # the API's session form
    api_obj = db.session.query(Object).filter(Object.oid == "ZTF4").one_or_none()  # type: ignore[misc]
    assert api_obj is not None and api_obj.meanra == 4.0


# -- 2. projections into pandas ------------------------------------------------------------------------------


def test_projection_to_dataframe_instead_of_read_sql(seeded: SQLConnection) -> None:
    pytest.importorskip("pandas")
    from db_plugins.db.sql.models import Object

    query = seeded.query(Object.oid, Object.meanra).filter(Object.ndet >= 4)  # type: ignore[misc, operator]
    df = query.to_dataframe()  # was: pd.read_sql(query.statement, db.engine)
    assert list(df.columns) == ["oid", "meanra"]
    assert sorted(df["oid"]) == ["ZTF4", "ZTF5"]
    rows = query.order_by(Object.oid).all()  # type: ignore[misc]
    assert [(r.oid, r.meanra) for r in rows] == [("ZTF4", 4.0), ("ZTF5", 5.0)]


# -- 3. update some columns of many rows ---------------------------------------------------------------------


def test_update_many_rows_some_columns(seeded: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    # was: Object.__table__.update().where(Object.oid == bindparam("_oid")).values(ndet=bindparam("_ndet"))
    #      db.engine.execute(stmt, [{"_oid": ..., "_ndet": ...}, ...])
    to_update = [{"oid": "ZTF1", "ndet": 100}, {"oid": "ZTF2", "ndet": 200}, {"oid": "ZTF404", "ndet": 1}]
    assert seeded.query().bulk_update(to_update, Object) == 2
    got = {o.oid: (o.ndet, o.meanra) for o in seeded.query(Object).all()}
    assert got["ZTF1"] == (100, 1.0) and got["ZTF2"] == (200, 2.0) and got["ZTF3"] == (3, 3.0)
    assert "ZTF404" not in got


# -- 4. bulk_insert of DataFrame records ---------------------------------------------------------------------


def test_bulk_insert_dataframe_records(db: SQLConnection) -> None:
    pd = pytest.importorskip("pandas")
    from db_plugins.db.sql.models import Object, Xmatch

    db.query().bulk_insert([_obj("ZTF1")], Object)
    df = pd.DataFrame(
        {
            "oid": ["ZTF1"],
            "catid": ["allwise"],
            "oid_catalog": ["J1"],
            "dist": [0.5],
            "class_catalog": ["QSO"],
        }
    )
    assert db.query().bulk_insert(df.to_dict("records"), Xmatch) == 1
    assert db.query(Xmatch).filter(Xmatch.oid == "ZTF1").one().dist == 0.5  # type: ignore[misc]


# -- 5. session.add / commit (test fixtures) -----------------------------------------------------------------


def test_session_add_commit(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Detection, Object

    assert isinstance(db.session, Session)
    obj = Object(oid="ZTF1", ndet=1)
    db.session.add(obj)
    db.session.add_all([Object(oid="ZTF2"), Detection(**_det("ZTF1", 1, 59000.0)), Object(oid="ZTF3")])
    db.session.commit()
    assert sorted(o.oid for o in db.query(Object).all()) == ["ZTF1", "ZTF2", "ZTF3"]
    assert db.query(Detection).count() == 1


# -- 6. get_or_create through the session and Model.query ----------------------------------------------------


def test_session_query_get_or_create(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    obj, created = db.session.query().get_or_create(Object, {"oid": "ZTF1"})
    assert created and obj.oid == "ZTF1"
    obj, created = db.session.query().get_or_create(Object, {"oid": "ZTF1"})
    assert not created


def test_model_query_after_use_scoped(dsn: str) -> None:
    from db_plugins.db.sql import SQLConnection as CompatConnection
    from db_plugins.db.sql.models import Object

    with pytest.raises(AttributeError, match="use_scoped=True"):
        Object.query  # type: ignore[attr-defined]  # noqa: B018
    db = CompatConnection()
    db.connect(dsn=dsn, use_scoped=True)
    assert isinstance(db.session, ScopedSession)
    try:
        obj, created = Object.query.get_or_create(filter_by={"oid": "ZTF1"}, ndet=3)  # type: ignore[attr-defined]
        assert created and obj.ndet == 3
        obj, created = Object.query.get_or_create(Object, {"oid": "ZTF1"})  # type: ignore[attr-defined]
        assert not created and obj.ndet == 3
        assert Object.query.filter(Object.ndet == 3).one().oid == "ZTF1"  # type: ignore[attr-defined]
        db.session.add(Object(oid="ZTF2"))
        db.session.commit()
        assert Object.query.count() == 2  # type: ignore[attr-defined]
    finally:
        db.close()
    with pytest.raises(AttributeError):
        Object.query  # type: ignore[attr-defined]  # noqa: B018


# -- 7. raw SQL through the session --------------------------------------------------------------------------


def test_session_execute_fetchall(seeded: SQLConnection) -> None:
    db = seeded
    assert isinstance(db.session, Session)
    rows = db.session.execute("SELECT oid, ndet FROM object WHERE ndet > %s ORDER BY oid", (3,)).fetchall()
    assert [tuple(r) for r in rows] == [("ZTF4", 4), ("ZTF5", 5)]
    assert rows[0].oid == "ZTF4"
    assert db.session.execute("SELECT count(*) FROM object").scalar() == 5
    result = db.session.execute("SELECT oid FROM object ORDER BY oid")
    assert result.fetchone().oid == "ZTF1"
    assert [r.oid for r in result] == ["ZTF2", "ZTF3", "ZTF4", "ZTF5"]
    assert result.fetchone() is None
    assert db.session.execute("SELECT 1 WHERE false").scalar() is None
    assert db.session.execute("UPDATE object SET ndet = 0 WHERE oid = %(oid)s", {"oid": "ZTF1"}).rowcount == 1


# -- 8. imports ----------------------------------------------------------------------------------------------


def test_import_paths() -> None:
    import dbplugins
    from db_plugins.db.generic import BaseQuery, Pagination
    from db_plugins.db.sql import and_, not_, or_
    from db_plugins.db.sql.models import Base, Object
    from db_plugins.db.sql.query import SQLQuery

    assert BaseQuery is SQLQuery is dbplugins.Query
    assert Pagination is dbplugins.Pagination
    assert and_ is dbplugins.and_ and or_ is dbplugins.or_ and not_ is dbplugins.not_
    assert isinstance(Base, type) and Object is dbplugins.models.Object
    ns: dict[str, Any] = {}
    exec("from db_plugins.db.sql.models import *", ns)  # noqa: S102 - the star import clients use
    assert "Base" in ns and "Object" in ns


# -- session compatibility in detail -------------------------------------------------------------------------


def test_rollback_discards_queued_adds(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    db.session.add(Object(oid="ZTF1"))
    assert len(db.session.new) == 1
    db.session.rollback()
    assert db.session.new == []
    db.session.commit()
    assert db.query(Object).count() == 0


def test_flush_runs_inside_the_transaction(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    db.session.add(Object(oid="ZTF1"))
    db.session.flush()
    assert db.session.in_transaction
    assert db.session.execute("SELECT count(*) FROM object").scalar() == 1  # the session sees its own insert
    assert db.query(Object).count() == 1
    db.session.rollback()
    assert db.query(Object).count() == 0


def test_flush_after_an_uncommitted_update_commits_nothing(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    db.query(Object).bulk_insert([{"oid": "ZTF0", "ndet": 1}])
    db.query().update(db.query(Object).get("ZTF0"), {"ndet": 2})  # an implicit transaction, not committed
    db.session.add(Object(oid="ZTF1"))
    db.session.flush()
    db.session.rollback()
    got = db.query(Object).get("ZTF0")
    assert got is not None and got.ndet == 1
    assert db.query(Object).count() == 1


def test_a_failing_flush_inside_a_block_raises_its_own_error(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object
    from dbplugins import ConstraintError

    assert isinstance(db.session, Session)
    db.query(Object).bulk_insert([{"oid": "ZTF1"}])
    with pytest.raises(ConstraintError), db.transaction():
        db.query(Object).bulk_insert([{"oid": "ZTF2"}])
        db.session.add(Object(oid="ZTF1"))
        db.session.flush()
    assert sorted(o.oid for o in db.query(Object).all()) == ["ZTF1"]


def test_execute_flushes_queued_adds_first(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    db.session.add(Object(oid="ZTF1"))
    assert db.session.execute("SELECT oid FROM object").fetchall()[0].oid == "ZTF1"
    db.session.commit()
    assert db.query(Object).count() == 1


def test_failed_flush_rolls_everything_back(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Detection, Object

    assert isinstance(db.session, Session)
    db.query(Object).bulk_insert([_obj("ZTF1")])
    db.session.add(Object(oid="ZTF2"))
    db.session.add(Object(oid="ZTF1"))  # a duplicate
    with pytest.raises(ConstraintError):
        db.session.commit()
    assert not db.session.in_transaction and db.session.new == []
    assert sorted(o.oid for o in db.query(Object).all()) == ["ZTF1"]
    db.session.add(Detection(**_det("ZTF404", 1, 1.0)))  # a foreign key violation
    with pytest.raises(ConstraintError):
        db.session.flush()
    assert db.query(Detection).count() == 0


def test_adds_keep_their_order_across_models(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Detection, Object

    assert isinstance(db.session, Session)
    # the detection needs its object first: order is kept
    db.session.add_all([Object(oid="ZTF1"), Detection(**_det("ZTF1", 1, 1.0)), Object(oid="ZTF2")])
    db.session.commit()
    assert db.query(Detection).count() == 1


def test_add_refuses_what_is_not_a_model_instance(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    with pytest.raises(DbpError):
        db.session.add({"oid": "ZTF1"})
    with pytest.raises(DbpError):
        db.session.add(Object)
    with pytest.raises(DbpError):
        db.session.add(object())
    assert db.session.new == []


def test_commit_inside_transaction_block_flushes_at_its_end(db: SQLConnection) -> None:
    from db_plugins.db.sql.models import Object

    assert isinstance(db.session, Session)
    with db.transaction():
        db.session.add(Object(oid="ZTF1"))
    assert db.query(Object).count() == 1
    with pytest.raises(RuntimeError), db.transaction():
        db.session.add(Object(oid="ZTF2"))
        db.session.flush()
        raise RuntimeError
    assert db.query(Object).count() == 1


def test_execute_rejects_sqlalchemy_objects(db: SQLConnection) -> None:
    assert isinstance(db.session, Session)
    with pytest.raises(QueryError, match="SQL text"):
        db.session.execute(42)


def test_execute_errors_are_dbp_errors(db: SQLConnection) -> None:
    assert isinstance(db.session, Session)
    with pytest.raises(DbpError):
        db.session.execute("SELECT * FROM no_such_table")


def test_scoped_session_delegates(dsn: str) -> None:
    from db_plugins.db.sql.models import Object

    db = SQLConnection()
    db.connect(dsn=dsn, use_scoped=True)
    assert isinstance(db.session, ScopedSession)
    try:
        db.session.add(Object(oid="ZTF1"))
        db.session.flush()
        assert db.session.execute("SELECT count(*) FROM object").scalar() == 1
        db.session.commit()
        assert db.session.query(Object).filter(Object.oid == "ZTF1").one().oid == "ZTF1"  # type: ignore[misc]
    finally:
        db.close()


@pytest.fixture
def fresh_warnings() -> Iterator[None]:
    saved = set(dbplugins._session.compat._warned)
    dbplugins._session.compat._warned.clear()
    yield
    dbplugins._session.compat._warned.clear()
    dbplugins._session.compat._warned.update(saved)


def test_base_and_session_options_warn_once(dsn: str, fresh_warnings: None) -> None:
    from db_plugins.db.sql.models import Base

    for expected in (2, 0):
        db = SQLConnection()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            db.connect(dsn=dsn, base=Base, session_options={"autoflush": False})
        db.close()
        messages = [str(w.message) for w in caught if "dbplugins ignores" in str(w.message)]
        assert len(messages) == expected
        if expected:
            assert any("session_options" in m for m in messages) and any("Base" in m for m in messages)
