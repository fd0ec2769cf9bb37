"""``disk-manager``: status, clean, ensure, pin, unpin, migrate — the library from a shell."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from disk_manager.caches import CLEANUP_KINDS, CacheLocations
from disk_manager.errors import DiskManagerError
from disk_manager.manager import DiskManager, Removal, parse_size
from disk_manager.usage import Watermarks


def human(n: float) -> str:
    """Bytes as a short human string (1024-based)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table (no dependency beyond the standard library)."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def build_manager(args: argparse.Namespace) -> DiskManager:
    locations = (
        CacheLocations.for_models_dir(Path(args.models_dir))
        if args.models_dir
        else CacheLocations.from_environment()
    )
    if args.hf_cache:
        locations.hf_hub = Path(args.hf_cache)
    capacity = parse_size(args.capacity) if args.capacity else None
    return DiskManager(locations, watermarks=Watermarks(args.high, args.low), capacity_bytes=capacity)


def print_removal(removal: Removal) -> None:
    verb = "would free" if removal.dry_run else "freed"
    sizes = {e.key: human(e.size_bytes) for e in removal.evicted}
    rows = [(item, sizes.get(item, "")) for item in removal.removed]
    if rows:
        print_table(["removed" if not removal.dry_run else "would remove", "size"], rows)
    print(f"{verb} {human(removal.freed_bytes)} ({removal.freed_bytes} bytes)")


def cmd_status(dm: DiskManager, _args: argparse.Namespace) -> int:
    report = dm.check_disk_space()
    print_table(
        ["volume", "size", "used", "free", "used %", "inodes used %", "state"],
        [
            (
                v.path + (" (simulated)" if v.simulated else ""),
                human(v.total_bytes),
                human(v.used_bytes),
                human(v.free_bytes),
                f"{v.used_fraction:.1%}",
                f"{v.inodes_used_fraction:.1%}",
                "LOW ON SPACE" if v.above_high else "ok",
            )
            for v in report.volumes
        ],
    )
    leases = sorted(dm.state.active_leases(), key=lambda lease: lease.expires_at)
    pinned = {lease.key for lease in leases}
    entries = dm.entries()
    if entries:
        print()
        print_table(
            ["entry (LRU first)", "size", "last used", "state"],
            [
                (
                    e.key,
                    human(e.size_bytes),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)),
                    "pinned"
                    if e.key in pinned
                    else "in progress"
                    if e.incomplete
                    else "locked"
                    if e.locked
                    else "",
                )
                for e in entries
            ],
        )
    if leases:
        print()
        print_table(
            ["pinned entry", "holder", "until", "lease id"],
            [
                (
                    lease.key,
                    lease.holder,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease.expires_at)),
                    lease.lease_id,
                )
                for lease in leases
            ],
        )
    return 0


def cmd_clean(dm: DiskManager, args: argparse.Namespace) -> int:
    print_removal(dm.cleanup_cache(kinds=args.kinds.split(","), dry_run=args.dry_run))
    return 0


def cmd_ensure(dm: DiskManager, args: argparse.Namespace) -> int:
    print_removal(dm.ensure_free(parse_size(args.size), dry_run=args.dry_run))
    return 0


def cmd_pin(dm: DiskManager, args: argparse.Namespace) -> int:
    lease = dm.pin(args.key, ttl_s=args.ttl, holder=args.holder)
    print(f"pinned {lease.key} until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lease.expires_at))}")
    print(f"lease id: {lease.lease_id}")
    return 0


def cmd_unpin(dm: DiskManager, args: argparse.Namespace) -> int:
    if dm.unpin(args.lease_id):
        print(f"released {args.lease_id}")
        return 0
    print(f"no such lease {args.lease_id} (already released or expired)", file=sys.stderr)
    return 1


def cmd_migrate(dm: DiskManager, args: argparse.Namespace) -> int:
    result = dm.setup_network_storage(args.target, dry_run=args.dry_run)
    rows = [(k, v, "moved" if not result.dry_run else "would move") for k, v in result.moved.items()]
    rows += [(k, "", why) for k, why in result.skipped.items()]
    print_table(["cache", "new place", "result"], rows)
    for name, value in result.env.items():
        print(f"export {name}={value}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="disk-manager", description=__doc__)
    p.add_argument(
        "--models-dir", help="talklike models cache (HF cache under models/hf/hub); default: the usual caches"
    )
    p.add_argument("--hf-cache", help="Hugging Face hub cache directory")
    p.add_argument("--capacity", help="simulate a volume of this size, e.g. 10G (for trying things out)")
    p.add_argument("--high", type=float, default=0.85, help="high watermark, used fraction (default 0.85)")
    p.add_argument("--low", type=float, default=0.75, help="low watermark, used fraction (default 0.75)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="usage per volume and cache entries, least recently used first")
    clean = sub.add_parser("clean", help="delete pip/conda caches and stale HF revisions")
    clean.add_argument(
        "--kinds", default=",".join(CLEANUP_KINDS), help=f"comma list of {', '.join(CLEANUP_KINDS)}"
    )
    clean.add_argument("--dry-run", action="store_true")
    ensure = sub.add_parser("ensure", help="evict LRU unpinned entries until SIZE is free")
    ensure.add_argument("size", help="e.g. 5G")
    ensure.add_argument("--dry-run", action="store_true")
    pin = sub.add_parser("pin", help="protect an entry (e.g. hf:models--org--name) from eviction")
    pin.add_argument("key")
    pin.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    pin.add_argument("--holder", default="cli")
    unpin = sub.add_parser("unpin", help="release a pin by its lease id")
    unpin.add_argument("lease_id")
    migrate = sub.add_parser("migrate", help="move the caches to TARGET (e.g. /workspace)")
    migrate.add_argument("target")
    migrate.add_argument("--dry-run", action="store_true")
    return p


COMMANDS = {
    "status": cmd_status,
    "clean": cmd_clean,
    "ensure": cmd_ensure,
    "pin": cmd_pin,
    "unpin": cmd_unpin,
    "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](build_manager(args), args)
    except (DiskManagerError, ValueError) as exc:
        print(f"disk-manager: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
