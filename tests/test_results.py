"""Reads pause the cyclic garbage collector while they build a result, and always leave it as they found
it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from dbplugins import DbpError, SQLConnection, cols
from dbplugins._query.results import gc_paused
from dbplugins.models import Object


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_a_read_leaves_the_collector_on(db: SQLConnection, collector_on: None) -> None:
    db.query(Object).bulk_insert([{"oid": f"ZTF{i}"} for i in range(50)])
    assert len(db.query(Object).all()) == 50
    assert len(db.query(cols(Object).oid, cols(Object).ndet).all()) == 50
    assert gc.isenabled()


def test_a_failing_read_leaves_the_collector_on(db: SQLConnection, collector_on: None) -> None:
    with pytest.raises(DbpError):
        db.query(Object).filter(cols(Object).ndet > "not a number").all()
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off(db: SQLConnection) -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        db.query(Object).all()
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


def test_overlapping_reads_in_threads_switch_it_back_on_once_the_last_ends(collector_on: None) -> None:
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with gc_paused():
            first_in.set()
            second_done.wait(10)
            seen.append(gc.isenabled())  # the second read ended first: still paused for this one

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(10)
    with gc_paused():
        pass
    second_done.set()
    t.join(10)
    assert seen == [False]
    assert gc.isenabled()
