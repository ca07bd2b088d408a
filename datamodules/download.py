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
    """Where a data file can be fetched from and the digest its bytes must have: their sha256, or, for a file of
    which no copy could be hashed when it was registered, its git blob id at the pinned commit (the SHA-1 git
    names a file's exact bytes by, read from the commit's tree)."""

    url: str
    sha256: str | None = None
    git_blob: str | None = None

    def __post_init__(self) -> None:
        if (self.sha256 is None) == (self.git_blob is None):
            raise ValueError(f"a Source needs exactly one of sha256 and git_blob: {self}")

    @property
    def digest_name(self) -> str:
        return "sha256" if self.sha256 else "git blob id"

    @property
    def digest(self) -> str:
        return self.sha256 or self.git_blob

    def digest_of(self, path: Path) -> str:
        """`path`'s digest of the kind this source gives (sha256 digests are cached by path, size and mtime)."""
        return cached_sha256(path) if self.sha256 else git_blob_id(path)


def git_blob_id(path: Path, chunk: int = 1 << 20) -> str:
    """The id git gives a file's bytes: SHA-1 of `blob <size>\\0` and the bytes (as `git hash-object`)."""
    digest = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: Path, sha256: str | None, timeout: float = 60.0, git_blob: str | None = None) -> Path:
    """Fetch `url` to `dest` through a temporary file; DataError if the bytes do not hash to `sha256` (or, given
    instead, have the git blob id `git_blob`)."""
    expected = Source(url, sha256, git_blob)
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
        actual = digest.hexdigest() if sha256 else git_blob_id(Path(partial))
        if actual != expected.digest:
            raise DataError(
                f"download of {url} is corrupted: expected {expected.digest_name} {expected.digest}, got {actual}; "
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


def ensure_file(
    url: str, dest: Path, sha256: str | None, allow_modified: bool = False, git_blob: str | None = None
) -> Path:
    """`dest` if it already holds the expected bytes, else download it; a file with other bytes is an error."""
    dest = Path(dest)
    if not dest.exists():
        return download_file(url, dest, sha256, git_blob=git_blob)
    check_published(dest, Source(url, sha256, git_blob), allow_modified)
    return dest


def fetch_missing(sources: dict[Path, Source]) -> None:
    """Download every file of `sources` that is not there yet, each checked against its digest; files already
    there are left as they are (datasets whose files are read where they are, such as sms and the video data)."""
    for path, source in sources.items():
        if not Path(path).exists():
            download_file(source.url, path, source.sha256, git_blob=source.git_blob)


def check_published(path: Path, source: Source, allow_modified: bool = False) -> None:
    """Nothing if `path` holds the published bytes; else a DataError naming both digests and the fix, or, with
    `allow_modified`, a warning."""
    actual, name = source.digest_of(path), source.digest_name
    if actual == source.digest:
        return
    if allow_modified:
        log.warning(
            "%s: %s %s is not the published %s; read anyway (data.allow_modified=true)",
            path,
            name,
            actual,
            source.digest,
        )
        return
    raise DataError(
        f"{path}: {name} is {actual}, but the published file has {source.digest}: this copy is damaged or was "
        f"changed. Delete it so it is downloaded again from {source.url} (data.download=true), or restore it; to "
        "read it as it is, pass data.allow_modified=true (the run's config and fingerprint record that)"
    )
