"""The classification model: a modality stem, any registered encoder family, a pooling head.

forward(x) -> logits [B, num_classes], where x is whatever the stem for spec.input_kind reads (token ids
[B, T] for text, frames [B, T, C, H, W] for video). The stem is chosen by the input kind and by what the
family reads: per-step vectors for most families, the raw clip for c3d and convlstm. The stem's mask follows
the sequence through the encoder into the pooling, so padded steps never count. Families that need a fixed
length (linear, mlp) refuse variable-length input such as tokens when they are built, with an error naming
the families that work.
"""

from typing import Any

from torch import Tensor, nn

from datamodules.specs import ClassifySpec
from lightning_modules.families import build_encoder, family_of
from lightning_modules.families.base import FamilyConfig
from lightning_modules.frame_cnn import FrameCNNOptions
from lightning_modules.heads import ClassificationHead
from lightning_modules.pooling import TemporalPooling
from lightning_modules.stems import build_stem


class Classifier(nn.Module):
    """Input batch -> class logits with any registered encoder family.

    Args:
        family: family name or alias (see lightning_modules.families).
        family_config: the family's config dataclass or a dict of its fields; None takes the defaults.
        spec: the datamodule's spec: input_kind, num_classes and what the stem reads (see lightning_modules.stems).
        embed_dim: width of the stem's output, the encoder's input.
        embed_dropout: dropout on the stem's output.
        pooling: how the head pools time: last, mean, max or attention.
        head_dropout: dropout on the pooled vector before the Linear to logits.
        frame_cnn: the per-frame CNN of the frames stem; None takes the defaults (unused for other inputs).
    """

    def __init__(
        self,
        family: str,
        family_config: FamilyConfig | dict[str, Any] | None = None,
        *,
        spec: ClassifySpec,
        embed_dim: int,
        embed_dropout: float = 0.0,
        pooling: TemporalPooling = "mean",
        head_dropout: float = 0.0,
        frame_cnn: FrameCNNOptions | None = None,
    ) -> None:
        super().__init__()
        self.stem = build_stem(spec, embed_dim, embed_dropout, reads=family_of(family).input, frame_cnn=frame_cnn)
        self.encoder = build_encoder(family, family_config, in_dim=self.stem.out_dim, seq_len=self.stem.seq_len)
        self.head = ClassificationHead(self.encoder.out_dim, spec.num_classes, pooling, head_dropout)

    def forward(self, x: Tensor) -> Tensor:
        h, mask = self.stem(x)
        h, mask = self.encoder(h, mask)
        return self.head(h, mask)


__all__ = ["Classifier"]
