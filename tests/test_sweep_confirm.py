"""Robust selection: multi-window validation, `stw sweep --confirm K --seeds S`, and never choosing by test."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError
from datamodules.specs import ForecastSpec
from datamodules.windows import WindowDataset, batch_loader
from experiments.config import config_from_dict, parse_run_args
from lightning_modules.forecast_training import ForecastingModule
from lightning_modules.val_windows import block_borders


class RepeatLast(nn.Module):
    """A stand-in forecaster: every step ahead repeats the window's last value, so errors are known by hand."""

    def forward(self, x: Tensor) -> Tensor:
        return x[:, -1:, :].expand(-1, 2, -1) * 0.5


def test_every_validation_window_falls_in_exactly_one_consecutive_block() -> None:
    for windows in (3, 7, 16, 101):
        for blocks in range(1, min(windows, 6) + 1):
            borders = block_borders(windows, blocks)
            assert borders[0] == 0 and borders[-1] == windows and borders == sorted(borders)
            sizes = np.diff(borders)
            assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    with pytest.raises(ConfigError, match="task.val_windows=5 .* the 4 validation windows"):
        block_borders(4, 5)


def test_block_scores_and_their_mean_equal_a_hand_computation_from_the_predictions() -> None:
    series = np.array([0.0, 1.0, 3.0, -1.0, 2.0, 5.0, 4.0, -2.0, 0.5, 1.5, 7.0, 3.0, -3.0, 2.5, 1.0, 0.0, 4.0, 6.0,
                       -1.0, 2.0], dtype=np.float32)[:, None]  # fmt: skip
    lookback, horizon, blocks = 3, 2, 3
    windows = len(series) - lookback - horizon + 1  # 16: blocks of 5, 5 and 6 windows
    spec = ForecastSpec("values", lookback, horizon, ["a"], ["a"], [0], 4)
    config = parse_run_args(["--data", "ett", "--model", "linear", f"task.val_windows={blocks}"])
    module = ForecastingModule(config, spec)
    module.model = RepeatLast()
    rows = torch.from_numpy(series)
    loader = batch_loader(WindowDataset(rows, rows, lookback, horizon), batch_size=4, split="val")  # straddles blocks
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(module, dataloaders=loader, verbose=False)[0]

    x = np.stack([series[i : i + lookback, 0] for i in range(windows)])
    y = np.stack([series[i + lookback : i + lookback + horizon, 0] for i in range(windows)])
    squared = (0.5 * x[:, -1:] - y) ** 2  # [window, step]
    by_block = [squared[0:5].mean(), squared[5:10].mean(), squared[10:16].mean()]
    assert [logged[f"val_mse_w{k}"] for k in (1, 2, 3)] == pytest.approx(by_block, rel=1e-6)
    assert logged["val_mse_windows"] == pytest.approx(np.mean(by_block), rel=1e-6)
    assert logged["val_mse"] == pytest.approx(squared.mean(), rel=1e-6)  # the pooled score weighs blocks by size
    assert logged["val_mse_windows"] != pytest.approx(logged["val_mse"], rel=1e-3)


def test_the_windows_score_is_a_monitor_only_with_several_blocks() -> None:
    base = {"data": {"name": "ett"}, "model": {"family": "linear"}, "trainer": {"monitor": "val_mse_windows"}}
    with pytest.raises(ConfigError, match="task.val_windows=K with K >= 2"):
        config_from_dict(base)
    assert config_from_dict({**base, "task": {"val_windows": 4}})["trainer"]["monitor"] == "val_mse_windows"
    with pytest.raises(ConfigError, match="task.val_windows=0"):
        config_from_dict({**base, "task": {"val_windows": 0}})
