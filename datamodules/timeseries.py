"""What every dated-series datamodule shares: validated CSV reading, a train-only scaler, and windowed splits.

A dataset subclass names its files, turns them into an input frame and a target frame (through a public pure
function that `stw predict` can reuse) and says which rows each split covers. This base checks the files,
fits the scaler on the train rows only, scales each split into one float32 tensor and serves stride-1
windows over it as zero-copy views.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.base import DataOptions, StwDataModule
from datamodules.download import check_published, ensure_file
from datamodules.errors import ConfigError, DataError
from datamodules.fingerprint import fingerprint
from datamodules.headers import first_line, header_names, shown
from datamodules.specs import ForecastSpec
from datamodules.windows import WindowDataset


@dataclass(frozen=True)
class RowClock:
    """Which row of the training series a timestamp is: row 0 at `start`, one row every `step`. Known only for a
    series with exactly one spacing between its rows (hourly ETT), where row numbers and times agree."""

    start: pd.Timestamp
    step: pd.Timedelta

    @classmethod
    def of(cls, index: pd.Index) -> "RowClock | None":
        if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
            return None
        spacings = (index[1:] - index[:-1]).unique()
        return cls(index[0], spacings[0]) if len(spacings) == 1 and spacings[0] > pd.Timedelta(0) else None

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "step": self.step.isoformat()}

    @classmethod
    def from_dict(cls, state: dict[str, str]) -> "RowClock":
        return cls(pd.Timestamp(state["start"]), pd.Timedelta(state["step"]))

    def rows(self, times: pd.DatetimeIndex, what: str) -> np.ndarray:
        """The row number of each time (before row 0: negative); a time between rows is refused."""
        offsets = times - self.start
        off_grid = offsets % self.step != pd.Timedelta(0)
        if off_grid.any():
            raise DataError(
                f"{what}: row time {times[off_grid][0]} is not a whole number of steps of {self.step} after the "
                f"training series' first row ({self.start}), so its phase in the run's residual cycle "
                "(task.cycle_len) is unknown; give rows on the training series' time grid"
            )
        return np.asarray(offsets // self.step, dtype=np.int64)


@dataclass
class WindowOptions(DataOptions):
    """Options every windowed series has.

    Args:
        lookback: input steps per window (L).
        horizon: target steps per window (H), the steps right after the input steps.
        seed: no effect on a dated series: its splits are by date and nothing is drawn (the run's --seed
            orders the training batches).
        allow_modified: read a registered data file (one with a published source, e.g. ETTh1.csv) even when
            its sha256 is not the published one; off, such a file is refused whenever it is read. When on, it is
            part of the run's fingerprint.
    """

    lookback: int = 96
    horizon: int = 96
    seed: int = 0
    allow_modified: bool = False

    def __post_init__(self) -> None:
        if self.lookback < 1 or self.horizon < 1:
            raise ConfigError(f"lookback and horizon must be at least 1, got {self.lookback} and {self.horizon}")


def file_line(row: int) -> int:
    """The line of a CSV holding data row `row` (0-based): line 1 is the header."""
    return row + 2


def read_text_table(path: Path, needed: Sequence[str]) -> pd.DataFrame:
    """Every cell of a CSV as text, so error messages can quote a bad cell exactly as written. Its header is
    checked first and must name the `needed` columns."""
    names = header_names(first_line(path), path, "line 1 must be the header: the column names, separated by commas")
    if missing := [column for column in needed if column not in names]:
        raise DataError(f"{path}: missing columns {missing}; found {shown(names)}. The header must name {list(needed)}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path}: not a readable CSV ({error}); it must be comma-separated text with a header line"
        ) from None
    if table.empty:
        raise DataError(f"{path}: no data rows below the header; use a file with the series in it")
    return table


def dated_values(table: pd.DataFrame, path: Path, date_column: str, value_columns: Sequence[str]) -> pd.DataFrame:
    """`value_columns` of a table from `read_text_table` as float64, indexed by its strictly increasing `date_column`."""
    dates = parse_dates(table[date_column], path)
    return pd.DataFrame({c: finite_numbers(table[c], path) for c in value_columns}, index=dates)


# A time of day followed by an ISO 8601 offset: Z, +01, +0100 or +01:00.
TIME_ZONE_OFFSET = re.compile(r"\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
HAS_TIME = re.compile(r"\d[T ]\d{2}")


def parse_dates(texts: pd.Series, path: Path) -> pd.DatetimeIndex:
    # Offsets are refused, not converted: read in UTC, a daily series east of Greenwich would move to the previous
    # day, and a file whose offset changes with daylight saving would get its dates shifted by an hour in summer.
    with_time = texts.str.contains(HAS_TIME)
    offsets = texts.where(with_time, "").str.strip().str.extract(TIME_ZONE_OFFSET, expand=False)
    if (zoned := np.flatnonzero(offsets.notna())).size:
        row = zoned[0]
        raise DataError(
            f"{path}: the date {texts.iloc[row]!r} in column {texts.name!r} at line {file_line(row)} has a time-zone "
            f"offset, {offsets.iloc[row]} ({zoned.size} of the {len(texts)} dates have one); write every date as local "
            "time without an offset (e.g. 2016-07-01 00:00:00), converted to one time zone first if they differ"
        )
    dates = pd.to_datetime(texts, format="ISO8601", errors="coerce")
    if (unparsable := np.flatnonzero(dates.isna())).size:
        row = unparsable[0]
        raise DataError(
            f"{path}: cannot read the date {texts.iloc[row]!r} in column {texts.name!r} at line {file_line(row)}; "
            "write dates as ISO 8601, e.g. 2016-07-01 or 2016-07-01 00:00:00"
        )
    steps = dates.diff()
    if (backwards := np.flatnonzero(steps <= pd.Timedelta(0))).size:
        row = backwards[0]
        problem = "repeats" if steps.iloc[row] == pd.Timedelta(0) else "comes before"
        raise DataError(
            f"{path}: the date {texts.iloc[row]!r} at line {file_line(row)} {problem} the previous row's "
            f"{texts.iloc[row - 1]!r}; dates must strictly increase: sort the file and remove duplicate rows"
        )
    return pd.DatetimeIndex(dates, name=texts.name)


def finite_numbers(texts: pd.Series, path: Path) -> np.ndarray:
    values = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64)
    if (bad := np.flatnonzero(~np.isfinite(values))).size:
        row = bad[0]
        raise DataError(
            f"{path}: column {texts.name!r} holds {texts.iloc[row]!r} at line {file_line(row)}, which is not a "
            "finite number (NaN, inf, empty or text); fill in or remove that row"
        )
    return values


def fraction_borders(n_rows: int, lookback: int, train: float = 0.7, test: float = 0.2) -> dict[str, tuple[int, int]]:
    """Chronological [start, stop) rows of train, val and test by fractions of the series: TSLib's `Dataset_Custom`
    convention (Weather, Electricity, Exchange, Traffic, ILI): train the first int(0.7 n) rows, test the last
    int(0.2 n), val what lies between; val and test start `lookback` rows early so their first window looks back
    into the previous part, and every row is forecast by exactly one split."""
    n_train, n_test = int(n_rows * train), int(n_rows * test)
    n_val = n_rows - n_train - n_test
    return {
        "train": (0, n_train),
        "val": (n_train - lookback, n_train + n_val),
        "test": (n_rows - n_test - lookback, n_rows),
    }


@dataclass
class StandardScaler:
    """Per-column mean and population std (ddof=0), as sklearn's StandardScaler that the ETT reference code uses."""

    columns: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "StandardScaler":
        values = frame.to_numpy(dtype=np.float64)
        std = values.std(axis=0)
        # A constant column would divide by zero; like sklearn, leave it unscaled.
        return cls(list(frame.columns), values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if list(frame.columns) != self.columns:
            raise DataError(
                f"the scaler was fitted on columns {self.columns} but the data has {list(frame.columns)}; "
                "build the datamodule with the options the preprocessing was fitted with"
            )
        return (frame.to_numpy(dtype=np.float64) - self.mean) / self.std

    def inverse_transform(self, values: Tensor) -> Tensor:
        mean = torch.as_tensor(self.mean, dtype=values.dtype, device=values.device)
        std = torch.as_tensor(self.std, dtype=values.dtype, device=values.device)
        return values * std + mean

    def to_dict(self) -> dict[str, list]:
        return {"columns": self.columns, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, list]) -> "StandardScaler":
        return cls(
            list(state["columns"]),
            np.asarray(state["mean"], dtype=np.float64),
            np.asarray(state["std"], dtype=np.float64),
        )


def seasonal_naive_mae(frame: pd.DataFrame, season: int) -> np.ndarray:
    """Per column, the mean |y_t - y_(t - season)| over the rows that have a value a season earlier: the in-sample
    seasonal-naive MAE that MASE divides by (Hyndman & Koehler 2006)."""
    values = frame.to_numpy(dtype=np.float64)
    return np.abs(values[season:] - values[:-season]).mean(axis=0)


def float32_rows(values: np.ndarray) -> Tensor:
    """A row-major float32 tensor: pandas hands out column-major arrays, and a window should be one memory block."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


class WindowedSeriesDataModule(StwDataModule):
    """Forecast windows over one dated series; subclasses implement the four dataset hooks below."""

    task: ClassVar[str] = "forecast"
    input_kind: ClassVar[str] = "values"
    season: ClassVar[int]  # steps per season, for the seasonal-naive baseline and MASE
    target_kind: ClassVar[str] = "level"  # see ForecastSpec.target_kind
    target_units: ClassVar[str] = "original units"  # what a target's values are, for axis labels
    options: WindowOptions

    def __init__(self, options: WindowOptions) -> None:
        super().__init__(options)
        self.input_scaler: StandardScaler | None = None
        self.target_scaler: StandardScaler | None = None
        self.naive_mae: list[float] | None = None  # per target, on the train rows (MASE's denominator)
        self.positive_targets = False  # every train target value above 0 (sMAPE applies)
        self.series: dict[str, tuple[Tensor, Tensor]] = {}  # split -> scaled inputs [T, C], targets [T, K]
        self.datasets: dict[str, Dataset] = {}
        self._timestamps: dict[str, pd.DatetimeIndex] = {}
        self.row_clock: RowClock | None = None  # row numbers of timestamps, for a residual cycle's phase in predict

    # --- dataset hooks ---------------------------------------------------------------------------------------
    def data_files(self) -> list[Path]:
        """The raw files the tensors are made from."""
        raise NotImplementedError

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Inputs [T, C] and targets [T, K] of the whole series, indexed by timestamp (through the public function)."""
        raise NotImplementedError

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        """Row range [start, stop) of the train, val and test series; windows never leave their range."""
        raise NotImplementedError

    def main_target(self) -> str | None:
        """The target channel plots and return metrics are about (ForecastSpec.main_target); None: the first."""
        return None

    def features_from_files(self, paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Inputs and targets of new files in this dataset's format, as `load_features` gives them: what
        `stw predict` reads for a dataset without its own predictor (a plugin's)."""
        raise DataError(f"the {type(self).__name__} dataset does not read new files, so stw predict cannot use its "
                        "runs: it would need a features_from_files(paths) method")  # fmt: skip

    # --- LightningDataModule -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Unlike the base, files already there are checked too: a series file is refused unless it holds the
        # published bytes (or allow_modified says otherwise).
        if self.options.download:
            for path, source in self.sources().items():
                ensure_file(source.url, path, source.sha256, self.options.allow_modified, source.git_blob)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # Lightning calls setup once per stage; the tensors are the same for every stage
        self._require_files()
        for path, source in self.sources().items():  # whether or not prepare_data ran: download=false checks too
            check_published(path, source, self.options.allow_modified)
        inputs, targets = self.load_features()
        ranges = self.split_rows(len(inputs))
        self._check_lengths(ranges)
        self._check_targets_vary(targets, ranges)
        if self.input_scaler is None:  # a loaded state_dict is kept: predict and reproduce reuse a run's scaler
            train = slice(*ranges["train"])
            self.input_scaler = StandardScaler.fit(inputs.iloc[train])
            self.target_scaler = StandardScaler.fit(targets.iloc[train])
            self.naive_mae = seasonal_naive_mae(targets.iloc[train], self.season).tolist()
            self.positive_targets = bool((targets.iloc[train].to_numpy() > 0).all())
            self.row_clock = RowClock.of(inputs.index)
        series, windows, timestamps = {}, {}, {}
        for split, (start, stop) in ranges.items():
            x = float32_rows(self.input_scaler.transform(inputs.iloc[start:stop]))
            y = float32_rows(self.target_scaler.transform(targets.iloc[start:stop]))
            series[split] = (x, y)
            windows[split] = self.window_dataset(x, y, targets.iloc[start:stop], first_row=start)
            timestamps[split] = inputs.index[start:stop]
        self.series, self.datasets, self._timestamps = series, windows, timestamps

    def window_dataset(self, x: Tensor, y: Tensor, raw_targets: pd.DataFrame, first_row: int = 0) -> Dataset:
        """A split's dataset from its scaled inputs and targets; `raw_targets` (unscaled) are for datasets whose
        items are labelled from the targets' own values; `first_row` is the split's first row in the series."""
        return WindowDataset(x, y, self.options.lookback, self.options.horizon, first_row)

    def state_dict(self) -> dict[str, Any]:
        """The fitted preprocessing, JSON-serialisable; empty before setup (nothing is fitted yet)."""
        if self.input_scaler is None:
            return {}
        return {
            "options": self.shaping_options(),
            "input_scaler": self.input_scaler.to_dict(),
            "target_scaler": self.target_scaler.to_dict(),
            "target_naive_mae": self.naive_mae,
            "positive_targets": self.positive_targets,
            "row_clock": self.row_clock.to_dict() if self.row_clock is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.input_scaler = StandardScaler.from_dict(state["input_scaler"])
        self.target_scaler = StandardScaler.from_dict(state["target_scaler"])
        # Runs logged before MASE and sMAPE existed saved neither statistic.
        self.naive_mae = state.get("target_naive_mae")
        self.positive_targets = bool(state.get("positive_targets", False))
        # Runs logged before residual cycles existed, and series without one spacing, have no clock.
        self.row_clock = RowClock.from_dict(state["row_clock"]) if state.get("row_clock") else None
        if self.datasets:  # Lightning restores a checkpoint after setup: rescale the tensors with the loaded scaler
            self.datasets = {}
            self.setup()

    # --- what models and evaluation read ---------------------------------------------------------------------
    @property
    def spec(self) -> ForecastSpec:
        if self.input_scaler is None:
            raise RuntimeError("spec is known after setup() or load_state_dict()")
        inputs, targets = self.input_scaler.columns, self.target_scaler.columns
        return ForecastSpec(
            input_kind=self.input_kind,
            lookback=self.options.lookback,
            horizon=self.options.horizon,
            input_names=list(inputs),
            target_names=list(targets),
            target_index=[inputs.index(t) for t in targets] if set(targets) <= set(inputs) else None,
            season=self.season,
            target_kind=self.target_kind,
            main_target=self.main_target(),
            target_mean=self.target_scaler.mean.tolist(),
            target_std=self.target_scaler.std.tolist(),
            naive_mae=self.naive_mae,
            positive_targets=self.positive_targets,
        )

    def inverse_transform_targets(self, y: Tensor) -> Tensor:
        """Scaled targets (last dim K) back to the data's own units."""
        return self.target_scaler.inverse_transform(y)

    def split_timestamps(self, split: str) -> pd.DatetimeIndex:
        """Timestamp of every row of a split's series: target step h of window i is at index i + lookback + h."""
        return self._timestamps[split]

    def shaping_options(self) -> dict[str, Any]:
        options = super().shaping_options()
        # Recorded only when on: runs on the published files keep the fingerprints they had before the option existed.
        if not options["allow_modified"]:
            del options["allow_modified"]
        return options

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.data_files(), self.shaping_options())

    def source_files(self) -> list[Path]:
        return self.data_files()

    # --- checks ------------------------------------------------------------------------------------------------
    def missing_file_fix(self, path: Path) -> str:
        """What to do about a data file that is not there, for the not-found error."""
        sources = self.sources()
        if path in sources:
            return f"run with download=True (prepare_data) to fetch it from {sources[path].url}"
        return "put the file there, or point root (or $STW_DATA_DIR) at the folder that holds it"

    def _require_files(self) -> None:
        for path in self.data_files():
            if not path.is_file():
                raise DataError(f"{path} not found; {self.missing_file_fix(path)}")

    def _check_lengths(self, ranges: dict[str, tuple[int, int]]) -> None:
        needed = self.options.lookback + self.options.horizon
        for split, (start, stop) in ranges.items():
            if stop - start < needed:
                files = ", ".join(str(p) for p in self.data_files())
                raise DataError(
                    f"{files}: the {split} series has {max(stop - start, 0)} rows but one window needs "
                    f"lookback + horizon = {needed}; use a longer series or a smaller lookback or horizon"
                )

    def _check_targets_vary(self, targets: pd.DataFrame, ranges: dict[str, tuple[int, int]]) -> None:
        # A target that never changes within a split is forecast exactly by the naive baselines: their MSE is 0 and
        # skill_vs_naive (1 - MSE / baseline MSE) is undefined, so the data is refused rather than scored.
        for split, (start, stop) in ranges.items():
            part = targets.iloc[start:stop]
            constant = part.columns[(part.max() == part.min()).to_numpy()]
            if len(constant):
                files = ", ".join(str(p) for p in self.data_files())
                raise DataError(
                    f"{files}: the target {constant[0]!r} is {part[constant[0]].iloc[0]:g} on every {split} row "
                    f"({part.index[0]} to {part.index[-1]}), so the baselines forecast it exactly and skill is "
                    "undefined; check that the file holds the real series (one value repeated is usually a fill "
                    "or export error)"
                )
