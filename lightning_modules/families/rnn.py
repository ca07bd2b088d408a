"""The `rnn` family: a stacked LSTM or GRU returning its hidden state at every step.

Padded batches are packed, so the recurrence stops at each item's last real step (in both directions when
bidirectional) and padded steps come out as zeros.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class RNNConfig(FamilyConfig):
    """Options of the rnn family.

    Args:
        cell: recurrent cell: "lstm" or "gru".
        hidden_size: features of the hidden state, per direction.
        num_layers: stacked recurrent layers.
        bidirectional: also read the sequence backwards and concatenate both directions (no longer causal).
        dropout: dropout probability between stacked layers and on the output.
    """

    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.1


@register_family("rnn", RNNConfig, aliases={"lstm": {"cell": "lstm"}, "gru": {"cell": "gru"}})
class RNNEncoder(Encoder):
    """[B, T, D] -> [B, T, hidden_size * directions]."""

    def __init__(self, config: RNNConfig, in_dim: int, seq_len: int | None) -> None:
        super().__init__()
        self.rnn = CELLS[config.cell](
            in_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.dropout = nn.Dropout(config.dropout)
        self.out_dim = config.hidden_size * (2 if config.bidirectional else 1)
        self.out_len = seq_len

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if mask is None:
            h, _ = self.rnn(x)
            return self.dropout(h), None
        lengths = mask.sum(dim=1)
        if not torch.equal(mask, torch.arange(x.shape[1], device=mask.device) < lengths.unsqueeze(1)):
            raise ValueError("the rnn family needs right-padded masks: every item's real steps first, then padding")
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.dropout(h), mask
