"""The LightningModule that trains a Forecaster and scores it beside naive baselines."""

from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from datamodules.specs import ForecastSpec, as_spec
from lightning_modules.baselines import naive_forecasts
from lightning_modules.epoch_losses import EpochLosses
from lightning_modules.forecast_model import Forecaster
from lightning_modules.optim import OptimConfig, configure_optimizers
from lightning_modules.pooling import TemporalPooling


@dataclass
class ForecastTask:
    """Forecasting head, loss and augmentation.

    Args:
        loss: training loss: mse, mae or huber.
        huber_delta: where the huber loss turns from quadratic to linear.
        revin: normalise each input window by its own mean and std (RevIN) and undo it on the forecast.
        channel_independent: every channel is its own univariate series through a shared encoder (PatchTST-style).
        stem_dim: project each time step's values to this width before the encoder; null keeps the raw values.
        head: how the linear forecasting head pools the encoder's steps: flatten (every step, time-major), or one
            summary vector: last, mean, max or attention (far fewer weights for long unpatched sequences).
        input_noise: std of Gaussian noise added to training inputs (scaled units), a cheap augmentation.
        season: period in steps of the seasonal-naive baseline; null takes the dataset's own (24 for hourly ETT).
    """

    loss: Literal["mse", "mae", "huber"] = "mse"
    huber_delta: float = 1.0
    revin: bool = False
    channel_independent: bool = False
    stem_dim: int | None = None
    head: TemporalPooling = "flatten"
    input_noise: float = 0.0
    season: int | None = None


def forecast_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}, prefix=prefix)


class ForecastingModule(pl.LightningModule):
    """Trains on scaled windows; logs train_loss, val_loss/val_mse/val_mae per epoch, test and baseline metrics.

    The whole run config and the spec (as plain data) are saved in the checkpoint's hyperparameters, so a
    checkpoint alone rebuilds the model; `spec` may be that plain form.
    """

    Task = ForecastTask
    sweep_metric = "val_mse"
    monitorable = ("val_loss", "val_mse", "val_mae")  # what validation logs: trainer.monitor must be one of them
    sweep_families = ("linear", "cnn", "rnn", "transformer", "cnn_rnn_transformer")

    def __init__(self, config: dict[str, Any], spec: ForecastSpec | dict[str, Any]) -> None:
        super().__init__()
        spec = as_spec(ForecastSpec, spec)
        # Plain data only, so torch.load(weights_only=True) reads the checkpoint; params are logged flat by the run.
        self.save_hyperparameters({"config": config, "spec": asdict(spec)}, logger=False)
        task = ForecastTask(**config["task"])
        self.task, self.optim = task, OptimConfig(**config["optim"])
        model_cfg = {k: v for k, v in config["model"].items() if k != "family"}
        self.model = Forecaster(
            family=config["model"]["family"],
            family_config=model_cfg,
            spec=spec,
            revin=task.revin,
            channel_independent=task.channel_independent,
            stem_dim=task.stem_dim,
            head=task.head,
            stem_options=config.get("stem"),
        )
        self.loss_fn = {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=task.huber_delta)}[
            task.loss
        ]
        self.losses = EpochLosses()
        self.val_metrics, self.test_metrics = forecast_metrics("val_"), forecast_metrics("test_")
        self.target_index = spec.target_index
        self.baselines = naive_forecasts(task.season or spec.season) if self.target_index is not None else {}
        self.baseline_metrics = nn.ModuleDict({name: forecast_metrics(f"baseline_{name}_") for name in self.baselines})
        self.max_epochs = config["trainer"]["max_epochs"]

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).contiguous()  # channel-independent outputs are permuted views; metrics view() them

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.task.input_noise > 0:
            x = x + self.task.input_noise * torch.randn_like(x)
        loss = self.loss_fn(self(x), y)
        self.losses.add_train(self, loss, len(x))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        pred = self(x)
        self.losses.add_val(self.loss_fn(pred, y), len(x))
        self.val_metrics.update(pred, y)

    def on_validation_epoch_end(self) -> None:
        self.losses.log_val(self)
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_metrics.update(self(x), y)
        for name, baseline in self.baselines.items():
            self.baseline_metrics[name].update(baseline(x, y.shape[1], self.target_index), y)

    def on_test_epoch_end(self) -> None:
        scores = self.test_metrics.compute()
        for metrics in self.baseline_metrics.values():
            scores.update(metrics.compute())
        if "baseline_last_mse" in scores:
            # Skill > 0 means the model beats repeating the last value; the usual honesty check for forecasts.
            scores["skill_vs_naive"] = 1 - scores["test_mse"] / scores["baseline_last_mse"]
        self.log_dict(scores)
        self.test_metrics.reset()
        for metrics in self.baseline_metrics.values():
            metrics.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(self.parameters(), self.optim, self.max_epochs)
