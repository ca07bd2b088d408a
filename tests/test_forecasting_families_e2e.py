"""The families that forecast by themselves (segrnn, sparsetsf) through `stw train` and `stw predict`."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "--quiet"]  # fmt: skip
MODELS = {
    "segrnn": ["--model", "segrnn", "model.seg_len=12", "model.d_model=16"],
    "sparsetsf": ["--model", "sparsetsf", "model.period=24"],
}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_a_forecasting_family_trains_tests_and_predicts_from_its_checkpoint(
    family, tracking_uri, shared_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("STW_DATA_DIR", str(shared_data))
    words = ["--data", "ett", "data.lookback=48", "data.horizon=24", *MODELS[family], *TINY]
    assert main(["train", *words, "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["model.family"] == family
    assert run.data.metrics["test_mse"] > 0

    lines = (shared_data / "ett" / "ETTh1.csv").read_text().splitlines(keepends=True)
    recent = tmp_path / "recent.csv"
    recent.write_text("".join(lines[:100]))
    out = tmp_path / "next.csv"
    predict = ["predict", run.info.run_id, "--input", str(recent), "--output", str(out), "--last"]
    assert main([*predict, "--tracking-uri", tracking_uri]) == 0
    assert len(pd.read_csv(out)) == 24
