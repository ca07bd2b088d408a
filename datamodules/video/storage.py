"""Where the video datasets write: generated clips and the decoded-frame cache (folders from datamodules.paths)."""

from pathlib import Path

from datamodules.paths import cache_root, data_root, is_writable


def generated_root(root: str | None, cache_dir: str | None) -> Path:
    """<data root>/generated, or <cache root>/generated when the data root is read-only (the shared folder)."""
    folder = data_root(root) / "generated"
    return folder if is_writable(folder) else cache_root(cache_dir) / "generated"
