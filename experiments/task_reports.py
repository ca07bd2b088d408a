"""Task-specific figures and reports logged with a run: one entry per task, in one registry."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch

from datamodules import StwDataModule
from experiments import plots


def forecast_report(
    datamodule: StwDataModule, module: pl.LightningModule, folder: Path, title: str, n_windows: int = 3
) -> list[Path]:
    """The first target channel of a few evenly spaced test windows, in original units."""
    dataset = datamodule.test_dataloader().dataset
    index = np.linspace(0, len(dataset) - 1, n_windows).astype(int).tolist()
    x, y = dataset[index]
    module.eval()
    with torch.no_grad():
        forecast = module(x)
    spec, times = datamodule.spec, datamodule.split_timestamps("test")
    lookback, horizon = spec.lookback, spec.horizon
    if spec.target_index is not None:
        context = datamodule.inverse_transform_targets(x[:, :, spec.target_index])[..., 0].numpy()
    else:
        context = np.full((len(index), lookback), np.nan)
    return [
        plots.forecast_vs_actual(
            context,
            datamodule.inverse_transform_targets(y)[..., 0].numpy(),
            datamodule.inverse_transform_targets(forecast)[..., 0].numpy(),
            [times[i : i + lookback] for i in index],
            [times[i + lookback : i + lookback + horizon] for i in index],
            spec.target_names[0],
            folder / "forecast.png",
            title,
        )
    ]


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """[true class, predicted class] -> number of test items."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_table(counts: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support (true items) per class; a score with nothing to divide by is 0."""
    hits, predicted, support = np.diag(counts), counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(len(hits)), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(len(hits)), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(hits)), where=both > 0)
    return pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def classification_report(
    datamodule: StwDataModule, module: pl.LightningModule, folder: Path, title: str
) -> list[Path]:
    """The confusion matrix (counts and row shares) and a per-class CSV, from the module's test predictions."""
    predictions, class_names = module.test_predictions, module.class_names
    counts = confusion_counts(predictions.labels.numpy(), predictions.probs.argmax(dim=1).numpy(), len(class_names))
    table = folder / "per_class_report.csv"
    per_class_table(counts, class_names).to_csv(table, index=False, float_format="%.6f")
    return [plots.confusion_matrix(counts, class_names, folder / "confusion_matrix.png", title), table]


ReportMaker = Callable[[StwDataModule, pl.LightningModule, Path, str], list[Path]]


@dataclass(frozen=True)
class TaskReport:
    """A task's figures: `from_model` needs only the trained model (drawn for pruned runs too), `from_test`
    needs what testing predicted (only a tested run has it)."""

    from_model: ReportMaker | None = None
    from_test: ReportMaker | None = None


TASK_REPORTS: dict[str, TaskReport] = {
    "forecast": TaskReport(from_model=forecast_report),
    "classify": TaskReport(from_test=classification_report),
}
