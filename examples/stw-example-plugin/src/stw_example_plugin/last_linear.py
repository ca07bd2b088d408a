"""`last_linear`: the last input step beside a linear map of the whole window, registered as an stw model family.

A family is an encoder (stw's Encoder contract, lightning_modules/families/base.py): it maps a window
[B, T, D] to a sequence [B, T', out_dim] and says its out_dim and out_len; stw puts its stem before it and the
task's head after it, so the same family forecasts and classifies. Its options are a FamilyConfig dataclass,
whose documented fields become `model.*` options (`stw train --model last_linear --help` lists them).

Here T' = 1: the last step's values (so the head can start from persistence) and `hidden_size` linear features of
the flattened window.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datamodules.errors import ConfigError
from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class LastLinearConfig(FamilyConfig):
    """Options of the last_linear family.

    Args:
        hidden_size: linear features of the flattened window, beside the last step's values.
        dropout: dropout probability on the features handed to the head.
    """

    hidden_size: int = 16
    dropout: float = 0.0


@register_family("last_linear", LastLinearConfig)
class LastLinearEncoder(Encoder):
    """[B, T, D] -> [B, 1, D + hidden_size]."""

    def __init__(self, config: LastLinearConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        if seq_len is None:
            raise ConfigError("the last_linear family maps a fixed window, so it needs a fixed seq_len; "
                              "use cnn, rnn or transformer for variable-length input")  # fmt: skip
        if config.hidden_size < 1:
            raise ConfigError(f"model.hidden_size must be at least 1, got {config.hidden_size}")
        self.window = nn.Linear(seq_len * in_dim, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.out_dim, self.out_len = in_dim + config.hidden_size, 1

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if mask is not None:  # padded steps never reach the output
            x = x * mask.unsqueeze(-1)
            mask = mask.any(dim=1, keepdim=True)
        features = torch.cat([x[:, -1], self.window(x.flatten(1))], dim=-1)
        return self.dropout(features).unsqueeze(1), mask
