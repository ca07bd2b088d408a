"""The up/down direction of a stock's next moves as a classification: labels, the dead zone, the majority baseline."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from datamodules import build_datamodule
from datamodules.errors import ConfigError
from datamodules.stock import StockOptions
from datamodules.stock_direction import DROPPED, StockDirectionDataModule, StockDirectionOptions, direction_labels
from experiments.config import parse_run_args
from lightning_modules.classify_training import ClassificationModule


def test_labels_are_the_sign_of_the_next_move_and_moves_inside_the_dead_zone_are_dropped() -> None:
    returns = [0.01, -0.002, 0.0005, 0.003, -0.02, 0.0, 0.001, -0.001]
    # lookback 2: window i is labelled by returns[i + 2], the day after its last input day.
    assert direction_labels(returns, 2, 1, dead_zone=0.001).tolist() == [DROPPED, 1, 0, DROPPED, DROPPED, DROPPED]
    assert direction_labels(returns, 2, 1, dead_zone=0.0).tolist() == [1, 1, 0, DROPPED, 1, 0]
    # horizon 2: the sum of the next two days, the log return from the last input close to two closes later.
    assert direction_labels(returns, 2, 2, dead_zone=0.001).tolist() == [1, 0, 0, DROPPED, DROPPED]


def write_closes(folder: Path, ticker: str, log_returns: list[float]) -> Path:
    """A Stooq-format file whose closes follow the given daily log returns from 100 (one day more than returns)."""
    closes = 100 * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    dates = pd.bdate_range("2010-01-04", periods=len(closes))
    rows = [f"{d:%Y-%m-%d},{c:.6f},{c:.6f},{c:.6f},{c:.6f},1000,0" for d, c in zip(dates, closes, strict=True)]
    path = folder / f"{ticker}.us.txt"
    path.write_text("\n".join(["Date,Open,High,Low,Close,Volume,OpenInt", *rows]) + "\n")
    return path


# 70 rising-market days, then 30 falling ones with a few tiny moves: training is mostly up, testing mostly down.
RISING, FALLING = [0.01, 0.01, -0.01] * 23 + [0.01], [-0.01, -0.01, 0.01, 0.0002, -0.01] * 6


def direction_module(tmp_path: Path, **options) -> StockDirectionDataModule:
    path = write_closes(tmp_path, "abc", RISING + FALLING)
    module = build_datamodule("stock-direction", {"paths": [str(path)], "lookback": 3, **options})
    module.setup()
    return module


def test_the_datamodule_labels_every_window_by_its_targets_close_to_close_move(tmp_path: Path) -> None:
    module = direction_module(tmp_path, dead_zone=0.001)
    closes = np.log(pd.read_csv(tmp_path / "abc.us.txt")["Close"].to_numpy())
    returns = np.diff(closes)  # row t of the features: day t + 1's close against day t's
    start, stop = module.split_rows(len(returns))["test"]
    expected = direction_labels(returns[start:stop], 3, 1, 0.001)
    assert module.datasets["test"].labels.tolist() == expected[expected != DROPPED].tolist()
    x, labels = module.datasets["test"][[0, 1]]
    assert x.shape == (2, 3, 5) and labels.dtype == torch.int64
    spec = module.spec
    assert spec.class_names == ["down", "up"] and spec.input_kind == "vectors" and spec.seq_len == 3
    assert spec.details["dropped_test"] == int((expected == DROPPED).sum()) > 0  # the 0.0002 days
    train_labels = module.datasets["train"].labels
    assert spec.class_counts == [int((train_labels == 0).sum()), int((train_labels == 1).sum())]


class Constant(nn.Module):
    """Always says 'down' with certainty: the baseline, not the model, is under test."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor([5.0, -5.0]).expand(len(x), 2)


def test_the_majority_baseline_is_always_up_the_most_frequent_training_class_even_in_a_falling_test(tmp_path):
    datamodule = direction_module(tmp_path)
    spec = datamodule.spec
    assert spec.class_counts[1] > spec.class_counts[0]  # training: mostly up
    test_labels = datamodule.datasets["test"].labels
    assert (test_labels == 0).sum() > (test_labels == 1).sum()  # testing: mostly down
    module = ClassificationModule(parse_run_args(["--data", "stock-direction", "--model", "gru"]), spec)
    assert module.majority_class == 1
    module.model = Constant()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    scores = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert scores["baseline_majority_acc"] == pytest.approx(float((test_labels == 1).float().mean()))
    assert scores["test_acc"] == pytest.approx(float((test_labels == 0).float().mean()))  # "always down" here


def test_a_negative_dead_zone_and_a_direction_target_on_the_return_dataset_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"data.dead_zone=-0.1 is not valid"):
        StockDirectionOptions(dead_zone=-0.1)
    with pytest.raises(ConfigError, match=r"train on --data stock-direction"):
        StockOptions(target_kind="direction")
