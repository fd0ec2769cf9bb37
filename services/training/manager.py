"""The job manager: validates new jobs, runs them one at a time in worker processes, resumes after a restart.

It lives in the service process and never trains itself: the worker does, so a crash (or an
out-of-memory kill) of the worker fails one job, not the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from talklike.common.errors import FailedPrecondition, InvalidArgument
from talklike.training.data import JobError, dataset_language, encode_all, read_examples
from talklike.training.launcher import Launcher, launcher_for
from talklike.training.settings import TrainingSettings
from talklike.training.spec import JobSpec
from talklike.training.store import FINISHED, EventRecord, JobRecord, JobStore
from talklike.training.worker import TRAINING_SCRATCH_BYTES

log = logging.getLogger(__name__)


def validate_job(home: Path, spec: JobSpec, check_disk: bool = True) -> str:
    """The validating_files checks that need the data and the model (run in a thread).

    Returns a summary line. The model is built on the meta device: only its module names and
    tokenizer are needed to know the job can run.
    """
    from talklike.models import resolve
    from talklike.models.resolve import language_warning
    from talklike.training.compute import meta_skeleton
    from talklike.training.disk import ensure_free
    from talklike.training.peft_trainer import check_target_modules
    from transformers import AutoTokenizer

    notes: list[str] = []
    warning = language_warning(spec.base_model, dataset_language(home / spec.dataset_path))
    if warning:
        notes.append(f"warning: {warning}")
    train = read_examples(home / spec.dataset_path)
    if len(train) < 1:
        raise JobError("invalid_file", "the training set is empty")

    def ask_disk_agent(required_bytes: int) -> None:
        notes.append(ensure_free(required_bytes, "the base model"))

    resolved = resolve(spec.base_model, home / "models", before_write=ask_disk_agent if check_disk else None)
    if check_disk:  # room for checkpoints and the adapter, so a full disk fails the job before it runs
        notes.append(ensure_free(TRAINING_SCRATCH_BYTES, "training"))
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    skeleton = meta_skeleton(resolved.path)
    targets = check_target_modules(skeleton, spec.hyperparameters.lora_target_modules)
    encoded = encode_all(tokenizer, train, spec.hyperparameters.max_sequence_tokens, "training")
    if spec.validation_dataset_path:
        encode_all(
            tokenizer,
            read_examples(home / spec.validation_dataset_path),
            spec.hyperparameters.max_sequence_tokens,
            "validation",
        )
    answer_tokens = sum(e.answer_tokens for e in encoded)
    notes.append(
        f"{len(encoded)} examples, {answer_tokens} answer tokens to learn; base {resolved.name}; LoRA on {', '.join(targets)}"
    )
    return "; ".join(notes)


#: Jobs ListJobs returns without a limit, and at most.
DEFAULT_LISTED_JOBS = 50
MAX_LISTED_JOBS = 1000


class JobManager:
    """Queue, worker, cancel, resume."""

    def __init__(self, settings: TrainingSettings, launcher: Launcher | None = None) -> None:
        self.settings = settings
        self.home = settings.home.resolve()
        #: Starts and follows the workers (a subprocess here, or a Kubernetes Job).
        self.launcher = launcher or launcher_for(settings, self.home, self._report)
        self.store = JobStore(self.home / "jobs.db")
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._validations: set[asyncio.Task[None]] = set()
        self._validate_lock = asyncio.Lock()

    async def start(self) -> None:
        for job in self.store.recent(limit=10_000, states=("validating_files",)):
            self._spawn_validation(job.id)
        for job in self.store.recent(limit=10_000, states=("running",)):
            self.store.add_event(
                job.id,
                "log",
                "running",
                "the service restarted while this job ran; it resumes from its last checkpoint",
            )
        self._runner = asyncio.create_task(self._run_forever(), name="training-jobs")

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._validations) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.launcher.stop()

    def _report(self, job_id: str, message: str) -> None:
        """A launcher's news about a job's worker (a pod pending, failed, replaced)."""
        self.store.add_event(job_id, "log", self.store.get(job_id).state, message)

    # -- jobs -----------------------------------------------------------------------------
    @property
    def model_roots(self) -> list[Path]:
        """Folders outside the data home a base model may come from (setting ``model_roots``)."""
        return [Path(r.strip()) for r in self.settings.model_roots.split(",") if r.strip()]

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id``; NotFound when there is none."""
        return self.store.get(job_id)

    def recent(self, limit: int = 0) -> list[JobRecord]:
        """The newest jobs, at most ``limit`` (0: 50); InvalidArgument over MAX_LISTED_JOBS."""
        if limit > MAX_LISTED_JOBS:
            raise InvalidArgument("limit", f"must be at most {MAX_LISTED_JOBS}")
        return self.store.recent(limit or DEFAULT_LISTED_JOBS)

    def create(self, spec: JobSpec, job_backend: str) -> JobRecord:
        job = self.store.create(job_backend, spec.to_dict())
        if not spec.adapter_name:
            spec = JobSpec.from_dict({**spec.to_dict(), "adapter_name": job.id})
            job = self.store.update(job.id, spec_json=json.dumps(spec.to_dict()))
        self._spawn_validation(job.id)
        return job

    def _spawn_validation(self, job_id: str) -> None:
        task = asyncio.create_task(self._validate(job_id))
        self._validations.add(task)
        task.add_done_callback(self._validations.discard)

    async def _validate(self, job_id: str) -> None:
        async with self._validate_lock:
            job = self.store.get(job_id)
            if job.state != "validating_files":
                return
            spec = JobSpec.from_dict(job.spec)
            try:
                if job.backend == "openai":
                    from talklike.training.openai_backend import validate_openai_file

                    count = await asyncio.to_thread(
                        validate_openai_file, self.home / spec.dataset_path, "training"
                    )
                    summary = f"{count} examples pass OpenAI's chat fine-tuning format rules"
                else:
                    summary = await asyncio.to_thread(
                        validate_job, self.home, spec, self.settings.use_disk_agent
                    )
            except JobError as exc:
                self.store.set_state(
                    job_id, "failed", exc.message, error_code=exc.code, error_message=exc.message
                )
                return
            except Exception as exc:
                log.exception("validating %s failed", job_id)
                message = f"validation failed: {exc.__class__.__name__}: {exc}"
                self.store.set_state(
                    job_id, "failed", message, error_code="validation_error", error_message=message
                )
                return
            if self.store.get(job_id).state == "validating_files":  # not cancelled meanwhile
                self.store.set_state(job_id, "queued", f"validated: {summary}")
                self._wake.set()

    async def cancel(self, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if job.state in FINISHED:
            raise FailedPrecondition(
                f"job {job_id} has already {job.state}; only queued or running jobs can be cancelled"
            )
        if job.state in ("validating_files", "queued"):
            return self.store.set_state(
                job_id, "cancelled", "cancelled before it started", cancel_requested=1
            )
        self.store.add_event(
            job_id, "log", job.state, "cancellation requested; the worker stops at the next step"
        )
        job = self.store.update(job_id, cancel_requested=1)
        if job.backend == "peft":
            await self.launcher.cancel(job_id)
        return job

    async def events(self, job_id: str) -> AsyncIterator[EventRecord]:
        """History first, then live events until the job has finished and everything was sent."""
        self.store.get(job_id)
        seen = 0
        interval = self.settings.poll_interval_ms / 1000
        while True:
            batch = await asyncio.to_thread(self.store.events, job_id, seen)
            for event in batch:
                seen = event.seq
                yield event
            if not batch and (await asyncio.to_thread(self.store.get, job_id)).state in FINISHED:
                tail = await asyncio.to_thread(self.store.events, job_id, seen)
                for event in tail:
                    yield event
                return
            if not batch:
                await asyncio.sleep(interval)

    # -- the worker loop ------------------------------------------------------------------
    def _next(self) -> JobRecord | None:
        return self.store.oldest("running") or self.store.oldest("queued")

    async def _run_forever(self) -> None:
        while True:
            job = await asyncio.to_thread(self._next)
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=2.0)
                continue
            await self._run_job(job)

    async def _run_job(self, job: JobRecord) -> None:
        if job.backend == "openai":
            from talklike.training.openai_backend import run_openai_job

            await run_openai_job(self, job)
            return
        ended = await self.launcher.run(job.id, JobSpec.from_dict(job.spec))
        if ended.locked:
            await asyncio.sleep(2)  # an orphaned worker from before a restart still runs it: wait for it
            return
        after = self.store.get(job.id)
        if after.state in FINISHED:
            return
        if after.cancel_requested:
            self.store.set_state(
                job.id, "cancelled", "cancelled at the caller's request; the worker was stopped"
            )
            return
        self.store.set_state(
            job.id, "failed", ended.message, error_code=ended.code, error_message=ended.message
        )
