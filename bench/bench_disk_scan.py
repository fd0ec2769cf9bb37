"""Scan of a 10,000-file model cache: disk_manager vs a plain `du`-style walk.

Builds a talklike models cache with 10,000 files in a temporary directory — 50 Hugging Face
repos (blobs + snapshot links + refs) and 50 converted-model directories — then times, in the
same run, the baseline (os.walk + os.stat of every file: the least any scan must do),
huggingface_hub.scan_cache_dir on the HF half alone (the revision-aware part, which dominates),
and DiskManager.entries() (both kinds, with revisions, temp-file detection, LRU times, locks).
Target from the issue: the scan under 0.5 s. Prints the ratio against the baseline.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import scan_cache_dir

from disk_manager import CacheLocations, DiskManager

REPOS = 50
HF_FILES_PER_REPO = 100  # 50 blobs + 50 snapshot links
MODEL_DIRS = 50
FILES_PER_MODEL = 100


def build(root: Path) -> int:
    files = 0
    hub = root / "hf" / "hub"
    for r in range(REPOS):
        repo = hub / f"models--org--model-{r}"
        commit = hashlib.sha1(str(r).encode()).hexdigest()
        (repo / "blobs").mkdir(parents=True)
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
        for f in range(HF_FILES_PER_REPO // 2):
            digest = hashlib.sha256(f"{r}-{f}".encode()).hexdigest()
            (repo / "blobs" / digest).write_bytes(b"x" * 64)
            (repo / "snapshots" / commit / f"shard-{f}.bin").symlink_to(Path("../../blobs") / digest)
            files += 2
    for m in range(MODEL_DIRS):
        model = root / f"model-{m}"
        model.mkdir()
        for f in range(FILES_PER_MODEL):
            (model / f"part-{f}.bin").write_bytes(b"y" * 64)
            files += 1
    return files


def baseline(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
    return total


def timed(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls (the machine is shared: one sample says little)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        root.mkdir()
        files = build(root)
        dm = DiskManager(CacheLocations.for_models_dir(root))
        entries = dm.entries()
        assert len(entries) == REPOS + MODEL_DIRS, len(entries)
        base_s = timed(lambda: baseline(root))
        hf_s = timed(lambda: scan_cache_dir(root / "hf" / "hub"))
        ours_s = timed(dm.entries)
        print(f"cache: {files} files in {len(entries)} entries")
        print(f"baseline (os.walk + os.stat, du-style): {base_s * 1000:.1f} ms")
        print(
            f"huggingface_hub.scan_cache_dir alone, HF half only ({REPOS * HF_FILES_PER_REPO} files): "
            f"{hf_s * 1000:.1f} ms"
        )
        print(f"disk_manager entries() (HF scan_cache_dir + model dirs): {ours_s * 1000:.1f} ms")
        print(
            f"ratio ours/baseline: {ours_s / base_s:.2f}x   target: scan < 500 ms -> {'PASS' if ours_s < 0.5 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
