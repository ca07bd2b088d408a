"""The contract every temporal encoder family keeps.

An encoder maps a sequence of feature vectors to a sequence of feature vectors:
    forward(x [B, T, in_dim], mask [B, T] bool or None) -> (h [B, T', out_dim], mask' [B, T'] or None)
`mask` marks real (True) versus padded (False) steps, for text batches padded to their longest item;
encoders that shorten time (pooling, patching) shorten the mask with it. After construction an encoder
exposes `out_dim` and `out_len` (T', or None when the input length is variable).
Stems (value projection, token embedding, frame CNN) come before it and task heads after it.
"""

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class FamilyConfig:
    """Options shared by every family.

    Args:
        dropout: dropout probability inside the encoder.
    """

    dropout: float = 0.1


class Encoder(nn.Module):
    out_dim: int
    out_len: int | None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError
