"""`noisy-sine`: a seeded synthetic hourly series, registered as an stw dataset.

A dated-series dataset subclasses stw's WindowedSeriesDataModule and fills in its hooks: the files it reads
(none here: the series is generated), the whole series as (inputs, targets) frames in raw units indexed by time,
and the rows of each split. stw does the rest: the train-only scaler, stride-1 windows, the naive baselines (with
`season`), the fingerprint, and `stw predict` through `features_from_files`.

The series: two channels, a daily sine and a weekly cosine, each with Gaussian noise seeded by `data.seed`, one
row an hour from 2024-01-01, split 70/10/20 in time order. Since it is generated from its options, the options are
its fingerprint.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules import register_dataset
from datamodules.errors import ConfigError, DataError
from datamodules.timeseries import (
    WindowedSeriesDataModule,
    WindowOptions,
    dated_values,
    fraction_borders,
    read_text_table,
)

CHANNELS = ["daily", "weekly"]
START = "2024-01-01"


@dataclass
class NoisySineOptions(WindowOptions):
    """A synthetic hourly series of two noisy waves.

    Args:
        rows: hours in the series.
        noise: standard deviation of the Gaussian noise on each channel (the waves have amplitude 1).
    """

    lookback: int = 24
    horizon: int = 12
    rows: int = 720
    noise: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows < 1:
            raise ConfigError(f"data.rows must be at least 1, got {self.rows}")
        if self.noise < 0:
            raise ConfigError(f"data.noise must be 0 or more, got {self.noise}")


def series(rows: int, noise: float, seed: int) -> pd.DataFrame:
    """The dataset's series: `rows` hours of both channels, the same numbers for the same arguments."""
    hours = np.arange(rows)
    waves = {"daily": np.sin(2 * np.pi * hours / 24), "weekly": np.cos(2 * np.pi * hours / (24 * 7))}
    draws = np.random.default_rng(seed).standard_normal((rows, len(CHANNELS)))
    index = pd.date_range(START, periods=rows, freq="h", name="date")
    return pd.DataFrame({name: waves[name] + noise * draws[:, k] for k, name in enumerate(CHANNELS)}, index=index)


def read_csv(path: Path) -> pd.DataFrame:
    """Rows in the dataset's format from a CSV with the header date,daily,weekly, checked by stw's own readers."""
    return dated_values(read_text_table(path, ["date", *CHANNELS]), path, "date", CHANNELS)


@register_dataset("noisy-sine")
class NoisySine(WindowedSeriesDataModule):
    """Forecast both channels of the synthetic series from their own past."""

    season = 24  # hourly rows: the seasonal-naive baseline repeats the last day
    Options = NoisySineOptions
    options: NoisySineOptions

    def data_files(self) -> list[Path]:
        return []

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        frame = series(self.options.rows, self.options.noise, self.options.seed)
        return frame, frame

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        return fraction_borders(n_rows, self.options.lookback)

    def features_from_files(self, paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
        if len(paths) != 1:
            raise DataError(f"noisy-sine predicts from one CSV with the header date,{','.join(CHANNELS)}; "
                            f"got {len(paths)} files")  # fmt: skip
        frame = read_csv(paths[0])
        return frame, frame
