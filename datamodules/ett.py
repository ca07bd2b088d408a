"""ETTh1, ETTh2, ETTm1 and ETTm2 (transformer load and oil temperature) under the standard long-horizon protocol.

The protocol of Informer / Autoformer / DLinear / PatchTST / TSLib, as ../shared/data/ett/PROVENANCE.md states it
for ETTh1: the first 20 months only; train the first 12 months, val the next 4, test the next 4, a month being 30
days of 24 hours (8640 / 2880 / 2880 rows of the hourly files, 4x that of the 15-minute files); the first val and
test windows look back into the previous part; a per-channel scaler fitted on the train rows; every stride-1
window scored. `ett` is ETTh1, the name earlier runs were logged under; `etth1` is the same data.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from datamodules import register_dataset
from datamodules.download import Source
from datamodules.errors import ConfigError, DataError
from datamodules.modes import ModeOptions, mode_features
from datamodules.paths import data_root
from datamodules.timeseries import WindowedSeriesDataModule, dated_values, read_text_table

FILE_NAME = "ETTh1.csv"
CHANNELS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
UPSTREAM = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small"
# No copy of ETTm1's and ETTm2's bytes could be hashed (datamodules/PROVENANCE.md): they are checked against their
# git blob ids in the commit's tree instead.
SOURCES = {
    "ETTh1.csv": Source(f"{UPSTREAM}/ETTh1.csv", "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"),
    "ETTh2.csv": Source(f"{UPSTREAM}/ETTh2.csv", "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"),
    "ETTm1.csv": Source(f"{UPSTREAM}/ETTm1.csv", git_blob="62c9f979e2dc5b05d9cc5b38891e60e6baf77417"),
    "ETTm2.csv": Source(f"{UPSTREAM}/ETTm2.csv", git_blob="f9d46027c987d442d2d8f81308d1d8c4d1d35db8"),
}


@dataclass(frozen=True)
class EttFile:
    """One ETT file: its name and readings per hour (1 hourly, 4 every 15 minutes)."""

    name: str
    per_hour: int

    def borders(self) -> tuple[int, int, int]:
        """Ends of train, val and test in rows: 12, 16 and 20 months of 30 days of 24 hours."""
        month = 30 * 24 * self.per_hour
        return 12 * month, 16 * month, 20 * month


ETTH1 = EttFile(FILE_NAME, per_hour=1)
# ETTh1's part borders in rows, under the names earlier code reads them by.
TRAIN_END, VAL_END, TEST_END = ETTH1.borders()


@dataclass
class EttOptions(ModeOptions):
    """An ETT file, standard protocol.

    Args:
        mode: "M" all 7 channels in and out, "S" the target channel in and out, "MS" all 7 in, the target out.
        target: the channel forecast in modes S and MS (usually OT, the oil temperature).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in CHANNELS:
            raise ConfigError(f"target must be one of the channels {CHANNELS}, got {self.target!r}")


def read_frame(path: Path) -> pd.DataFrame:
    """The 7 channels of an ETT CSV as float64, indexed by its validated `date` column."""
    return dated_values(read_text_table(path, ["date", *CHANNELS]), path, "date", CHANNELS)


def features_from_frame(frame: pd.DataFrame, options: EttOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) columns of a frame from `read_frame`; the values stay in raw units."""
    return mode_features(frame, options, "ETT")


@register_dataset("ett")
class EttDataModule(WindowedSeriesDataModule):
    """ETTh1 forecasting windows, split and scaled exactly as the published benchmarks do."""

    file: ClassVar[EttFile] = ETTH1
    season = 24  # the seasonal-naive baseline repeats the last day

    Options = EttOptions
    options: EttOptions

    def data_files(self) -> list[Path]:
        return [data_root(self.options.root) / "ett" / self.file.name]

    def sources(self) -> dict[Path, Source]:
        return {self.data_files()[0]: SOURCES[self.file.name]}

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return features_from_frame(read_frame(self.data_files()[0]), self.options)

    def main_target(self) -> str:
        return self.options.target

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        train_end, val_end, test_end = self.file.borders()
        if n_rows < test_end:
            raise DataError(
                f"{self.data_files()[0]}: the standard ETT split needs at least {test_end} rows, found {n_rows}; "
                f"use the full {self.file.name}"
            )
        lookback = self.options.lookback
        return {"train": (0, train_end), "val": (train_end - lookback, val_end), "test": (val_end - lookback, test_end)}


def register_ett(name: str, file: EttFile) -> type[EttDataModule]:
    """A registered dataset for one more ETT file: the ETTh1 module with that file, its borders and its season."""
    attributes = {"file": file, "season": 24 * file.per_hour, "__doc__": f"{file.name} under the ETT protocol."}
    return register_dataset(name)(type(f"{file.name[:-4]}DataModule", (EttDataModule,), attributes))


Etth1DataModule = register_ett("etth1", ETTH1)
Etth2DataModule = register_ett("etth2", EttFile("ETTh2.csv", per_hour=1))
Ettm1DataModule = register_ett("ettm1", EttFile("ETTm1.csv", per_hour=4))
Ettm2DataModule = register_ett("ettm2", EttFile("ETTm2.csv", per_hour=4))
