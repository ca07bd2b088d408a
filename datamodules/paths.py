"""Where datasets live: an explicit option wins, then STW_DATA_DIR, then ./data."""

import os
from pathlib import Path

DATA_DIR_ENV = "STW_DATA_DIR"


def data_root(root: str | None = None) -> Path:
    """The data folder: `root` if given, else $STW_DATA_DIR, else ./data (created on first download)."""
    return Path(root or os.environ.get(DATA_DIR_ENV) or "data").expanduser().resolve()
