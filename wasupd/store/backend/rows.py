"""The one row type both backends return: by column name or by position, and `dict(row)`."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


class Row:
    """One result row. `row["id"]` and `row[0]` both work (sqlite3.Row's surface, which the
    store was written against), `dict(row)` gives the columns by name, `len(row)` their number."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = tuple(values)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        """The column names, in the query's order."""
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values and self.keys() == other.keys()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a dict

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


@functools.lru_cache(maxsize=512)
def column_index(names: tuple[str, ...]) -> Mapping[str, int]:
    """Name -> position for a result's columns (one shared mapping per distinct result shape).
    A name repeated in a query (two tables' `id`) maps to its first position, as sqlite3.Row."""
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    return index
