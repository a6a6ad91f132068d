"""One exception tree for everything dbplugins raises.

Every error carries, where known, the ``model`` (table name), the ``column`` and, for batches, the ``row``
index it is about, beside a one-line message. psycopg errors are wrapped with the original chained as
``__cause__``, and the wrapper keeps its ``sqlstate`` and constraint name, so nothing is hidden.

All errors are picklable: ingestion workers are processes and send errors across process boundaries.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pge

__all__ = [
    "DbpError",
    "ConfigurationError",
    "ConnectionError",
    "PoolTimeoutError",
    "ConnectionFailedError",
    "UnknownColumnError",
    "MissingValueError",
    "ConstraintError",
    "DataError",
    "MultipleResultsFound",
    "NoResultFound",
    "MigrationError",
    "QueryError",
    "wrap_db_error",
    "context",
    "refused_error",
]


class DbpError(Exception):
    """Base class of every dbplugins error.

    ``model``, ``column`` and ``row`` name what the error is about, or are ``None`` when unknown.
    ``sqlstate`` and ``constraint`` are copied from the server's diagnostics when the error came from it.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        column: str | None = None,
        row: int | None = None,
        sqlstate: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.column = column
        self.row = row
        self.sqlstate = sqlstate
        self.constraint = constraint

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not restored by BaseException's default pickling.
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "model": self.model,
                    "column": self.column,
                    "row": self.row,
                    "sqlstate": self.sqlstate,
                    "constraint": self.constraint,
                },
            ),
        )

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[DbpError], message: str, attrs: dict[str, Any]) -> DbpError:
    return cls(message, **attrs)


class ConfigurationError(DbpError):
    """The connection settings are missing, contradictory or malformed."""


class ConnectionError(DbpError):  # noqa: A001 - deliberately mirrors the builtin's meaning in our tree
    """The server could not be reached, or the connection was lost during the call."""


class PoolTimeoutError(ConnectionError):
    """No pooled connection became free within the pool's timeout."""


class ConnectionFailedError(ConnectionError):
    """A new connection was refused or could not be made: wrong password, unknown database, refused port,
    unresolvable host, bad SSL settings. The message names host, port, database and user (never the password)
    and the server's reason; the psycopg error is chained as ``__cause__``."""


class UnknownColumnError(DbpError):
    """A filter key, row key or update key is not a column of the model."""


class MissingValueError(DbpError):
    """A NOT NULL column got no value (or None)."""


class ConstraintError(DbpError):
    """The server rejected a write because of a constraint (unique, foreign key, not null, check)."""


class DataError(DbpError):
    """A value cannot be stored in its column (wrong type, out of range, NUL byte in text...)."""


class QueryError(DbpError):
    """A query was built or used wrongly (bad operator, bad ordering key, unsupported argument)."""


class NoResultFound(QueryError):
    """``one()`` found no row."""


class MultipleResultsFound(QueryError):
    """``one()`` or ``find_one()`` found more than one row."""


class MigrationError(DbpError):
    """A migration could not be generated, applied or rolled back."""


def context(
    *,
    model: str | None = None,
    column: str | None = None,
    row: int | None = None,
    constraint: str | None = None,
) -> str:
    """The one way an error message names what it is about: `` [model 'm', column 'c', row 3]``
    ('' if nothing).

    >>> context(model="object", column="ndet", row=3)
    " [model 'object', column 'ndet', row 3]"
    """
    where = []
    if model:
        where.append(f"model {model!r}")
    if column:
        where.append(f"column {column!r}")
    if constraint:
        where.append(f"constraint {constraint!r}")
    if row is not None:
        where.append(f"row {row}")
    return " [" + ", ".join(where) + "]" if where else ""


def refused_error(
    model: str,
    ctype: Any,
    value: Any,
    reason: BaseException | str,
    *,
    row: int | None = None,
    action: str = "",
) -> DataError:
    """The ``DataError`` for a value the column type ``ctype`` (a
    ``dbplugins._types.column.ColumnType``) refused.

    Every path (COPY, bound parameters, filters, ``dbp load``) raises this same error for the same value.
    """
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    prefix = f"{action}: " if action else ""
    return DataError(
        f"{prefix}{ctype.sql_type} column {ctype.name!r} got {type(value).__name__} {shown}: {reason}"
        + context(model=model, column=ctype.name, row=row),
        model=model,
        column=ctype.name,
        row=row,
    )


def wrap_db_error(
    exc: BaseException,
    *,
    model: str | None = None,
    row: int | None = None,
    column: str | None = None,
    action: str = "",
) -> DbpError:
    """Translate a psycopg error into the matching ``DbpError`` (the caller raises it ``from exc``).

    This is the one translator of server errors: ``column`` and ``row`` name what the caller knows beyond the
    server's diagnostics (a COPY's context line), in the same ``[model, column, row]`` form as every error.

    The message names the model, the constraint or column the server reported, and the row when known.
    The server's message never contains a password; the DSN is never included.
    """
    if isinstance(exc, DbpError):
        return exc
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    column = (getattr(diag, "column_name", None) if diag is not None else None) or column
    primary = (getattr(diag, "message_primary", None) if diag is not None else None) or str(exc).strip()
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    prefix = f"{action}: " if action else ""
    text = f"{prefix}{primary}"
    if detail:
        text += f" ({detail})"
    text += context(model=model, column=column, constraint=constraint, row=row)
    kwargs: dict[str, Any] = {
        "model": model,
        "column": column,
        "row": row,
        "sqlstate": sqlstate,
        "constraint": constraint,
    }
    cls: type[DbpError]
    if isinstance(exc, pge.IntegrityError):
        cls = MissingValueError if isinstance(exc, pge.NotNullViolation) else ConstraintError
    elif isinstance(exc, (psycopg.DataError, UnicodeEncodeError)):
        cls = DataError
    elif isinstance(exc, (pge.UndefinedColumn,)):
        cls = UnknownColumnError
    elif isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, (pge.QueryCanceled, pge.LockNotAvailable, pge.SerializationFailure, pge.DeadlockDetected)
    ):
        cls = ConnectionError
    elif isinstance(exc, psycopg.InterfaceError):
        cls = ConnectionError
    else:
        cls = DbpError
    return cls(text, **kwargs)
