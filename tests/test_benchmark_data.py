"""The standard long-horizon benchmarks: each registered name reads its file with its protocol's borders, season
and test-window count. Files are generated in tmp_path with the real row counts (nothing is downloaded)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules import DATASETS, build_datamodule
from datamodules.errors import ConfigError, DataError
from datamodules.ett import CHANNELS

# name -> (folder/file under the data root, rows, spacing, channels) of the published files.
ETT = {
    "etth1": ("ett/ETTh1.csv", 17420, "h"),
    "etth2": ("ett/ETTh2.csv", 17420, "h"),
    "ettm1": ("ett/ETTm1.csv", 69680, "15min"),
    "ettm2": ("ett/ETTm2.csv", 69680, "15min"),
}
TSLIB = {
    "weather": ("weather/weather.csv", 52696, "10min"),
    "electricity": ("electricity/electricity.csv", 26304, "h"),
    "exchange": ("exchange_rate/exchange_rate.csv", 7588, "D"),
    "traffic": ("traffic/traffic.csv", 17544, "h"),
    "ili": ("illness/national_illness.csv", 966, "7D"),
}
# Test windows at lookback 96, horizon 96 (ILI: 36, 24) as TSLib's data loaders count them for these files.
PUBLISHED_TEST_WINDOWS = {
    "etth1": 2785,
    "etth2": 2785,
    "ettm1": 11425,
    "ettm2": 11425,
    "weather": 10444,
    "electricity": 5165,
    "exchange": 1422,
    "traffic": 3413,
    "ili": 170,
}
SEASONS = {"etth1": 24, "etth2": 24, "ettm1": 96, "ettm2": 96, "weather": 144, "electricity": 24, "exchange": 7,
           "traffic": 24, "ili": 52}  # fmt: skip


def write_series(root: Path, relative: str, rows: int, spacing: str, channels: list[str]) -> Path:
    """A CSV with the benchmark's header shape (date first, OT last) and `rows` random rows."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(0).normal(size=(rows, len(channels))).round(3)
    frame = pd.DataFrame(values, columns=channels)
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq=spacing).strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


def windows(name: str, root: Path, **options):
    """The set-up module; synthetic files are not the published bytes, so allow_modified reads them anyway."""
    lookback, horizon = (36, 24) if name == "ili" else (96, 96)
    settings = {"root": str(root), "lookback": lookback, "horizon": horizon, "allow_modified": True}
    module = build_datamodule(name, {**settings, **options})
    module.setup()
    return module


@pytest.mark.parametrize("name", list(ETT))
def test_ett_files_split_12_4_4_months_of_their_own_steps(name: str, tmp_path: Path) -> None:
    relative, rows, spacing = ETT[name]
    write_series(tmp_path, relative, rows, spacing, CHANNELS)
    module = windows(name, tmp_path)
    month = 30 * 24 * (4 if spacing == "15min" else 1)
    assert module.split_rows(rows) == {
        "train": (0, 12 * month),
        "val": (12 * month - 96, 16 * month),
        "test": (16 * month - 96, 20 * month),
    }
    assert len(module.datasets["test"]) == PUBLISHED_TEST_WINDOWS[name]
    assert module.spec.season == SEASONS[name] and module.spec.input_names == CHANNELS


@pytest.mark.parametrize("name", list(TSLIB))
def test_tslib_files_split_70_10_20_with_every_stride_one_test_window(name: str, tmp_path: Path) -> None:
    relative, rows, spacing = TSLIB[name]
    write_series(tmp_path, relative, rows, spacing, ["a", "b", "OT"])
    module = windows(name, tmp_path)
    lookback = 36 if name == "ili" else 96
    n_train, n_test = int(rows * 0.7), int(rows * 0.2)
    assert module.split_rows(rows) == {
        "train": (0, n_train),
        "val": (n_train - lookback, rows - n_test),
        "test": (rows - n_test - lookback, rows),
    }
    assert len(module.datasets["test"]) == PUBLISHED_TEST_WINDOWS[name]
    assert module.spec.season == SEASONS[name]
    assert module.spec.input_names == ["a", "b", "OT"] and module.spec.main_target == "OT"


def test_modes_choose_the_channels_in_and_out(tmp_path: Path) -> None:
    relative, rows, spacing = TSLIB["ili"]
    write_series(tmp_path, relative, rows, spacing, ["a", "b", "OT"])
    single = windows("ili", tmp_path, mode="S").spec
    assert single.input_names == ["OT"] and single.target_names == ["OT"]
    many_to_one = windows("ili", tmp_path, mode="MS", target="a").spec
    assert many_to_one.input_names == ["a", "b", "OT"] and many_to_one.target_names == ["a"]


def test_scaler_is_fitted_on_the_train_rows_only(tmp_path: Path) -> None:
    relative, rows, spacing = TSLIB["exchange"]
    path = write_series(tmp_path, relative, rows, spacing, ["a", "OT"])
    module = windows("exchange", tmp_path)
    train = pd.read_csv(path).iloc[: int(rows * 0.7)]
    np.testing.assert_allclose(module.input_scaler.mean, train[["a", "OT"]].mean().to_numpy())
    np.testing.assert_allclose(module.input_scaler.std, train[["a", "OT"]].std(ddof=0).to_numpy())


def test_a_target_not_in_the_file_names_the_file_and_its_channels(tmp_path: Path) -> None:
    relative, rows, spacing = TSLIB["ili"]
    path = write_series(tmp_path, relative, rows, spacing, ["a", "OT"])
    with pytest.raises(DataError, match=rf"{path}: target 'HUFL' is not one of its channels \['a', 'OT'\]"):
        windows("ili", tmp_path, mode="S", target="HUFL")
    with pytest.raises(ConfigError, match="mode must be one of"):
        build_datamodule("ili", {"mode": "X"})


@pytest.mark.parametrize("name", ["weather", "electricity", "traffic"])
def test_a_file_without_a_pinned_source_is_asked_for_by_name(name: str, tmp_path: Path) -> None:
    module = build_datamodule(name, {"root": str(tmp_path)})
    module.prepare_data()  # nothing registered to fetch: no request, no error
    with pytest.raises(DataError, match="no copy of .* with a known sha256 is registered") as error:
        module.setup()
    assert str(module.data_files()[0]) in str(error.value) and "PROVENANCE.md" in str(error.value)


def test_ett_keeps_meaning_etth1() -> None:
    assert DATASETS["ett"].file == DATASETS["etth1"].file and DATASETS["ett"].file.name == "ETTh1.csv"


@pytest.mark.slow
def test_a_benchmark_trains_and_predicts_its_future_through_the_cli(
    tmp_path: Path, tracking_uri: str, monkeypatch
) -> None:
    from mlflow.tracking import MlflowClient

    from experiments.cli import main

    relative, rows, spacing = TSLIB["ili"]
    path = write_series(tmp_path, relative, rows, spacing, ["a", "b", "OT"])
    monkeypatch.setenv("STW_DATA_DIR", str(tmp_path))
    train = ["train", "--data", "ili", "data.lookback=36", "data.horizon=24", "data.allow_modified=true", "--model",
             "linear", "trainer.max_epochs=1", "--tracking-uri", tracking_uri, "--quiet"]  # fmt: skip
    assert main(train) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("ili").experiment_id])
    output = tmp_path / "future.csv"
    predict = ["predict", run.info.run_id, "--input", str(path), "--output", str(output), "--future",
               "--tracking-uri", tracking_uri]  # fmt: skip
    assert main(predict) == 0
    table = pd.read_csv(output, parse_dates=["timestamp"])
    last = pd.Timestamp(pd.read_csv(path).date.iloc[-1])
    assert len(table) == 24 and list(table.timestamp) == [last + pd.Timedelta(weeks=step) for step in range(1, 25)]
    assert {"a_forecast", "b_forecast", "OT_forecast"} <= set(table.columns)
