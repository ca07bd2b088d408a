"""Where datasets live and where stw may write: an explicit option wins, then an environment variable, then ./data.

Options that name something inside the data folder (a ticker, a clips folder relative to it) are checked here, so
a name can never reach a file outside that folder: `../../elsewhere/x` is refused, not followed.
"""

import os
from pathlib import Path, PurePath

from datamodules.errors import ConfigError

DATA_DIR_ENV = "STW_DATA_DIR"
CACHE_DIR_ENV = "STW_CACHE_DIR"


def data_root(root: str | None = None) -> Path:
    """The data folder: `root` if given, else $STW_DATA_DIR, else ./data (created on first download)."""
    return Path(root or os.environ.get(DATA_DIR_ENV) or "data").expanduser().resolve()


def cache_root(cache_dir: str | None = None) -> Path:
    """The cache folder: `cache_dir` if given, else $STW_CACHE_DIR, else ./data/cache (git-ignored)."""
    return Path(cache_dir or os.environ.get(CACHE_DIR_ENV) or "data/cache").expanduser().resolve()


def is_writable(folder: Path) -> bool:
    """True if `folder`, or the nearest existing folder above it, may be written.

    The shared data folder is read-only by policy (mode r-x) even for a process that could write it anyway (root),
    so "writable" asks both the OS and the folder's mode bits.
    """
    existing = folder
    while not existing.exists():
        existing = existing.parent
    return os.access(existing, os.W_OK) and bool(existing.stat().st_mode & 0o222)


def check_name(value: str, option: str, fix: str) -> str:
    """`value` if it is a plain name (no folder separator, not `.` or `..`); else a ConfigError naming `option`."""
    if not value or value in (".", "..") or any(sep in value for sep in ("/", "\\", "\0")):
        raise ConfigError(
            f"data option {option}={value!r} is not a name: it must not be empty, contain / or \\, or be . or ..; {fix}"
        )
    return value


def climbs_out(relative: str) -> bool:
    """True if `relative`, joined onto a folder, can leave it: it has a `..` part (absolute paths are explicit)."""
    path = PurePath(relative.replace("\\", "/"))
    return not path.is_absolute() and ".." in path.parts


def check_inside(value: str, option: str, fix: str) -> str:
    """`value` if, as a path relative to a folder, it stays inside it; else a ConfigError naming `option`."""
    if climbs_out(value):
        raise ConfigError(f"data option {option}={value!r} climbs out of its folder with '..'; {fix}")
    return value
