"""Fetch a public data file once, verified: torchvision's `download=True`, with a sha256 check.

A download streams into a temporary file beside its destination and is renamed into place only after its
hash matched, so an interrupted or corrupted transfer never leaves a file that looks finished.
"""

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from datamodules.errors import DataError
from datamodules.fingerprint import cached_sha256
from datamodules.paths import is_writable

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class Source:
    """Where a data file can be fetched from and the sha256 its bytes must have."""

    url: str
    sha256: str


def download_file(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; DataError if the bytes do not hash to `sha256`."""
    dest = Path(dest)
    if not is_writable(dest.parent):
        raise unwritable(dest, url, "its mode bits say so")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as error:  # a read-only file system, or no permission
        raise unwritable(dest, url, error.strerror) from None
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            with tqdm(total=size, unit="B", unit_scale=True, desc=f"download {dest.name}") as progress:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
        actual = digest.hexdigest()
        if actual != sha256:
            raise DataError(
                f"download of {url} is corrupted: expected sha256 {sha256}, got {actual}; "
                f"nothing was saved to {dest}. Try again later, or fetch the file by hand and check its hash"
            )
        os.replace(partial, dest)
    except urllib.error.URLError as error:
        Path(partial).unlink(missing_ok=True)
        raise DataError(
            f"cannot download {url} ({error}); check the network, or put the file at {dest} yourself"
        ) from error
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return dest


def unwritable(dest: Path, url: str, why: str) -> DataError:
    return DataError(
        f"{dest} is missing and cannot be downloaded there: its folder {dest.parent} is read-only ({why}). Put "
        f"the file there yourself (from {url}), or point $STW_DATA_DIR or data.root at a writable folder to "
        "download it into"
    )


def ensure_file(url: str, dest: Path, sha256: str, allow_modified: bool = False) -> Path:
    """`dest` if it already holds the expected bytes, else download it; a file with other bytes is an error."""
    dest = Path(dest)
    if not dest.exists():
        return download_file(url, dest, sha256)
    check_published(dest, Source(url, sha256), allow_modified)
    return dest


def fetch_missing(sources: dict[Path, Source]) -> None:
    """Download every file of `sources` that is not there yet, each checked against its sha256; files already
    there are left as they are (datasets whose files are read where they are, such as sms and the video data)."""
    for path, source in sources.items():
        if not Path(path).exists():
            download_file(source.url, path, source.sha256)


def check_published(path: Path, source: Source, allow_modified: bool = False) -> None:
    """Nothing if `path` holds the published bytes (its digest is cached by path, size and mtime); else a DataError
    naming both digests and the fix, or, with `allow_modified`, a warning."""
    actual = cached_sha256(path)
    if actual == source.sha256:
        return
    if allow_modified:
        log.warning(
            "%s: sha256 %s is not the published %s; read anyway (data.allow_modified=true)", path, actual, source.sha256
        )
        return
    raise DataError(
        f"{path}: sha256 is {actual}, but the published file has {source.sha256}: this copy is damaged or was "
        f"changed. Delete it so it is downloaded again from {source.url} (data.download=true), or restore it; to "
        "read it as it is, pass data.allow_modified=true (the run's config and fingerprint record that)"
    )
