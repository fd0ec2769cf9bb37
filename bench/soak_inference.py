"""Soak: inference on `tiny` at about 70 % of its capacity for a long while; does anything drift?

A `talklike serve inference` process (base model tiny, loopback only, its own temporary data home)
is first driven flat out for a short probe: closed loop at ``--probe-concurrency`` requests in
flight, which gives its capacity in requests per second. Then requests arrive open loop (Poisson,
seeded) at ``--load`` × that capacity for ``--minutes`` minutes, 4 in 5 a unary Generate and 1 in 5
a GenerateStream read to the end, each with a deadline. At most ``--max-in-flight`` requests are
outstanding: one that would exceed it is not sent and counts as an error ("shed"), so the run is
bounded whatever the server does.

Per minute it reports requests served, errors (by status), p50 / p99 latency and the server's
resident memory (median of one sample a second). The baseline is minute 2 (minute 1 warms up):
the verdict compares every later minute with it. Target: no error, and RSS and p99 each within
10 % of minute 2 from minute 2 to the end.

Run: `.venv/bin/python bench/soak_inference.py --minutes 10` (the full soak; `--minutes 1` checks
that it works). `--json FILE` also writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from talklike.v1 import common_pb2
from talklike.v1 import inference_pb2 as pb
from talklike.v1 import inference_pb2_grpc as pb_grpc

QUESTIONS = (
    "Jak hodnotíte inflaci?",
    "Co říkáte na ceny energií?",
    "Pane předsedo, co Brusel?",
    "Jak to bude s důchody?",
    "Proč se staví tak pomalu dálnice?",
    "Co uděláte se školstvím?",
)
DEADLINE_S = 10.0
#: Flat: every minute from the baseline on within this share of the baseline minute.
FLAT = 0.10


@dataclass
class Minute:
    """What one minute of the soak saw."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    rss_bytes: list[int] = field(default_factory=list)

    def row(self, number: int) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "minute": number,
            "served": len(ordered),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "p50_ms": round(1000 * percentile(ordered, 0.50), 1),
            "p99_ms": round(1000 * percentile(ordered, 0.99), 1),
            "rss_mib": round(statistics.median(self.rss_bytes) / 2**20, 1) if self.rss_bytes else 0.0,
        }


def percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    """`talklike serve inference` on tiny, loopback, HTTP face and metrics off, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKLIKE_")}
    env.update(
        TALKLIKE_HOME=str(home),
        TALKLIKE_LOG_LEVEL="WARNING",
        TALKLIKE_INFERENCE_BASE_MODEL="tiny",
        TALKLIKE_INFERENCE_HOST="127.0.0.1",
        TALKLIKE_INFERENCE_PORT=str(port),
        TALKLIKE_INFERENCE_METRICS_PORT="0",
        TALKLIKE_INFERENCE_HTTP_PORT="0",
    )
    log = (home / "server.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "talklike.cli.main", "serve", "inference"], env=env, stdout=log, stderr=log
    )


async def wait_serving(channel: grpc.aio.Channel, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="talklike.v1.InferenceService")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the inference service exited with {process.returncode}; see its server.log")
        try:
            if (await health.Check(request, timeout=1)).status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the inference service was not SERVING after {timeout_s:.0f} s")


class Driver:
    """Sends the soak's requests and records their outcome in the current minute."""

    def __init__(self, stub: pb_grpc.InferenceServiceStub, tokens: int, seed: int) -> None:
        self.stub = stub
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.minute = Minute()
        self.in_flight = 0

    def request(self) -> tuple[bool, pb.Conversation, pb.SamplingParams]:
        question = self.rng.choice(QUESTIONS)
        chat = pb.Conversation(
            messages=[common_pb2.ChatMessage(role=common_pb2.CHAT_ROLE_USER, content=question)]
        )
        sampling = pb.SamplingParams(
            max_new_tokens=self.tokens, temperature=0.8, seed=self.rng.randrange(2**32)
        )
        return self.rng.random() < 0.2, chat, sampling

    async def one(self) -> bool:
        """Send one request; True when it was served."""
        streamed, chat, sampling = self.request()
        minute = self.minute  # a request is counted in the minute it was sent
        self.in_flight += 1
        started = time.perf_counter()
        try:
            if streamed:
                call = self.stub.GenerateStream(
                    pb.GenerateStreamRequest(chat=chat, sampling=sampling), timeout=DEADLINE_S
                )
                async for _ in call:
                    pass
            else:
                await self.stub.Generate(pb.GenerateRequest(chat=chat, sampling=sampling), timeout=DEADLINE_S)
            minute.latencies_s.append(time.perf_counter() - started)
            return True
        except grpc.aio.AioRpcError as error:
            minute.errors[error.code().name] += 1
            return False
        finally:
            self.in_flight -= 1


async def probe(driver: Driver, concurrency: int, seconds: float) -> float:
    """Requests per second served flat out at ``concurrency`` (closed loop)."""
    stop_at = time.monotonic() + seconds

    async def worker() -> int:
        served = 0
        while time.monotonic() < stop_at:
            served += await driver.one()
        return served

    started = time.monotonic()
    served = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    errors = sum(driver.minute.errors.values())
    if errors:
        raise SystemExit(f"the capacity probe saw {errors} errors: {dict(driver.minute.errors)}")
    driver.minute = Minute()
    return served / (time.monotonic() - started)


async def sample_rss(pid: int, driver: Driver, stop: asyncio.Event) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        driver.minute.rss_bytes.append(process.memory_info().rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def soak(
    driver: Driver, pid: int, rate: float, minutes: int, max_in_flight: int, seed: int
) -> list[dict[str, Any]]:
    """Open-loop Poisson arrivals at ``rate`` per second; one row per minute."""
    rng = random.Random(seed + 1)
    rows: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[bool]] = set()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, driver, stop))
    start = time.monotonic()
    next_at = start
    for number in range(1, minutes + 1):
        driver.minute = Minute()
        minute_end = start + 60 * number
        while True:
            next_at += rng.expovariate(rate)
            if next_at >= minute_end:
                break
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if driver.in_flight >= max_in_flight:
                driver.minute.errors["shed"] += 1
                continue
            task: asyncio.Task[bool] = asyncio.create_task(driver.one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0.0, minute_end - time.monotonic()))
        finished = driver.minute
        rows.append(finished.row(number))
        print(format_row(rows[-1]), flush=True)
    if tasks:
        await asyncio.wait(tasks, timeout=DEADLINE_S + 1)
    # Requests sent in the last minute that ended after it are counted in it: the printed row was early.
    rows[-1] = finished.row(minutes)
    stop.set()
    await sampler
    return rows


def format_row(row: dict[str, Any]) -> str:
    kinds = f" {row['error_kinds']}" if row["errors"] else ""
    return (
        f"minute {row['minute']:>2}: served {row['served']:>5}  errors {row['errors']:>3}{kinds}  "
        f"p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms  RSS {row['rss_mib']:>7.1f} MiB"
    )


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Errors in all; RSS and p99 of each minute from 2 on as a ratio of minute 2 (the baseline)."""
    errors = sum(row["errors"] for row in rows)
    if len(rows) < 2:
        return {"errors": errors, "baseline": None, "flat": None, "note": "flatness needs at least 2 minutes"}
    base = rows[1]
    tail = rows[1:]
    rss = [row["rss_mib"] / base["rss_mib"] for row in tail]
    p99 = [row["p99_ms"] / base["p99_ms"] for row in tail]
    flat = all(abs(r - 1) <= FLAT for r in rss) and all(abs(r - 1) <= FLAT for r in p99)
    return {
        "errors": errors,
        "baseline": "minute 2",
        "rss_ratio_range": [round(min(rss), 3), round(max(rss), 3)],
        "p99_ratio_range": [round(min(p99), 3), round(max(p99), 3)],
        "flat": flat,
        "target_met": errors == 0 and flat,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="talklike-soak-") as tmp:
        home = Path(tmp)
        port = free_port()
        process = start_server(home, port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await wait_serving(channel, process, timeout_s=300)
                driver = Driver(pb_grpc.InferenceServiceStub(channel), args.tokens, args.seed)
                capacity = await probe(driver, args.probe_concurrency, args.probe_seconds)
                rate = args.load * capacity
                print(
                    f"capacity {capacity:.1f} requests/s at concurrency {args.probe_concurrency} "
                    f"({args.tokens} tokens each); soak at {args.load:.0%}: {rate:.1f} requests/s "
                    f"for {args.minutes} min, at most {args.max_in_flight} in flight",
                    flush=True,
                )
                rows = await soak(driver, process.pid, rate, args.minutes, args.max_in_flight, args.seed)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    result = {
        "capacity_requests_per_s": round(capacity, 2),
        "rate_requests_per_s": round(rate, 2),
        "minutes": rows,
        "verdict": verdict(rows),
    }
    print(json.dumps(result["verdict"]))
    return result


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="length of the soak (default 10)")
    parser.add_argument("--load", type=float, default=0.7, help="share of the probed capacity (default 0.7)")
    parser.add_argument("--tokens", type=int, default=32, help="max_new_tokens of each request (default 32)")
    parser.add_argument("--probe-seconds", type=float, default=20.0, help="length of the capacity probe")
    parser.add_argument("--probe-concurrency", type=int, default=8, help="requests in flight while probing")
    parser.add_argument("--max-in-flight", type=int, default=32, help="outstanding requests at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.minutes <= 120 or not 0 < args.load <= 1:
        parser.error("--minutes must be 1 .. 120 and --load in (0, 1]")
    return args


if __name__ == "__main__":
    arguments = parse()
    figures = asyncio.run(main(arguments))
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
