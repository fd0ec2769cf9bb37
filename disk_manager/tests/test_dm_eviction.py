"""LRU eviction on real files: order, pins and their expiry, downloads in progress, locks, concurrency."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from disk_manager.testing import KIB, make_hf_repo, make_model

from disk_manager import (
    CacheLocations,
    DiskManager,
    InsufficientSpace,
    InvalidSize,
    Lease,
    OutsideManagedRoots,
    Removal,
)
from disk_manager import manager as manager_module

NOW = time.time()


def manager(models: Path, capacity: int) -> DiskManager:
    return DiskManager(CacheLocations.for_models_dir(models), capacity_bytes=capacity)


def used(dm: DiskManager) -> int:
    return dm.volumes()[0].used_bytes


def test_evicts_least_recently_used_first_until_the_request_is_met(models_dir: Path) -> None:
    for age, name in enumerate(["newest", "middle", "oldest"]):
        make_model(models_dir, name, 100 * KIB, NOW - 1000 * (age + 1))
    make_hf_repo(models_dir / "hf" / "hub", "org/older-than-all", 100 * KIB, NOW - 10_000)
    dm = manager(models_dir, capacity=used_probe(models_dir) + 20 * KIB)

    removal = dm.ensure_free(150 * KIB)

    assert removal.removed == ["hf:models--org--older-than-all", "models:oldest"]
    assert sorted(p.name for p in models_dir.iterdir() if p.name not in {"hf", ".disk_manager"}) == [
        "middle",
        "newest",
    ]
    assert dm.free_bytes() >= 150 * KIB


def used_probe(models: Path) -> int:
    return DiskManager(CacheLocations.for_models_dir(models), capacity_bytes=1 << 40).volumes()[0].used_bytes


def test_dry_run_plans_but_deletes_nothing(models_dir: Path) -> None:
    make_model(models_dir, "a", 100 * KIB, NOW - 100)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    removal = dm.ensure_free(50 * KIB, dry_run=True)
    assert removal.removed == ["models:a"] and removal.dry_run
    assert (models_dir / "a").exists()


def test_recorded_use_beats_file_times(models_dir: Path) -> None:
    make_model(models_dir, "old-but-just-used", 100 * KIB, NOW - 5000)
    make_model(models_dir, "recent", 100 * KIB, NOW - 100)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    dm.touch("models:old-but-just-used")
    assert dm.ensure_free(50 * KIB).removed == ["models:recent"]


def test_pinned_entries_are_kept_and_an_impossible_request_states_the_shortfall(models_dir: Path) -> None:
    make_model(models_dir, "pinned", 100 * KIB, NOW - 5000)
    make_model(models_dir, "free", 100 * KIB, NOW - 100)
    dm = manager(models_dir, capacity=used_probe(models_dir) + 10 * KIB)
    dm.pin("models:pinned", ttl_s=60, holder="inference")

    with pytest.raises(InsufficientSpace) as info:
        dm.ensure_free(250 * KIB)
    assert info.value.shortfall_bytes > 0
    assert "models:pinned (pinned)" in info.value.blocked
    assert (models_dir / "pinned").exists() and (models_dir / "free").exists()  # nothing deleted

    removal = dm.ensure_free(60 * KIB)
    assert removal.removed == ["models:free"]


def test_pins_expire(models_dir: Path) -> None:
    make_model(models_dir, "a", 100 * KIB, NOW - 100)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    lease = dm.pin("models:a", ttl_s=0.2)
    assert dm.state.pinned_keys() == {"models:a"}
    assert dm.state.pinned_keys(now=lease.expires_at + 0.01) == set()
    time.sleep(0.25)
    assert dm.ensure_free(10 * KIB).removed == ["models:a"]


def test_unpin_releases(models_dir: Path) -> None:
    make_model(models_dir, "a", 10 * KIB, NOW)
    dm = manager(models_dir, capacity=1 << 30)
    lease = dm.pin("models:a")
    assert dm.unpin(lease.lease_id) and not dm.unpin(lease.lease_id)
    assert dm.state.pinned_keys() == set()


def test_downloads_in_progress_and_locked_entries_are_never_touched(models_dir: Path) -> None:
    hub = models_dir / "hf" / "hub"
    make_hf_repo(hub, "org/downloading", 100 * KIB, NOW - 9000, incomplete=True)
    make_model(models_dir, "converting", 100 * KIB, NOW - 8000)
    (models_dir / ".locks").mkdir()
    lock_path = models_dir / ".locks" / "converting.lock"
    lock_path.touch()
    make_model(models_dir, "idle", 100 * KIB, NOW - 10)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    with open(lock_path) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        removal = dm.ensure_free(50 * KIB)
        assert removal.removed == ["models:idle"]
        assert set(removal.blocked) == {
            "hf:models--org--downloading (in progress)",
            "models:converting (locked)",
        }
    assert (hub / "models--org--downloading").exists() and (models_dir / "converting").exists()


def test_concurrent_requests_never_delete_an_entry_twice(models_dir: Path) -> None:
    for i in range(6):
        make_model(models_dir, f"m{i}", 50 * KIB, NOW - 1000 + i)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    results: list[Removal] = []
    errors: list[BaseException] = []

    def request() -> None:
        try:
            results.append(dm.ensure_free(120 * KIB))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    removed = [key for r in results for key in r.removed]
    assert len(removed) == len(set(removed)) == 3  # the first caller frees enough for all
    assert removed == ["models:m0", "models:m1", "models:m2"]


def test_sizes_and_paths_are_checked(models_dir: Path, tmp_path: Path) -> None:
    dm = manager(models_dir, capacity=1 << 30)
    with pytest.raises(InvalidSize):
        dm.ensure_free(-1)
    with pytest.raises(InvalidSize):
        dm.ensure_free(1 << 60)
    with pytest.raises(OutsideManagedRoots):
        dm.check_path(tmp_path / "elsewhere")
    with pytest.raises(OutsideManagedRoots):
        dm.check_path(models_dir / ".." / "elsewhere")
    assert dm.check_path(models_dir / "x") == (models_dir / "x").resolve()


def test_prepare_for_model_uses_the_cache_or_the_name(models_dir: Path) -> None:
    make_hf_repo(models_dir / "hf" / "hub", "org/Cached-7B", 10 * KIB, NOW)
    dm = manager(models_dir, capacity=used_probe(models_dir) + KIB)
    assert dm.prepare_for_model("org/Cached-7B").freed_bytes == 0
    with pytest.raises(InsufficientSpace) as info:
        dm.prepare_for_model("org/Other-1.5B")
    assert info.value.requested_bytes == int(1.5e9 * 2 * 1.1)
    with pytest.raises(InvalidSize, match="pass the size"):
        dm.prepare_for_model("org/mystery-model")


def test_an_eviction_cut_short_never_leaves_half_a_model_under_its_name(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_model(models_dir, "old", 100 * KIB, NOW - 1000)
    make_model(models_dir, "new", 100 * KIB, NOW - 10)
    dm = manager(models_dir, capacity=used_probe(models_dir))

    def crash(path: Path, ignore_errors: bool = False) -> None:
        (path / "config.json").unlink()  # got part of the way, then the process "died"
        raise KeyboardInterrupt

    monkeypatch.setattr(manager_module, "_delete", crash)
    with pytest.raises(KeyboardInterrupt):
        dm.ensure_free(50 * KIB)
    assert not (models_dir / "old").exists()  # the name went at once, with the whole model
    leftovers = list(models_dir.glob(".old.evicting-*"))
    assert len(leftovers) == 1 and [e.key for e in dm.entries()] == ["models:new"]

    monkeypatch.undo()
    assert dm.ensure_free(0).removed == []  # enough free: nothing to do, leftovers untouched
    dm.ensure_free(dm.free_bytes() + 1, dry_run=True)  # a plan deletes nothing either
    assert leftovers[0].exists()
    assert dm.ensure_free(dm.free_bytes() + 1).removed == ["models:new"]
    assert not leftovers[0].exists()  # the next real eviction finished the job


def test_a_pin_requested_during_an_eviction_waits_for_it(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_model(models_dir, "victim", 100 * KIB, NOW - 1000)
    make_model(models_dir, "keeper", 100 * KIB, NOW - 10)
    dm = manager(models_dir, capacity=used_probe(models_dir))
    deleting = threading.Event()
    may_finish = threading.Event()
    real_delete = manager_module._delete

    def slow_delete(path: Path, ignore_errors: bool = False) -> None:
        deleting.set()
        assert may_finish.wait(5)
        real_delete(path, ignore_errors)

    monkeypatch.setattr(manager_module, "_delete", slow_delete)
    evicting = threading.Thread(target=dm.ensure_free, args=(50 * KIB,))
    evicting.start()
    assert deleting.wait(5)
    leases: list[Lease] = []
    pinning = threading.Thread(target=lambda: leases.append(dm.pin("models:keeper", ttl_s=60)))
    pinning.start()
    pinning.join(0.3)
    assert pinning.is_alive() and not leases  # held until the eviction is done
    may_finish.set()
    evicting.join(5)
    pinning.join(5)
    assert [lease.key for lease in leases] == ["models:keeper"]
    assert not (models_dir / "victim").exists() and (models_dir / "keeper").exists()


CHILD = """
import json, sys
from pathlib import Path
from disk_manager import CacheLocations, DiskManager
dm = DiskManager(CacheLocations.for_models_dir(Path(sys.argv[1])), capacity_bytes=int(sys.argv[2]))
print(json.dumps(dm.ensure_free(int(sys.argv[3])).removed))
"""


def test_concurrent_requests_from_separate_processes_share_one_plan(models_dir: Path) -> None:
    for i in range(6):
        make_model(models_dir, f"m{i}", 50 * KIB, NOW - 1000 + i)
    capacity = used_probe(models_dir)
    args = [sys.executable, "-c", CHILD, str(models_dir), str(capacity), str(120 * KIB)]
    children = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert all(child.returncode == 0 for child in children)
    removed = [key for out in outputs for key in json.loads(out)]
    assert removed == ["models:m0", "models:m1", "models:m2"]  # one of them evicted, in LRU order
