"""ModerationCore's request checks: text limits, backends, output directories, one run per directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.moderation.core import ModerationCore, Source
from talklike.moderation.settings import ModerationSettings

LINE = b'{"messages": [{"role": "user", "content": "Ahoj"}, {"role": "assistant", "content": "Nazdar"}]}\n'


@pytest.fixture
def core(tmp_path: Path) -> ModerationCore:
    return ModerationCore(ModerationSettings(home=tmp_path, max_batch_texts=3, max_text_chars=100))


async def test_text_limits_name_the_field(core: ModerationCore) -> None:
    for texts, field in (([], "texts"), (["a"] * 4, "texts"), (["ok", "x" * 101], "texts[1]")):
        with pytest.raises(InvalidArgument) as caught:
            await core.moderate(texts, "", {})
        assert caught.value.field == field
    with pytest.raises(InvalidArgument, match="backend"):
        await core.moderate(["a"], "perspective", {})
    answer = await core.moderate(["a", "b", "c"], "", {"hate": 0.1})
    assert len(answer.results) == 3 and answer.backend == "local" and answer.thresholds["hate"] == 0.1


def test_output_directories_default_and_stay_in_the_home(core: ModerationCore, tmp_path: Path) -> None:
    source = tmp_path / "datasets" / "babis" / "all.jsonl"
    source.parent.mkdir(parents=True)
    source.write_bytes(LINE)
    assert core.prepare(Source(path="datasets/babis/all.jsonl")).out_dir == source.parent / "moderated"
    assert core.prepare(Source(content=LINE, name="x.jsonl")).out_dir == tmp_path / "datasets" / "x-moderated"
    assert core.prepare(Source(content=LINE), out="M").out_dir == tmp_path / "datasets" / "M"
    assert core.prepare(Source(content=LINE), out="datasets/N").out_dir == tmp_path / "datasets" / "N"
    for out in ("/etc/moderated", "../../up", "datasets", "."):
        with pytest.raises(InvalidArgument) as caught:
            core.prepare(Source(content=LINE), out=out)
        assert caught.value.field == "out"
    with pytest.raises(InvalidArgument) as caught:
        core.prepare(Source(content=LINE), worst_count=5000)
    assert caught.value.field == "worst_example_count"


async def test_one_run_at_a_time_per_output_directory(core: ModerationCore) -> None:
    async def on_progress(stage: str, done: int, total: int) -> None:
        return None

    first = core.start(core.prepare(Source(content=LINE * 50), out="same"), on_progress)
    with pytest.raises(FailedPrecondition, match="another run is writing"):
        core.start(core.prepare(Source(content=LINE), out="same"), on_progress)
    result = await first
    assert result.kept == 50 and core.datasets_moderated == 1
    await asyncio.sleep(0)  # the done-callback frees the directory
    again = await core.start(core.prepare(Source(content=LINE), out="same"), on_progress)
    assert again.kept == 1


async def test_a_backend_is_evaluated_on_the_shipped_set_or_one_in_the_home(
    core: ModerationCore, tmp_path: Path
) -> None:
    shipped = await core.evaluate_backend("", "test", "cs", "")
    assert shipped.backend == "local" and shipped.report.texts > 0
    assert shipped.report.texts == sum(shipped.report.kinds.values())
    labelled = tmp_path / "sets" / "mine.jsonl"
    labelled.parent.mkdir()
    labelled.write_text(
        '{"id": "a", "text": "Všichni cikáni jsou krysy.", "lang": "cs", "kind": "harmful", "split": "test",'
        ' "categories": ["hate"]}\n'
        '{"id": "b", "text": "Dobrý den.", "lang": "cs", "kind": "benign", "split": "test"}\n',
        encoding="utf-8",
    )
    mine = await core.evaluate_backend("local", "", "", "sets/mine.jsonl")
    assert mine.report.texts == 2 and mine.report.per_category["hate"].tp == 1
    for args, field in (
        (("", "dev", "", "sets/mine.jsonl"), "split"),
        (("", "", "", "../outside.jsonl"), "set_path"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            await core.evaluate_backend(*args)
        assert caught.value.field == field
