"""The generation core holds what the servicer used to: runs in progress and the service's counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from talklike.common.errors import FailedPrecondition
from talklike.generation.core import GenerationCore, GenerationCounts
from talklike.generation.settings import GenerationSettings


async def _progress(stage: str, done: int, total: int) -> None:
    return None


async def test_a_finished_run_is_counted_and_a_busy_output_refused(tmp_path: Path) -> None:
    core = GenerationCore(GenerationSettings(home=tmp_path))
    builder = core.prepare(pack="puffington", count=30, seed=1, out="counted")
    task = core.start(builder, _progress)
    with pytest.raises(FailedPrecondition, match="another run is writing"):
        core.start(core.prepare(pack="puffington", count=30, seed=2, out="counted"), _progress)
    result = await task
    assert core.counts == GenerationCounts(runs=1, examples=result.figures.count, drafts=0)
    assert not core.busy
