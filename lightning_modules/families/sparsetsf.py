"""The `sparsetsf` family: SparseTSF (Lin et al. 2024), period-downsampled sparse linear forecasting.

Every feature is its own univariate series: less its window mean, it is smoothed by a sliding aggregation (a
Conv1d of width 2 * (period // 2) + 1 added to the series), cut into L / period cycles, and one Linear shared by
every phase maps the L / period values a phase took to its H / period future values; the forecast is the
phases interleaved back in time order plus the mean. With period 24, L = 720 and H = 96 that is 25 + 120 = 145
weights. It forecasts the horizon itself (output "horizon", see base.py), so the forecast head only maps
features to targets. A lookback that is not a whole number of periods is padded at its start with its first
value (so the phases stay aligned with the forecast); the horizon is forecast in whole periods and cut to H.
"""

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class SparseTSFConfig(FamilyConfig):
    """Options of the sparsetsf family.

    Args:
        period: the series' dominant period w in steps (24 for hourly data with a daily cycle).
        dropout: dropout probability on the downsampled cycles before the shared Linear; 0 keeps it exactly SparseTSF.
    """

    period: int = 24
    dropout: float = 0.0


@register_family("sparsetsf", SparseTSFConfig, output="horizon")
class SparseTSFEncoder(Encoder):
    """[B, L, D] -> [B, H, D], every feature forecast from its own lookback."""

    def __init__(self, config: SparseTSFConfig, in_dim: int, seq_len: int | None, horizon: int) -> None:
        super().__init__()
        if seq_len is None:
            raise ConfigError(
                "the sparsetsf family maps a fixed lookback linearly, so it needs a fixed seq_len; "
                "use cnn, rnn or transformer for variable-length input"
            )
        if config.period < 1:
            raise ConfigError(f"sparsetsf needs a period of at least 1 step; got {config.period}")
        self.period = config.period
        cycles_in = math.ceil(seq_len / self.period)
        self.pad = cycles_in * self.period - seq_len
        half = self.period // 2
        self.aggregate = nn.Conv1d(1, 1, 2 * half + 1, padding=half, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.linear = nn.Linear(cycles_in, math.ceil(horizon / self.period), bias=False)
        self.out_dim, self.out_len = in_dim, horizon

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        batch, _, features = x.shape
        mean = x.mean(dim=1, keepdim=True)
        series = F.pad((x - mean).transpose(1, 2).reshape(batch * features, 1, -1), (self.pad, 0), mode="replicate")
        series = self.aggregate(series) + series
        phases = series.view(batch * features, -1, self.period).transpose(1, 2)  # [B*D, period, cycles]
        y = self.linear(self.dropout(phases)).transpose(1, 2).reshape(batch, features, -1)[:, :, : self.out_len]
        return y.transpose(1, 2) + mean, None
