"""ProgressRelay: reports stream while the work runs; closing the stream early cancels the work."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from talklike.common.progress import ProgressRelay


async def test_reports_arrive_in_order_then_the_result() -> None:
    relay = ProgressRelay()

    async def work() -> str:
        for done in range(3):
            await relay.report("write", done + 1, 3)
        return "finished"

    task = asyncio.create_task(work())
    seen = [(p.stage, p.done, p.total) async for p in relay.follow(task)]
    assert seen == [("write", 1, 3), ("write", 2, 3), ("write", 3, 3)]
    assert task.result() == "finished"


async def test_closing_the_stream_early_cancels_the_work() -> None:
    relay = ProgressRelay()

    async def endless() -> None:
        while True:
            await relay.report("loop", 0, 0)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(endless())
    async with aclosing(relay.follow(task)) as reports:
        async for _ in reports:
            break  # the caller goes away after the first report
    await asyncio.sleep(0)
    assert task.cancelled()
