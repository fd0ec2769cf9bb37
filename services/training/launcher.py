"""How a PEFT job's worker is started and followed: a local subprocess, or a Kubernetes Job.

Both run the same entry point (``python -m talklike.training.worker``, under torchrun for several
GPUs) and the worker writes the job's progress into the job store itself; a launcher only starts
it, waits for it to end, says how it ended when the worker could not (a crash, an eviction),
and stops it on cancel. ``TALKLIKE_TRAINING_LAUNCHER`` picks one (``launcher_for``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from talklike.training.settings import TrainingSettings
from talklike.training.spec import JobSpec
from talklike.training.worker import EXIT_LOCKED


@dataclass(frozen=True)
class WorkerExit:
    """How a worker ended, for a job the worker itself left unfinished."""

    #: The job's error_code when it did not finish (e.g. worker_crashed, pod_evicted).
    code: str = ""
    message: str = ""
    #: Another worker (from before a restart) still runs the job: wait, don't fail it.
    locked: bool = False


class Launcher(Protocol):
    """Starts one job's worker and follows it to its end."""

    async def run(self, job_id: str, spec: JobSpec) -> WorkerExit:
        """Run (or, after a restart, adopt) the job's worker until it ends."""
        ...

    async def cancel(self, job_id: str) -> None:
        """Stop the job's worker now, if the launcher can (the worker also stops at its next step)."""
        ...

    async def stop(self) -> None:
        """The service stops: leave the job resumable."""
        ...


def worker_command(
    home: Path, job_id: str, settings: TrainingSettings, gpu_count: int, python: str = sys.executable
) -> list[str]:
    """The worker's command line; with several GPUs torchrun starts one worker per GPU on this node."""
    worker = [
        "-m",
        "talklike.training.worker",
        "--home",
        str(home),
        "--job",
        job_id,
        *(["--notify-inference"] if settings.notify_inference else []),
        *(["--check-disk"] if settings.use_disk_agent else []),
        f"--gpu-memory-fraction={settings.gpu_memory_fraction}",
    ]
    if gpu_count > 1:
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={gpu_count}",
            *worker,
        ]
    return [python, *worker]


class LocalLauncher:
    """The worker as a subprocess of the service, on this machine (its GPUs, if any)."""

    def __init__(self, settings: TrainingSettings, home: Path) -> None:
        self.settings = settings
        self.home = home
        self.current: asyncio.subprocess.Process | None = None

    async def run(self, job_id: str, spec: JobSpec) -> WorkerExit:
        job_dir = self.home / "jobs" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        command = worker_command(self.home, job_id, self.settings, spec.compute.gpu_count)
        with (job_dir / "worker.log").open("ab") as log_file:
            self.current = await asyncio.create_subprocess_exec(*command, stdout=log_file, stderr=log_file)
            code = await self.current.wait()
        self.current = None
        if code == EXIT_LOCKED:
            return WorkerExit(locked=True)
        tail = (job_dir / "worker.log").read_text(errors="replace")[-600:]
        return WorkerExit(
            "worker_crashed",
            f"the training worker exited with code {code} before finishing; log tail: {tail}",
        )

    async def cancel(self, job_id: str) -> None:
        """Nothing to do: the worker reads the cancel request before each step."""

    async def stop(self) -> None:
        if self.current is not None and self.current.returncode is None:
            self.current.terminate()  # the job stays "running" and resumes from its checkpoint next time
            await self.current.wait()


def launcher_for(settings: TrainingSettings, home: Path, report: Callable[[str, str], None]) -> Launcher:
    """The launcher the settings name; ``report(job_id, message)`` adds a log event to a job."""
    if settings.launcher == "kubernetes":
        from talklike.training.kubernetes_launcher import KubernetesLauncher

        return KubernetesLauncher(settings, home, report)
    return LocalLauncher(settings, home)
