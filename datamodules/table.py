"""Any table of dated series, CSV or Parquet, as forecasting windows: `stw train --data table data.path=my.csv`.

One row per timestamp, one column per series. The targets are forecast from their own past and from the input
columns (covariates); by default every numeric column is a target. The rows must be one regular frequency
apart (given, or inferred by pandas), with no gap, duplicate, missing or non-finite value, unless `fill` says how
to fill gaps and missing cells. The split is chronological: TSLib's "custom" 70/10/20 fractions, or explicit
dates. The scaler is fitted on the train rows only, and the seasonal-naive season follows from the frequency.

Messages name a Parquet file's rows as the lines they would be in a CSV with a header: line n is data row n - 1.
"""

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from datamodules import register_dataset
from datamodules.errors import ConfigError, DataError
from datamodules.headers import shown
from datamodules.timeseries import (
    WindowedSeriesDataModule,
    WindowOptions,
    file_line,
    finite_numbers,
    fraction_borders,
    parse_dates,
    read_text_table,
)

log = logging.getLogger(__name__)

CSV_SUFFIXES, PARQUET_SUFFIXES = (".csv", ".txt"), (".parquet", ".pq")
FILLS = ("none", "ffill", "interpolate")
# Cells that mean "no value" (compared stripped and lower-cased); `fill` may fill them, any other text is an error.
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
FREQ_EXAMPLES = "e.g. h, 15min, D, B (business days), W-SUN, MS (month starts)"


@dataclass
class TableOptions(WindowOptions):
    """A CSV or Parquet table of dated series.

    Args:
        path: the CSV (comma-separated, header on line 1) or Parquet file, by its suffix (.csv, .txt, .parquet,
            .pq); a relative path is read from the current folder.
        date_column: the column holding each row's timestamp (ISO 8601, no time-zone offset).
        targets: the columns forecast; default every numeric column other than the date.
        inputs: input columns (covariates) read beside the targets, which are always inputs too; default every
            other numeric column; [] for none (each target from its own past only).
        freq: the rows' pandas frequency (e.g. h, 15min, D, B, W-SUN, MS); default inferred from the dates.
        season: steps per season for the seasonal-naive baseline and MASE; default from the frequency (hourly
            24, 10-minute 144, 15-minute 96, daily 7, business-daily 5, weekly 52, monthly 12, quarterly 4).
        fill: what to do with gaps (timestamps missing from the regular frequency) and missing cells (empty,
            NaN, NA, null): "none" refuses them, "ffill" repeats the last value, "interpolate" draws a line between
            the values either side. Filled rows and cells are counted in a warning; text and inf are never filled.
        train_fraction: share of the rows for training, the earliest (TSLib: int(0.7 n)).
        test_fraction: share of the rows for testing, the latest (TSLib: int(0.2 n)); validation gets the rest.
        val_start: first date of the validation part; with test_start, replaces the fractions.
        test_start: first date of the test part.
    """

    path: str | None = None
    date_column: str = "date"
    targets: list[str] | None = None
    inputs: list[str] | None = None
    freq: str | None = None
    season: int | None = None
    fill: Literal["none", "ffill", "interpolate"] = "none"
    train_fraction: float = 0.7
    test_fraction: float = 0.2
    val_start: str | None = None
    test_start: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path:
            raise ConfigError("--data table needs data.path=FILE: the CSV or Parquet file holding the series")
        # Absolute, so the saved config reads the same file from any folder (stw reproduce, stw predict).
        self.path = str(Path(self.path).expanduser().resolve())
        if self.fill not in FILLS:
            raise ConfigError(f"data.fill must be one of {list(FILLS)}, got {self.fill!r}")
        for option in ("targets", "inputs"):
            names = getattr(self, option)
            if names is not None and (self.date_column in names or len(set(names)) < len(names)):
                raise ConfigError(
                    f"data.{option}={names} must name distinct value columns, not the date column {self.date_column!r}"
                )
        if self.targets is not None and not self.targets:
            raise ConfigError("data.targets=[] forecasts nothing; name one or more columns, or leave it out for all")
        if self.freq is not None:
            frequency(self.freq)
        if self.season is not None and self.season < 1:
            raise ConfigError(f"data.season must be at least 1 step, got {self.season}")
        if not (self.train_fraction > 0 and self.test_fraction > 0 and self.train_fraction + self.test_fraction < 1):
            raise ConfigError(
                f"data.train_fraction {self.train_fraction} and data.test_fraction {self.test_fraction} must be "
                "positive and leave a validation part (sum below 1)"
            )
        if (self.val_start is None) != (self.test_start is None):
            raise ConfigError(
                "give both data.val_start and data.test_start (the first dates of val and test), or neither"
            )
        if self.val_start is None:
            return
        if split_date("val_start", self.val_start) >= split_date("test_start", self.test_start):
            raise ConfigError(f"data.val_start {self.val_start} must come before data.test_start {self.test_start}")


def frequency(freq: str) -> pd.DateOffset:
    try:
        return to_offset(freq)
    except ValueError as error:
        raise ConfigError(f"data.freq={freq!r} is not a pandas frequency ({error}); use one, {FREQ_EXAMPLES}") from None


def split_date(option: str, text: str) -> pd.Timestamp:
    try:
        date = pd.Timestamp(text)
    except ValueError:
        raise ConfigError(f"data.{option}={text!r} is not a date; write it as ISO 8601, e.g. 2017-06-01") from None
    if date.tz is not None:
        raise ConfigError(f"data.{option}={text!r} has a time-zone offset; give local time, as in the file's dates")
    return date


# Offset kinds with a calendar cycle, and the steps of one at n=1: a week of business days, a year of weeks,
# months or quarters. A multiple (2 months) divides the cycle; years and steps fitting no cycle get 1 (repeat-last).
CYCLES: tuple[tuple[tuple[type, ...], int], ...] = (
    ((pd.offsets.BusinessDay,), 5),
    ((pd.offsets.Week,), 52),
    ((pd.offsets.MonthBegin, pd.offsets.MonthEnd, pd.offsets.BusinessMonthBegin, pd.offsets.BusinessMonthEnd), 12),
    ((pd.offsets.QuarterBegin, pd.offsets.QuarterEnd, pd.offsets.BQuarterBegin, pd.offsets.BQuarterEnd), 4),
)
DAY, WEEK = pd.Timedelta(days=1), pd.Timedelta(days=7)


def season_of(offset: pd.DateOffset) -> int:
    """Steps per season at this frequency: a day of sub-daily steps, a week of days, a year of weeks or months."""
    if isinstance(offset, pd.offsets.Tick | pd.offsets.Day):
        step = pd.Timedelta(days=offset.n) if isinstance(offset, pd.offsets.Day) else pd.Timedelta(offset)
        if step < DAY and DAY % step == pd.Timedelta(0):
            return DAY // step
        return {DAY: 7, WEEK: 52}.get(step, 1)
    for kinds, cycle in CYCLES:
        if isinstance(offset, kinds):
            return cycle // offset.n if cycle % offset.n == 0 else 1
    return 1


def read_table(path: Path, needed: list[str]) -> pd.DataFrame:
    """The file's cells, CSV cells as text (so messages quote them as written), Parquet cells as stored; the
    `needed` columns must exist."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        table = read_text_table(path, [])
    elif suffix in PARQUET_SUFFIXES:
        table = read_parquet(path)
    else:
        raise DataError(
            f"{path}: the suffix {path.suffix or '(none)'} says neither CSV nor Parquet; name the file .csv or "
            ".parquet after what it holds"
        )
    if missing := [column for column in needed if column not in table.columns]:
        raise DataError(
            f"{path}: no column {', '.join(map(repr, missing))}; found {shown(list(table.columns))}. Name columns "
            "of the file in data.date_column, data.targets and data.inputs"
        )
    return table


def read_parquet(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a file; give the Parquet file itself")
    try:
        table = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow (or give a CSV)") from None
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet file ({error}); give a Parquet or a CSV file") from None
    if table.index.name is not None:  # a frame saved with its dates as the index
        table = table.reset_index()
    table.columns = [str(column) for column in table.columns]
    if table.empty:
        raise DataError(f"{path}: no rows; use a file with the series in it")
    return table


def missing_cells(cells: pd.Series) -> pd.Series:
    """True where a cell holds no value: NaN, or text in MISSING."""
    text = cells.astype("str").str.strip().str.lower()
    return cells.isna() | text.isin(MISSING)


def is_numeric(cells: pd.Series) -> bool:
    """A column of numbers: a numeric type (Parquet), or text of which most cells that hold a value are numbers
    (so one typo in a column of numbers is an error naming it, not a column silently left out)."""
    if pd.api.types.is_numeric_dtype(cells):
        return True
    present = cells[~missing_cells(cells)]
    return len(present) > 0 and 2 * pd.to_numeric(present, errors="coerce").notna().sum() > len(present)


def value_columns(table: pd.DataFrame, path: Path, options: TableOptions) -> tuple[list[str], list[str]]:
    """(targets, covariates): the options' columns (`read_table` checked they exist), or for those not given the
    numeric columns other than the date."""
    others = [column for column in table.columns if column != options.date_column]
    numeric = [column for column in others if is_numeric(table[column])]
    if options.targets is None or options.inputs is None:
        if left_out := [column for column in others if column not in numeric]:
            log.warning("%s: columns %s are not numbers, so they are not read", path.name, shown(left_out))
    targets = options.targets if options.targets is not None else numeric
    covariates = options.inputs if options.inputs is not None else [c for c in numeric if c not in targets]
    if not targets:
        raise DataError(
            f"{path}: no numeric column besides {options.date_column!r}; found {shown(list(table.columns))}"
        )
    return list(targets), [column for column in covariates if column not in targets]


def regular_dates(dates: pd.DatetimeIndex, path: Path, options: TableOptions) -> pd.DatetimeIndex:
    """Every timestamp from the first date to the last at the series' frequency (data.freq, else inferred), with
    its `freq` set. The dates must be exactly those unless data.fill is set; then they may have gaps."""
    offset = frequency(options.freq) if options.freq else inferred_frequency(dates, path)
    expected = dates[:-1] + offset
    wrong = np.flatnonzero(dates[1:] != expected)
    if not wrong.size and offset.is_on_offset(dates[0]):
        return pd.DatetimeIndex(dates, freq=offset)
    if not offset.is_on_offset(dates[0]):
        row, why = 0, f"is not a timestamp of that frequency (the next one is {offset.rollforward(dates[0])})"
    else:
        row = wrong[0] + 1
        why = f"follows line {file_line(row - 1)}'s {dates[row - 1]}, where the next timestamp is {expected[row - 1]}"
    grid = pd.date_range(dates[0], dates[-1], freq=offset, name=dates.name)
    off_grid = not offset.is_on_offset(dates[0]) or not dates.isin(grid).all()
    if options.fill == "none" or off_grid:
        fix = (
            f"give the rows' frequency as data.freq ({FREQ_EXAMPLES})"
            if off_grid
            else f"add the {len(grid) - len(dates)} missing rows, or set data.fill=ffill or data.fill=interpolate to "
            "insert them, or give another frequency as data.freq"
        )
        raise DataError(
            f"{path}: the date {dates[row]} in column {options.date_column!r} at line {file_line(row)} {why} at the "
            f"frequency {offset.freqstr}{'' if options.freq else ' (inferred)'}; {fix}"
        )
    return grid


def inferred_frequency(dates: pd.DatetimeIndex, path: Path) -> pd.DateOffset:
    """pandas' frequency of the dates; where rows are missing, the most common step when every step is a multiple
    of it (business days when no date is a weekend), so the gaps are named; otherwise a DataError naming the
    first irregular row."""
    if len(dates) < 3:
        raise DataError(
            f"{path}: {len(dates)} rows are too few to infer the frequency from; give data.freq ({FREQ_EXAMPLES})"
        )
    with pd.option_context("future.infer_freq_returns_offset", True):
        inferred = pd.infer_freq(dates)
    if inferred is not None:
        return to_offset(inferred)
    steps = dates[1:] - dates[:-1]
    common = steps.value_counts().idxmax()
    if common == DAY and (dates.dayofweek < 5).all():
        return pd.offsets.BDay()
    if (steps % common == pd.Timedelta(0)).all():
        return to_offset(common)
    row = np.flatnonzero(steps != common)[0] + 1
    raise DataError(
        f"{path}: cannot infer the frequency of column {dates.name!r}: most rows are {common} apart, but the date "
        f"{dates[row]} at line {file_line(row)} is {steps[row - 1]} after line {file_line(row - 1)}'s; fix or "
        f"remove that row, or if the frequency is a calendar one, give it as data.freq ({FREQ_EXAMPLES})"
    )


def numbers(cells: pd.Series, path: Path, fill: str) -> np.ndarray:
    """A column as float64; missing cells are NaN when `fill` will fill them, else a DataError naming the first."""
    missing = missing_cells(cells)
    if fill != "none":
        # Every cell that holds a value must still be a finite number: text and inf are errors, never filled.
        return np.where(missing, np.nan, finite_numbers(cells.mask(missing, 0), path))
    try:
        return finite_numbers(cells, path)
    except DataError as error:
        if not missing.any():
            raise
        raise DataError(
            f"{error}, or set data.fill=ffill or data.fill=interpolate to fill empty and NaN cells"
        ) from None


def filled(frame: pd.DataFrame, grid: pd.DatetimeIndex, path: Path, fill: str) -> pd.DataFrame:
    """The frame on every timestamp of `grid`, its gaps and missing cells filled by `fill`; a warning counts them."""
    missing_cells_before = int(frame.isna().to_numpy().sum())
    inserted = len(grid) - len(frame)
    frame = frame.reindex(grid)
    if not (inserted or missing_cells_before):
        return frame
    for column in frame.columns:  # nothing comes before the first row to fill it from
        if np.isnan(frame[column].iloc[0]):
            raise DataError(
                f"{path}: column {column!r} has no value at line {file_line(0)}, the first row, and data.fill={fill} "
                "has no earlier value to fill it from; fill in that cell or remove the rows before the column's first "
                "value"
            )
    if fill == "ffill":
        frame = frame.ffill()
    else:
        frame = frame.interpolate(method="linear", limit_area="inside")
        if (trailing := frame.columns[frame.iloc[-1].isna().to_numpy()]).size:
            raise DataError(
                f"{path}: column {trailing[0]!r} has no value at line {file_line(len(frame) - inserted - 1)}, the "
                "last row, so data.fill=interpolate has no value to draw a line to; fill it in, remove the trailing "
                "rows, or use data.fill=ffill"
            )
    log.warning(
        "%s: data.fill=%s filled %d rows missing from the frequency (inserted, every column filled) and %d empty cells",
        path.name,
        fill,
        inserted,
        missing_cells_before,
    )
    return frame


def read_frame(path: Path, options: TableOptions) -> pd.DataFrame:
    """The targets, then the covariates, as float64, indexed by the validated dates on a regular grid whose `freq`
    is the series' frequency, gaps and missing cells filled as `options.fill` says."""
    table = read_table(path, [options.date_column, *(options.targets or []), *(options.inputs or [])])
    targets, covariates = value_columns(table, path, options)
    dates = parse_dates(table[options.date_column].astype("str"), path)
    grid = regular_dates(dates, path, options)
    frame = pd.DataFrame({c: numbers(table[c], path, options.fill) for c in [*targets, *covariates]}, index=dates)
    return filled(frame, grid, path, options.fill) if options.fill != "none" else frame.set_axis(grid)


def features_from_frame(frame: pd.DataFrame, options: TableOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) of a frame from `read_frame`: every column in, the targets out; raw units."""
    return frame, frame[options.targets or list(frame.columns)]


@register_dataset("table")
class TableDataModule(WindowedSeriesDataModule):
    """Forecast the target columns of the user's own table, split chronologically by fractions or dates."""

    Options = TableOptions
    options: TableOptions

    def __init__(self, options: TableOptions) -> None:
        super().__init__(options)
        self.frequency: str | None = None  # the rows' pandas frequency, given or inferred: after setup or loading
        self._dates: pd.DatetimeIndex | None = None

    @property
    def season(self) -> int:
        if self.options.season:
            return self.options.season
        if self.frequency is None:
            raise RuntimeError("the season is known after setup() or load_state_dict()")
        return season_of(to_offset(self.frequency))

    def data_files(self) -> list[Path]:
        return [Path(self.options.path)]

    def missing_file_fix(self, path: Path) -> str:
        return "check data.path: it names the CSV or Parquet file holding the series (relative to the current folder)"

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        frame = read_frame(self.data_files()[0], self.options)
        self.frequency, self._dates = frame.index.freqstr, frame.index
        return features_from_frame(frame, self.options)

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        lookback = self.options.lookback
        if self.options.val_start is None:
            return fraction_borders(n_rows, lookback, self.options.train_fraction, self.options.test_fraction)
        dates = self._dates
        val, test = (split_date(o, getattr(self.options, o)) for o in ("val_start", "test_start"))
        if not dates[0] < val or not test <= dates[-1]:
            raise DataError(
                f"{self.options.path}: data.val_start {val} and data.test_start {test} must lie inside the series, "
                f"which runs from {dates[0]} to {dates[-1]}, with training rows before val_start"
            )
        v, t = int(dates.searchsorted(val)), int(dates.searchsorted(test))
        return {"train": (0, v), "val": (v - lookback, t), "test": (t - lookback, n_rows)}

    def features_for(self, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A new file's (inputs, targets), read with the run's columns and frequency (from its fitted state), so a
        file with other columns or another frequency is refused, not silently read otherwise."""
        targets = self.target_scaler.columns
        covariates = [c for c in self.input_scaler.columns if c not in targets]
        options = replace(self.options, targets=targets, inputs=covariates, freq=self.frequency)
        return features_from_frame(read_frame(Path(path), options), options)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        return {**state, "frequency": self.frequency} if state else state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frequency = state.get("frequency", self.frequency)
        super().load_state_dict(state)

    def shaping_options(self) -> dict[str, Any]:
        # The file's hash identifies the data, so the folder it is read from must not change the fingerprint.
        options = super().shaping_options()
        options["path"] = Path(options["path"]).name
        return options
