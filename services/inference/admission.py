"""Bounded concurrency with a bounded queue: refuse at once beyond it, time out waiting in it.

Under overload a client is better served by an immediate RESOURCE_EXHAUSTED it can retry
elsewhere than by a request that hangs; and a request that waited past its usefulness should
not start generating at all.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from talklike.common.errors import DeadlineExceeded, ResourceExhausted


class Admission:
    """At most ``max_active`` holders, at most ``max_queue`` waiters (FIFO)."""

    def __init__(self, max_active: int, max_queue: int, queue_timeout_s: float) -> None:
        self.max_active = max_active
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the duration of the block."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        if self.active < self.max_active and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise ResourceExhausted(
                f"the inference service is at capacity ({self.active} generating, {len(self._waiters)} queued); "
                "retry later or add replicas"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout_s)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(
                    f"waited {self.queue_timeout_s:.1f} s in the queue without getting a slot; the service is overloaded"
                ) from exc
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self.active -= 1
