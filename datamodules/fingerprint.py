"""Content fingerprints: which bytes and which preprocessing options made a run's tensors."""

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from datamodules.paths import cache_root, is_writable


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_keys(files: list[Path]) -> dict[str, Path]:
    """Each file under its path relative to the folder holding them all: the bare name when they share a folder,
    and still distinct for same-named files in different folders (one gesture_data.csv per recording)."""
    paths = [Path(os.path.abspath(f)) for f in files]
    base = Path(os.path.commonpath([path.parent for path in paths])) if paths else Path()
    return {path.relative_to(base).as_posix(): path for path in paths}


def fingerprint(files: list[Path], options: dict[str, Any]) -> dict[str, Any]:
    """sha256 of every raw file plus the options that shape the tensors, and one digest over both.

    `options` must hold only what changes the tensors (lookback, scaling, columns...), not the data folder
    or the batch size, so the same data read from another folder keeps its fingerprint.
    """
    hashes = {key: sha256_file(path) for key, path in sorted(file_keys(files).items())}
    payload = json.dumps({"files": hashes, "options": options}, sort_keys=True, default=str)
    # Options as they read back from fingerprint.json (tuples become lists), so a stored fingerprint and a
    # freshly computed one compare equal.
    options = json.loads(json.dumps(options, default=str))
    return {"digest": hashlib.sha256(payload.encode()).hexdigest(), "files": hashes, "options": options}


DIGEST_STORE = "sha256.json"
_known: dict[str, tuple[int, int, str]] = {}  # this process's digests: path -> (size, mtime_ns, sha256)


def cached_sha256(path: Path) -> str:
    """sha256 of a file, hashed once per path, size and mtime: remembered in this process and in
    <cache root>/sha256.json, so checking a file again (each run, each sweep trial) costs one stat().

    The store lives in the cache folder, not beside the data, which may be read-only; when the store cannot be
    written either, digests are remembered in this process only. It guards against damaged and edited files, not
    against someone who also restores the file's size and mtime.
    """
    path = Path(os.path.abspath(path))
    stat = path.stat()
    stamp = (stat.st_size, stat.st_mtime_ns)
    known = _known.get(str(path))
    if known and known[:2] == stamp:
        return known[2]
    store_file = cache_root() / DIGEST_STORE
    store = _read_store(store_file)
    stored = store.get(str(path))
    if stored and (stored["size"], stored["mtime_ns"]) == stamp:
        digest = stored["sha256"]
    else:
        digest = sha256_file(path)
        store = {name: entry for name, entry in store.items() if os.path.exists(name)}  # forget deleted files
        store[str(path)] = {"size": stamp[0], "mtime_ns": stamp[1], "sha256": digest}
        _write_store(store_file, store)
    _known[str(path)] = (*stamp, digest)
    return digest


def _read_store(file: Path) -> dict[str, dict[str, Any]]:
    try:
        store = json.loads(file.read_text())
    except (OSError, ValueError):  # absent, unreadable or damaged: it is only a cache
        return {}
    return store if isinstance(store, dict) else {}


def _write_store(file: Path, store: dict[str, dict[str, Any]]) -> None:
    """Replace the store atomically (a concurrent reader sees the old one or the new one); a store that cannot be
    written is skipped: the digest stays remembered in this process."""
    if not is_writable(file.parent):
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".part")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(store, out)
        os.replace(partial, file)
    except OSError:
        Path(partial).unlink(missing_ok=True)
