"""Fetch a public data file once, verified: torchvision's `download=True`, with a sha256 check.

A download streams into a temporary file beside its destination and is renamed into place only after its
hash matched, so an interrupted or corrupted transfer never leaves a file that looks finished.
"""

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from datamodules.errors import DataError
from datamodules.fingerprint import sha256_file

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class Source:
    """Where a data file can be fetched from and the sha256 its bytes must have."""

    url: str
    sha256: str


def download_file(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch `url` to `dest` through a temporary file; DataError if the bytes do not hash to `sha256`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
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


def ensure_file(url: str, dest: Path, sha256: str) -> Path:
    """`dest` if it already holds the expected bytes, else download it; a file with other bytes is an error."""
    dest = Path(dest)
    if not dest.exists():
        return download_file(url, dest, sha256)
    actual = sha256_file(dest)
    if actual != sha256:
        raise DataError(
            f"{dest} exists but its sha256 is {actual}, expected {sha256}: the file is damaged or not the "
            f"published one. Delete it so it is downloaded again from {url}, or re-download it from there yourself"
        )
    return dest
