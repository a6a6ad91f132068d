"""A db-plugins client script, type-checked with ``mypy --strict`` by tests/test_typing.py (never run).

``db.query(Object)`` is a ``Query[Object]``: results are typed, so an IDE completes the fields. Conditions use
``cols(Model)``, the typed spelling of ``Model.column`` (type checkers see ``Object.oid`` as a ``str``).
"""

from __future__ import annotations

from typing_extensions import assert_type

from dbplugins import KeysetPage, Pagination, Query, SQLConnection, and_, cols, not_, or_
from dbplugins.models import Detection, Object


def client(db: SQLConnection, oids: list[str]) -> None:
    o = cols(Object)
    query = db.query(Object)
    assert_type(query, Query[Object])
    objects = query.filter(o.ndet > 3, o.oid.in_(oids)).order_by(o.lastmjd.desc().nulls_last()).all()
    assert_type(objects, list[Object])
    first = db.query(Object).filter(o.oid.like("ZTF2%")).first()
    assert_type(first, Object | None)
    if first is not None:
        ndet: int | None = first.ndet
        print(ndet, first.meanra)
    one = db.query(Object).filter(and_(o.ndet > 1, or_(o.oid == "a", not_(o.meanra.is_(None))))).one()
    assert_type(one, Object)
    maybe = db.query(Detection).filter(cols(Detection).oid == "ZTF1").one_or_none()
    assert_type(maybe, Detection | None)
    obj, created = db.query(Object).get_or_create(filter_by={"oid": "ZTF1"}, ndet=1)
    assert_type(obj, Object)
    assert_type(created, bool)
    obj2, _ = db.query().get_or_create(model=Object, filter_by={"oid": "ZTF2"})
    assert_type(obj2, Object)
    rows = db.query(Detection).find(filter_by={"oid": "ZTF1"}, paginate=False)
    assert_type(rows, list[Detection])
    page = db.query(Detection).find(filter_by={"oid": "ZTF1"})
    assert_type(page, Pagination[Detection])
    assert_type(page.items, list[Detection])
    assert_type(db.query().find(Object, {"oid": "ZTF1"}), Pagination[Object])
    assert_type(db.query().find(Object, {"oid": "ZTF1"}, False), list[Object])
    assert_type(db.query().find(Object, {"oid": "ZTF1"}, paginate=False), list[Object])
    assert_type(db.query().find_one(Object, {"oid": "ZTF1"}), Object | None)
    assert_type(db.query(Object).keyset(100), KeysetPage[Object])
    count: int = db.query(Object).count()
    updated: int = db.query(Object).bulk_update([{"oid": "ZTF1", "ndet": 2}])
    projected = db.query(o.oid, o.meanra).distinct().all()
    print(count, updated, projected, [d.mjd for d in db.query(Detection).all()])
