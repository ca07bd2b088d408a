"""Task registry: which LightningModule trains on a dataset of a given task ("forecast", "classify")."""

import lightning.pytorch as pl

from lightning_modules.classify_training import ClassificationModule
from lightning_modules.forecast_training import ForecastingModule

TASKS: dict[str, type[pl.LightningModule]] = {"forecast": ForecastingModule, "classify": ClassificationModule}

__all__ = ["TASKS"]
