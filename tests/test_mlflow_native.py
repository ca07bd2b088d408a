"""MLflow-native runs: the data as dataset inputs, the best model as a pyfunc LoggedModel that predicts as
`stw predict` does, and run names and descriptions that tell runs apart."""

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.config import parse_run_args
from experiments.dataset_inputs import source
from experiments.run_names import MAX_NAME, run_description, run_name
from tests.tiny_runs import train_runs

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2", "--quiet"]  # fmt: skip
ETT = ["--data", "ett", "data.lookback=48", "data.horizon=24", "--model", "lstm", "model.hidden_size=8", *TINY]
SMS = ["--data", "sms", "data.max_len=32", "task.embed_dim=16", "--model", "gru", "model.hidden_size=16", *TINY]
ETT_URL_END = "/ETT-small/ETTh1.csv"


@pytest.fixture(scope="module")
def logged(tmp_path_factory, shared_data) -> SimpleNamespace:
    """One store with a tiny ETT run and a tiny SMS run."""
    logged = train_runs(tmp_path_factory.mktemp("mlruns"), shared_data, {"ett": ETT, "sms": SMS})
    logged.client = MlflowClient(logged.uri)
    return logged


@pytest.fixture()
def default_store(logged):
    """mlflow.pyfunc.load_model resolves runs:/ URIs in the process-wide store: point it at the test's."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(logged.uri)
    yield
    mlflow.set_tracking_uri(previous)


def test_each_split_is_a_dataset_input_named_after_the_data_with_the_fingerprint_and_source(logged):
    run = logged.client.get_run(logged.ett)
    inputs = {[tag.value for tag in item.tags if tag.key == "mlflow.data.context"][0]: item.dataset
              for item in run.inputs.dataset_inputs}  # fmt: skip
    assert sorted(inputs) == ["test", "train", "val"]
    fingerprint = run.data.tags["stw.data_fingerprint"]
    for split, dataset in inputs.items():
        assert dataset.name == "ett"
        assert dataset.digest == f"{fingerprint[:16]}-{split}"  # MLflow keeps one input per (name, digest)
        assert len(dataset.digest) <= 36  # MLflow's digest column
        assert dataset.source_type == "http" and json.loads(dataset.source)["url"].endswith(ETT_URL_END)
        profile = json.loads(dataset.profile)
        assert profile["fingerprint"] == fingerprint and profile["split"] == split
        assert list(profile["files"]) == ["ETTh1.csv"]
        columns = [column["name"] for column in json.loads(dataset.schema)["mlflow_colspec"]]
        assert columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert inputs["train"].profile != inputs["test"].profile  # each split's own item count
    assert json.loads(inputs["test"].profile)["items"] > 0


def test_a_source_is_the_published_url_else_the_local_file_or_the_folder_of_several(tmp_path):
    spy, aapl = tmp_path / "stock" / "spy.us.txt", tmp_path / "stock" / "aapl.us.txt"
    url = "https://example.org/spy.us.txt"
    assert source([spy], {spy: url}) == ("http", json.dumps({"url": url}))
    assert source([spy], {}) == ("local", json.dumps({"uri": str(spy)}))
    # Several files (one per ticker) have no single URL: their folder, with each file in the profile.
    assert source([spy, aapl], {spy: url}) == ("local", json.dumps({"uri": str(tmp_path / "stock")}))
    # Data generated in memory (a plugin's synthetic series) has no file: its source is the code that made it.
    assert source([], {}, "my_plugin.SineData") == ("code", json.dumps({"uri": "my_plugin.SineData"}))


def test_a_finished_run_has_its_model_as_a_logged_model_with_a_signature_and_an_example(logged, default_store):
    run = logged.client.get_run(logged.ett)
    [output] = run.outputs.model_outputs
    [model] = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{logged.ett}'", output_format="list"
    )  # fmt: skip
    assert model.model_id == output.model_id and model.name == "model" and model.status.to_int() == 2  # READY
    info = mlflow.models.get_model_info(model.model_uri)
    assert info.signature is not None and "date" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None
    registered = mlflow.register_model(model.model_uri, "stw-ett-test")  # the registry takes it
    assert int(registered.version) == 1


def last_rows(shared_data: Path, folder: Path, rows: int = 60) -> Path:
    lines = (shared_data / "ett" / "ETTh1.csv").read_text().splitlines(keepends=True)
    recent = folder / "recent.csv"
    recent.write_text("".join([lines[0], *lines[-rows:]]))
    return recent


def test_the_pyfunc_model_forecasts_raw_rows_as_stw_predict_future_does(logged, default_store, shared_data, tmp_path):
    recent = last_rows(shared_data, tmp_path)
    assert main(["predict", logged.ett, "--input", str(recent), "--output", str(tmp_path / "cli.csv"), "--future",
                 "--tracking-uri", logged.uri]) == 0  # fmt: skip
    cli = pd.read_csv(tmp_path / "cli.csv", parse_dates=["window_end", "timestamp"])

    model = mlflow.pyfunc.load_model(f"runs:/{logged.ett}/model")
    forecast = model.predict(pd.read_csv(recent))
    assert len(forecast) == len(cli) == 24 and list(forecast.columns) == list(cli.columns)
    assert (pd.to_datetime(forecast.timestamp) == cli.timestamp).all()
    numbers = [column for column in cli.columns if column.endswith("_forecast")]
    # stw predict writes 6 significant digits; the pyfunc model returns the numbers themselves.
    np.testing.assert_allclose(forecast[numbers].to_numpy(), cli[numbers].to_numpy(), rtol=5e-6, atol=1e-5)


def test_the_pyfunc_model_classifies_texts_as_stw_predict_does(logged, default_store, tmp_path):
    texts = ["WINNER!! Claim your free prize now, text WIN to 80086", "Are we still on for lunch tomorrow?"]
    (tmp_path / "messages.txt").write_text("\n".join(texts) + "\n")
    assert main(["predict", logged.sms, "--input", str(tmp_path / "messages.txt"), "--output",
                 str(tmp_path / "cli.csv"), "--tracking-uri", logged.uri]) == 0  # fmt: skip
    cli = pd.read_csv(tmp_path / "cli.csv")

    labels = mlflow.pyfunc.load_model(f"runs:/{logged.sms}/model").predict(pd.DataFrame({"text": texts}))
    assert list(labels.label) == list(cli.label)
    probs = [column for column in cli.columns if column.startswith("prob_")]
    np.testing.assert_allclose(labels[probs].to_numpy(), cli[probs].to_numpy(), rtol=5e-6, atol=1e-6)


def test_a_failed_run_logs_no_model(tracking_uri, shared_data):
    words = [*ETT, "data.lookback=100000"]  # longer than the series: the run fails on its data
    assert main(["train", *words, "--tracking-uri", tracking_uri]) != 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert run.info.status == "FAILED" and not run.outputs.model_outputs


def config_of(words: list[str]) -> dict:
    return parse_run_args([word for word in words if word != "--quiet"])


def test_names_and_descriptions_tell_two_sms_runs_apart(logged):
    run = logged.client.get_run(logged.sms)
    assert run.info.run_name == run_name(config_of(SMS))
    other = config_of([*SMS, "data.max_len=64"])
    assert run_name(other) != run.info.run_name and run_name(other).startswith("gru-sms-s0-")
    assert run_description(other, "classify") != run.data.tags["mlflow.note.content"]
    assert "data.max_len=64" in run_description(other, "classify")
    assert run.data.tags["mlflow.note.content"].startswith("gru on sms, classify")


def test_a_stock_run_is_named_and_described_by_its_tickers():
    config = parse_run_args(["--data", "stock", "data.tickers=[spy,qqq]", "data.lookback=60", "data.horizon=5",
                             "--model", "lstm"])  # fmt: skip
    assert run_name(config).startswith("lstm-stock-spy+qqq-L60H5-s0-")
    assert run_description(config, "forecast").startswith("lstm on stock (spy+qqq), forecast, lookback 60, horizon 5")
    from_files = parse_run_args(["--data", "stock", "data.paths=[/x/SPY.csv,/x/aapl.us.txt]", "--model", "lstm"])
    assert "-spy+aapl-" in run_name(from_files)


def test_run_names_stay_short_and_seeds_of_one_config_share_their_hash():
    many = parse_run_args(["--data", "stock", f"data.tickers=[{','.join(['aapl', 'msft', 'ibm', 'intc', 'ko'])}]",
                           "--model", "transformer"])  # fmt: skip
    assert len(run_name(many, prefix="trial-123-")) <= MAX_NAME < 60
    assert "aapl+msft+3more" in run_name(many)
    seed0, seed1 = run_name(config_of(ETT)), run_name(config_of([*ETT, "--seed", "1"]))
    assert seed0.rsplit("-", 1)[0] == "lstm-ett-L48H24-s0" and seed1.rsplit("-", 1)[0] == "lstm-ett-L48H24-s1"
    assert seed0.rsplit("-", 1)[1] == seed1.rsplit("-", 1)[1]
