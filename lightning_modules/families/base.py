"""The contract every temporal encoder family keeps.

An encoder maps a sequence of feature vectors to a sequence of feature vectors:
    forward(x [B, T, in_dim], mask [B, T] bool or None) -> (h [B, T', out_dim], mask' [B, T'] or None)
`mask` marks real (True) versus padded (False) steps, for text batches padded to their longest item;
encoders that shorten time (pooling, patching) shorten the mask with it. After construction an encoder
exposes `out_dim` and `out_len` (T', or None when the input length is variable).
Stems (value projection, token embedding, frame CNN) come before it and task heads after it.

A family registered with input="clip" (c3d, convlstm) reads raw video instead: x [B, T, C, H, W] and mask None,
built with in_dim the frame shape (C, H, W) and seq_len T; it still returns (h [B, T', out_dim], None), so the
same heads pool it.

A family registered with output="horizon" (segrnn, sparsetsf) forecasts by itself: built with the extra keyword
horizon=H, it maps a fixed-length x [B, L, D] to (y [B, H, D], None), step h being its forecast h steps ahead of
every one of the D features, with out_len H and out_dim D. The forecast head then only maps D to the targets.
"""

from dataclasses import dataclass

from torch import Tensor, nn

from datamodules.errors import ConfigError


@dataclass
class FamilyConfig:
    """Options shared by every family.

    Args:
        dropout: dropout probability inside the encoder.
    """

    dropout: float = 0.1


def frame_shape(family: str, in_dim: int | tuple[int, int, int]) -> tuple[int, int, int]:
    """The (C, H, W) a clip family was built for; a plain width means it was put behind a per-step stem."""
    if isinstance(in_dim, int) or len(in_dim) != 3:
        raise ConfigError(
            f"the {family} family reads raw clips [B, T, C, H, W], so it needs the frame shape (C, H, W), "
            f"got in_dim={in_dim}; use it on frame datasets (moving-shapes, hmdb51-samples, video-folder)"
        )
    channels, height, width = in_dim
    return channels, height, width


class Encoder(nn.Module):
    out_dim: int
    out_len: int | None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError
