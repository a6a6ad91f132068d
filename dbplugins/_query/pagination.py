"""Result pages: db-plugins' ``Pagination`` (OFFSET pages, counted) and ``KeysetPage`` (seek pages by key)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .query import Query

__all__ = ["Pagination", "KeysetPage"]

T = TypeVar("T")


class Pagination(Generic[T]):
    """One page of results, with db-plugins' fields and navigation.

    ``total`` counts at most ``max_results + 1`` rows (the count stops there),
    or is None with ``count=False``.
    """

    def __init__(
        self,
        query: Query[T] | None,
        page: int,
        per_page: int,
        total: int | None,
        items: list[T],
        *,
        max_results: int = 50000,
    ) -> None:
        self.query = query
        self.page = page
        self.per_page = per_page
        self.total = total
        self.items = items
        self.max_results = max_results

    @property
    def pages(self) -> int:
        """The number of pages (0 with ``per_page == 0`` or an unknown total)."""
        if self.per_page == 0 or self.total is None:
            return 0
        return int(math.ceil(self.total / float(self.per_page)))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.has_prev else None

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.has_next else None

    def prev(self) -> Pagination[T]:
        """The previous page (counted again)."""
        assert self.query is not None, "a page without its query cannot navigate"
        return self.query.paginate(self.page - 1, self.per_page, max_results=self.max_results)

    def next(self) -> Pagination[T]:
        """The next page (counted again)."""
        assert self.query is not None, "a page without its query cannot navigate"
        return self.query.paginate(self.page + 1, self.per_page, max_results=self.max_results)

    def __repr__(self) -> str:
        return (
            f"<Pagination page={self.page} per_page={self.per_page} total={self.total} "
            f"items={len(self.items)}>"
        )


@dataclass
class KeysetPage(Generic[T]):
    """One page of a keyset (seek) pagination, ordered by the primary key.

    ``next_after`` is the key of the last item: pass it as ``after=`` (or call :meth:`next`) for the next
    page. Unlike OFFSET paging, the cost of a page does not grow with its depth.
    """

    query: Query[T]
    items: list[T]
    per_page: int
    after: tuple[Any, ...] | None
    next_after: tuple[Any, ...] | None
    has_next: bool

    def next(self) -> KeysetPage[T]:
        """The following page (empty when there is none)."""
        if not self.has_next:
            return KeysetPage(self.query, [], self.per_page, self.next_after, self.next_after, False)
        return self.query.keyset(self.per_page, after=self.next_after)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
