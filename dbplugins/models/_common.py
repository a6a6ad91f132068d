"""The column type aliases and the ``row["field"]`` mixin the built-in models share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from .._types.schema import Column

__all__ = ["big", "ts", "object_oid", "step_ref", "Commons"]

# Column type aliases. They must be module globals defined before the classes: @model resolves the (string)
# annotations with typing.get_type_hints at decoration time, in this module's namespace.
big = Annotated[int, Column("bigint")]
ts = datetime
#: An ``oid`` column that references ``object.oid`` (FK named ``<table>_oid_fkey``).
object_oid = Annotated[str, Column(references="object.oid")]
#: A ``step_id`` column that references ``step.step_id``.
step_ref = Annotated[str, Column(references="step.step_id")]


class Commons:
    """db-plugins' ``Commons`` mixin: ``row["field"]`` reads a column value."""

    def __getitem__(self, field: str) -> Any:
        """The value of column ``field``; ``KeyError`` if the model has no such column."""
        if field not in getattr(self, "__dataclass_fields__", {}):
            raise KeyError(field)
        return getattr(self, field)
