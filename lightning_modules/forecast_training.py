"""The LightningModule that trains a Forecaster and scores it beside naive baselines.

Test scores, every one on the same test windows, `test_*` for the model and `baseline_<name>_*` for each naive
forecast of lightning_modules.baselines (which ones follow from the dataset's spec.target_kind):
  mse, mae                     in the scaled units the model is trained in (the numbers papers on ETT report)
  mse_original, mae_original   in the data's own units (the fitted target scaler undone), over every target
  mase                         MAE over the training rows' in-sample seasonal-naive MAE, target by target:
                               scale-free, 1 = as good as the seasonal-naive forecast was inside training
  smape                        symmetric MAPE in original units (0 to 2), only when every training target is positive
  test_mse_by_step             the model's MSE at each step ahead, an MLflow metric series (step = h, 1..H)
Skills: skill_vs_<name> = 1 - test MSE / that naive forecast's MSE for each, and skill_vs_best_naive against the
lowest of them, whose name the run carries as its `stw.best_naive` tag: the honest one, since beating one weak
baseline (repeat-last on a seasonal series) says little.
Return targets (spec.target_kind "return"), on the main target's one-step-ahead forecast (h = 1) in original units:
  test_hit_rate                share of days whose sign (up, or not up) the forecast got right, beside
                               baseline_always_up_hit_rate, the share of up days
  test_ic, test_rank_ic        information coefficient: Pearson and Spearman correlation of forecast and outcome
  test_backtest_<strategy>_*   long/flat and long/short on the forecast's sign, beside baseline_buy_hold_*:
                               total_return, sharpe, max_drawdown, turnover after task.cost_bps per trade
                               (lightning_modules.backtest)
"""

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import MLFlowLogger
from torch import Tensor, nn
from torchmetrics import (
    MeanAbsoluteError,
    MeanSquaredError,
    MetricCollection,
    PearsonCorrCoef,
    SpearmanCorrCoef,
    SymmetricMeanAbsolutePercentageError,
)
from torchmetrics.classification import BinaryAccuracy

from datamodules.specs import ForecastSpec, as_spec
from datamodules.windows import process_shard, rank_block
from lightning_modules.backtest import BUY_AND_HOLD, Backtest, backtests
from lightning_modules.baselines import best_naive, naive_forecasts, scaled_zero, skill
from lightning_modules.epoch_losses import EpochLosses
from lightning_modules.forecast_model import Forecaster
from lightning_modules.optim import OptimConfig, configure_optimizers
from lightning_modules.pooling import TemporalPooling
from lightning_modules.val_windows import WINDOWS_METRIC, BlockMSE

MODEL = "model"  # the forecaster's name beside the baselines' in `errors_by_step`
BEST_NAIVE_TAG = "stw.best_naive"


@dataclass
class ForecastTask:
    """Forecasting head, loss and augmentation, and how return forecasts are traded in the test backtest.

    Args:
        loss: training loss: mse, mae or huber.
        huber_delta: where the huber loss turns from quadratic to linear.
        revin: normalise each input window by its own mean and std (RevIN) and undo it on the forecast.
        channel_independent: every channel is its own univariate series through a shared encoder (PatchTST-style).
        cycle_len: CycleNet's residual cycle: learn a cycle of this many steps (24 for a daily cycle of hourly
            data) per input channel, subtract it from the (RevIN-normalised) input and add it back to the forecast,
            so the encoder forecasts the residual; each window's phase is its first row's number in the series.
            "season" takes the run's season (task.season, else the dataset's: a day of rows, 24 on ETTh, 96 on the
            15-minute ETTm files), so one search space fits every sampling rate. 0 is off.
        highway: add LSTNet's highway, a linear map of each target channel's own lookback (after RevIN and the
            cycle), to the network's forecast: a direct path from the input values to the forecast for deep
            encoders whose head reads a pooled summary.
        stem_dim: project each time step's values to this width before the encoder; null keeps the raw values.
        head: how the linear forecasting head pools the encoder's steps: flatten (every step, time-major), or one
            summary vector: last, mean, max or attention (far fewer weights for long unpatched sequences).
        input_noise: std of Gaussian noise added to training inputs (scaled units), a cheap augmentation.
        season: period in steps of the seasonal-naive baseline; null takes the dataset's own (24 for hourly ETT).
            MASE keeps the dataset's own season, so it stays comparable between runs.
        cost_bps: return targets only: what every trade of the test backtest costs, in basis points of the
            amount traded (5 = 0.05%).
        val_windows: cut the validation period into this many consecutive blocks of forecast windows and log each
            block's MSE (val_mse_w1..K) and their mean, val_mse_windows, a selection score in which every block
            weighs the same (lightning_modules/val_windows.py defines the blocks); 1 logs neither.
    """

    loss: Literal["mse", "mae", "huber"] = "mse"
    huber_delta: float = 1.0
    revin: bool = False
    channel_independent: bool = False
    cycle_len: int | Literal["season"] = 0
    highway: bool = False
    stem_dim: int | None = None
    head: TemporalPooling = "flatten"
    input_noise: float = 0.0
    season: int | None = None
    cost_bps: float = 5.0
    val_windows: int = 1


def forecast_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}, prefix=prefix)


class TargetUnits(nn.Module):
    """The spec's target scaler and MASE denominators as buffers (not saved: the spec holds them), on the
    module's device."""

    def __init__(self, spec: ForecastSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.target_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(spec.target_std, dtype=torch.float32), persistent=False)
        naive = torch.tensor(spec.naive_mae, dtype=torch.float32) if spec.naive_mae is not None else None
        self.register_buffer("naive_mae", naive, persistent=False)
        self.register_buffer("zero", scaled_zero(spec), persistent=False)

    def original(self, y: Tensor) -> Tensor:
        """Scaled values [..., K] in the data's own units."""
        return y * self.std + self.mean


def steps_first(y: Tensor) -> Tensor:
    """[B, H, K] -> [B * K, H]: one row per (window, target), one column per step ahead."""
    return y.transpose(1, 2).flatten(0, 1)


class ForecastScores(nn.Module):
    """One forecaster's test scores (see the module docstring), accumulated batch by batch."""

    def __init__(self, spec: ForecastSpec, in_original_units: bool) -> None:
        super().__init__()
        self.scaled = forecast_metrics("")
        self.by_step = MeanSquaredError(num_outputs=spec.horizon)
        original = {"mse_original": MeanSquaredError(), "mae_original": MeanAbsoluteError()}
        if spec.positive_targets:  # a percentage of a value that can be 0 or negative means nothing
            original["smape"] = SymmetricMeanAbsolutePercentageError()
        self.original = MetricCollection(original) if in_original_units else None
        # torchmetrics has no MASE; it is the MAE of forecast and truth divided, target by target, by the naive MAE.
        self.mase = MeanAbsoluteError() if in_original_units and spec.naive_mae is not None else None

    def update(self, pred: Tensor, y: Tensor, units: TargetUnits | None) -> None:
        self.scaled.update(pred, y)
        self.by_step.update(steps_first(pred), steps_first(y))
        if self.original is not None:
            pred, y = units.original(pred), units.original(y)
            self.original.update(pred, y)
            if self.mase is not None:
                self.mase.update(pred / units.naive_mae, y / units.naive_mae)

    def compute(self, prefix: str) -> dict[str, Tensor]:
        scores = dict(self.scaled.compute())
        if self.original is not None:
            scores.update(self.original.compute())
        if self.mase is not None:
            scores["mase"] = self.mase.compute()
        return {f"{prefix}{name}": value for name, value in scores.items()}

    def mse_by_step(self) -> np.ndarray:
        return np.atleast_1d(self.by_step.compute().double().cpu().numpy())

    def reset(self) -> None:
        for metric in (self.scaled, self.by_step, self.original, self.mase):
            if metric is not None:
                metric.reset()


def correlation(metric: PearsonCorrCoef | SpearmanCorrCoef) -> float:
    """The metric's correlation; 0 when a side never varies (torchmetrics gives NaN): a constant forecast ranks
    nothing, so it carries no information, as MCC is 0 for a constant classifier."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*variance of predictions or target is close to zero.*")
        value = float(metric.compute())
    return 0.0 if np.isnan(value) else value


class ReturnScores(nn.Module):
    """Scores of one-step-ahead return forecasts (original units) as traders judge them: hit rate beside always-up,
    IC and rank IC, and the backtests (`backtests` holds them after `compute`)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits, self.always_up = BinaryAccuracy(), BinaryAccuracy()
        self.ic = PearsonCorrCoef()
        with warnings.catch_warnings():  # it keeps every test day; a test period is a few thousand at most
            warnings.filterwarnings("ignore", message=".*will save all targets and predictions in the buffer.*")
            self.rank_ic = SpearmanCorrCoef()
        self.days: list[tuple[Tensor, Tensor]] = []
        self.backtests: dict[str, Backtest] = {}

    def update(self, pred: Tensor, y: Tensor, units: TargetUnits, index: int) -> None:
        """Scaled forecasts and truths [B, H, K]; scores step 1 of target `index`."""
        # Signs are read in scaled units against where 0 lands there: a return that is exactly 0 in the file is
        # exactly that after scaling too, while undoing the float32 scaling could leave it at +-1e-11.
        zero = units.zero[index]
        up = (y[:, 0, index] > zero).long()
        self.hits.update((pred[:, 0, index] > zero).long(), up)
        self.always_up.update(torch.ones_like(up), up)
        forecast, realised = (units.original(t)[:, 0, index] for t in (pred, y))
        self.ic.update(forecast, realised)
        self.rank_ic.update(forecast, realised)
        self.days.append((forecast.detach().cpu(), realised.cpu()))

    def compute(self, cost_bps: float) -> dict[str, float]:
        forecast, realised = (torch.cat(side).double().numpy() for side in zip(*self.days, strict=True))
        self.backtests = backtests(forecast, realised, cost_bps)
        scores = {
            "test_hit_rate": float(self.hits.compute()),
            "baseline_always_up_hit_rate": float(self.always_up.compute()),
            "test_ic": correlation(self.ic),
            "test_rank_ic": correlation(self.rank_ic),
        }
        for name, run in self.backtests.items():
            prefix = "baseline_" if name == BUY_AND_HOLD else "test_backtest_"
            scores.update({f"{prefix}{name}_{figure}": value for figure, value in run.figures().items()})
        return scores

    def reset(self) -> None:
        for metric in (self.hits, self.always_up, self.ic, self.rank_ic):
            metric.reset()
        self.days = []


class ForecastingModule(pl.LightningModule):
    """Trains on scaled windows; logs train_loss, val_loss/val_mse/val_mae per epoch, then the test scores of the
    module docstring.

    The whole run config and the spec (as plain data) are saved in the checkpoint's hyperparameters, so a
    checkpoint alone rebuilds the model; `spec` may be that plain form. After testing, `errors_by_step` holds
    each forecaster's MSE by step ahead and `backtests` the return backtests, for reports.
    """

    Task = ForecastTask
    sweep_metric = "val_mse"
    # What validation logs: trainer.monitor must be one of them (val_mse_windows only with task.val_windows >= 2).
    monitorable = ("val_loss", "val_mse", "val_mae", WINDOWS_METRIC)
    sweep_families = ("linear", "cnn", "rnn", "transformer", "cnn_rnn_transformer")

    def __init__(self, config: dict[str, Any], spec: ForecastSpec | dict[str, Any]) -> None:
        super().__init__()
        spec = as_spec(ForecastSpec, spec)
        # Plain data only, so torch.load(weights_only=True) reads the checkpoint; params are logged flat by the run.
        self.save_hyperparameters({"config": config, "spec": asdict(spec)}, logger=False)
        task = ForecastTask(**config["task"])
        self.task, self.optim = task, OptimConfig(**config["optim"])
        season = task.season or spec.season  # the seasonal-naive baseline's, and the residual cycle's with "season"
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
            cycle_len=season if task.cycle_len == "season" else task.cycle_len,
            highway=task.highway,
        )
        self.loss_fn = {"mse": nn.MSELoss(), "mae": nn.L1Loss(), "huber": nn.HuberLoss(delta=task.huber_delta)}[
            task.loss
        ]
        self.losses = EpochLosses()
        self.val_metrics = forecast_metrics("val_")
        self.val_blocks = BlockMSE(task.val_windows) if task.val_windows > 1 else None
        self.val_position = (0, 0)  # (index of the next validation window this process scores, windows in all)
        # Runs logged before the spec carried the target scaler score in scaled units only.
        self.units = TargetUnits(spec) if spec.target_mean is not None else None
        self.baselines = naive_forecasts(spec, season)
        self.scores = nn.ModuleDict(
            {name: ForecastScores(spec, self.units is not None) for name in (MODEL, *self.baselines)}
        )
        self.main_index = spec.main_index
        self.return_scores = ReturnScores() if spec.target_kind == "return" and self.units is not None else None
        self.errors_by_step: dict[str, np.ndarray] = {}
        self.best_naive: str | None = None
        self.max_epochs = config["trainer"]["max_epochs"]

    @property
    def backtests(self) -> dict[str, Backtest]:
        return self.return_scores.backtests if self.return_scores is not None else {}

    def forward(self, x: Tensor, start: Tensor | None = None) -> Tensor:
        """Forecasts of windows x [B, L, C] whose first rows are rows `start` [B] of the series (read only with a
        residual cycle, task.cycle_len)."""
        return self.model(x, start).contiguous()  # channel-independent outputs are permuted views; metrics view() them

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y, start = batch
        if self.task.input_noise > 0:
            x = x + self.task.input_noise * torch.randn_like(x)
        loss = self.loss_fn(self(x, start), y)
        self.losses.add_train(self, loss, len(x))
        return loss

    def on_validation_epoch_start(self) -> None:
        if self.val_blocks is not None:
            # Evaluation loaders serve each process one contiguous block of windows in order (datamodules.windows),
            # so a window's index is where this process's block starts plus the windows scored before it.
            windows = len(self.trainer.val_dataloaders.dataset)
            self.val_position = (rank_block(windows, process_shard()).start, windows)

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, start = batch
        pred = self(x, start)
        self.losses.add_val(self.loss_fn(pred, y), len(x))
        self.val_metrics.update(pred, y)
        if self.val_blocks is not None:
            first, windows = self.val_position
            self.val_blocks.update(pred, y, first, windows)
            self.val_position = (first + len(x), windows)

    def on_validation_epoch_end(self) -> None:
        self.losses.log_val(self)
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()
        if self.val_blocks is not None:
            self.log_dict(self.val_blocks.scores())
            self.val_blocks.reset()

    def on_test_epoch_start(self) -> None:
        for scores in (*self.scores.values(), self.return_scores):
            if scores is not None:
                scores.reset()

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        x, y, start = batch
        pred = self(x, start)
        self.scores[MODEL].update(pred, y, self.units)
        for name, baseline in self.baselines.items():
            self.scores[name].update(baseline(x), y, self.units)
        if self.return_scores is not None:
            self.return_scores.update(pred, y, self.units, self.main_index)

    def on_test_epoch_end(self) -> None:
        scores: dict[str, Tensor | float] = {}
        for name, forecaster in self.scores.items():
            scores.update(forecaster.compute("test_" if name == MODEL else f"baseline_{name}_"))
        scores.update(
            self.skills(float(scores["test_mse"]), {n: float(scores[f"baseline_{n}_mse"]) for n in self.baselines})
        )
        if self.return_scores is not None:
            scores.update(self.return_scores.compute(self.task.cost_bps))
        self.log_dict(scores)
        self.errors_by_step = {name: forecaster.mse_by_step() for name, forecaster in self.scores.items()}
        if self.logger is not None:
            for step, mse in enumerate(self.errors_by_step[MODEL], start=1):
                self.logger.log_metrics({"test_mse_by_step": float(mse)}, step=step)

    def skills(self, mse: float, baseline_mse: dict[str, float]) -> dict[str, float]:
        """skill_vs_<name> for every naive forecast and skill_vs_best_naive; tags the run with the best one."""
        if not baseline_mse:
            return {}
        self.best_naive = best_naive(baseline_mse)
        if isinstance(self.logger, MLFlowLogger):
            self.logger.experiment.set_tag(self.logger.run_id, BEST_NAIVE_TAG, self.best_naive)
        skills = {f"skill_vs_{name}": skill(mse, value) for name, value in baseline_mse.items()}
        return {**skills, "skill_vs_best_naive": skill(mse, baseline_mse[self.best_naive])}

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(self.parameters(), self.optim, self.max_epochs)
