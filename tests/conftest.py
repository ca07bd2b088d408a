"""Shared test fixtures: the real data in ../shared/data (or $STW_DATA_DIR) and a throwaway MLflow store."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STW_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets; tests read small slices of them and never write there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA}: set STW_DATA_DIR to the shared data folder to run this test"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test models run faster on one thread than two fighting over 2 cores (measured: 53 s -> 16 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STW_DATA_DIR", str(SHARED_DATA))


@pytest.fixture()
def tracking_uri(tmp_path: Path) -> str:
    """A fresh SQLite-backed MLflow store per test, artifacts beside it."""
    (tmp_path / "mlruns").mkdir()
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def load_logged():
    """Loads a logged run the ordinary Lightning way, without stw's predict code, as the reference predictions
    are checked against: (datamodule with the run's own preprocessing, module from its best checkpoint, final metrics)."""
    from experiments.config import datamodule_for
    from experiments.logged_run import fetch_run
    from lightning_modules import TASKS

    def load(run_id: str, uri: str):
        with fetch_run(run_id, uri) as run:
            datamodule = datamodule_for(run.config())
            datamodule.load_state_dict(run.json("preprocessing.json"))
            datamodule.setup()
            checkpoint = run.download("checkpoints/best.ckpt")
            module = TASKS[datamodule.task].load_from_checkpoint(checkpoint, weights_only=False)
            return datamodule, module.eval(), run.final_metrics()

    return load
