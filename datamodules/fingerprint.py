"""Content fingerprints: which bytes and which preprocessing options made a run's tensors."""

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(files: list[Path], options: dict[str, Any]) -> dict[str, Any]:
    """sha256 of every raw file plus the options that shape the tensors, and one digest over both.

    `options` must hold only what changes the tensors (lookback, scaling, columns...), not the data folder
    or the batch size, so the same data read from another folder keeps its fingerprint.
    """
    hashes = {Path(f).name: sha256_file(Path(f)) for f in sorted(files, key=lambda p: Path(p).name)}
    payload = json.dumps({"files": hashes, "options": options}, sort_keys=True, default=str)
    return {"digest": hashlib.sha256(payload.encode()).hexdigest(), "files": hashes, "options": options}
