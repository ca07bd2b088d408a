"""Weather, Electricity, Exchange, Traffic and ILI under TSLib's long-horizon protocol (`Dataset_Custom`).

Each file is `date,<channels...>,OT`: train the first 70% of the rows, test the last 20%, val what lies between
(datamodules.timeseries.fraction_borders); a per-channel scaler fitted on the train rows; modes M / S / MS with
the target OT; every stride-1 test window scored. One description per dataset; one class shape for all.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from datamodules import register_dataset
from datamodules.download import Source
from datamodules.headers import first_line, header_names
from datamodules.modes import ModeOptions, mode_features
from datamodules.paths import data_root
from datamodules.timeseries import WindowedSeriesDataModule, dated_values, fraction_borders, read_text_table

# exchange_rate.csv and national_illness.csv as TSLib ships them (MIT, THUML); see datamodules/PROVENANCE.md.
THUML_COPY = (
    "https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/"
    "e20c108114cf68d451c938712ad28dac5f83ef6e/dataset"
)
# Where TSLib's own README points for the files no hashable copy was found of.
TSLIB_BUNDLE = (
    "the Autoformer / Time-Series-Library dataset bundle (github.com/thuml/Time-Series-Library, 'Prepare Data')"
)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark file, at <root>/<folder>/<file> as in TSLib's dataset/ folder.

    source: the pinned URL and sha256 it is downloaded from; None when no copy could be hashed (the user puts
    the file in place, and it is read as it is). season: steps per season of its frequency.
    """

    folder: str
    file: str
    season: int
    source: Source | None = None


BENCHMARKS = {
    "weather": Benchmark("weather", "weather.csv", season=144),  # every 10 minutes: a day
    "electricity": Benchmark("electricity", "electricity.csv", season=24),  # hourly: a day
    "exchange": Benchmark(  # daily, weekends included: a week
        "exchange_rate",
        "exchange_rate.csv",
        season=7,
        source=Source(
            f"{THUML_COPY}/exchange_rate/exchange_rate.csv",
            "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
        ),
    ),
    "traffic": Benchmark("traffic", "traffic.csv", season=24),  # hourly: a day
    "ili": Benchmark(  # weekly: a year
        "illness",
        "national_illness.csv",
        season=52,
        source=Source(
            f"{THUML_COPY}/illness/national_illness.csv",
            "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
        ),
    ),
}


def read_frame(path: Path) -> pd.DataFrame:
    """Every channel of a benchmark CSV (all columns but `date`) as float64, indexed by its validated dates."""
    channels = [name for name in header_names(first_line(path), path, "line 1 must be the header") if name != "date"]
    return dated_values(read_text_table(path, ["date", *channels]), path, "date", channels)


def features_from_frame(frame: pd.DataFrame, options: ModeOptions, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) columns of a frame from `read_frame`; the values stay in raw units."""
    return mode_features(frame, options, str(path))


class BenchmarkDataModule(WindowedSeriesDataModule):
    """A TSLib benchmark's forecasting windows, split 70/10/20 and scaled on the train rows."""

    benchmark: ClassVar[Benchmark]
    Options = ModeOptions
    options: ModeOptions

    def data_files(self) -> list[Path]:
        return [data_root(self.options.root) / self.benchmark.folder / self.benchmark.file]

    def sources(self) -> dict[Path, Source]:
        return {self.data_files()[0]: self.benchmark.source} if self.benchmark.source else {}

    def missing_file_fix(self, path: Path) -> str:
        if path in self.sources():
            return super().missing_file_fix(path)
        return (
            f"no copy of {self.benchmark.file} with a known sha256 is registered to download (datamodules/"
            f"PROVENANCE.md); take it from {TSLIB_BUNDLE} and put it there, or point root (or $STW_DATA_DIR) at "
            f"the folder whose {self.benchmark.folder}/ holds it"
        )

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        path = self.data_files()[0]
        return features_from_frame(read_frame(path), self.options, path)

    def main_target(self) -> str:
        return self.options.target

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        return fraction_borders(n_rows, self.options.lookback)


def register_benchmark(name: str, benchmark: Benchmark) -> type[BenchmarkDataModule]:
    attributes = {"benchmark": benchmark, "season": benchmark.season, "__doc__": f"{benchmark.file}, TSLib protocol."}
    return register_dataset(name)(type(f"{name.title()}DataModule", (BenchmarkDataModule,), attributes))


MODULES = {name: register_benchmark(name, benchmark) for name, benchmark in BENCHMARKS.items()}
