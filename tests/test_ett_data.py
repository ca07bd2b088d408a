"""ETTh1 under the standard long-horizon protocol, checked against the raw CSV read independently."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules import build_datamodule
from datamodules.errors import ConfigError, DataError
from datamodules.ett import CHANNELS, EttDataModule, EttOptions, features_from_frame, read_frame


@pytest.fixture(scope="module")
def raw(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "ett" / "ETTh1.csv", parse_dates=["date"])


@pytest.fixture(scope="module")
def ett96(shared_data: Path) -> EttDataModule:
    # Module-scoped fixtures run before the per-test $STW_DATA_DIR fixture, so the folder is given explicitly.
    module = build_datamodule("ett", {"root": str(shared_data), "lookback": 96, "horizon": 96})
    module.setup()
    return module


def set_up(**options) -> EttDataModule:
    module = EttDataModule(EttOptions(**options))
    module.setup()
    return module


@pytest.mark.parametrize("lookback", [96, 336])
def test_protocol_borders_and_window_counts(lookback: int, raw: pd.DataFrame) -> None:
    module = set_up(lookback=lookback, horizon=96)
    assert {split: len(windows) for split, windows in module.datasets.items()} == {
        "train": 8640 - lookback - 96 + 1,
        "val": 2785,
        "test": 2785,
    }
    borders = {"train": (0, 8640), "val": (8640 - lookback, 11520), "test": (11520 - lookback, 14400)}
    for split, (start, stop) in borders.items():
        assert module.split_timestamps(split).equals(pd.DatetimeIndex(raw["date"][start:stop]))
        assert len(module.series[split][0]) == stop - start


def test_scaler_holds_the_train_rows_statistics_not_the_whole_files(ett96: EttDataModule, raw: pd.DataFrame) -> None:
    train = raw[CHANNELS].to_numpy()[:8640]
    np.testing.assert_allclose(ett96.input_scaler.mean, train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(ett96.input_scaler.std, train.std(axis=0, ddof=0), rtol=1e-12)
    assert not np.allclose(ett96.input_scaler.mean, raw[CHANNELS].to_numpy().mean(axis=0), rtol=1e-3)
    assert not np.allclose(ett96.input_scaler.std, raw[CHANNELS].to_numpy()[:14400].std(axis=0), rtol=1e-3)
    scaled_train = ett96.series["train"][0].double()
    np.testing.assert_allclose(scaled_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled_train.std(0, correction=0), 1, atol=1e-5)


def test_windows_are_views_of_one_tensor_per_split(ett96: EttDataModule) -> None:
    inputs, targets = ett96.series["test"]
    windows = ett96.datasets["test"]
    assert inputs.is_contiguous() and targets.is_contiguous()
    assert windows.x.untyped_storage().data_ptr() == inputs.untyped_storage().data_ptr()
    assert windows.y.untyped_storage().data_ptr() == targets.untyped_storage().data_ptr()
    assert windows.x.untyped_storage().nbytes() == inputs.numel() * 4  # the windows add no memory
    assert windows.x[1].data_ptr() - windows.x[0].data_ptr() == 7 * 4  # window 1 starts one row later


def test_window_content_and_timestamps_equal_the_raw_rows(ett96: EttDataModule, raw: pd.DataFrame) -> None:
    index, start, lookback, horizon = 1000, 11520 - 96, 96, 96
    x, y, first_row = ett96.datasets["test"][[index]]
    assert x.shape == (1, lookback, 7) and y.shape == (1, horizon, 7) and x.dtype == torch.float32
    assert first_row.tolist() == [start + index]  # the window's first row in the whole series (a cycle's phase)
    first_target = start + index + lookback
    np.testing.assert_allclose(
        ett96.input_scaler.inverse_transform(x[0].double()),
        raw[CHANNELS][start + index : first_target],
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        ett96.inverse_transform_targets(y[0]),
        raw[CHANNELS][first_target : first_target + horizon],
        rtol=1e-5,
        atol=1e-4,
    )
    timestamps = ett96.split_timestamps("test")
    for step in (0, horizon - 1):
        assert timestamps[index + lookback + step] == raw["date"][first_target + step]


@pytest.mark.parametrize(
    ("mode", "n_inputs", "target_names", "target_index"),
    [("M", 7, CHANNELS, list(range(7))), ("S", 1, ["OT"], [0]), ("MS", 7, ["OT"], [6])],
)
def test_modes_choose_input_and_target_channels(mode, n_inputs, target_names, target_index) -> None:
    spec = set_up(mode=mode, lookback=24, horizon=24).spec
    assert spec.n_inputs == n_inputs and spec.target_names == target_names
    assert spec.target_index == target_index and spec.n_targets == len(target_names)
    # OT is what ETT forecasts are read by; loads and temperatures are levels, some of them negative (no sMAPE).
    assert (spec.main_target, spec.target_kind, spec.positive_targets) == ("OT", "level", False)


def test_targets_of_a_target_channel_equal_that_input_channel() -> None:
    module = set_up(mode="MS", lookback=24, horizon=12)
    _, y, _ = module.datasets["train"][[0, 500]]
    next_batch_x, _, _ = module.datasets["train"][[24, 524]]
    torch.testing.assert_close(y[:, 0, 0], next_batch_x[:, 0, 6])


def test_loaders_shuffle_train_with_the_shuffle_seed_and_keep_every_window(ett96: EttDataModule) -> None:
    first = next(iter(ett96.train_dataloader()))[0]
    again = next(iter(ett96.train_dataloader()))[0]
    other_seed = set_up(shuffle_seed=1)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, next(iter(other_seed.train_dataloader()))[0])
    test_batches = list(ett96.test_dataloader())
    assert sum(len(x) for x, *_ in test_batches) == 2785
    torch.testing.assert_close(test_batches[0][0][0], ett96.datasets["test"][[0]][0][0])  # test is not shuffled


def test_features_from_frame_reproduces_the_setup_tensors(ett96: EttDataModule, shared_data: Path) -> None:
    inputs, targets = features_from_frame(read_frame(shared_data / "ett" / "ETTh1.csv"), ett96.options)
    rows = slice(11520 - 96, 14400)
    scaled_inputs = torch.from_numpy(ett96.input_scaler.transform(inputs[rows])).float()
    scaled_targets = torch.from_numpy(ett96.target_scaler.transform(targets[rows])).float()
    assert torch.equal(scaled_inputs, ett96.series["test"][0])
    assert torch.equal(scaled_targets, ett96.series["test"][1])


def test_state_dict_survives_json_and_restores_the_preprocessing(ett96: EttDataModule) -> None:
    state = json.loads(json.dumps(ett96.state_dict()))
    restored = EttDataModule(EttOptions(lookback=96, horizon=96))
    restored.load_state_dict(state)
    assert restored.spec == ett96.spec
    y = torch.randn(3, 96, 7)
    torch.testing.assert_close(restored.inverse_transform_targets(y), ett96.inverse_transform_targets(y))
    restored.setup()
    assert torch.equal(restored.series["val"][0], ett96.series["val"][0])


def test_loaded_state_replaces_the_fitted_scaler_even_after_setup(ett96: EttDataModule) -> None:
    state = ett96.state_dict()
    state["input_scaler"]["mean"] = [m + 1.0 for m in state["input_scaler"]["mean"]]
    module = set_up()
    module.load_state_dict(state)
    torch.testing.assert_close(
        module.series["test"][0], ett96.series["test"][0] - torch.from_numpy(1 / ett96.input_scaler.std).float()
    )


def test_fingerprint_follows_file_bytes_and_shaping_options_only(tmp_path: Path, shared_data: Path) -> None:
    copy = tmp_path / "ett" / "ETTh1.csv"
    copy.parent.mkdir()
    shutil.copy(shared_data / "ett" / "ETTh1.csv", copy)
    digest = EttDataModule(EttOptions()).fingerprint()["digest"]
    assert EttDataModule(EttOptions(root=str(tmp_path), batch_size=7)).fingerprint()["digest"] == digest
    assert EttDataModule(EttOptions(lookback=336)).fingerprint()["digest"] != digest
    data = bytearray(copy.read_bytes())
    data[-3] = ord("1") if data[-3] != ord("1") else ord("2")  # one digit of the last value
    copy.write_bytes(bytes(data))
    assert EttDataModule(EttOptions(root=str(tmp_path))).fingerprint()["digest"] != digest


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def small_csv(shared_data: Path) -> list[str]:
    """The first 30 lines of ETTh1 as text: line 1 is the header, data row i is on line i + 2."""
    return (shared_data / "ett" / "ETTh1.csv").read_text().splitlines()[:30]


def setup_with_lines(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "ett" / "ETTh1.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    # An edited ETTh1.csv is no longer the published file: only allow_modified lets the cell checks see it.
    EttDataModule(EttOptions(root=str(tmp_path), download=False, allow_modified=True)).setup()


def replace_cell(line: str, column: int, value: str) -> str:
    cells = line.split(",")
    cells[column] = value
    return ",".join(cells)


def test_missing_columns_are_listed_with_the_found_ones(tmp_path: Path, small_csv: list[str]) -> None:
    table = [line.split(",") for line in small_csv]
    lines = [",".join(cells[:2] + cells[3:7]) for cells in table]  # drop HULL and OT
    with pytest.raises(DataError, match=r"ETTh1.csv: missing columns \['HULL', 'OT'\]; found \['date', 'HUFL', 'MUFL'"):
        setup_with_lines(tmp_path, lines)


@pytest.mark.parametrize(
    ("line", "column", "value", "message"),
    [
        (5, 0, "2016-07-01 3am", r"cannot read the date '2016-07-01 3am' in column 'date' at line 5"),
        (6, 0, "2016-07-01 03:00:00", r"date '2016-07-01 03:00:00' at line 6 repeats the previous row's"),
        (6, 0, "2016-06-30 03:00:00", r"date '2016-06-30 03:00:00' at line 6 comes before the previous row's"),
        (9, 3, "", r"column 'MUFL' holds '' at line 9, which is not a finite number"),
        (9, 7, "nan", r"column 'OT' holds 'nan' at line 9"),
        (12, 2, "inf", r"column 'HULL' holds 'inf' at line 12"),
        (12, 2, "n/a", r"column 'HULL' holds 'n/a' at line 12"),
    ],
)
def test_bad_cells_name_the_file_column_line_and_value(tmp_path, small_csv, line, column, value, message) -> None:
    small_csv[line - 1] = replace_cell(small_csv[line - 1], column, value)
    with pytest.raises(DataError, match=f"ETTh1.csv: .*{message}"):
        setup_with_lines(tmp_path, small_csv)


def test_a_series_shorter_than_the_protocol_says_needed_and_found(tmp_path: Path, small_csv: list[str]) -> None:
    with pytest.raises(DataError, match="needs at least 14400 rows, found 29"):
        setup_with_lines(tmp_path, small_csv)


def test_horizon_beyond_a_split_says_needed_and_found() -> None:
    with pytest.raises(
        DataError, match="the val series has 2976 rows but one window needs lookback \\+ horizon = 3096"
    ):
        set_up(lookback=96, horizon=3000)


def test_missing_file_without_download_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ett/ETTh1.csv not found; run with download=True .*raw.githubusercontent.com"):
        EttDataModule(EttOptions(root=str(tmp_path), download=False)).setup()


def test_a_changed_file_is_refused_when_download_checks_it(tmp_path: Path, small_csv: list[str]) -> None:
    path = tmp_path / "ett" / "ETTh1.csv"
    path.parent.mkdir()
    path.write_text("\n".join(small_csv))
    with pytest.raises(DataError, match="sha256"):
        EttDataModule(EttOptions(root=str(tmp_path), download=True)).prepare_data()


def test_unknown_target_channel_is_refused() -> None:
    with pytest.raises(ConfigError, match="target must be one of the channels"):
        EttOptions(target="oil")


def test_fraction_borders_follow_the_tslib_custom_convention() -> None:
    from datamodules.timeseries import fraction_borders

    # Weather: 52,696 rows; TSLib's Dataset_Custom gives 36,887 / 5,270 / 10,539 forecast rows.
    borders = fraction_borders(52696, lookback=96)
    assert borders == {"train": (0, 36887), "val": (36887 - 96, 42157), "test": (42157 - 96, 52696)}
    assert fraction_borders(100, 10, train=0.6, test=0.3) == {"train": (0, 60), "val": (50, 70), "test": (60, 100)}
