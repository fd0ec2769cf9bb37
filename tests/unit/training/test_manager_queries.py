"""The training core answers the queries the servicer passes on: limits checked there, not in the servicer."""

from __future__ import annotations

from pathlib import Path

import pytest
from talklike.common.errors import InvalidArgument, NotFound
from talklike.training.manager import MAX_LISTED_JOBS, JobManager
from talklike.training.settings import TrainingSettings


def test_list_limits_lookups_and_model_roots(tmp_path: Path) -> None:
    manager = JobManager(TrainingSettings(home=tmp_path, model_roots=f" {tmp_path / 'a'} ,,{tmp_path / 'b'}"))
    with pytest.raises(InvalidArgument) as too_many:
        manager.recent(MAX_LISTED_JOBS + 1)
    assert too_many.value.field == "limit" and "at most 1000" in too_many.value.reason
    assert manager.recent(0) == [] and manager.recent(MAX_LISTED_JOBS) == []
    with pytest.raises(NotFound):
        manager.get("job-missing")
    assert manager.model_roots == [tmp_path / "a", tmp_path / "b"]
