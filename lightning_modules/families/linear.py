"""The `linear` family: DLinear's series decomposition (or nothing), leaving the forecast to a linear head.

With decomposition every channel becomes two features, its moving-average trend and the seasonal remainder.
The forecaster's head is one Linear over the flattened [T, 2*C] window, so with channel-independent input
([B*C, L, 1] -> [B*C, L, 2]) the whole model is exactly DLinear (Zeng et al. 2023): a Linear over the lookback
of the seasonal part plus a Linear over the lookback of the trend, summed, shared by all channels.
Without decomposition, channel-independent and with RevIN it is RLinear (Li et al. 2023).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class LinearConfig(FamilyConfig):
    """Options of the linear family.

    Args:
        decomposition: split every channel into a moving-average trend and the seasonal remainder (DLinear);
            off hands the input to the head unchanged (RLinear when RevIN is on).
        moving_avg: window of the trend's moving average, in steps; the ends are padded by repeating the edge values.
        dropout: dropout probability on the features handed to the head; 0 keeps the model exactly DLinear.
    """

    decomposition: bool = True
    moving_avg: int = 25
    dropout: float = 0.0


def moving_average(x: Tensor, window: int) -> Tensor:
    """Centred moving average over time of x [B, T, D]; the edges are repeated so the length is kept, as in DLinear."""
    front = x[:, :1].expand(-1, (window - 1) // 2, -1)
    back = x[:, -1:].expand(-1, window // 2, -1)
    padded = torch.cat([front, x, back], dim=1)
    return F.avg_pool1d(padded.transpose(1, 2), window, stride=1).transpose(1, 2)


@register_family("linear", LinearConfig)
class LinearEncoder(Encoder):
    """[B, T, D] -> [B, T, 2D] (seasonal, trend) with decomposition, else the identity."""

    def __init__(self, config: LinearConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        if seq_len is None:
            raise ConfigError(
                "the linear family maps a fixed lookback linearly, so it needs a fixed seq_len; "
                "use cnn, rnn or transformer for variable-length input"
            )
        if config.moving_avg < 1:
            raise ConfigError(f"moving_avg must be at least 1 step, got {config.moving_avg}")
        self.config = config
        self.out_dim = 2 * in_dim if config.decomposition else in_dim
        self.out_len = seq_len
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if mask is not None:
            x = x * mask.unsqueeze(-1)  # padded values never reach the output
        if self.config.decomposition:
            trend = moving_average(x, self.config.moving_avg)
            x = torch.cat([x - trend, trend], dim=-1)
        return self.dropout(x), mask
