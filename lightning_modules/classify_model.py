"""The classification model: the task model (stem -> encoder -> pooling head) with class logits as outputs.

forward(x) -> logits [B, num_classes], for x whatever the stem for spec.input_kind reads (token ids [B, T] for
text, frames [B, T, C, H, W] for video, keypoint vectors [B, T, F]); see lightning_modules.task_model.
"""

from typing import Any

from datamodules.specs import ClassifySpec
from lightning_modules.families.base import FamilyConfig
from lightning_modules.pooling import TemporalPooling
from lightning_modules.task_model import TaskModel


class Classifier(TaskModel):
    """Input batch -> class logits with any registered encoder family.

    Args:
        family: family name or alias (see lightning_modules.families).
        family_config: the family's config dataclass or a dict of its fields; None takes the defaults.
        spec: the datamodule's spec: input_kind, the classes and what the stem reads (see lightning_modules.stems).
        embed_dim: width of the stem's output, the encoder's input.
        embed_dropout: dropout on the stem's output.
        pooling: how the head pools time: last, mean, max, attention, or flatten (fixed-length input only).
        head_dropout: dropout on the pooled vector before the Linear to logits.
        stem_options: the input kind's stem options, e.g. the frames stem's FrameCNNOptions (or a dict of its
            fields); None takes the defaults, and kinds without options ignore it.
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
        stem_options: Any | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            "classify",
            family,
            family_config,
            spec,
            stem_dim=embed_dim,
            stem_dropout=embed_dropout,
            stem_options=stem_options,
            pooling=pooling,
            head_dropout=head_dropout,
        )


__all__ = ["Classifier"]
