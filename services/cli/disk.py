"""``talklike disk status|clean|ensure|pin|unpin``: the disk agent, through its gRPC service."""

from __future__ import annotations

import time
from typing import Annotated

import grpc
import typer
from disk_manager.cli import human
from talklike.cli.output import console, fail, rpc_errors, table
from talklike.common.client import connect
from talklike.v1 import disk_agent_pb2 as pb
from talklike.v1 import disk_agent_pb2_grpc as pb_grpc

from disk_manager import InvalidSize
from disk_manager import parse_size as parse

disk_app = typer.Typer(
    help="Model-cache volumes: usage, cleanup, eviction and pins (through the disk agent)."
)

SERVICE = "disk-agent"


def parse_size(text: str) -> int:
    """'5G', '500M', '1024' → bytes; a one-sentence error otherwise."""
    try:
        return parse(text)
    except InvalidSize as exc:
        fail(str(exc), "write the size like 500M, 5G or a number of bytes")


def stub() -> pb_grpc.DiskAgentServiceStub:
    return pb_grpc.DiskAgentServiceStub(connect(SERVICE))


@disk_app.command("status")
def status(entries: Annotated[bool, typer.Option(help="Also list cache entries, LRU first.")] = True) -> None:
    """Usage of every managed volume and the cache entries on it."""
    with rpc_errors(SERVICE):
        reply = stub().GetUsage(pb.GetUsageRequest(include_entries=entries))
    console.print(
        table(
            ["volume", "size", "used", "free", "used %", "state"],
            [
                (
                    v.path + (" (simulated)" if v.simulated else ""),
                    human(v.total_bytes),
                    human(v.used_bytes),
                    human(v.free_bytes),
                    f"{v.used_fraction:.1%}",
                    "[red]LOW ON SPACE[/]" if v.above_high_watermark else "[green]ok[/]",
                )
                for v in reply.volumes
            ],
            title="volumes",
        )
    )
    if reply.entries:
        console.print(
            table(
                ["entry (least recently used first)", "size", "last used", "state"],
                [
                    (
                        e.key,
                        human(e.size_bytes),
                        time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used_unix_ms / 1000)),
                        "pinned"
                        if e.pinned
                        else "in progress"
                        if e.incomplete
                        else "locked"
                        if e.locked
                        else "",
                    )
                    for e in reply.entries
                ],
                title="cache entries",
            )
        )
    if reply.leases:
        console.print(
            table(
                ["pinned entry", "holder", "until", "lease id (for `talklike disk unpin`)"],
                [
                    (
                        lease.key,
                        lease.holder,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease.expires_at_unix_ms / 1000)),
                        lease.lease_id,
                    )
                    for lease in reply.leases
                ],
                title="pins",
            )
        )


@disk_app.command("clean")
def clean(
    kinds: Annotated[
        list[str] | None, typer.Option("--kind", help="pip, conda or hf-stale (repeatable; default all).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
) -> None:
    """Delete caches that are safe to lose (never a model)."""
    with rpc_errors(SERVICE):
        reply = stub().Cleanup(pb.CleanupRequest(kinds=kinds or [], dry_run=dry_run))
    for item in reply.removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {item}")
    console.print(f"{'would free' if dry_run else 'freed'} {human(reply.freed_bytes)}")


@disk_app.command("ensure")
def ensure(
    size: Annotated[str, typer.Argument(help="Free space needed, e.g. 5G.")],
    volume: Annotated[
        str, typer.Option(help="A managed directory naming the volume (default: models cache).")
    ] = "",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only plan the eviction.")] = False,
) -> None:
    """Evict least-recently-used unpinned cache entries until SIZE is free."""
    required = parse_size(size)
    with rpc_errors(SERVICE):
        try:
            reply = stub().EnsureFree(
                pb.EnsureFreeRequest(volume=volume, required_bytes=required, dry_run=dry_run)
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            fail(
                str(error.details()),
                "the entries held back are pinned or being written: wait for them, release a pin "
                "(`talklike disk status` lists pins, `talklike disk unpin LEASE_ID`), or ask for less",
            )
    if reply.evicted:
        console.print(
            table(
                ["evicted" if not dry_run else "would evict", "size"],
                [(e.key, human(e.size_bytes)) for e in reply.evicted],
            )
        )
    console.print(
        f"{'would free' if dry_run else 'freed'} {human(reply.freed_bytes)}; {human(reply.free_bytes)} free now"
    )


@disk_app.command("pin")
def pin(
    key: Annotated[str, typer.Argument(help="Entry key, e.g. models:smollm2 or hf:models--org--name.")],
    ttl: Annotated[int, typer.Option(help="Seconds the pin lasts.")] = 3600,
    holder: Annotated[str, typer.Option(help="Who holds it.")] = "cli",
) -> None:
    """Protect a cache entry from eviction."""
    with rpc_errors(SERVICE):
        reply = stub().Pin(pb.PinRequest(key=key, ttl_seconds=ttl, holder=holder))
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(reply.expires_at_unix_ms / 1000))
    console.print(f"pinned {key} until {until}; lease id {reply.lease_id}")


@disk_app.command("unpin")
def unpin(lease_id: Annotated[str, typer.Argument(help="The lease id `pin` printed.")]) -> None:
    """Release a pin."""
    with rpc_errors(SERVICE):
        reply = stub().Unpin(pb.UnpinRequest(lease_id=lease_id))
    if not reply.released:
        fail(
            f"no lease {lease_id} is held",
            "it was already released or has expired; `talklike disk status` lists pins",
        )
    console.print(f"released {lease_id}")


def register(app: typer.Typer) -> None:
    """Add the ``disk`` command group."""
    app.add_typer(disk_app, name="disk")
