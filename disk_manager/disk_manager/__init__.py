"""disk_manager: keep model-cache disks from filling up.

See README.md; the seed's usage::

    from disk_manager import DiskManager

    dm = DiskManager()
    if dm.check_disk_space():
        dm.cleanup_cache()
    dm.setup_network_storage("/workspace")
"""

from disk_manager.caches import CacheEntry, CacheLocations
from disk_manager.errors import (
    DiskManagerError,
    InsufficientSpace,
    InvalidSize,
    MigrationError,
    OutsideManagedRoots,
)
from disk_manager.manager import DiskManager, DiskReport, Removal, estimate_model_bytes, parse_size
from disk_manager.migrate import MigrationResult
from disk_manager.state import Lease
from disk_manager.usage import VolumeUsage, Watermarks

__all__ = [
    "CacheEntry",
    "CacheLocations",
    "DiskManager",
    "DiskManagerError",
    "DiskReport",
    "InsufficientSpace",
    "InvalidSize",
    "Lease",
    "MigrationError",
    "MigrationResult",
    "OutsideManagedRoots",
    "Removal",
    "VolumeUsage",
    "Watermarks",
    "estimate_model_bytes",
    "parse_size",
]
