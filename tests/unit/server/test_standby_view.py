"""StandbyView's association count: a row written while a recount is reading the store
is never lost (the standby's status must end equal to the store)."""

from __future__ import annotations

import asyncio
import threading

from routeflow.server.standby import StandbyView


class SlowStore:
    """load_associations takes a while; rows may be added meanwhile."""

    def __init__(self) -> None:
        self.rows = [1, 2, 3]
        self.reading = threading.Event()
        self.release = threading.Event()

    def load_associations(self) -> list[int]:
        snapshot = list(self.rows)
        self.reading.set()
        self.release.wait(5)
        return snapshot


class Election:
    def leader(self) -> str:
        return "rfserver-a"


def test_a_row_written_during_a_recount_is_counted() -> None:
    async def main() -> None:
        store = SlowStore()
        view = StandbyView(store, Election(), "rfserver-b", None)  # type: ignore[arg-type]
        view._changed("assoc")  # a row written: a recount starts 0.2 s later
        await asyncio.to_thread(store.reading.wait, 5)
        store.rows.append(4)  # written while the recount reads
        view._changed("assoc")
        store.release.set()  # the first read returns 3 rows; the second sees 4
        for _ in range(100):
            if view._recount is None:
                break
            await asyncio.sleep(0.05)
        assert view._recount is None
        assert view.associations == 4

    asyncio.run(main())
