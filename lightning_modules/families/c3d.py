"""The `c3d` family: a small C3D-style 3D CNN over raw clips (Tran et al., ICCV 2015).

Blocks of 3x3x3 convolutions (time x height x width), batch norm and ReLU, each followed by max pooling that
halves the frame; as in C3D the first pooling keeps time (so early blocks still see the frame-to-frame motion)
and later ones halve it too. Every block doubles the channels. A pooling stops halving an axis once it is down
to one. Each remaining step's map is pooled over space (averaged by default), leaving a short sequence
[B, T', channels] for the head.
"""

from dataclasses import dataclass

from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig, frame_shape
from lightning_modules.pooling import SPATIAL_POOLINGS, SpatialPooling, build_pooling


@dataclass
class C3DConfig(FamilyConfig):
    """Options of the c3d family (reads raw clips).

    Args:
        channels: output channels of the first block; every later block doubles them.
        num_layers: convolution blocks, each followed by a pooling.
        kernel_size: extent of every convolution in time, height and width (odd, so sizes are kept).
        spatial_pool: how each step's last map becomes a vector: "avg" or "max" over positions, "attention"
            (learned weights over positions) or "flatten" (the whole map, layout kept).
        dropout: dropout probability on the output sequence.
    """

    channels: int = 16
    num_layers: int = 3
    kernel_size: int = 3
    spatial_pool: SpatialPooling = "avg"
    dropout: float = 0.1


def block(in_channels: int, out_channels: int, kernel_size: int, pool: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(),
        nn.MaxPool3d(pool),
    )


@register_family("c3d", C3DConfig, input="clip")
class C3DEncoder(Encoder):
    """[B, T, C, H, W] -> [B, T', channels * 2**(num_layers - 1)], T' = T halved by every block after the first
    (times the last map's positions with spatial_pool "flatten")."""

    def __init__(self, config: C3DConfig, in_dim: tuple[int, int, int], seq_len: int | None) -> None:
        super().__init__()
        channels, height, width = frame_shape("c3d", in_dim)
        if config.num_layers < 1 or config.channels < 1 or config.kernel_size < 1 or config.kernel_size % 2 == 0:
            raise ConfigError(f"c3d needs num_layers and channels of at least 1 and an odd kernel_size; got {config}")
        if seq_len is None:
            raise ConfigError("c3d pools time by a plan fixed at construction, so it needs the clip length (seq_len)")
        blocks, length = [], seq_len
        for i in range(config.num_layers):
            pool = (2 if i > 0 and length >= 2 else 1, 2 if height >= 2 else 1, 2 if width >= 2 else 1)
            blocks.append(block(channels, config.channels * 2**i, config.kernel_size, pool))
            channels, length = config.channels * 2**i, length // pool[0]
            height, width = height // pool[1], width // pool[2]
        self.blocks = nn.Sequential(*blocks)
        self.spatial_pool, self.out_dim = build_pooling(
            SPATIAL_POOLINGS, config.spatial_pool, channels, height * width, "model.spatial_pool"
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out_len = length

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h = self.blocks(x.transpose(1, 2)).transpose(1, 2)  # Conv3d wants [B, C, T, H, W]
        pooled = self.spatial_pool(h.flatten(0, 1)).unflatten(0, h.shape[:2])  # every step's map [C, H, W] alone
        return self.dropout(pooled), None
