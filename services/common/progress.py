"""Progress of long work, streamed to the caller while the work runs as a task.

The dataset RPCs (GenerateDataset, ModerateDataset, DraftPack) each stream progress events
and then a summary; this is the one loop behind them: the work reports through ``report``,
``follow`` yields each report as a ``talklike.v1.Progress`` until the task ends, and closing it
early (the caller went away; use ``contextlib.aclosing`` so that happens at once) cancels the work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from talklike.v1 import common_pb2


class ProgressRelay:
    """Collects one run's progress reports and relays them as they come."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        # Progress messages, then None once the task has ended (either way).
        self._queue: asyncio.Queue[common_pb2.Progress | None] = asyncio.Queue()

    async def report(self, stage: str, done: int, total: int) -> None:
        """The work's progress callback."""
        elapsed_ms = int((time.monotonic() - self._started) * 1000)
        self._queue.put_nowait(
            common_pb2.Progress(stage=stage, done=done, total=total, elapsed_ms=elapsed_ms)
        )
        await asyncio.sleep(0)  # let the stream send it

    async def follow(self, task: asyncio.Task[Any]) -> AsyncGenerator[common_pb2.Progress, None]:
        """Each report until ``task`` ends; then ``task.result()`` is the outcome."""
        task.add_done_callback(lambda _: self._queue.put_nowait(None))
        try:
            while (progress := await self._queue.get()) is not None:
                yield progress
        finally:
            if not task.done():
                task.cancel()  # the caller went away: stop the work
