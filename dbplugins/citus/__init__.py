"""Citus (distributed PostgreSQL) support: the distributed schema and a local cluster for development.

- :func:`create_distributed_schema` creates tables in the order Citus accepts (tables, then
  ``create_reference_table`` / ``create_distributed_table``, then foreign keys and indexes); it is what
  ``db.create_db(distributed=True)`` and ``dbp initdb --distributed`` run.
- :func:`check_distribution` refuses, before any DDL, a distributed table whose primary key or unique
  constraint lacks its distribution column.
- :class:`LocalCluster` starts a coordinator and two workers on 127.0.0.1 (``dbp cluster start``).

See docs/scaling.md.
"""

from __future__ import annotations

from .cluster import LocalCluster, default_cluster_dir, pg_bin, unavailable_reason
from .ddl import (
    builtin_tables,
    check_distribution,
    citus_version,
    create_distributed_schema,
    distribute_statements,
    require_citus,
)

__all__ = [
    "LocalCluster",
    "default_cluster_dir",
    "pg_bin",
    "unavailable_reason",
    "builtin_tables",
    "check_distribution",
    "citus_version",
    "create_distributed_schema",
    "distribute_statements",
    "require_citus",
]
