"""When and where an rfserver peer reconnects (pure): one policy for rfclient and rfproxy.

rfclient (asyncio, rflib.ipc.ReconnectingClient) and rfproxy (threads,
proxy.serverlink.ServerLink) keep a session to rfserver alive the same way;
the shells only open sockets and sleep for as long as this object says. Time
and the random source are passed in.

1. The addresses (a leader rfserver and its standbys) are tried in turn in
   each connect round, starting with the one that answered last.
2. Between rounds, and after a session ended or failed to set up, the shell
   waits ``delay()``: uniform over [b/2, b] (jitter: peers that lost the same
   server do not come back in step), after which b doubles, up to
   ``max_backoff``.
3. b starts at ``min_backoff`` and is back there after a session that was
   set up (hello sent, challenge answered) and then lasted ``stable``
   seconds. A server that accepts connections but ends the session at once
   (a wrong secret, a refused identity) is therefore retried ever more
   slowly, not ten times a second.
4. With more than one address there is a standby to find: ``max_backoff`` is
   at most 1 s, so a takeover does not wait on our backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: The most a peer with a standby to find waits between attempts (rule 4).
STANDBY_MAX_BACKOFF = 1.0


class ReconnectPolicy:
    """Rules 1-4 above for ``addresses`` servers; ``uniform(a, b)`` is the random source.

    Times (``now``) are seconds on any monotonic clock, as long as it is one clock.
    """

    def __init__(
        self,
        addresses: int,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        stable: float = 1.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if addresses < 1:
            raise ValueError("need at least one address")
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        self.addresses = addresses
        self.min_backoff = min_backoff
        cap = max_backoff if addresses == 1 else min(max_backoff, STANDBY_MAX_BACKOFF)
        self.max_backoff = max(min_backoff, cap)
        self.stable = stable
        self._uniform = uniform
        #: Index of the address that answered last (tried first).
        self.current = 0
        self._backoff = min_backoff
        self._up_since: float | None = None

    def order(self) -> list[int]:
        """The address indexes to try in this connect round, in turn."""
        n = self.addresses
        return [(self.current + step) % n for step in range(n)]

    def answered(self, index: int) -> bool:
        """Address ``index`` accepted a connection; True if that is a move to another one."""
        moved = index != self.current
        self.current = index
        return moved

    def set_up(self, now: float) -> None:
        """A session is set up (hello sent, challenge answered)."""
        self._up_since = now

    def ended(self, now: float) -> None:
        """The session is over (or its setup failed)."""
        if self._up_since is not None and now - self._up_since >= self.stable:
            self._backoff = self.min_backoff
        self._up_since = None

    def delay(self) -> float:
        """Seconds to wait before the next round."""
        b = self._backoff
        self._backoff = min(b * 2, self.max_backoff)
        return self._uniform(b / 2, b)
