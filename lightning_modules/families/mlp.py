"""The `mlp` family: the whole window flattened and passed through fully connected hidden layers.

The output is a sequence of length 1 (one vector per window): an MLP that kept time would act on each step
alone and never mix steps, and mixing the lookback is what makes it a forecaster.
"""

from dataclasses import dataclass

from torch import Tensor

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig
from lightning_modules.layers import Activation, hidden_layers


@dataclass
class MLPConfig(FamilyConfig):
    """Options of the mlp family.

    Args:
        hidden_size: width of every hidden layer.
        num_layers: number of hidden layers; 0 hands the flattened window straight to the head.
        activation: nonlinearity after every hidden layer: relu, gelu or tanh.
        dropout: dropout probability after every hidden layer.
    """

    hidden_size: int = 128
    num_layers: int = 2
    activation: Activation = "gelu"
    dropout: float = 0.1


@register_family("mlp", MLPConfig)
class MLPEncoder(Encoder):
    """[B, T, D] -> [B, 1, hidden_size]."""

    def __init__(self, config: MLPConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        if seq_len is None:
            raise ConfigError(
                "the mlp family flattens a fixed window, so it needs a fixed seq_len; "
                "use cnn, rnn or transformer for variable-length input"
            )
        widths = [seq_len * in_dim] + [config.hidden_size] * config.num_layers
        self.layers = hidden_layers(widths, config.activation, config.dropout)
        self.out_dim, self.out_len = widths[-1], 1

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if mask is not None:
            x = x * mask.unsqueeze(-1)  # padded values never reach the output
            mask = mask.any(dim=1, keepdim=True)
        return self.layers(x.flatten(1)).unsqueeze(1), mask
