"""The `cnn` family: stacks of temporal 1D convolutions, optionally several stacks in parallel.

One branch of `num_layers` convolutions covers TCN-like forecasters (causal padding, growing dilation, residuals);
parallel branches with kernel widths [3, 4, 5], one layer and a max-over-time pool in the head give Kim (2014)'s
text CNN. Padded steps are zeroed before every convolution, which makes them look exactly like the zero padding
past a sequence's end, so real steps come out as if the item had been run alone.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig
from lightning_modules.layers import ACTIVATIONS, Activation

POOLS = {"max": F.max_pool1d, "avg": F.avg_pool1d}


@dataclass
class CNNConfig(FamilyConfig):
    """Options of the cnn family.

    Args:
        channels: output channels of every convolution, per branch.
        num_layers: convolutions per branch.
        kernel_size: kernel width in steps, used when kernel_sizes is None.
        kernel_sizes: one parallel branch per kernel width, outputs concatenated (Kim 2014: [3, 4, 5]);
            None means a single branch of kernel_size.
        dilation_growth: layer i dilates by dilation_growth**i; 2 gives a TCN's exponentially growing reach.
        padding: "same" centres every kernel on its step; "causal" lets a step see only itself and the past.
        pool: pooling after every layer over pool_size steps: "max", "avg" or "none".
        pool_size: steps pooled into one; each pooling layer divides the length by it (rounding down).
        residual: add every layer's input to its output (a 1x1 convolution matches the widths when they differ).
        activation: nonlinearity after every convolution: relu, gelu or tanh.
        dropout: dropout probability after every convolution.
    """

    channels: int = 32
    num_layers: int = 2
    kernel_size: int = 3
    kernel_sizes: list[int] | None = None
    dilation_growth: int = 1
    padding: Literal["same", "causal"] = "same"
    pool: Literal["max", "avg", "none"] = "none"
    pool_size: int = 2
    residual: bool = False
    activation: Activation = "relu"
    dropout: float = 0.1


def pool_mask(mask: Tensor, size: int) -> Tensor:
    """A pooled step is real only when all its steps are: an item run alone drops its incomplete last window too."""
    return F.max_pool1d((~mask).float().unsqueeze(1), size).squeeze(1) == 0


class ConvLayer(nn.Module):
    """One convolution on [B, C, T]: zero padded steps, pad the ends, convolve, activate, add the input, pool."""

    def __init__(self, config: CNNConfig, in_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, config.channels, kernel_size, dilation=dilation)
        reach = (kernel_size - 1) * dilation
        self.pad = (reach, 0) if config.padding == "causal" else (reach // 2, reach - reach // 2)
        self.activation = ACTIVATIONS[config.activation]()
        self.dropout = nn.Dropout(config.dropout)
        self.skip: nn.Module | None = None
        if config.residual:
            self.skip = nn.Identity() if in_channels == config.channels else nn.Conv1d(in_channels, config.channels, 1)
        self.pool = POOLS.get(config.pool)
        self.pool_size = config.pool_size

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if mask is not None:
            x = x * mask.unsqueeze(1)
        y = self.dropout(self.activation(self.conv(F.pad(x, self.pad))))
        if self.skip is not None:
            y = y + self.skip(x)
        if self.pool is not None:
            y = self.pool(y, self.pool_size)
            mask = None if mask is None else pool_mask(mask, self.pool_size)
        return y, mask


@register_family("cnn", CNNConfig)
class CNNEncoder(Encoder):
    """[B, T, D] -> [B, T / pool_size**num_layers, channels * number of branches]."""

    def __init__(self, config: CNNConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        kernel_sizes = config.kernel_sizes or [config.kernel_size]
        if config.num_layers < 1 or min(kernel_sizes) < 1 or config.dilation_growth < 1 or config.pool_size < 1:
            raise ConfigError(
                f"cnn needs num_layers, kernel sizes, dilation_growth and pool_size of at least 1; got {config}"
            )
        self.branches = nn.ModuleList(
            nn.ModuleList(
                ConvLayer(config, in_dim if i == 0 else config.channels, k, config.dilation_growth**i)
                for i in range(config.num_layers)
            )
            for k in kernel_sizes
        )
        self.out_dim = config.channels * len(kernel_sizes)
        shrink = config.pool_size**config.num_layers if config.pool != "none" else 1
        self.out_len = None if seq_len is None else seq_len // shrink
        if self.out_len == 0:
            raise ConfigError(
                f"{config.num_layers} pooling layers of size {config.pool_size} shorten {seq_len} steps "
                "to nothing; use fewer layers, a smaller pool_size or pool='none'"
            )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        outputs = []
        for branch in self.branches:
            h, branch_mask = x.transpose(1, 2), mask
            for layer in branch:
                h, branch_mask = layer(h, branch_mask)
            outputs.append(h)
        h = torch.cat(outputs, dim=1).transpose(1, 2)
        if branch_mask is not None:  # every branch shortens the mask alike
            h = h * branch_mask.unsqueeze(-1)
        return h, branch_mask
