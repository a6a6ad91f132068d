"""The same models, calls and guarantees on a Citus cluster (a local coordinator + 2 workers,
tests/citus_fixtures.py).

Without Citus these tests skip with one line; CI sets ``DBP_REQUIRE_CITUS=1``, which turns such a skip into a
failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sample_rows import detection_row as det

from dbplugins import ConfigurationError, ConstraintError, DbpError, NoResultFound, SQLConnection, cols, model
from dbplugins._copy.update import UpdateCount
from dbplugins._sqlfiles import schema_script
from dbplugins._types.schema import table_of
from dbplugins.citus import check_distribution, create_distributed_schema
from dbplugins.citus.ddl import split_schema_sql
from dbplugins.migrations import introspect
from dbplugins.models import ALL_MODELS, Detection, Object

pytestmark = pytest.mark.citus

REFERENCE = {"step", "pipeline", "taxonomy", "feature_version", "allwise"}


def rows(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def dbp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dbplugins.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


# -- the local cluster ---------------------------------------------------------------------------------------


def test_local_cluster_has_two_workers_listens_on_loopback_and_wants_a_password(citus_cluster: Any) -> None:
    dsn = citus_cluster.dsn()
    assert "password" not in dsn  # the secret stays in the passfile the DSN names
    assert len(rows(dsn, "SELECT * FROM citus_get_active_worker_nodes()")) == 2
    assert rows(dsn, "SHOW listen_addresses") == [("127.0.0.1",)]
    for port in citus_cluster.ports:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                host="127.0.0.1",
                port=port,
                user="postgres",
                dbname="dbp",
                passfile="/nonexistent",
                connect_timeout=5,
            ).close()


# -- the distributed schema ----------------------------------------------------------------------------------


def test_builtin_models_declare_their_distribution() -> None:
    tables = {table_of(m).name: table_of(m) for m in ALL_MODELS}
    assert {n for n, t in tables.items() if t.reference} == REFERENCE
    distributed = {n for n, t in tables.items() if t.distribute_by}
    assert distributed == set(tables) - REFERENCE
    assert all(tables[n].distribute_by == "oid" for n in distributed)
    assert tables["object"].colocate_with is None
    assert all(tables[n].colocate_with == "object" for n in distributed - {"object"})
    check_distribution(list(tables.values()))  # every key includes oid


def test_create_db_distributed_creates_distributes_then_adds_keys(citus_dsn: str) -> None:
    placed = dict(rows(citus_dsn, "SELECT logicalrelid::regclass::text, partmethod FROM pg_dist_partition"))
    assert {n for n, m in placed.items() if m == "n"} == REFERENCE
    assert {n for n, m in placed.items() if m == "h"} == {table_of(m).name for m in ALL_MODELS} - REFERENCE
    colocation = rows(
        citus_dsn,
        "SELECT count(DISTINCT colocationid), min(column_to_column_name(logicalrelid, partkey)) "
        "FROM pg_dist_partition WHERE partmethod = 'h'",
    )
    assert colocation == [(1, "oid")]
    fks = {
        r[0]
        for r in rows(
            citus_dsn,
            "SELECT conname FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid IN (SELECT logicalrelid FROM pg_dist_partition)",
        )
    }
    expected = {fk.name for m in ALL_MODELS for fk in table_of(m).foreign_keys}
    assert fks == expected
    assert ("ix_ndetection_oid",) in rows(
        citus_dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'detection'"
    )
    db = SQLConnection()
    db.connect(dsn=citus_dsn, min_size=1, max_size=1)
    try:
        db.create_db(distributed=True)  # again: nothing to do
        with psycopg.connect(citus_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE reference")
        with pytest.raises(DbpError, match="needs an empty database or the whole schema"):
            db.create_db(distributed=True)
    finally:
        db.close()


def test_split_keeps_every_statement_of_sql_schema() -> None:
    split = split_schema_sql(schema_script())
    assert len(split.tables) == len(ALL_MODELS)
    assert not any("FOREIGN KEY" in s for s in split.tables)
    assert len(split.foreign_keys) == sum(len(table_of(m).foreign_keys) for m in ALL_MODELS)
    # the moved foreign keys name their table through psycopg.sql, quoted like every other generated statement
    assert 'ALTER TABLE "dataquality" ADD CONSTRAINT dataquality_candid_oid_fkey FOREIGN KEY' in "\n".join(
        split.foreign_keys
    )
    assert all(s.startswith('ALTER TABLE "') and s.endswith(";") for s in split.foreign_keys)
    assert all(s.startswith("CREATE INDEX") for s in split.rest)


@model("bad_watch", primary_key=["wid"], distribute_by="oid", colocate_with="object")
@dataclass
class BadWatch:
    wid: int
    oid: str


@model("bad_unique", primary_key=["oid", "wid"], unique=[["name"]], distribute_by="oid")
@dataclass
class BadUnique:
    wid: int
    oid: str
    name: str


def test_a_key_without_the_distribution_column_is_refused_before_any_ddl(citus_empty_dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="primary key 'bad_watch_pkey'") as info:
        check_distribution([table_of(BadWatch)])
    assert info.value.constraint == "bad_watch_pkey"
    with pytest.raises(ConfigurationError, match="unique constraint 'bad_unique_name_key'"):
        check_distribution([table_of(BadUnique)])
    tables = [*(table_of(m) for m in ALL_MODELS), table_of(BadWatch)]
    with psycopg.connect(citus_empty_dsn) as conn, pytest.raises(ConfigurationError, match="bad_watch_pkey"):
        create_distributed_schema(conn, tables, schema_script())
    assert rows(
        citus_empty_dsn,
        "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'",
    ) == [(0,)]


def test_model_distribution_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="distribute_by='nope'"):

        @model("bad_opts", primary_key=["a"], distribute_by="nope")
        @dataclass
        class BadOpts:
            a: int


def test_initdb_distributed_records_the_head_and_runs_once(citus_empty_dsn: str, tmp_path: Path) -> None:
    first = dbp("initdb", "--distributed", "--dsn", citus_empty_dsn, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created the 17 built-in tables" in first.stdout
    assert len(rows(citus_empty_dsn, "SELECT * FROM pg_dist_partition")) == 17
    assert rows(citus_empty_dsn, "SELECT count(*) FROM _yoyo_migration") == [(1,)]
    second = dbp("initdb", "--distributed", "--dsn", citus_empty_dsn, cwd=tmp_path)
    assert second.returncode == 0 and "nothing to do" in second.stdout, second
    check = dbp("make_migrations", "--check", "--dsn", citus_empty_dsn, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    with psycopg.connect(citus_empty_dsn) as conn:  # the logical tables, never a shard
        assert set(introspect(conn).tables) == {table_of(m).name for m in ALL_MODELS}


def test_initdb_distributed_without_citus_is_one_clear_line(empty_dsn: str, tmp_path: Path) -> None:
    result = dbp("initdb", "--distributed", "--dsn", empty_dsn, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Citus extension" in lines[0], result.stderr
    assert rows(
        empty_dsn,
        "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'",
    ) == [(0,)]
    db = SQLConnection()
    db.connect(dsn=empty_dsn, min_size=1, max_size=1)
    try:
        with pytest.raises(DbpError, match="no Citus extension"):
            db.create_db(distributed=True)
    finally:
        db.close()


# -- every operation on distributed tables -------------------------------------------------------------------


def test_redelivered_batch_lands_once(citus_db: SQLConnection, citus_dsn: str) -> None:
    citus_db.query(Object).bulk_insert([{"oid": f"O{i}"} for i in range(20)])
    batch = [det(i, f"O{i % 20}") for i in range(500)]
    assert citus_db.query(Detection).bulk_insert(batch, on_conflict="ignore") == 500
    assert citus_db.query(Detection).bulk_insert(batch, on_conflict="ignore") == 0
    mixed = batch[250:] + [det(1000 + i, f"O{i % 20}") for i in range(100)]
    assert citus_db.query(Detection).bulk_insert(mixed[::-1], on_conflict="ignore") == 100
    assert rows(citus_dsn, "SELECT count(*), count(DISTINCT (candid, oid)) FROM detection") == [(600, 600)]


def test_a_duplicate_in_error_mode_names_the_logical_constraint(
    citus_db: SQLConnection, citus_dsn: str
) -> None:
    citus_db.query(Object).bulk_insert([{"oid": "E1"}])
    citus_db.query(Detection).bulk_insert([det(1, "E1")])
    with pytest.raises(ConstraintError) as info:
        citus_db.query(Detection).bulk_insert([det(2, "E1"), det(1, "E1")], on_conflict="error")
    assert info.value.constraint == "detection_pkey"
    assert "constraint 'detection_pkey'" in str(info.value)
    assert rows(citus_dsn, "SELECT candid FROM detection") == [(1,)]
    with pytest.raises(ConstraintError) as fk:
        citus_db.query(Detection).bulk_insert([det(3, "missing")], on_conflict="error")
    assert fk.value.constraint == "detection_oid_fkey"


def test_on_conflict_update_inserts_new_keys_and_updates_existing_ones(
    citus_db: SQLConnection, citus_dsn: str
) -> None:
    citus_db.query(Object).bulk_insert([{"oid": "U1", "ndet": 1, "meanra": 5.0}, {"oid": "U2", "ndet": 1}])
    n = citus_db.query(Object).bulk_insert(
        [
            {"oid": "U1", "ndet": 7, "meanra": 6.0},
            {"oid": "U3", "ndet": 3},
            {"oid": "U1", "ndet": 8, "meanra": 6.0},
        ],
        on_conflict="update",
    )
    # "update" counts the rows each run of same-column rows wrote, as on plain PostgreSQL: U1 twice (two
    # runs), U3.
    assert n == 3
    assert rows(citus_dsn, "SELECT oid, ndet, meanra FROM object ORDER BY oid") == [
        ("U1", 8, 6.0),
        ("U2", 1, None),
        ("U3", 3, None),
    ]


def test_get_or_create_and_many(citus_db: SQLConnection) -> None:
    obj, created = citus_db.query(Object).get_or_create(filter_by={"oid": "G1"}, ndet=2)
    assert created and obj.ndet == 2
    again, created = citus_db.query(Object).get_or_create(filter_by={"oid": "G1"}, ndet=9)
    assert not created and again.ndet == 2
    result = citus_db.query(Object).get_or_create_many([{"oid": "G2"}, {"oid": "G1"}, {"oid": "G3"}])
    assert [(o.oid, c) for o, c in result] == [("G2", True), ("G1", False), ("G3", True)]


def test_update_and_reads(citus_db: SQLConnection) -> None:
    citus_db.query(Object).bulk_insert([{"oid": f"R{i:03d}", "ndet": i} for i in range(60)])
    obj = citus_db.query(Object).find_one(filter_by={"oid": "R007"})
    updated = citus_db.query().update(obj, {"lastmjd": 123.5})
    assert citus_db.session is not None
    citus_db.session.commit()
    assert updated.lastmjd == 123.5
    assert citus_db.query(Object).filter_by(oid="R007").one().lastmjd == 123.5
    assert citus_db.query(Object).filter("ndet", ">=", 58).count() == 2
    found = citus_db.query(Object).find(filter_by={"ndet": 3}, paginate=False)
    assert [o.oid for o in found] == ["R003"]
    page = citus_db.query(Object).order_by("oid").paginate(page=2, per_page=25)
    assert page.total == 60 and [o.oid for o in page.items][:2] == ["R025", "R026"] and page.has_next
    seen = [o.oid for o in citus_db.query(Object).iter_keyset(per_page=25)]
    assert seen == sorted(f"R{i:03d}" for i in range(60))


def test_bulk_update_on_distributed_tables(citus_db: SQLConnection) -> None:
    q = citus_db.query(Object)
    q.bulk_insert([{"oid": f"U{i:03d}", "ndet": i, "meanra": 1.0} for i in range(50)])
    n = q.bulk_update(
        [{"oid": "U001", "ndet": 100}, {"oid": "U002", "meanra": 2.5}, {"oid": "U-none", "ndet": 1}]
        + [{"oid": f"U{i:03d}", "ndet": -i} for i in range(10, 40)]
    )
    assert isinstance(n, UpdateCount) and n == 32 and n.missing == [2]
    got = {
        o.oid: (o.ndet, o.meanra)
        for o in q.filter(cols(Object).oid.in_(["U001", "U002", "U010", "U049"])).all()
    }
    assert got == {"U001": (100, 1.0), "U002": (2, 2.5), "U010": (-10, 1.0), "U049": (49, 1.0)}
    with pytest.raises(NoResultFound):
        q.bulk_update([{"oid": "U003", "ndet": 7}, {"oid": "U-none", "ndet": 1}], missing="error")
    kept = q.get("U003")
    assert kept is not None and kept.ndet == 3  # nothing of the refused call was written


def test_bulk_update_of_a_colocated_table(citus_db: SQLConnection) -> None:
    citus_db.query(Object).bulk_insert([{"oid": "D1"}])
    citus_db.query(Detection).bulk_insert([det(1, "D1"), det(2, "D1")])
    n = citus_db.query(Detection).bulk_update([{"candid": 1, "oid": "D1", "magpsf": 12.5}])
    assert n == 1
    assert {d.candid: d.magpsf for d in citus_db.query(Detection).all()}[1] == 12.5


def test_bulk_updates_racing_on_overlapping_keys_both_land(citus_db: SQLConnection, citus_dsn: str) -> None:
    """No multi-shard FOR UPDATE on Citus: a distributed deadlock aborts one call, which runs again."""
    import threading

    keys = [f"W{i:03d}" for i in range(400)]
    citus_db.query(Object).bulk_insert([{"oid": k, "ndet": 0} for k in keys])
    errors: list[BaseException] = []

    def worker(order: list[str], ndet: int) -> None:
        db = SQLConnection()
        db.connect(dsn=citus_dsn, min_size=1, max_size=1)
        try:
            for _ in range(3):
                db.query(Object).bulk_update([{"oid": k, "ndet": ndet} for k in order])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            db.close()

    threads = [
        threading.Thread(target=worker, args=(keys, 1)),
        threading.Thread(target=worker, args=(keys[::-1], 2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    values = {o.ndet for o in citus_db.query(Object).filter(cols(Object).oid.in_(keys)).all()}
    assert values <= {1, 2} and len(values) >= 1


def test_dbp_load_twice_lands_once(citus_dsn: str, tmp_path: Path) -> None:
    csv = tmp_path / "objects.csv"
    csv.write_text("oid,ndet\n" + "".join(f"L{i},{i}\n" for i in range(300)))
    for _ in range(2):
        result = dbp("load", "object", str(csv), "--silent", "--dsn", citus_dsn, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert rows(citus_dsn, "SELECT count(*), sum(ndet) FROM object") == [(300, sum(range(300)))]


# -- the races and re-deliveries of the reliability suite, against the cluster -------------------------------


def test_racing_redeliveries_land_once_on_the_cluster(citus_dsn: str) -> None:
    from reliability import test_load

    test_load.test_racing_redeliveries_in_different_orders_land_once_without_error(citus_dsn, 4)


def test_eight_processes_keep_every_invariant_on_the_cluster(citus_dsn: str) -> None:
    from reliability import test_load

    test_load.test_eight_processes_keep_every_invariant(citus_dsn, 8.0)


# -- migrations on a coordinator -----------------------------------------------------------------------------

WATCH_V1 = """
from dataclasses import dataclass
from typing import Annotated, Optional

from dbplugins import Column, Index, model


@model(
    "watch",
    primary_key=["oid", "wid"],
    indexes=[Index("ix_watch_name", ["name"])],
    distribute_by="oid",
    colocate_with="object",
)
@dataclass
class Watch:
    oid: Annotated[str, Column(references="object.oid")]
    wid: int
    name: str
"""

WATCH_V2 = (
    WATCH_V1.replace(
        'Index("ix_watch_name", ["name"])',
        'Index("ix_watch_name", ["name"]), Index("ix_watch_note", ["note"])',
    )
    + "    note: Optional[str] = None\n"
)


def test_a_distributed_user_model_migrates_converges_and_rolls_back(citus_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text('MODELS = ["watch_models"]\n')
    (tmp_path / "watch_models.py").write_text(WATCH_V1)
    base = ("--settings_path", str(tmp_path), "--dsn", citus_dsn)

    def run(*args: str, code: int = 0) -> str:
        result = dbp(*args, *base, cwd=tmp_path)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout

    # initdb records the built-in head (citus_dsn was created by create_db, so initdb finds the tables).
    run("initdb")
    run("make_migrations", "--name", "watch")
    (made,) = [p for p in (tmp_path / "migrations").glob("*-watch.sql")]
    assert "create_distributed_table('\"watch\"', 'oid', colocate_with => '\"object\"')" in made.read_text()
    run("migrate")
    assert rows(
        citus_dsn,
        "SELECT partmethod, column_to_column_name(logicalrelid, partkey), colocationid = "
        "(SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'object'::regclass) "
        "FROM pg_dist_partition WHERE logicalrelid = 'watch'::regclass",
    ) == [("h", "oid", True)]
    assert "No changes" in run("make_migrations", "--check")  # introspection sees logical tables, not shards

    # A column and an index apply through Citus (to every shard) and converge.
    (tmp_path / "watch_models.py").write_text(WATCH_V2)
    run("make_migrations", "--name", "watch note")
    run("migrate")
    assert "No changes" in run("make_migrations", "--check")
    shard_indexes = rows(
        citus_dsn,
        "SELECT result FROM run_command_on_shards('watch', "
        "$$SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'ix_watch_note%%' AND tablename = '%s'$$)",
    )
    assert shard_indexes and all(r == ("1",) for r in shard_indexes), shard_indexes
    with psycopg.connect(citus_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO object (oid) VALUES ('W1')")
        conn.execute("INSERT INTO watch (oid, wid, name, note) VALUES ('W1', 1, 'a', 'n')")
    # Rolled back: the column goes, then the table with its shards.
    # (the Python API: the CLI's rollback asks for confirmation of destructive steps)
    from dbplugins import migrations

    undone = migrations.rollback(
        citus_dsn, migrations_dir=tmp_path / "migrations", count=2, allow_destructive=True
    )
    assert len(undone.ids) == 2
    assert rows(citus_dsn, "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text = 'watch'") == [
        (0,)
    ]
    assert rows(citus_dsn, "SELECT to_regclass('watch')") == [(None,)]


def test_the_distribution_migration_is_a_no_op_on_plain_postgresql(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text('MODELS = ["watch_models"]\n')
    (tmp_path / "watch_models.py").write_text(WATCH_V1)
    base = ("--settings_path", str(tmp_path), "--dsn", dsn)
    for args in (("initdb",), ("make_migrations",), ("migrate",), ("make_migrations", "--check")):
        result = dbp(*args, *base, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert rows(dsn, "SELECT to_regclass('watch')::text") == [("watch",)]


# -- pieces --------------------------------------------------------------------------------------------------


def test_shard_suffixed_names_map_to_the_logical_constraint() -> None:
    from dbplugins.citus.relay import logical_constraint
    from dbplugins.models import Feature

    detection = table_of(Detection)
    assert logical_constraint("detection_pkey_102119", detection) == "detection_pkey"
    assert logical_constraint("detection_oid_fkey_102366", detection) == "detection_oid_fkey"
    assert logical_constraint("detection_pkey", detection) == "detection_pkey"
    assert logical_constraint("other_pkey_102119", detection) == "other_pkey_102119"  # not this table's
    assert logical_constraint("ix_feature_oid_2", table_of(Feature)) == "ix_feature_oid_2"  # a real name


def test_the_cluster_command_starts_reports_and_stops() -> None:
    from dbplugins.citus import unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no local Citus cluster: {reason}")
    # Not under pytest's tmp_path: every pytest session that starts (anyone's) takes the other-users bits off
    # /tmp/pytest-of-<user>, and the servers run as another account.
    tmp_path = Path(tempfile.mkdtemp(prefix="dbp-citus-cmd-"))
    env = {**os.environ, "DBP_EMBEDDED_DIR": str(tmp_path)}

    def cluster(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dbplugins.citus", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        started = cluster("start")
        assert started.returncode == 0, started.stderr
        dsn = started.stdout.strip()
        assert str(tmp_path / "citus" / "passfile") in dsn
        assert len(rows(dsn, "SELECT * FROM citus_get_active_worker_nodes()")) == 2
        assert cluster("status").returncode == 0
        assert cluster("stop").returncode == 0
        assert cluster("status").returncode == 1
        assert cluster("start").stdout.strip() == dsn  # restarted on the same ports
    finally:
        cluster("destroy")
    assert not (tmp_path / "citus").exists()
    assert cluster("bogus").returncode == 2
    shutil.rmtree(tmp_path, ignore_errors=True)
