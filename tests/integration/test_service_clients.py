"""The typed clients the pipeline calls, against the real services on loopback: generation writes a
dataset, moderation filters its training split, training trains `tiny` on it; failures arrive as
domain errors (no grpc in the caller)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from talklike.common.errors import InvalidArgument, NotFound
from talklike.common.testing import running_service
from talklike.generation.client import GenerationClient
from talklike.generation.servicer import create_service as generation_service
from talklike.generation.settings import GenerationSettings
from talklike.moderation.client import ModerationClient
from talklike.moderation.servicer import create_service as moderation_service
from talklike.moderation.settings import ModerationSettings
from talklike.training.client import Hyperparameters, TrainingClient
from talklike.training.servicer import create_service as training_service
from talklike.training.settings import TrainingSettings

pytestmark = pytest.mark.slow


async def test_dataset_moderation_and_training_through_the_clients(tmp_path: Path) -> None:
    home = tmp_path / "home"
    generation = GenerationSettings(home=home, port=0, metrics_port=0)
    moderation = ModerationSettings(home=home, port=0, metrics_port=0)
    training = TrainingSettings(
        home=home, port=0, metrics_port=0, poll_interval_ms=50, notify_inference=False, use_disk_agent=False
    )
    async with (
        running_service(generation_service(generation), generation) as gen,
        running_service(moderation_service(moderation), moderation) as mod,
        running_service(training_service(training), training) as train,
    ):
        progress: list[tuple[int, int, str]] = []
        gen_client = GenerationClient(grpc.insecure_channel(gen.address))
        dataset = await asyncio.to_thread(
            gen_client.generate_dataset, "babis", 40, 1, "clients", lambda *p: progress.append(p)
        )
        assert dataset.count == 40 and dataset.train_count + dataset.val_count + dataset.heldout_count >= 40
        assert progress and {stage for _, _, stage in progress} >= {"answers"}
        with pytest.raises(NotFound):
            await asyncio.to_thread(gen_client.generate_dataset, "no-such-pack", 40, 1, "x")
        gen_client.close()

        mod_client = ModerationClient(grpc.insecure_channel(mod.address))
        moderated = await asyncio.to_thread(
            mod_client.moderate_dataset, f"{dataset.out_dir}/train.jsonl".removeprefix(f"{home}/")
        )
        mod_client.close()
        assert moderated.line_count == dataset.train_count
        assert moderated.kept + moderated.removed + moderated.quarantined == moderated.line_count
        assert moderated.kept > 0 and moderated.report_markdown_path.endswith(".md")

        train_client = TrainingClient(grpc.insecure_channel(train.address))
        moderated_path = Path(moderated.moderated_path)
        relative = moderated_path.relative_to(home) if moderated_path.is_absolute() else moderated_path
        hyper = Hyperparameters(
            max_steps=2, batch_size=2, learning_rate=1e-3, lora_r=4, max_sequence_tokens=256
        )
        with pytest.raises(InvalidArgument) as bad:
            await asyncio.to_thread(train_client.create_job, "../outside.jsonl", "tiny", "persona", hyper)
        assert bad.value.field == "dataset_path"
        job = await asyncio.to_thread(train_client.create_job, str(relative), "tiny", "persona", hyper)
        events = await asyncio.to_thread(lambda: list(train_client.events(job.id)))
        done = await asyncio.to_thread(train_client.get_job, job.id)
        train_client.close()
        assert done.succeeded, done.error_message
        assert done.adapter_path and (home / done.adapter_path).is_dir()
        assert [e.step for e in events if e.kind == "step"][-1] == 2
        assert events[-1].state == "JOB_STATE_SUCCEEDED"
