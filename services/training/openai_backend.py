"""Fine-tuning on OpenAI: validate, upload, create the job, poll with backoff, mirror its events.

The job survives a restart of the service: OpenAI's job id is stored (``external_id``) as soon
as it exists, so polling resumes instead of paying for a second job. Transient API errors
(429, 5xx, connection errors) are retried by the client with backoff, and again by the poll
loop; a cancel request is passed on to OpenAI. The result is an adapter directory whose
manifest names the ``fine_tuned_model``, which the inference service's OpenAI backend serves.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from talklike.training.data import JobError, read_examples
from talklike.training.spec import Hyperparameters, JobSpec
from talklike.training.store import FINISHED, JobRecord

if TYPE_CHECKING:
    from talklike.training.manager import JobManager

MIN_EXAMPLES = 10
ROLES = {"system", "user", "assistant"}
STATES = {"validating_files", "queued", "running", "succeeded", "failed", "cancelled"}


def validate_openai_file(path: Path, what: str) -> int:
    """OpenAI's chat fine-tuning rules: ≥ 10 examples, known roles, text content, an assistant turn."""
    examples = read_examples(path)
    if len(examples) < MIN_EXAMPLES:
        raise JobError(
            "invalid_file",
            f"the {what} file has {len(examples)} examples; OpenAI requires at least {MIN_EXAMPLES}",
        )
    for number, messages in enumerate(examples, start=1):
        roles = [m["role"] for m in messages]
        if set(roles) - ROLES:
            raise JobError(
                "invalid_file", f"{what} example {number}: unknown role {sorted(set(roles) - ROLES)}"
            )
        if "assistant" not in roles:
            raise JobError("invalid_file", f"{what} example {number} has no assistant message to learn from")
        if any(not m["content"].strip() for m in messages):
            raise JobError("invalid_file", f"{what} example {number} has an empty message")
    return len(examples)


def supervised_method(hp: Hyperparameters) -> dict[str, Any]:
    """OpenAI's ``method`` for supervised fine-tuning: each hyperparameter "auto" unless the job set it.

    Sent as OpenAI documents it today (``method.supervised.hyperparameters``), not the deprecated
    top-level ``hyperparameters``; "auto" lets OpenAI pick the epochs for the file's size, the same
    rule EstimateCost prices when its epochs is 0.
    """
    chosen: dict[str, Any] = {
        "n_epochs": hp.epochs or "auto",
        "batch_size": hp.batch_size or "auto",
        "learning_rate_multiplier": hp.learning_rate_multiplier or "auto",
    }
    return {"type": "supervised", "supervised": {"hyperparameters": chosen}}


def _client(manager: JobManager) -> Any:
    from openai import AsyncOpenAI

    if not os.environ.get("OPENAI_API_KEY"):
        raise JobError(
            "missing_api_key",
            "the openai backend needs an API key: set OPENAI_API_KEY for the training service",
        )
    return AsyncOpenAI(base_url=manager.settings.openai_base_url or None, max_retries=5)


async def _start(manager: JobManager, client: Any, job: JobRecord, spec: JobSpec) -> str:
    home = manager.home
    train_file = await client.files.create(file=(home / spec.dataset_path).open("rb"), purpose="fine-tune")
    validation_id = None
    if spec.validation_dataset_path:
        validation_id = (
            await client.files.create(
                file=(home / spec.validation_dataset_path).open("rb"), purpose="fine-tune"
            )
        ).id
    hp = spec.hyperparameters
    remote = await client.fine_tuning.jobs.create(
        model=spec.base_model,
        training_file=train_file.id,
        validation_file=validation_id,
        method=supervised_method(hp),
        suffix=spec.adapter_name[:18],
        seed=hp.seed or None,
    )
    manager.store.update(job.id, external_id=remote.id)
    manager.store.add_event(
        job.id,
        "log",
        "running",
        f"uploaded {train_file.id}; OpenAI job {remote.id} created with {_chosen(remote)}",
    )
    return str(remote.id)


def _chosen(remote: Any) -> str:
    """The hyperparameters OpenAI reports for the job (its picks where "auto" was sent)."""
    method = getattr(remote, "method", None)
    supervised = getattr(method, "supervised", None)
    values = getattr(supervised, "hyperparameters", None) or getattr(remote, "hyperparameters", None)
    if values is None:
        return "no hyperparameters reported"
    fields = ("n_epochs", "batch_size", "learning_rate_multiplier")
    return ", ".join(f"{name}={getattr(values, name, None)}" for name in fields)


async def run_openai_job(manager: JobManager, job: JobRecord) -> None:
    """Drive one OpenAI fine-tuning job to a finished state."""
    store = manager.store
    spec = JobSpec.from_dict(job.spec)
    try:
        client = _client(manager)
        if job.state != "running":
            store.set_state(job.id, "running", "submitting to OpenAI")
        remote_id = job.external_id or await _start(manager, client, job, spec)
        await _poll(manager, client, job.id, remote_id, spec)
    except JobError as exc:
        store.set_state(job.id, "failed", exc.message, error_code=exc.code, error_message=exc.message)
    except Exception as exc:
        message = f"OpenAI fine-tuning failed: {exc.__class__.__name__}: {exc}"
        store.set_state(job.id, "failed", message, error_code="openai_error", error_message=message)


async def _poll(manager: JobManager, client: Any, job_id: str, remote_id: str, spec: JobSpec) -> None:
    from openai import APIConnectionError, APIStatusError

    store = manager.store
    interval = manager.settings.openai_poll_interval_ms / 1000
    seen_events: set[str] = {e.data.get("openai_event_id", "") for e in store.events(job_id)}
    cancel_sent = False
    while True:
        try:
            if store.get(job_id).cancel_requested and not cancel_sent:
                await client.fine_tuning.jobs.cancel(remote_id)
                cancel_sent = True
            remote = await client.fine_tuning.jobs.retrieve(remote_id)
            events = await client.fine_tuning.jobs.list_events(remote_id, limit=100)
        except (APIConnectionError, APIStatusError) as exc:
            if isinstance(exc, APIStatusError) and exc.status_code < 500 and exc.status_code != 429:
                raise
            store.add_event(
                job_id, "log", "running", f"OpenAI unreachable for now ({exc.__class__.__name__}); retrying"
            )
            await asyncio.sleep(interval)
            interval = min(interval * 2, 60.0)
            continue
        state = remote.status if remote.status in STATES else "running"
        for event in sorted(events.data, key=lambda e: e.created_at):
            if event.id in seen_events:
                continue
            seen_events.add(event.id)
            data = dict(getattr(event, "data", None) or {})
            fields: dict[str, Any] = {"openai_event_id": event.id}
            if "step" in data:
                fields.update(
                    step=int(data["step"]),
                    total_steps=int(data.get("total_steps", 0)),
                    train_loss=float(data.get("train_loss", 0.0)),
                )
                store.update(
                    job_id,
                    step=fields["step"],
                    total_steps=fields["total_steps"],
                    train_loss=fields["train_loss"],
                )
            store.add_event(
                job_id,
                "step" if "step" in data else "log",
                state if state not in FINISHED else "running",
                event.message,
                **fields,
            )
        if state == "succeeded":
            path = _write_adapter(manager.home, spec, remote, job_id)
            store.set_state(
                job_id,
                "succeeded",
                f"fine-tuned model {remote.fine_tuned_model}",
                fine_tuned_model=remote.fine_tuned_model,
                adapter_path=str(path.relative_to(manager.home)),
            )
            return
        if state == "failed":
            error = getattr(remote, "error", None)
            code = getattr(error, "code", None) or "openai_failed"
            message = getattr(error, "message", None) or "OpenAI reported the job as failed"
            store.set_state(job_id, "failed", message, error_code=str(code), error_message=str(message))
            return
        if state == "cancelled":
            store.set_state(job_id, "cancelled", "cancelled on OpenAI")
            return
        await asyncio.sleep(interval)
        interval = min(interval * 1.5, 60.0)


def _write_adapter(home: Path, spec: JobSpec, remote: Any, job_id: str) -> Path:
    """adapters/<name>/adapter_manifest.json naming the fine-tuned model (what the inference OpenAI backend loads)."""
    target = home / "adapters" / spec.adapter_name
    target.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": spec.adapter_name,
        "job_id": job_id,
        "backend": "openai",
        "fine_tuned_model": remote.fine_tuned_model,
        "openai_job_id": remote.id,
        "base_model": {"source": spec.base_model},
        "dataset": {"path": spec.dataset_path},
        "hyperparameters": spec.to_dict()["hyperparameters"],
        "trained_tokens": getattr(remote, "trained_tokens", None),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = target / ".adapter_manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    tmp.replace(target / "adapter_manifest.json")
    return target
