"""The `frame_avg` family: the spatial-only reference. Every step alone, then the average over time.

Each step (a frame's CNN features, a keypoint vector, a token) goes through the same small MLP on its own,
and the outputs are averaged over the real steps; nothing ever compares one step with another. With the
classification head's Linear after it, that is a per-frame classifier whose scores are averaged over the clip:
what the frames show, with their order and motion thrown away. A temporal family must beat it to show it
uses time (on moving-shapes, where one frame says nothing of the direction, it should sit at chance).
"""

from dataclasses import dataclass

from torch import Tensor

from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig
from lightning_modules.layers import Activation, hidden_layers
from lightning_modules.pooling import mean_steps, real_steps


@dataclass
class FrameAvgConfig(FamilyConfig):
    """Options of the frame_avg family (the spatial-only baseline).

    Args:
        hidden_size: width of the per-step MLP's hidden layers.
        num_layers: hidden layers applied to every step alone; 0 averages the stem's vectors as they are.
        activation: nonlinearity after every hidden layer: relu, gelu or tanh.
        dropout: dropout probability after every hidden layer.
    """

    hidden_size: int = 64
    num_layers: int = 1
    activation: Activation = "relu"
    dropout: float = 0.1


@register_family("frame_avg", FrameAvgConfig)
class FrameAverage(Encoder):
    """[B, T, D] -> [B, 1, hidden_size (D without layers)]: a per-step MLP, then the mean over real steps."""

    def __init__(self, config: FrameAvgConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        widths = [in_dim] + [config.hidden_size] * config.num_layers
        self.per_step = hidden_layers(widths, config.activation, config.dropout)
        self.out_dim, self.out_len = widths[-1], 1

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h = self.per_step(x)
        pooled = mean_steps(h, real_steps(h, mask)).unsqueeze(1)
        return pooled, None if mask is None else mask.any(dim=1, keepdim=True)
