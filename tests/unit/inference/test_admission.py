"""Admission: a bounded number generating, a bounded FIFO queue, refusals at once, timeouts in the queue."""

from __future__ import annotations

import asyncio

import pytest
from talklike.common.errors import DeadlineExceeded, ResourceExhausted
from talklike.inference.admission import Admission


async def hold(admission: Admission, release: asyncio.Event, order: list[int], index: int) -> None:
    async with admission.slot():
        order.append(index)
        await release.wait()


async def test_beyond_the_queue_a_request_is_refused_at_once_and_the_queue_is_fifo() -> None:
    admission = Admission(max_active=1, max_queue=2, queue_timeout_s=5)
    release, order = asyncio.Event(), []
    tasks = [asyncio.create_task(hold(admission, release, order, i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert (admission.active, admission.queued) == (1, 2)
    with pytest.raises(ResourceExhausted, match="at capacity"):
        async with admission.slot():
            pass
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and (admission.active, admission.queued) == (0, 0)


async def test_a_waiter_past_the_timeout_gets_deadline_exceeded_and_leaves_the_queue() -> None:
    admission = Admission(max_active=1, max_queue=4, queue_timeout_s=0.05)
    release = asyncio.Event()
    holder = asyncio.create_task(hold(admission, release, [], 0))
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded, match="in the queue"):
        async with admission.slot():
            pass
    assert admission.queued == 0
    release.set()
    await holder
    async with admission.slot():  # the slot is free again: nothing leaked
        assert admission.active == 1


async def test_a_cancelled_waiter_gives_its_place_up() -> None:
    admission = Admission(max_active=1, max_queue=4, queue_timeout_s=5)
    release, order = asyncio.Event(), []
    first = asyncio.create_task(hold(admission, release, order, 0))
    gone = asyncio.create_task(hold(admission, release, order, 1))
    last = asyncio.create_task(hold(admission, release, order, 2))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert admission.queued == 1
    release.set()
    await asyncio.gather(first, last)
    assert order == [0, 2] and admission.active == 0
