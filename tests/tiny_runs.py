"""One MLflow store holding one tiny `stw train` run per dataset, for test modules that read logged runs."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main


def train_runs(store: Path, shared_data: Path, runs: dict[str, list[str]]) -> SimpleNamespace:
    """Train each `stw train` argument list (keyed by its dataset) into a SQLite store in `store`: the store's
    `uri` and each run's ID under its dataset name (stock-direction -> stock_direction)."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    ids = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STW_DATA_DIR", str(shared_data))
        for name, words in runs.items():
            assert main(["train", *words, "--tracking-uri", uri]) == 0
            client = MlflowClient(uri)
            [run] = client.search_runs([client.get_experiment_by_name(name).experiment_id])
            ids[name.replace("-", "_")] = run.info.run_id
    return SimpleNamespace(uri=uri, **ids)
