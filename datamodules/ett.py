"""ETTh1 (hourly transformer load and oil temperature) under the standard long-horizon forecasting protocol.

The protocol of Informer / Autoformer / DLinear / PatchTST / TSLib, as ../shared/data/ett/PROVENANCE.md states it:
rows 0..14399 only; train rows [0, 8640), val rows [8640 - L, 11520), test rows [11520 - L, 14400), so the
first val and test windows look back into the previous part; a per-channel scaler fitted on the train rows;
every stride-1 window scored.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from datamodules import register_dataset
from datamodules.download import Source
from datamodules.errors import ConfigError, DataError
from datamodules.paths import data_root
from datamodules.timeseries import WindowedSeriesDataModule, WindowOptions, dated_values, read_text_table

FILE_NAME = "ETTh1.csv"
CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
SOURCES = {
    FILE_NAME: Source(
        "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/ETTh1.csv",
        "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    )
}
# Part borders in rows: 12, 16 and 20 months of 30 days of 24 hours.
TRAIN_END, VAL_END, TEST_END = 12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24
# mode -> (input channels, target channels) given the target channel.
MODES = {
    "M": lambda target: (CHANNELS, CHANNELS),
    "S": lambda target: ([target], [target]),
    "MS": lambda target: (CHANNELS, [target]),
}


@dataclass
class EttOptions(WindowOptions):
    """ETTh1, standard protocol.

    Args:
        mode: "M" all 7 channels in and out, "S" the target channel in and out, "MS" all 7 in, the target out.
        target: the channel forecast in modes S and MS (usually OT, the oil temperature).
    """

    lookback: int = 96
    horizon: int = 96
    mode: Literal["M", "S", "MS"] = "M"
    target: str = "OT"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.target not in CHANNELS:
            raise ConfigError(f"target must be one of the channels {CHANNELS}, got {self.target!r}")


def read_frame(path: Path) -> pd.DataFrame:
    """The 7 channels of an ETT CSV as float64, indexed by its validated `date` column."""
    return dated_values(read_text_table(path, ["date", *CHANNELS]), path, "date", CHANNELS)


def features_from_frame(frame: pd.DataFrame, options: EttOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) columns of a frame from `read_frame`; the values stay in raw units."""
    input_channels, target_channels = MODES[options.mode](options.target)
    return frame[input_channels], frame[target_channels]


@register_dataset("ett")
class EttDataModule(WindowedSeriesDataModule):
    """ETTh1 forecasting windows, split and scaled exactly as the published benchmarks do."""

    season = 24  # hourly readings: the seasonal-naive baseline repeats the last day

    Options = EttOptions
    options: EttOptions

    def data_files(self) -> list[Path]:
        return [data_root(self.options.root) / "ett" / FILE_NAME]

    def sources(self) -> dict[Path, Source]:
        return {self.data_files()[0]: SOURCES[FILE_NAME]}

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return features_from_frame(read_frame(self.data_files()[0]), self.options)

    def main_target(self) -> str:
        return self.options.target

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        if n_rows < TEST_END:
            raise DataError(
                f"{self.data_files()[0]}: the standard ETT split needs at least {TEST_END} rows, found {n_rows}; "
                "use the full ETTh1.csv"
            )
        lookback = self.options.lookback
        return {"train": (0, TRAIN_END), "val": (TRAIN_END - lookback, VAL_END), "test": (VAL_END - lookback, TEST_END)}
