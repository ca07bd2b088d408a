"""`--data table`: the user's own CSV or Parquet of dated series, its splits and season, every bad input a clear
error, the fill policy, and a generated CSV that trains, predicts and reproduces like ETT."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from datamodules.errors import ConfigError, DataError
from datamodules.table import TableDataModule, TableOptions, read_frame
from experiments import tracking
from experiments.cli import main
from experiments.config import parse_run_args

N_ROWS = 300


def series(n: int = N_ROWS, freq: str = "h", start: str = "2021-01-01") -> pd.DataFrame:
    """Two seeded daily sines with noise (load, temp) and a noise covariate (wind), one row per `freq` step."""
    rng = np.random.default_rng(0)
    step = np.arange(n)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=n, freq=freq).strftime("%Y-%m-%d %H:%M:%S"),
            "load": 10 + np.sin(2 * np.pi * step / 24) + 0.1 * rng.standard_normal(n),
            "temp": 5 + np.cos(2 * np.pi * step / 24) + 0.1 * rng.standard_normal(n),
            "wind": rng.standard_normal(n),
        }
    )


def write_csv(folder: Path, frame: pd.DataFrame, name: str = "my_series.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def with_cell(frame: pd.DataFrame, line: int, column: str, text: str) -> pd.DataFrame:
    """The frame with the cell at CSV `line` (line 1 is the header) replaced by `text`."""
    frame = frame.astype({column: object})
    frame.loc[line - 2, column] = text
    return frame


def set_up(path: Path, **options) -> TableDataModule:
    module = TableDataModule(TableOptions(path=str(path), **{"lookback": 24, "horizon": 12, **options}))
    module.setup()
    return module


def test_the_default_split_is_tslibs_chronological_70_10_20(tmp_path: Path) -> None:
    frame = series()
    module = set_up(write_csv(tmp_path, frame), targets=["load", "temp"])
    dates = pd.DatetimeIndex(frame["date"])
    n_train, n_test = int(0.7 * N_ROWS), int(0.2 * N_ROWS)
    stamps = {split: module.split_timestamps(split) for split in ("train", "val", "test")}
    assert stamps["train"][0] == dates[0] and stamps["train"][-1] == dates[n_train - 1]
    # val and test look back `lookback` rows into the part before; their first targets start the part.
    assert stamps["val"][24] == dates[n_train] and stamps["test"][24] == dates[N_ROWS - n_test]
    assert stamps["val"][-1] == dates[N_ROWS - n_test - 1] and stamps["test"][-1] == dates[-1]
    assert len(module.datasets["test"]) == n_test - 12 + 1  # every stride-1 window whose targets are test rows


def test_explicit_split_dates_start_val_and_test(tmp_path: Path) -> None:
    frame = series()
    dates = pd.DatetimeIndex(frame["date"])
    module = set_up(write_csv(tmp_path, frame), val_start=str(dates[200]), test_start=str(dates[250]))
    assert module.split_timestamps("train")[-1] == dates[199]
    assert module.split_timestamps("val")[0] == dates[200 - 24] and module.split_timestamps("val")[-1] == dates[249]
    assert module.split_timestamps("test")[0] == dates[250 - 24] and module.split_timestamps("test")[-1] == dates[-1]


def test_split_dates_outside_the_series_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="must lie inside the series, which runs from 2021-01-01"):
        set_up(write_csv(tmp_path, series()), val_start="2020-06-01", test_start="2021-01-10")
    with pytest.raises(ConfigError, match="give both data.val_start and data.test_start"):
        TableOptions(path="x.csv", val_start="2021-01-05")


def test_default_columns_every_numeric_column_is_a_target_and_an_input(tmp_path: Path) -> None:
    frame = series().assign(site="north")  # a text column is left out, not an error
    module = set_up(write_csv(tmp_path, frame))
    assert module.spec.target_names == ["load", "temp", "wind"] == module.spec.input_names
    module = set_up(write_csv(tmp_path, frame), targets=["temp"])
    assert module.spec.target_names == ["temp"] and module.spec.input_names == ["temp", "load", "wind"]
    assert module.spec.target_index == [0]  # the target is an input too, so the naive baselines can run
    module = set_up(write_csv(tmp_path, frame), targets=["temp"], inputs=[])
    assert module.spec.input_names == ["temp"]


@pytest.mark.parametrize(
    ("freq", "season"), [("h", 24), ("10min", 144), ("15min", 96), ("D", 7), ("B", 5), ("W-SUN", 52), ("MS", 12)]
)
def test_the_season_is_derived_from_the_inferred_frequency(tmp_path: Path, freq: str, season: int) -> None:
    module = set_up(write_csv(tmp_path, series(400, freq)), lookback=4, horizon=2)
    assert module.season == season and module.spec.season == season
    assert module.state_dict()["frequency"] == pd.tseries.frequencies.to_offset(freq).freqstr


def test_a_given_season_wins_and_a_given_frequency_is_checked(tmp_path: Path) -> None:
    path = write_csv(tmp_path, series())
    assert set_up(path, season=12).spec.season == 12
    with pytest.raises(DataError, match="at the frequency 30min"):
        set_up(path, freq="30min")
    with pytest.raises(ConfigError, match="data.freq='H' is not a pandas frequency"):
        TableOptions(path=str(path), freq="H")


def test_a_parquet_copy_reads_the_same_as_the_csv(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    frame = series()
    parquet = tmp_path / "my_series.parquet"
    frame.assign(date=pd.to_datetime(frame["date"])).to_parquet(parquet, index=False)
    from_csv, from_parquet = set_up(write_csv(tmp_path, frame)), set_up(parquet)
    for split in ("train", "val", "test"):
        for csv_part, parquet_part in zip(from_csv.series[split], from_parquet.series[split], strict=True):
            assert torch.equal(csv_part, parquet_part)
    fitted = [{k: v for k, v in m.state_dict().items() if k != "options"} for m in (from_csv, from_parquet)]
    assert fitted[0] == fitted[1]  # the same scalers, naive MAE and frequency (options name each file)


def test_the_fingerprint_follows_the_file_and_the_options_not_its_folder(tmp_path: Path) -> None:
    frame = series()
    (tmp_path / "elsewhere").mkdir()
    digest = TableDataModule(TableOptions(path=str(write_csv(tmp_path, frame)))).fingerprint()["digest"]
    moved = write_csv(tmp_path / "elsewhere", frame)
    assert TableDataModule(TableOptions(path=str(moved), batch_size=3)).fingerprint()["digest"] == digest
    assert TableDataModule(TableOptions(path=str(moved), fill="ffill")).fingerprint()["digest"] != digest
    changed = write_csv(tmp_path / "elsewhere", with_cell(frame, 5, "load", "3.5"))
    assert TableDataModule(TableOptions(path=str(changed))).fingerprint()["digest"] != digest


# --- bad input: each names the file, the column and the line, and the fix ---------------------------------------
BAD_INPUTS = {
    "a gap": (lambda f: f.drop(index=[100, 101]), {}, ("line 102", "'date'", "2 missing rows", "data.fill=ffill")),
    "an off-grid timestamp": (
        lambda f: with_cell(f, 50, "date", "2021-01-03 00:30:00"),
        {"freq": "h"},
        ("line 50", "'date'", "data.freq"),
    ),
    "an irregular series": (
        lambda f: with_cell(f, 50, "date", "2021-01-03 00:30:00"),
        {},
        ("cannot infer the frequency of column 'date'", "line 50"),
    ),
    "a duplicate date": (lambda f: with_cell(f, 60, "date", f["date"][57]), {}, ("line 60", "repeats", "duplicate")),
    "a NaN": (lambda f: with_cell(f, 70, "load", "NaN"), {}, ("'load'", "line 70", "data.fill")),
    "an empty cell": (lambda f: with_cell(f, 71, "wind", ""), {}, ("'wind'", "line 71", "data.fill")),
    "an inf": (lambda f: with_cell(f, 80, "temp", "inf"), {"fill": "ffill"}, ("'temp'", "line 80", "'inf'")),
    "a text cell": (lambda f: with_cell(f, 90, "temp", "12,5"), {"fill": "interpolate"}, ("'temp'", "line 90")),
    "a target not in the file": (
        lambda f: f,
        {"targets": ["OT"]},
        ("no column 'OT'", "found ['date', 'load', 'temp', 'wind']"),
    ),
    "an input not in the file": (
        lambda f: f,
        {"targets": ["load"], "inputs": ["humidity"]},
        ("no column 'humidity'", "found ['date',"),
    ),
    "a date column not in the file": (lambda f: f.rename(columns={"date": "time"}), {}, ("no column 'date'",)),
    "a series too short": (lambda f: f.head(40), {}, ("the train series has 28 rows", "lookback + horizon = 36")),
    "a leading missing cell": (
        lambda f: with_cell(f, 2, "load", ""),
        {"fill": "ffill"},
        ("'load'", "line 2", "first row"),
    ),
    "a trailing missing cell": (
        lambda f: with_cell(f, N_ROWS + 1, "temp", ""),
        {"fill": "interpolate"},
        ("'temp'", f"line {N_ROWS + 1}", "data.fill=ffill"),
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_an_error_naming_the_file_the_column_and_the_line(tmp_path: Path, case: str) -> None:
    change, options, says = BAD_INPUTS[case]
    path = write_csv(tmp_path, change(series()))
    with pytest.raises(DataError) as error:
        set_up(path, **options)
    message = str(error.value)
    assert str(path) in message
    for text in says:
        assert text in message


def test_a_missing_file_names_data_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"my_series.csv not found; check data.path"):
        set_up(tmp_path / "my_series.csv")


def test_a_file_that_is_neither_csv_nor_parquet_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, series(), "my_series.xlsx")
    with pytest.raises(DataError, match=r"suffix \.xlsx says neither CSV nor Parquet"):
        set_up(path)


def test_parquet_without_pyarrow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pyarrow(*args, **kwargs):
        raise ImportError("Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.")

    monkeypatch.setattr(pd, "read_parquet", no_pyarrow)
    (tmp_path / "my_series.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="pip install pyarrow"):
        set_up(tmp_path / "my_series.parquet")


def test_data_path_is_required_and_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--data table needs data.path=FILE"):
        parse_run_args(["--data", "table"])
    monkeypatch.chdir(tmp_path)
    config = parse_run_args(["--data", "table", "data.path=my_series.csv", "data.targets=[load]"])
    assert config["data"]["path"] == str(tmp_path / "my_series.csv")  # a saved config reads it from any folder


# --- the fill policy ----------------------------------------------------------------------------------------------
def test_ffill_inserts_the_missing_timestamps_and_says_how_many(tmp_path: Path, caplog) -> None:
    frame = series()
    path = write_csv(tmp_path, with_cell(frame.drop(index=[100, 101]), 50, "wind", ""))
    with caplog.at_level(logging.WARNING, logger="datamodules.table"):
        filled = read_frame(path, TableOptions(path=str(path), fill="ffill"))
    assert len(filled) == N_ROWS and filled.index.freqstr == "h"
    assert (filled.loc[pd.to_datetime(frame["date"][100:102]), "load"] == float(frame["load"][99])).all()
    assert filled["wind"].iloc[48] == float(frame["wind"][47])
    [warning] = [record.getMessage() for record in caplog.records]
    assert "my_series.csv: data.fill=ffill filled 2 rows missing from the frequency" in warning
    assert "and 1 empty cells" in warning  # the 2 rows' cells, and wind's at line 50


def test_interpolate_draws_a_line_across_a_gap(tmp_path: Path) -> None:
    frame = series()
    path = write_csv(tmp_path, frame.drop(index=[100]))
    filled = read_frame(path, TableOptions(path=str(path), fill="interpolate"))
    assert filled["temp"].iloc[100] == pytest.approx((frame["temp"][99] + frame["temp"][101]) / 2)


def test_a_business_day_series_with_holidays_fills_business_days_only(tmp_path: Path) -> None:
    frame = series(60, "B").drop(index=[10])  # a holiday: 59 rows, weekends absent as they should be
    path = write_csv(tmp_path, frame)
    with pytest.raises(DataError, match="at line 12 follows line 11's .* at the frequency B .inferred.; add the 1"):
        read_frame(path, TableOptions(path=str(path)))
    filled = read_frame(path, TableOptions(path=str(path), fill="ffill"))
    assert filled.index.freqstr == "B" and len(filled) == 60


# --- train, predict and reproduce -------------------------------------------------------------------------------
TRAIN = ["--data", "table", "data.targets=[load,temp]", "data.lookback=24", "data.horizon=12", "--model", "linear",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "--quiet"]  # fmt: skip


@pytest.mark.slow
def test_a_generated_csv_trains_predicts_and_reproduces(tmp_path, tracking_uri, load_logged, capsys, monkeypatch):
    clean = {**tracking.git_state(), tracking.Tag.GIT_DIRTY: "false"}  # this working tree, seen as clean at HEAD
    monkeypatch.setattr(tracking, "git_state", lambda: dict(clean))
    frame = series()
    path = write_csv(tmp_path, frame)
    assert main(["train", *TRAIN, f"data.path={path}", "--tracking-uri", tracking_uri]) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("table").experiment_id])
    run_id = run.info.run_id
    assert {"test_mse", "baseline_seasonal_mse", "test_mase"} <= run.data.metrics.keys()

    # stw predict on the held-back test rows gives the model's own test forecasts, in original units.
    n_test = int(0.2 * N_ROWS)
    held_back = write_csv(tmp_path, frame.iloc[N_ROWS - n_test - 24 :], "test_rows.csv")
    output = tmp_path / "forecast.csv"
    assert main(["predict", run_id, "--input", str(held_back), "--output", str(output),
                 "--tracking-uri", tracking_uri]) == 0  # fmt: skip
    table = pd.read_csv(output, parse_dates=["window_end", "timestamp"])
    datamodule, module, _ = load_logged(run_id, tracking_uri)
    with torch.no_grad():
        expected = torch.cat(
            [datamodule.inverse_transform_targets(module(x, start)) for x, _, start in datamodule.test_dataloader()]
        )
    n_windows = len(expected)
    forecasts = torch.tensor(table[["load_forecast", "temp_forecast"]].to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(forecasts[: n_windows * 12].view(n_windows, 12, 2), expected, rtol=5e-6, atol=1e-5)
    past_end = table["timestamp"] > pd.Timestamp(frame["date"].iloc[-1])
    assert table.loc[past_end, "load_actual"].isna().all()
    assert table["timestamp"].max() == pd.Timestamp(frame["date"].iloc[-1]) + pd.Timedelta(hours=12)

    # A file without a run's column, or at another frequency, is refused, not read otherwise.
    refused = {"no_temp.csv": (frame.drop(columns="temp"), "no column 'temp'"),
               "half_hourly.csv": (series(100, "30min"), "at the frequency h;")}  # fmt: skip
    for name, (other, says) in refused.items():
        capsys.readouterr()
        assert main(["predict", run_id, "--input", str(write_csv(tmp_path, other, name)), "--output", str(output),
                     "--tracking-uri", tracking_uri]) == 2  # fmt: skip
        error = capsys.readouterr().err
        assert name in error and says in error

    capsys.readouterr()
    assert main(["reproduce", run_id, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    assert f"reproduces run {run_id}" in capsys.readouterr().out
