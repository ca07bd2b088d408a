"""The `segrnn` family: SegRNN (Lin et al. 2023), segment-wise recurrence with parallel multi-step decoding.

Every feature is its own univariate series (channel-independent inside the family): its lookback, less its last
value, is cut into non-overlapping segments of seg_len steps, each projected to d_model (Linear + ReLU); one GRU
reads the segments. Decoding is parallel (PMF): every output segment starts from the encoder's last state with
one GRU step on its own query (a learned position embedding beside a learned embedding of its feature), and a
Linear maps that step's state back to seg_len forecasts; the last value is added back. It forecasts the horizon
itself (output "horizon", see base.py), so the forecast head only maps features to targets.
A lookback that is not a whole number of segments is padded at its start with its first value; the horizon is
decoded in whole segments and cut to H.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class SegRNNConfig(FamilyConfig):
    """Options of the segrnn family (defaults are the paper's ETTh1 settings).

    Args:
        seg_len: steps per segment, for the lookback and the horizon alike.
        d_model: width of the segment embeddings and of the GRU's state.
        last_value_norm: subtract each window's last value from its lookback and add it back to the forecast
            (SegRNN's own normalisation; RevIN may be used on top or instead).
        dropout: dropout probability before the output projection.
    """

    seg_len: int = 48
    d_model: int = 512
    last_value_norm: bool = True
    dropout: float = 0.5


@register_family("segrnn", SegRNNConfig, output="horizon")
class SegRNNEncoder(Encoder):
    """[B, L, D] -> [B, H, D], every feature forecast from its own lookback."""

    def __init__(self, config: SegRNNConfig, in_dim: int, seq_len: int | None, horizon: int) -> None:
        super().__init__()
        if seq_len is None:
            raise ConfigError(
                "the segrnn family cuts a fixed lookback into segments, so it needs a fixed seq_len; "
                "use cnn, rnn or transformer for variable-length input"
            )
        if config.seg_len < 1 or config.d_model < 2:
            raise ConfigError(f"segrnn needs seg_len >= 1 and d_model >= 2; got {config.seg_len}, {config.d_model}")
        self.config = config
        self.pad = math.ceil(seq_len / config.seg_len) * config.seg_len - seq_len
        self.n_out = math.ceil(horizon / config.seg_len)
        self.embed = nn.Sequential(nn.Linear(config.seg_len, config.d_model), nn.ReLU())
        self.rnn = nn.GRU(config.d_model, config.d_model, batch_first=True)
        half = config.d_model // 2
        self.position = nn.Parameter(torch.randn(self.n_out, half))
        self.feature = nn.Parameter(torch.randn(in_dim, config.d_model - half))
        self.predict = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.d_model, config.seg_len))
        self.out_dim, self.out_len = in_dim, horizon

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        batch, _, features = x.shape
        last = x[:, -1:].detach() if self.config.last_value_norm else torch.zeros_like(x[:, -1:])
        series = (x - last).transpose(1, 2).reshape(batch * features, 1, -1)
        segments = F.pad(series, (self.pad, 0), mode="replicate").view(batch * features, -1, self.config.seg_len)
        _, state = self.rnn(self.embed(segments))  # [1, B*D, d_model]
        queries = torch.cat(
            [
                self.position.unsqueeze(0).expand(features, -1, -1),
                self.feature.unsqueeze(1).expand(-1, self.n_out, -1),
            ],
            dim=-1,
        )  # [D, n_out, d_model], repeated for every window below
        queries = queries.unsqueeze(0).expand(batch, -1, -1, -1).reshape(-1, 1, self.config.d_model)
        _, decoded = self.rnn(queries, state.repeat_interleave(self.n_out, dim=1))  # one step per output segment
        y = self.predict(decoded[0]).view(batch, features, -1)[:, :, : self.out_len]
        return y.transpose(1, 2) + last, None
