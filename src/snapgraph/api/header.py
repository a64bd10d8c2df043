"""Message headers: the read-only ``header`` a port callback receives, and the
validation of the header dict a script gives to ``publish``.

A header maps a header type id (e.g. ``com.sap.headers.batch``) to the
structure's field values in declared order, as a ``list`` or ``api.Record``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, NoReturn

from snapgraph.api.table import Record

__all__ = ["Header", "normalize_header", "READ_ONLY_MESSAGE"]

READ_ONLY_MESSAGE = "message headers are read-only; use header.copy() to get a dict you can change"


class Header(Mapping[str, Any]):
    """The read-only header of a received message.

    Wraps (does not copy) a ``dict`` of ``str -> list | api.Record``. All
    reading works as on a dict; every change raises TypeError pointing to
    ``header.copy()``, which returns a plain mutable dict.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        if data is None:
            data = {}
        elif isinstance(data, Header):
            data = data._data
        elif not isinstance(data, dict):
            data = dict(data)
        self._data: dict[str, Any] = data

    # -- reading -----------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: str, default: Any = None) -> Any:
        """The value for ``key``, or ``default``."""
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    def copy(self) -> dict[str, Any]:
        """A new plain mutable dict; each value is copied into a new list."""
        return {key: list(value) for key, value in self._data.items()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Header):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._data)

    def __or__(self, other: object) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = self.copy()
        merged.update(other)
        return merged

    def __getstate__(self) -> dict[str, Any]:
        return self._data

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = state

    # -- writing is refused ------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(READ_ONLY_MESSAGE)

    __setitem__ = _read_only
    __delitem__ = _read_only
    __ior__ = _read_only
    update = _read_only
    pop = _read_only
    popitem = _read_only
    clear = _read_only
    setdefault = _read_only


def normalize_header(header: Any) -> dict[str, Any]:
    """Validate the header given to ``publish`` and return it as a dict.

    None gives ``{}``; a received Header gives its underlying dict (it cannot
    change); a dict is copied (its list values too) so the script may reuse
    and change it after publishing. Keys must be str and values lists, tuples
    or ``api.Record``: a bare scalar raises ValueError, since header values are
    always lists, e.g. ``h['isFinal'] = [True]``.
    """
    if header is None:
        return {}
    if isinstance(header, Header):
        return header._data
    if not isinstance(header, Mapping):
        raise TypeError(
            f"a message header must be a dict of header type id -> list, got {type(header).__name__}"
        )
    result: dict[str, Any] = {}
    for key, value in header.items():
        if not isinstance(key, str):
            raise ValueError(f"header keys must be str (header type ids), got {key!r}")
        if isinstance(value, Record):
            result[key] = value
        elif isinstance(value, (list, tuple)):
            result[key] = list(value)
        else:
            raise ValueError(
                f"header value for {key!r} must be a list or api.Record, got "
                f"{type(value).__name__} {value!r}; header values are always lists, "
                f"e.g. h['isFinal'] = [True]"
            )
    return result
