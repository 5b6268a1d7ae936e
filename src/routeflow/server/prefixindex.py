"""One VM's route and FIB prefixes in text order, for paged reads of a full table.

rfweb runs in rfserver's event loop: sorting a million prefixes per request
(about a second) stalls routing for every client. An index is built once, on
the first read, and then follows the prefixes RoutingTable reports touched
(a set it fills while someone watches), so a page costs O(log n + page)
plus the changes since the last read. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from sortedcontainers import SortedList

__all__ = ["PrefixIndex"]

#: More touched prefixes than this share of the table: sorting it all again
#: is cheaper than updating the sorted lists one by one.
REBUILD_SHARE = 4


class PrefixIndex:
    """Sorted views of two key sets of one VM (its routes, its FIB entries).

    ``routes`` and ``fib`` return the live key collections (dict views);
    ``touched`` is the set RoutingTable adds a prefix to whenever the prefix's
    route or FIB entry changes, or None when it stopped filling it (too many
    changes for an update to pay: the index is then built again).
    """

    def __init__(
        self,
        routes: Callable[[], Collection[str]],
        fib: Callable[[], Collection[str]],
        touched: Callable[[], set[str] | None],
        watch: Callable[[], set[str]],
    ) -> None:
        self._routes_of = routes
        self._fib_of = fib
        self._touched_of = touched
        self._watch = watch
        self._routes: SortedList | None = None
        self._fib: SortedList | None = None
        self.rebuilds = 0

    def routes(self) -> SortedList:
        self._update()
        assert self._routes is not None
        return self._routes

    def fib(self) -> SortedList:
        self._update()
        assert self._fib is not None
        return self._fib

    def _update(self) -> None:
        routes, fib = self._routes_of(), self._fib_of()
        touched = self._touched_of()
        if (
            touched is None
            or self._routes is None
            or self._fib is None
            or len(touched) * REBUILD_SHARE > len(routes) + len(fib) + 1000
        ):
            self._rebuild()
            return
        for prefix in touched:
            _follow(self._routes, prefix, prefix in routes)
            _follow(self._fib, prefix, prefix in fib)
        touched.clear()
        if len(self._routes) != len(routes) or len(self._fib) != len(fib):
            self._rebuild()  # a change not reported: never serve a wrong page

    def _rebuild(self) -> None:
        self._watch().clear()  # watching from here on: the sort below covers the rest
        self._routes = SortedList(self._routes_of())
        self._fib = SortedList(self._fib_of())
        self.rebuilds += 1


def _follow(keys: SortedList, prefix: str, present: bool) -> None:
    if present:
        if prefix not in keys:
            keys.add(prefix)
    else:
        keys.discard(prefix)
