"""Task-specific figures and reports logged with a finished run: one function per task, in one registry."""

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from datamodules import StwDataModule
from experiments import plots


def forecast_report(datamodule: StwDataModule, module: pl.LightningModule, folder: Path, title: str,
                    n_windows: int = 3) -> list[Path]:
    """The first target channel of a few evenly spaced test windows, in original units."""
    dataset = datamodule.test_dataloader().dataset
    index = np.linspace(0, len(dataset) - 1, n_windows).astype(int).tolist()
    x, y = dataset[index]
    module.eval()
    with torch.no_grad():
        forecast = module(x)
    spec, times = datamodule.spec, datamodule.split_timestamps("test")
    lookback, horizon = spec["lookback"], spec["horizon"]
    if spec["target_index"] is not None:
        context = datamodule.inverse_transform_targets(x[:, :, spec["target_index"]])[..., 0].numpy()
    else:
        context = np.full((len(index), lookback), np.nan)
    return [plots.forecast_vs_actual(
        context, datamodule.inverse_transform_targets(y)[..., 0].numpy(),
        datamodule.inverse_transform_targets(forecast)[..., 0].numpy(),
        [times[i : i + lookback] for i in index], [times[i + lookback : i + lookback + horizon] for i in index],
        spec["target_names"][0], folder / "forecast.png", title,
    )]


TASK_REPORTS: dict[str, Callable[[StwDataModule, pl.LightningModule, Path, str], list[Path]]] = {
    "forecast": forecast_report,
}
