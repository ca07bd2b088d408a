"""Daily stock windows: features against the raw files, alignment, chronological splits with a gap, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules import build_datamodule
from datamodules.errors import ConfigError, DataError
from datamodules.stock import StockDataModule, StockOptions, features_from_frames, read_frame


def raw(shared_data: Path, ticker: str) -> pd.DataFrame:
    return pd.read_csv(shared_data / "stock" / f"{ticker}.us.txt", parse_dates=["Date"], index_col="Date")


def set_up(**options) -> StockDataModule:
    module = StockDataModule(StockOptions(**options))
    module.setup()
    return module


@pytest.fixture(scope="module")
def spy(shared_data: Path) -> StockDataModule:
    # Module-scoped fixtures run before the per-test $STW_DATA_DIR fixture, so the folder is given explicitly.
    module = build_datamodule("stock", {"root": str(shared_data)})
    module.setup()
    return module


def test_spy_inputs_are_daily_log_returns_and_the_target_is_the_close_return(spy, shared_data: Path) -> None:
    spec = spy.spec
    assert spec.input_names == ["spy_open", "spy_high", "spy_low", "spy_close", "spy_volume"]
    assert (spec.target_names, spec.target_index, spec.lookback, spec.horizon) == (
        ["spy_close"],
        [3],
        60,
        5,
    )
    prices = raw(shared_data, "spy")
    x, y, _ = spy.datasets["val"][[7]]
    start = spy.split_timestamps("val")[7]
    row = prices.index.get_loc(start)
    expected_close = np.log(prices["Close"].to_numpy()[row : row + 60] / prices["Close"].to_numpy()[row - 1 : row + 59])
    np.testing.assert_allclose(spy.input_scaler.inverse_transform(x[0].double())[:, 3], expected_close, atol=1e-6)
    expected_targets = np.log(
        prices["Close"].to_numpy()[row + 60 : row + 65] / prices["Close"].to_numpy()[row + 59 : row + 64]
    )
    np.testing.assert_allclose(spy.inverse_transform_targets(y[0]).squeeze(-1), expected_targets, atol=1e-6)
    expected_volume = np.log((prices["Volume"].to_numpy()[row] + 1) / (prices["Volume"].to_numpy()[row - 1] + 1))
    np.testing.assert_allclose(spy.input_scaler.inverse_transform(x[0].double())[0, 4], expected_volume, atol=1e-5)


def test_splits_are_chronological_with_a_horizon_of_rows_between_them(spy) -> None:
    inputs, _ = features_from_frames({"spy": read_frame(spy.data_files()[0])}, spy.options)
    positions = {split: inputs.index.get_indexer(spy.split_timestamps(split)) for split in ("train", "val", "test")}
    assert positions["train"][0] == 0 and positions["test"][-1] == len(inputs) - 1
    for before, after in (("train", "val"), ("val", "test")):
        assert np.all(np.diff(positions[before]) == 1)
        assert positions[after][0] - positions[before][-1] - 1 == spy.options.horizon
    # The last train target lies a full horizon before the first val input.
    last_train_target = spy.split_timestamps("train")[len(spy.datasets["train"]) - 1 + 60 + 4]
    first_val_input = spy.split_timestamps("val")[0]
    assert inputs.index.get_loc(first_val_input) - inputs.index.get_loc(last_train_target) == spy.options.horizon + 1
    sizes = [len(positions[split]) for split in ("train", "val", "test")]
    assert sizes == [int((3200 - 10) * 0.7), int((3200 - 10) * 0.15), 3200 - 10 - 2233 - 478]


def test_scaler_holds_the_train_rows_statistics(spy) -> None:
    inputs, _ = features_from_frames({"spy": read_frame(spy.data_files()[0])}, spy.options)
    train = inputs.loc[spy.split_timestamps("train")].to_numpy()
    np.testing.assert_allclose(spy.input_scaler.mean, train.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(spy.input_scaler.std, train.std(axis=0), rtol=1e-10)
    assert not np.allclose(spy.input_scaler.std, inputs.to_numpy().std(axis=0), rtol=1e-3)


def test_the_spec_says_returns_and_carries_the_train_rows_target_scaler_and_naive_error(spy) -> None:
    _, targets = features_from_frames({"spy": read_frame(spy.data_files()[0])}, spy.options)
    train = targets.loc[spy.split_timestamps("train"), "spy_close"].to_numpy()
    spec = spy.spec
    assert (spec.target_kind, spec.main_target, spec.positive_targets) == ("return", "spy_close", False)
    assert spec.target_mean == pytest.approx([train.mean()]) and spec.target_std == pytest.approx([train.std()])
    # MASE's scale: the in-sample seasonal-naive MAE (a week of 5 trading days) over the train rows alone.
    assert spec.naive_mae == pytest.approx([np.abs(train[5:] - train[:-5]).mean()], rel=1e-12)
    whole = targets["spy_close"].to_numpy()
    assert spec.naive_mae[0] != pytest.approx(np.abs(whole[5:] - whole[:-5]).mean(), rel=1e-3)


def test_two_tickers_are_aligned_on_their_common_dates(shared_data: Path) -> None:
    module = set_up(tickers=["spy", "AAPL"], target="aapl", lookback=20, horizon=3)
    common = raw(shared_data, "spy").index.intersection(raw(shared_data, "aapl").index)
    everything = (
        module.split_timestamps("train").union(module.split_timestamps("val")).union(module.split_timestamps("test"))
    )
    assert everything.isin(common[1:]).all() and len(everything) == len(common) - 1 - 2 * 3
    spec = module.spec
    assert spec.n_inputs == 10 and spec.input_names[5] == "aapl_open" and spec.target_index == [8]


def test_zero_volume_days_give_a_finite_volume_change(shared_data: Path) -> None:
    frame = read_frame(shared_data / "stock" / "ibm.us.txt")
    assert (frame["Volume"] == 0).sum() == 1
    inputs, _ = features_from_frames({"ibm": frame}, StockOptions(tickers=["ibm"]))
    assert np.isfinite(inputs.to_numpy()).all()


def test_calendar_features_are_day_of_week_and_month_on_a_circle(spy) -> None:
    options = StockOptions(calendar=True)
    inputs, _ = features_from_frames({"spy": read_frame(spy.data_files()[0])}, options)
    assert list(inputs.columns[-4:]) == ["dow_sin", "dow_cos", "month_sin", "month_cos"]
    monday_in_january = inputs.loc["2017-01-09"]
    np.testing.assert_allclose(
        monday_in_january[["dow_sin", "dow_cos", "month_sin", "month_cos"]], [0, 1, 0, 1], atol=1e-12
    )


def test_yahoo_files_put_open_high_low_close_on_the_adj_close_basis(tmp_path: Path, shared_data: Path) -> None:
    stooq = raw(shared_data, "spy").iloc[:300]
    unadjusted = np.linspace(1.5, 1.1, len(stooq))  # as if dividends were not folded into the plain prices
    yahoo = pd.DataFrame(
        {column: stooq[column] * unadjusted for column in ("Open", "High", "Low", "Close")}
        | {"Adj Close": stooq["Close"], "Volume": stooq["Volume"]}
    )
    path = tmp_path / "SPY.csv"
    yahoo.to_csv(path, index_label="Date", date_format="%Y-%m-%d")
    pd.testing.assert_frame_equal(
        read_frame(path), read_frame(shared_data / "stock" / "spy.us.txt").iloc[:300], rtol=1e-12
    )
    module = set_up(paths=[str(path)], lookback=20, horizon=3)
    assert module.spec.target_names == ["spy_close"]
    assert len(module.datasets["test"]) == (300 - 1 - 6) - int(293 * 0.7) - int(293 * 0.15) - 20 - 3 + 1


def test_features_from_frames_reproduce_the_setup_tensors(shared_data: Path) -> None:
    module = set_up(tickers=["ko", "spy"], target="spy", calendar=True, lookback=10, horizon=2)
    frames = {ticker: read_frame(shared_data / "stock" / f"{ticker}.us.txt") for ticker in ("ko", "spy")}
    inputs, targets = features_from_frames(frames, module.options)
    rows = inputs.index.get_indexer(module.split_timestamps("test"))
    expected_inputs = torch.from_numpy(module.input_scaler.transform(inputs.iloc[rows])).float()
    expected_targets = torch.from_numpy(module.target_scaler.transform(targets.iloc[rows])).float()
    assert torch.equal(module.series["test"][0], expected_inputs)
    assert torch.equal(module.series["test"][1], expected_targets)


def test_state_dict_survives_json_and_restores_the_preprocessing(spy) -> None:
    state = json.loads(json.dumps(spy.state_dict()))
    assert state["options"]["tickers"] == ["spy"]
    restored = StockDataModule(StockOptions())
    restored.load_state_dict(state)
    assert restored.spec == spy.spec
    y = torch.randn(4, 5, 1)
    torch.testing.assert_close(restored.inverse_transform_targets(y), spy.inverse_transform_targets(y))


def test_fingerprint_ignores_where_explicit_files_live_but_not_their_bytes(tmp_path: Path, shared_data: Path) -> None:
    first, second = tmp_path / "a" / "spy.us.txt", tmp_path / "b" / "spy.us.txt"
    for copy in (first, second):
        copy.parent.mkdir()
        shutil.copy(shared_data / "stock" / "spy.us.txt", copy)
    digest = StockDataModule(StockOptions(paths=[str(first)])).fingerprint()["digest"]
    assert StockDataModule(StockOptions(paths=[str(second)], batch_size=3)).fingerprint()["digest"] == digest
    assert StockDataModule(StockOptions(paths=[str(second)], lookback=30)).fingerprint()["digest"] != digest
    second.write_bytes(second.read_bytes().replace(b"2017-11-10,257.73", b"2017-11-10,257.74", 1))
    assert StockDataModule(StockOptions(paths=[str(second)])).fingerprint()["digest"] != digest


# --- bad input ---------------------------------------------------------------------------------------------------

HEADER = "Date,Open,High,Low,Close,Volume,OpenInt"


def write_ticker(folder: Path, ticker: str, dates: pd.DatetimeIndex, edit: dict[int, str] | None = None) -> Path:
    """A small Stooq-format file; `edit` replaces whole data lines by row number."""
    lines = [f"{d:%Y-%m-%d},10.0,11.0,9.5,10.{i % 10},1000,0" for i, d in enumerate(dates)]
    for row, line in (edit or {}).items():
        lines[row] = line
    path = folder / f"{ticker}.us.txt"
    path.write_text("\r\n".join([HEADER, *lines]) + "\r\n")
    return path


def setup_files(*paths: Path, **options) -> None:
    StockDataModule(StockOptions(paths=[str(p) for p in paths], lookback=5, horizon=2, **options)).setup()


def test_tickers_without_common_dates_are_named_with_their_date_ranges(tmp_path: Path) -> None:
    old = write_ticker(tmp_path, "old", pd.bdate_range("2001-01-01", periods=50))
    new = write_ticker(tmp_path, "new", pd.bdate_range("2010-01-01", periods=50))
    with pytest.raises(
        DataError, match="tickers old, new share no date .old: 2001-01-01 to 2001-03-09; new: 2010-01-01 to"
    ):
        setup_files(old, new)


@pytest.mark.parametrize(
    ("row", "line", "message"),
    [
        (3, "2001-01-0x,10,11,9,10,5,0", r"cannot read the date '2001-01-0x' in column 'Date' at line 5"),
        (3, "2001-01-03,10,11,9,10,5,0", r"date '2001-01-03' at line 5 repeats the previous row's '2001-01-03'"),
        (3, "2001-01-02,10,11,9,10,5,0", r"date '2001-01-02' at line 5 comes before"),
        (6, "2001-01-09,10,,9,10,5,0", r"column 'High' holds '' at line 8, which is not a finite number"),
        (6, "2001-01-09,10,11,9,inf,5,0", r"column 'Close' holds 'inf' at line 8"),
        (6, "2001-01-09,10,11,0,10,5,0", r"Low is 0.0 at line 8; prices must be positive"),
        (6, "2001-01-09,10,11,9,10,-5,0", r"Volume is -5.0 at line 8; .*volumes non-negative"),
    ],
)
def test_bad_rows_name_the_file_column_line_and_value(tmp_path: Path, row: int, line: str, message: str) -> None:
    path = write_ticker(tmp_path, "abc", pd.bdate_range("2001-01-01", periods=50), {row: line})
    with pytest.raises(DataError, match=f"abc.us.txt: .*{message}"):
        setup_files(path)


def test_missing_columns_are_listed_with_the_found_ones(tmp_path: Path) -> None:
    path = tmp_path / "abc.csv"
    path.write_text("Date,Open,Close\n2001-01-01,1,2\n")
    with pytest.raises(
        DataError, match=r"abc.csv: missing columns \['High', 'Low', 'Volume'\]; found \['Date', 'Open', 'Close'\]"
    ):
        setup_files(path)


def test_a_series_too_short_for_one_window_says_needed_and_found(tmp_path: Path) -> None:
    path = write_ticker(tmp_path, "abc", pd.bdate_range("2001-01-01", periods=30))
    with pytest.raises(DataError, match=r"the val series has 3 rows but one window needs lookback \+ horizon = 7"):
        setup_files(path)


def test_unknown_ticker_without_a_file_says_where_to_put_it(tmp_path: Path) -> None:
    module = StockDataModule(StockOptions(tickers=["zzzz"], root=str(tmp_path)))
    module.prepare_data()  # no known source: nothing to fetch
    with pytest.raises(DataError, match=r"stock/zzzz.us.txt not found; put the file there"):
        module.setup()


def test_a_missing_file_of_data_paths_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"zzzz.us.txt not found; check data.paths"):
        setup_files(tmp_path / "zzzz.us.txt")


def test_target_must_be_one_of_the_tickers() -> None:
    with pytest.raises(ConfigError, match="target 'ko' is not one of the tickers"):
        StockOptions(tickers=["spy", "aapl"], target="ko")
