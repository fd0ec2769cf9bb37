"""The training worker: one job, in its own process, so a crash in training never takes the service down.

``python -m talklike.training.worker --home HOME --job ID``. It holds ``jobs/<id>/worker.lock``
while it runs, so a restarted service never starts the same job twice, and it dies with its
parent (PR_SET_PDEATHSIG) so that the restarted service can resume from the checkpoint.

On several GPUs it runs once per GPU under torchrun (``launcher.worker_command``): rank 0 holds
the lock and alone writes the job store, checkpoints and the adapter (``ranks.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from talklike.common.errors import FailedPrecondition, TalklikeError
from talklike.training.data import JobError
from talklike.training.ranks import Ranks, start, stop
from talklike.training.store import FINISHED, JobStore

EXIT_LOCKED = 3
#: Room asked of the disk agent for the adapter, checkpoints and optimizer state.
TRAINING_SCRATCH_BYTES = 512 << 20


def die_with_parent() -> None:
    """Get SIGTERM when the service dies, instead of training on as an orphan (Linux only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def notify_inference(adapter: str) -> str:
    """Load the new adapter into the inference service, when one is up; a line for the job's log.

    Done before the job is marked succeeded, so whoever sees "succeeded" can use the adapter.
    """
    from talklike.common import client
    from talklike.inference.client import InferenceClient

    if client.health_status("inference", timeout_s=0.5) != "SERVING":
        return f"inference service not reachable at {client.address_for('inference')}: load {adapter} later (LoadAdapter)"
    try:
        with InferenceClient() as inference:
            inference.load_adapter(adapter)
    except TalklikeError as error:
        return f"loading {adapter} into the inference service failed: {error.message}"
    return f"adapter {adapter} loaded into the inference service"


def run(
    home: Path,
    job_id: str,
    notify: bool = False,
    check_disk: bool = False,
    gpu_memory_fraction: float = 0.9,
    ranks: Ranks | None = None,
) -> int:
    from talklike.training.disk import ensure_free
    from talklike.training.peft_trainer import PeftTrainer
    from talklike.training.spec import JobSpec

    store = JobStore(home / "jobs.db")
    job = store.get(job_id)
    if job.state in FINISHED:
        return 0
    spec = JobSpec.from_dict(job.spec)
    job_dir = home / "jobs" / job_id

    def emit(kind: str, message: str, **data: Any) -> None:
        fields = {k: data[k] for k in ("step", "total_steps", "train_loss", "eval_loss") if k in data}
        if fields:
            store.update(job_id, **fields)
        store.add_event(job_id, kind, "running", message, **data)

    def should_stop() -> bool:
        return store.get(job_id).cancel_requested

    ranks = ranks or Ranks()
    main = ranks.main

    def record(state: str, message: str, **fields: Any) -> None:
        if main:  # the other ranks' outcome is the same: rank 0 writes it once
            store.set_state(job_id, state, message, **fields)

    resumed = job.state == "running"
    record("running", "resuming after a restart" if resumed else "training started")
    trainer = PeftTrainer(
        spec, home, job_dir, emit, should_stop, gpu_memory_fraction=gpu_memory_fraction, ranks=ranks
    )
    report = trainer.emit  # silent on every rank but 0
    try:
        start(ranks)

        def ask_disk_agent(required_bytes: int) -> None:
            report("log", ensure_free(required_bytes, "the base model"))

        model, tokenizer, train, val = trainer.prepare(
            before_write=ask_disk_agent if check_disk and main else None
        )
        if check_disk and main:
            report("log", ensure_free(TRAINING_SCRATCH_BYTES, "training"))
        report(
            "log",
            f"{len(train)} training and {len(val)} validation examples; LoRA on {', '.join(trainer.targets)}"
            + (f"; data-parallel on {ranks.world_size} GPUs" if ranks.distributed else ""),
        )
        result = trainer.run(model, tokenizer, train, val)
        if result is None:
            record("cancelled", "cancelled at the caller's request")
            return 0
        if main:
            path = trainer.save_adapter(result, job_id)
            if notify:
                report("log", notify_inference(spec.adapter_name))
            record(
                "succeeded",
                f"adapter saved to {path.relative_to(home)} ({result.steps} steps, {result.wall_time_s:.1f} s)",
                adapter_path=str(path.relative_to(home)),
            )
    except JobError as exc:
        record("failed", exc.message, error_code=exc.code, error_message=exc.message)
    except FailedPrecondition as exc:  # no GPU, not enough GPU memory, bitsandbytes missing
        record("failed", str(exc), error_code="failed_precondition", error_message=str(exc))
    except Exception as exc:
        traceback.print_exc()
        if not main:
            raise  # torchrun stops every rank; the service reports the worker's exit and log
        record(
            "failed",
            f"training failed: {exc.__class__.__name__}: {exc}",
            error_code="training_error",
            error_message=f"{exc.__class__.__name__}: {exc}; see jobs/{job_id}/worker.log",
        )
    finally:
        stop(ranks)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--job", required=True)
    parser.add_argument(
        "--notify-inference", action="store_true", help="load the adapter into the inference service"
    )
    parser.add_argument(
        "--check-disk", action="store_true", help="ask the disk agent for room before writing"
    )
    parser.add_argument(
        "--gpu-memory-fraction",
        type=float,
        default=0.9,
        help="share of a GPU's free memory the job may plan to use",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    die_with_parent()
    ranks = Ranks.from_env()
    if ranks.distributed:
        ranks = Ranks.from_env(device=f"cuda:{ranks.local_rank}")  # several ranks: one GPU each, NCCL
    home = args.home.resolve()
    job_dir = home / "jobs" / args.job
    job_dir.mkdir(parents=True, exist_ok=True)
    options = (args.notify_inference, args.check_disk, args.gpu_memory_fraction, ranks)
    if not ranks.main:  # rank 0 holds the lock for all of them
        return run(home, args.job, *options)
    with open(job_dir / "worker.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"job {args.job} is already being run by another worker", file=sys.stderr)
            return EXIT_LOCKED
        return run(home, args.job, *options)


if __name__ == "__main__":
    sys.exit(main())
