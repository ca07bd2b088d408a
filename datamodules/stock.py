"""Daily stock prices as forecasting windows: daily log returns in, the target ticker's next close returns out.

Reads Stooq/Kaggle files (`<ticker>.us.txt`: Date,Open,High,Low,Close,Volume,OpenInt, prices already adjusted)
and Yahoo CSVs (Date,Open,High,Low,Close,Adj Close,Volume), aligns several tickers on their common dates and
splits them chronologically with an embargo gap between the parts (see `StockDataModule.split_rows`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules import register_dataset
from datamodules.download import Source
from datamodules.errors import ConfigError, DataError
from datamodules.paths import check_name, data_root
from datamodules.timeseries import WindowedSeriesDataModule, WindowOptions, dated_values, file_line, read_text_table

SOURCE_URL = (
    "https://raw.githubusercontent.com/guyr18/stock-market-big-data/30d766fa2b865b8c55bc8e1a246b9f93916b882c/Data"
)
SHA256 = {
    "aapl": "28ea6bff6cc5de7b7c9bde7ccf75544ce9e2ae66be32d9057d7cc32525f798e3",
    "axp": "02068397f470de56a7bb803d872b26cf88c6e46ad069d0bb0b7d69f8b1b67c66",
    "ba": "f055bd7ea2f4f450ed0f91f2c83bef4bfd183da4e6ee967437d03ea791b5c4fa",
    "cat": "1422d6ff54091d7d5026241f6bf8c0ab5029f749c29857493a0beab8d5552554",
    "cvx": "fa7f333a01c54d368ae65b957bfe4190f0c40ba68923a7b182ce7900b3a8c1d7",
    "dis": "b2e53ba528dadaa31093ac8b5a765d35d7b9e3a032917e61a8f45326e44799d3",
    "ge": "339a40507a744dd2391c85fe0c9eb4ce62f0478d59fdc69919086156ac6305c9",
    "hd": "dfb0a8afd28dafdbadbd75bbce7f6fa4daff049d3c8c149407ed873bc7a9a740",
    "ibm": "c3c2c8f31dfb176cd541914a4ae5b41bd07b05faea062fb195f08998cf464337",
    "intc": "46e5f0d72f7cd8ba5ac47f9abac5de8b52483293c81323004ac0a1f413f1b775",
    "jnj": "1f1562d0b107e06188c5a5d69c706b8a20a93f96ec7d488144c58c51b5b79a1a",
    "jpm": "5560eb649046379bed42d855660123496579dd0d5a618804f81c79d4ff3b6588",
    "ko": "99532e1d800e3412a3b8ffed5c9e211285b6931f6aa60c4db8b628b7cdd00fc8",
    "mcd": "0cb021b6cf8c4f1f5fa0b63c7dbf876c51495525d17a3510163d9a9b1e018c0d",
    "mmm": "00c64389e4827120da07291b7b5935ada7e66aa228f82cf3e9b0cf1443c824de",
    "mrk": "b88f18bad41073cd8fef1db7ce302456742f5408b4e1f9118f5aa454b615b550",
    "msft": "46e6ea467ee59cddb86bf213c396866030cbd386d99b76dd66d1b56d7ae718d8",
    "pg": "b837733978859993040a4144065b632cf6f542cf22c9bd218707cd99f18ed978",
    "spy": "c678bccc09a3ee667e591d97e95498f2ac185c98408702cae738ba3320ebdeec",
    "wmt": "7250c383eb8b03680b85ede4d164e4c730b5edad1a36065ca74ab5cb999ff356",
    "xom": "3fc3b3ee53703293171999fab3c0e1a4089bffeef7c928e5c5be1f4848f651c1",
}
ETFS = frozenset({"spy"})  # upstream keeps ETFs under Data/ETFs/ and stocks under Data/Stocks/
SOURCES = {
    ticker: Source(f"{SOURCE_URL}/{'ETFs' if ticker in ETFS else 'Stocks'}/{ticker}.us.txt", sha256)
    for ticker, sha256 in SHA256.items()
}

PRICES = ["Open", "High", "Low", "Close"]
# Every row's prices must lie in [PRICE_FLOOR, PRICE_CEILING] and its volume in [0, VOLUME_CEILING]. Log returns need
# positive prices and log(volume + 1) a non-negative volume; past the bounds a number is a typo or a placeholder
# (1e308 made the baselines' MSE 0 and skill -1e6), not a trade: the dearest share ever (Berkshire Hathaway A) is
# below 1e6, split-adjusted early prices here stay above 0.005, and no market trades 1e12 shares of one stock a day.
PRICE_FLOOR, PRICE_CEILING = 1e-6, 1e9
VOLUME_CEILING = 1e12
STOOQ_COLUMNS = [*PRICES, "Volume"]
YAHOO_COLUMNS = [*PRICES, "Adj Close", "Volume"]


def ticker_name(path: str | Path) -> str:
    """A file's ticker: its name up to the first dot, lower case (`AAPL.csv`, `aapl.us.txt` -> aapl)."""
    return Path(path).name.split(".")[0].lower()


@dataclass
class StockOptions(WindowOptions):
    """Daily OHLCV of one or more tickers. Every row's prices must lie in [1e-6, 1e9] with Open and Close within
    [Low, High], and its volume in [0, 1e12]; a row that breaks this is a DataError naming its line.

    Args:
        tickers: tickers read from <root>/stock/<ticker>.us.txt, aligned on the dates they all have.
        paths: explicit CSV files (Stooq or Yahoo format) used instead of `tickers`; a file's name up to its
            first dot names its ticker, and `tickers` becomes those names.
        target: the ticker whose close is forecast; default the first ticker.
        target_kind: what is forecast; "return": the log returns of the target's close over the next `horizon` days
            (for their up/down direction, a classification, use the stock-direction dataset).
        calendar: add day of week and month as sin/cos inputs.
        train_fraction: share of the rows (after the gaps) for training, the earliest ones.
        val_fraction: share of the rows for validation, after training; testing gets the rest, the latest ones.
    """

    tickers: list[str] = field(default_factory=lambda: ["spy"])
    paths: list[str] | None = None
    target: str | None = None
    target_kind: str = "return"
    calendar: bool = False
    lookback: int = 60
    horizon: int = 5
    train_fraction: float = 0.7
    val_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.paths:  # the files name the tickers: a run's config never shows the default beside them
            self.tickers = self.ticker_names()
        for ticker in self.tickers:
            check_name(
                ticker,
                "tickers",
                "a ticker is read from <root>/stock/<ticker>.us.txt: give files elsewhere with data.paths",
            )
        names = self.ticker_names()
        if not names or len(set(names)) < len(names):
            raise ConfigError(f"give one or more distinct tickers (from tickers or file names of paths), got {names}")
        if self.target_ticker() not in names:
            raise ConfigError(f"target {self.target!r} is not one of the tickers {names}")
        if self.target_kind not in TARGET_KINDS:
            raise ConfigError(
                f"data.target_kind must be one of {list(TARGET_KINDS)}, got {self.target_kind!r}; for the up/down "
                "direction of the returns, a classification, train on --data stock-direction (data.dead_zone "
                "leaves out small moves)"
            )
        if not (self.train_fraction > 0 and self.val_fraction > 0 and self.train_fraction + self.val_fraction < 1):
            raise ConfigError(
                f"train_fraction {self.train_fraction} and val_fraction {self.val_fraction} must be positive "
                "and leave a test part (sum below 1)"
            )

    def ticker_names(self) -> list[str]:
        return [ticker_name(p) for p in self.paths] if self.paths else [t.lower() for t in self.tickers]

    def target_ticker(self) -> str:
        return (self.target or self.ticker_names()[0]).lower()


def read_frame(path: Path) -> pd.DataFrame:
    """One ticker's Open, High, Low, Close and Volume as float64, indexed by its validated Date column."""
    table = read_text_table(path, ["Date", *STOOQ_COLUMNS])  # both formats have these; Yahoo adds Adj Close
    yahoo = "Adj Close" in table.columns
    frame = dated_values(table, path, "Date", YAHOO_COLUMNS if yahoo else STOOQ_COLUMNS)
    check_prices_and_volumes(frame, path)
    if yahoo:
        # Yahoo's Open/High/Low/Close are adjusted for splits only; Adj Close also for dividends. Scaling O/H/L/C
        # by that day's Adj Close / Close ratio puts all four prices of a day on the Adj Close basis (Close
        # becomes Adj Close), so returns carry no dividend jumps, as in the already-adjusted Stooq files.
        ratio = frame["Adj Close"] / frame["Close"]
        frame[PRICES] = frame[PRICES].mul(ratio, axis=0)
        frame = frame.drop(columns="Adj Close")
    return frame


def first_cell(mask: pd.DataFrame) -> tuple[int, str] | None:
    """(row, column) of the first True cell in row order, or None."""
    rows, columns = np.nonzero(mask.to_numpy())
    return (int(rows[0]), mask.columns[columns[0]]) if rows.size else None


def check_prices_and_volumes(frame: pd.DataFrame, path: Path) -> None:
    """A DataError naming the first line whose prices or volume break a bound or whose Open, High, Low and Close
    contradict each other."""
    prices, volume, day = frame.drop(columns="Volume"), frame[["Volume"]], frame[["Open", "Close"]]
    at = lambda column, row: f"{float(frame[column].iloc[row])} at line {file_line(row)}"  # noqa: E731
    rules = [  # (the cells breaking a rule, what is wrong with one), in the order a row's problems are named
        (
            pd.concat(
                [(prices < PRICE_FLOOR) | (prices > PRICE_CEILING), (volume < 0) | (volume > VOLUME_CEILING)], axis=1
            ),
            lambda column, row: (
                f"{column} is {at(column, row)}; prices must be positive, from {PRICE_FLOOR:g} to "
                f"{PRICE_CEILING:g}, and volumes non-negative, at most {VOLUME_CEILING:g} (past those a value is a typo "
                "or a placeholder, not a trade)"
            ),
        ),
        (
            (frame["High"] < frame["Low"]).to_frame("High"),
            lambda column, row: (
                f"High {at('High', row)} is below Low {float(frame['Low'].iloc[row])}; a day's High "
                "must be at least its Low (are the two columns swapped?)"
            ),
        ),
        (
            day.lt(frame["Low"], axis=0) | day.gt(frame["High"], axis=0),
            lambda column, row: (
                f"{column} {at(column, row)} lies outside that day's range, Low "
                f"{float(frame['Low'].iloc[row])} to High {float(frame['High'].iloc[row])}"
            ),
        ),
    ]
    hits = [(hit, describe) for mask, describe in rules if (hit := first_cell(mask))]
    if hits:
        (row, column), describe = min(hits, key=lambda hit: hit[0][0])  # the earliest line; ties: the first rule
        raise DataError(f"{path}: {describe(column, row)}: fix or remove that row")


def align_on_common_dates(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every ticker's rows on the dates all of them have (an inner join)."""
    common = reduce(pd.Index.intersection, (frame.index for frame in frames.values())).sort_values()
    if common.empty:
        spans = "; ".join(f"{t}: {f.index[0].date()} to {f.index[-1].date()}" for t, f in frames.items())
        raise DataError(f"tickers {', '.join(frames)} share no date ({spans}); choose tickers whose histories overlap")
    return {ticker: frame.loc[common] for ticker, frame in frames.items()}


def ticker_features(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """Day-over-day log changes of Open, High, Low, Close and of volume + 1; the first row is NaN."""
    # One share more keeps zero-volume days finite (every stock file here has one, e.g. IBM on 2010-04-26)
    # and is negligible against the millions of shares of a normal day.
    levels = np.log(frame[PRICES]).assign(Volume=np.log1p(frame["Volume"]))
    changes = levels.diff()
    changes.columns = [f"{ticker}_{column.lower()}" for column in changes.columns]
    return changes


def calendar_features(dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Day of week and month as points on a circle, so Sunday sits next to Monday and December next to January."""
    weekday = 2 * np.pi * dates.dayofweek.to_numpy() / 7
    month = 2 * np.pi * (dates.month.to_numpy() - 1) / 12
    return pd.DataFrame(
        {
            "dow_sin": np.sin(weekday),
            "dow_cos": np.cos(weekday),
            "month_sin": np.sin(month),
            "month_cos": np.cos(month),
        },
        index=dates,
    )


# target_kind -> target columns, taken from the input frame for the target ticker. Row t holds day t's value,
# so window i's targets (rows i + L .. i + L + H - 1) are the H days after its last input day.
# Their direction is a classification task: the stock-direction dataset (datamodules/stock_direction.py).
TARGET_KINDS: dict[str, Callable[[pd.DataFrame, str], pd.DataFrame]] = {
    "return": lambda inputs, ticker: inputs[[f"{ticker}_close"]],
}


def prices_from_log_returns(last_prices: np.ndarray, log_returns: np.ndarray) -> np.ndarray:
    """Prices after each of H steps [N, H, K] from the price at the start [N, K] and the log returns of the
    steps [N, H, K]: price_(t+h) = price_t * exp(r_(t+1) + ... + r_(t+h))."""
    return last_prices[:, None, :] * np.exp(np.cumsum(log_returns, axis=1))


def features_from_frames(frames: dict[str, pd.DataFrame], options: StockOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) from each ticker's `read_frame`, in raw (unscaled) units.

    Inputs, ticker by ticker in `frames` order: log returns of open, high, low and close and the log change of
    volume + 1; then the calendar columns if asked. Row t compares day t with the previous common day, so the
    first common day has no row.
    """
    aligned = align_on_common_dates(frames)
    parts = [ticker_features(frame, ticker) for ticker, frame in aligned.items()]
    if options.calendar:
        parts.append(calendar_features(next(iter(aligned.values())).index))
    inputs = pd.concat(parts, axis=1).iloc[1:]
    return inputs, TARGET_KINDS[options.target_kind](inputs, options.target_ticker())


@register_dataset("stock")
class StockDataModule(WindowedSeriesDataModule):
    """Forecast a ticker's next daily close returns from the recent returns of one or more tickers."""

    season = 5  # trading days: the seasonal-naive baseline repeats the last week
    target_kind = "return"
    target_units = "daily log return"

    Options = StockOptions
    options: StockOptions

    def ticker_files(self) -> dict[str, Path]:
        if self.options.paths:
            return {ticker_name(p): Path(p).expanduser().resolve() for p in self.options.paths}
        folder = data_root(self.options.root) / "stock"
        return {ticker: folder / f"{ticker}.us.txt" for ticker in self.options.ticker_names()}

    def data_files(self) -> list[Path]:
        return list(self.ticker_files().values())

    def sources(self) -> dict[Path, Source]:
        if self.options.paths:
            return {}  # the user's own files: nothing to fetch or check
        return {path: SOURCES[ticker] for ticker, path in self.ticker_files().items() if ticker in SOURCES}

    def missing_file_fix(self, path: Path) -> str:
        if self.options.paths:
            return "check data.paths: each names a price file (relative to the current folder)"
        return super().missing_file_fix(path)

    def load_features(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        frames = {ticker: read_frame(path) for ticker, path in self.ticker_files().items()}
        return features_from_frames(frames, self.options)

    def main_target(self) -> str:
        return f"{self.options.target_ticker()}_close"

    def split_rows(self, n_rows: int) -> dict[str, tuple[int, int]]:
        # Parts are disjoint date ranges in time order and each part's windows stay inside it. Between two parts
        # `horizon` rows are left out (an embargo, as in purged cross-validation): row t's returns are computed
        # from day t - 1's prices too, and daily returns are serially dependent, so without a gap the last train
        # targets and the first val inputs would share a raw price and correlated moves. With it, the last
        # targets of one part end a full horizon before the first input row of the next.
        gap = self.options.horizon
        usable = n_rows - 2 * gap
        n_train = int(usable * self.options.train_fraction)
        n_val = int(usable * self.options.val_fraction)
        val_start = n_train + gap
        test_start = val_start + n_val + gap
        return {"train": (0, n_train), "val": (val_start, val_start + n_val), "test": (test_start, n_rows)}

    def shaping_options(self) -> dict:
        # The file hashes already identify the data, so the folder it is read from must not change the fingerprint.
        options = super().shaping_options()
        if options["paths"]:
            options["paths"] = [Path(p).name for p in options["paths"]]
            del options["tickers"]  # the file names, already in paths
        return options
