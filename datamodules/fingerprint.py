"""Content fingerprints: which bytes and which preprocessing options made a run's tensors."""

import hashlib
import json
import os
from pathlib import Path
from typing import Any


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
