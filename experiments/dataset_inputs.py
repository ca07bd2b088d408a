"""A run's data as MLflow dataset inputs, one per split, so the UI's Dataset column and its filters work.

Each input is named after the dataset, with the split as its context (train, val, test). MLflow keeps one input
per (name, digest) and run, so the splits cannot share a digest: each digest is the data fingerprint's first
characters and the split (`3fa9c1d2e4b5a6f7-train`); the full fingerprint is in the profile and the run's
stw.data_fingerprint tag. The source is where the bytes come from: the published URL for a file that has one
(it is checked against that file's sha256), else the local file, or the folder holding a run's several files.
"""

import json
import os
from pathlib import Path
from typing import Any

from datamodules import StwDataModule

SPLITS = ("train", "val", "test")
DIGEST_CHARS = 16  # with "-train" and the like, well inside MLflow's 36-character digest column
MAX_LISTED_FILES = 20  # a video run reads thousands of frame files; the profile lists the first ones and counts


def source(files: list[Path], urls: dict[Path, str], made_by: str = "") -> tuple[str, str]:
    """(source type, source JSON) as MLflow's HTTP and local dataset sources write them; data generated in memory
    (no files: a plugin's synthetic series) names the code that made it."""
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if not files:
        return "code", json.dumps({"uri": made_by})
    if len(files) == 1 and files[0] in urls:
        return "http", HTTPDatasetSource(urls[files[0]]).to_json()
    paths = [os.path.abspath(file) for file in files]
    where = paths[0] if len(paths) == 1 else os.path.commonpath([os.path.dirname(path) for path in paths])
    return "local", json.dumps({"uri": where})


def split_profile(datamodule: StwDataModule, split: str, fingerprint: dict[str, Any]) -> dict[str, Any]:
    files = fingerprint["files"]
    listed = dict(list(files.items())[:MAX_LISTED_FILES])
    return {"split": split, "items": len(datamodule.datasets[split]), "fingerprint": fingerprint["digest"],
            "files": listed, "n_files": len(files), "options": fingerprint["options"]}  # fmt: skip


def split_schema(datamodule: StwDataModule) -> str | None:
    """The columns a model reads and predicts, in MLflow's colspec form; None where items are not columns."""
    spec = datamodule.spec
    names = getattr(spec, "input_names", None)
    if names is None:
        return None
    columns = [{"type": "double", "name": name} for name in dict.fromkeys([*names, *spec.target_names])]
    return json.dumps({"mlflow_colspec": columns})


def dataset_inputs(name: str, datamodule: StwDataModule, fingerprint: dict[str, Any]) -> list[Any]:
    """One mlflow.entities.DatasetInput per split the datamodule `name` has set up."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source_type, source_json = source(
        datamodule.source_files(),
        {p: s.url for p, s in datamodule.sources().items()},
        f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
    )
    schema = split_schema(datamodule)
    inputs = []
    for split in SPLITS:
        if split not in datamodule.datasets:
            continue
        dataset = Dataset(name=name, digest=f"{fingerprint['digest'][:DIGEST_CHARS]}-{split}", source_type=source_type,
                          source=source_json, schema=schema,
                          profile=json.dumps(split_profile(datamodule, split, fingerprint)))  # fmt: skip
        inputs.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)]))
    return inputs
