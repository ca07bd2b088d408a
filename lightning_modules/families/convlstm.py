"""The `convlstm` family: an LSTM whose state is a feature map (Shi et al., NeurIPS 2015).

The gates are convolutions of the current frame and the previous hidden map, so every position keeps its own
memory of what passed there: motion shows up as the difference between where something is now and where the
state remembers it. Frames are max-pooled by `downsample` first (the recurrence costs T convolutions of the
whole map, and max pooling keeps thin bright shapes). Each step's hidden map is pooled over space (any pooling
of lightning_modules.pooling), giving [B, T, width] for the head.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig, frame_shape
from lightning_modules.pooling import SPATIAL_POOLINGS, SpatialPooling, build_pooling


@dataclass
class ConvLSTMConfig(FamilyConfig):
    """Options of the convlstm family (reads raw clips).

    Args:
        hidden_channels: channels of every layer's hidden and cell maps.
        num_layers: stacked ConvLSTM layers; each reads the hidden maps of the one below.
        kernel_size: side of the gate convolutions (odd, so the map keeps its size).
        downsample: max-pool every frame by this factor before the recurrence; 1 keeps the full frame.
        spatial_pool: how each step's top hidden map becomes a vector: "max" or "avg" over positions,
            "attention" (learned weights over positions) or "flatten" (the whole map, layout kept).
        dropout: dropout probability on the output sequence.
    """

    hidden_channels: int = 16
    num_layers: int = 1
    kernel_size: int = 3
    downsample: int = 2
    spatial_pool: SpatialPooling = "max"
    dropout: float = 0.1


class ConvLSTMCell(nn.Module):
    """One step: (x [B, C, H, W], (h, c) [B, hidden, H, W]) -> the next (h, c)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


@register_family("convlstm", ConvLSTMConfig, input="clip")
class ConvLSTMEncoder(Encoder):
    """[B, T, C, H, W] -> [B, T, hidden_channels (times the downsampled positions with "flatten")]."""

    def __init__(self, config: ConvLSTMConfig, in_dim: tuple[int, int, int], seq_len: int | None) -> None:
        super().__init__()
        channels, height, width = frame_shape("convlstm", in_dim)
        if config.num_layers < 1 or config.hidden_channels < 1 or config.kernel_size % 2 == 0 or config.downsample < 1:
            raise ConfigError(
                f"convlstm needs num_layers, hidden_channels and downsample of at least 1 and an odd "
                f"kernel_size; got {config}"
            )
        if config.downsample > min(height, width):
            raise ConfigError(f"downsample={config.downsample} is larger than the {width}x{height} frames; lower it")
        self.cells = nn.ModuleList(
            ConvLSTMCell(channels if i == 0 else config.hidden_channels, config.hidden_channels, config.kernel_size)
            for i in range(config.num_layers)
        )
        self.downsample, self.hidden_channels = config.downsample, config.hidden_channels
        positions = (height // config.downsample) * (width // config.downsample)
        self.spatial_pool, self.out_dim = build_pooling(
            SPATIAL_POOLINGS, config.spatial_pool, config.hidden_channels, positions, "model.spatial_pool"
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out_len = seq_len

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        batch, steps = x.shape[:2]
        frames = F.max_pool2d(x.flatten(0, 1), self.downsample).unflatten(0, (batch, steps))
        zeros = frames.new_zeros(batch, self.hidden_channels, *frames.shape[-2:])
        states = [(zeros, zeros)] * len(self.cells)
        outputs = []
        for t in range(steps):
            h = frames[:, t]
            for layer, cell in enumerate(self.cells):
                states[layer] = cell(h, states[layer])
                h = states[layer][0]
            outputs.append(self.spatial_pool(h))
        return self.dropout(torch.stack(outputs, dim=1)), None
