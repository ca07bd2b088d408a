"""Where the video datasets write: generated clips and the decoded-frame cache.

The shared data folder is read-only by policy (mode r-x) even for a process that could write it anyway (root),
so "writable" asks both the OS and the folder's mode bits.
"""

import os
from pathlib import Path

from datamodules.paths import data_root

CACHE_DIR_ENV = "STW_CACHE_DIR"


def cache_root(cache_dir: str | None = None) -> Path:
    """The cache folder: `cache_dir` if given, else $STW_CACHE_DIR, else ./data/cache (git-ignored)."""
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or "data/cache").expanduser().resolve()


def is_writable(folder: Path) -> bool:
    """True if `folder`, or the nearest existing folder above it, may be written."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    return os.access(existing, os.W_OK) and bool(existing.stat().st_mode & 0o222)


def generated_root(root: str | None, cache_dir: str | None) -> Path:
    """<data root>/generated, or <cache root>/generated when the data root is read-only (the shared folder)."""
    folder = data_root(root) / "generated"
    return folder if is_writable(folder) else cache_root(cache_dir) / "generated"
