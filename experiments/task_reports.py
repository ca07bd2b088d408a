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
from lightning_modules.backtest import STRATEGY_LABELS
from lightning_modules.baselines import NAIVE_FORECASTS
from lightning_modules.forecast_training import MODEL


def forecast_report(
    datamodule: StwDataModule, module: pl.LightningModule, folder: Path, title: str, n_windows: int = 3
) -> list[Path]:
    """The main target of a few evenly spaced test windows in original units, beside the naive forecasts."""
    dataset = datamodule.test_dataloader().dataset
    index = np.linspace(0, len(dataset) - 1, n_windows).astype(int).tolist()
    x, y, start = dataset[index]
    module.eval()
    with torch.no_grad():
        forecast = module(x, start)
        naive = {NAIVE_FORECASTS[name].label: baseline(x) for name, baseline in module.baselines.items()}
    spec, times = datamodule.spec, datamodule.split_timestamps("test")
    lookback, horizon, k = spec.lookback, spec.horizon, spec.main_index

    def original(values: torch.Tensor) -> np.ndarray:
        return datamodule.inverse_transform_targets(values)[..., k].numpy()

    if spec.target_index is not None:
        context = original(x[:, :, spec.target_index])
    else:
        context = np.full((len(index), lookback), np.nan)
    figure = plots.forecast_figure(
        context,
        original(y),
        original(forecast),
        [times[i : i + lookback] for i in index],
        [times[i + lookback : i + lookback + horizon] for i in index],
        spec.target_names[k],
        datamodule.target_units,
        title,
        baselines={label: original(values) for label, values in naive.items()},
    )
    return [plots.save(figure, folder / "forecast.png")]


def forecast_test_report(datamodule: StwDataModule, module: pl.LightningModule, folder: Path, title: str) -> list[Path]:
    """MSE by step ahead for the model and each naive forecast; for return targets the backtest's equity curves."""
    labels = {MODEL: "model"} | {name: NAIVE_FORECASTS[name].label for name in module.baselines}
    errors = {labels[name]: values for name, values in module.errors_by_step.items()}
    paths = [plots.error_by_step(errors, "model", folder / "horizon_error.png", f"{title}: error by step ahead")]
    if module.backtests:
        curves = {STRATEGY_LABELS[name]: run.equity for name, run in module.backtests.items()}
        first = datamodule.spec.lookback  # window i's one-step forecast is for row i + lookback of the test series
        days = datamodule.split_timestamps("test")[first : first + len(next(iter(curves.values())))]
        backtest_title = f"{title}: one-step forecasts traded after {module.task.cost_bps:g} bps a trade"
        paths.append(plots.equity_curves(days, curves, folder / "equity.png", backtest_title))
    return paths


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
    "forecast": TaskReport(from_model=forecast_report, from_test=forecast_test_report),
    "classify": TaskReport(from_test=classification_report),
}
