"""Whether a stock's close goes up or down over the next `horizon` days, as a two-class classification.

The inputs are the stock dataset's (daily log returns of each ticker's prices and volume, the calendar if asked),
windowed and split the same way: chronologically, with a horizon of rows left out between the parts. Window i's
label is the sign of the target ticker's log return from the close of its last input day to the close `horizon`
days later (the sum of the next `horizon` daily log returns): up above +dead_zone, down below -dead_zone.

Moves within the dead zone (|return| <= dead_zone, 0 included) are dropped from every split, train, val and test
alike, rather than labelled flat: the sign of a tiny move is mostly the noise of the last trade, and keeping the
task two-class keeps its majority baseline what a trader compares with, "always up" on a rising market. The test
scores are therefore about the days with a move beyond the dead zone; the spec's details count what was dropped.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor
from torch.utils.data import Dataset

from datamodules import register_dataset
from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec
from datamodules.stock import StockDataModule, StockOptions
from datamodules.windows import WindowDataset

CLASSES = ["down", "up"]
DROPPED = -1  # the label of a window whose move is inside the dead zone


@dataclass
class StockDirectionOptions(StockOptions):
    """Daily OHLCV of one or more tickers; the target ticker's up/down move over the next `horizon` days.

    Args:
        dead_zone: a window whose `horizon`-day log return is within +-dead_zone (bounds included) is left out of
            every split, so only moves beyond it are learnt and scored (0.001 = 0.1%); 0 leaves out only windows
            whose close did not change at all.
    """

    horizon: int = 1
    dead_zone: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dead_zone >= 0:
            raise ConfigError(f"data.dead_zone={self.dead_zone!r} is not valid: it must be 0 or more (a log return)")


def direction_labels(returns: np.ndarray, lookback: int, horizon: int, dead_zone: float) -> np.ndarray:
    """Window i's label from daily log returns: 1 (up) when the sum of returns[i + lookback : i + lookback +
    horizon] is above dead_zone, 0 (down) below -dead_zone, DROPPED otherwise."""
    # Summed window by window (not as differences of a running total), so a move exactly at the dead zone is one.
    moves = sliding_window_view(np.asarray(returns, dtype=np.float64)[lookback:], horizon).sum(axis=1)
    return np.select([moves > dead_zone, moves < -dead_zone], [1, 0], DROPPED)


class LabelledWindows(Dataset):
    """The windows of a WindowDataset whose label is not DROPPED, served a batch at a time: x [B, L, C], labels [B]."""

    def __init__(self, windows: WindowDataset, labels: np.ndarray) -> None:
        kept = np.flatnonzero(labels != DROPPED)
        self.windows, self.dropped = windows, len(labels) - len(kept)
        self.kept = torch.from_numpy(kept)
        self.labels = torch.from_numpy(labels[kept].astype(np.int64))

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(index)
        x, _, _ = self.windows[self.kept[index]]
        return x, self.labels[index]


@register_dataset("stock-direction")
class StockDirectionDataModule(StockDataModule):
    """Classify the target ticker's next `horizon`-day move as up or down from the recent returns of the tickers."""

    task: ClassVar[str] = "classify"
    input_kind: ClassVar[str] = "vectors"

    Options = StockDirectionOptions
    options: StockDirectionOptions

    def window_dataset(self, x: Tensor, y: Tensor, raw_targets: pd.DataFrame, first_row: int = 0) -> LabelledWindows:
        options = self.options
        labels = direction_labels(
            raw_targets.iloc[:, 0].to_numpy(), options.lookback, options.horizon, options.dead_zone
        )
        return LabelledWindows(super().window_dataset(x, y, raw_targets, first_row), labels)

    @property
    def spec(self) -> ClassifySpec:
        if not self.datasets:
            raise RuntimeError("spec is known after setup()")
        counts = torch.bincount(self.datasets["train"].labels, minlength=len(CLASSES))
        return ClassifySpec(
            input_kind=self.input_kind,
            class_names=list(CLASSES),
            class_counts=counts.tolist(),
            seq_len=self.options.lookback,
            n_inputs=len(self.input_scaler.columns),
            details={
                "feature_names": list(self.input_scaler.columns),
                "dead_zone": self.options.dead_zone,
                **{f"n_{split}": len(dataset) for split, dataset in self.datasets.items()},
                **{f"dropped_{split}": dataset.dropped for split, dataset in self.datasets.items()},
            },
        )
