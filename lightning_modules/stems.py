"""Modality stems: what turns a batch's raw input into the [B, T, D] sequence every encoder family reads.

One registry, keyed by the datamodule spec's `input_kind` and by what the family reads (its `input`: "steps"
for almost all, "clip" for the video families that convolve over raw frames), so a new modality adds a stem
here and nothing else in the model changes. A stem maps an input batch to (h [B, T, D], mask [B, T] bool
True=real, or None) and exposes `out_dim` (D) and `seq_len` (T, or None when items differ in length); the
clip stem hands the frames on unchanged, with out_dim the frame shape (C, H, W).
"""

from collections.abc import Callable

from torch import Tensor, nn

from datamodules.errors import ConfigError
from datamodules.specs import ClassifySpec
from lightning_modules.frame_cnn import FrameCNN, FrameCNNOptions


class TokenStem(nn.Module):
    """Token ids [B, T] -> embeddings [B, T, dim]; padding ids embed to zeros and are masked out.

    Reads spec.vocab_size and spec.pad_id. Texts differ in length, so seq_len is None.
    """

    def __init__(self, spec: ClassifySpec, dim: int, dropout: float) -> None:
        super().__init__()
        self.pad_id = spec.pad_id
        self.embedding = nn.Embedding(spec.vocab_size, dim, padding_idx=self.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, None

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.embedding(ids)), ids != self.pad_id


class VectorStem(nn.Module):
    """Per-step feature vectors [B, T, F] (e.g. keypoints per frame) -> a linear projection [B, T, dim].

    Reads spec.n_inputs (F) and spec.seq_len (T when every item has the same length). Items are not
    padded, so the mask is None.
    """

    def __init__(self, spec: ClassifySpec, dim: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(spec.n_inputs, dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, spec.seq_len

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.project(x)), None


class FrameStem(nn.Module):
    """Frames [B, T, C, H, W] -> one feature vector per frame from a small 2D CNN, projected to [B, T, dim].

    Every frame goes through the same CNN on its own ([B*T, C, H, W] in one batch); reads spec.frame_shape
    and spec.seq_len. Clips are never padded, so the mask is None.
    """

    def __init__(self, spec: ClassifySpec, dim: int, dropout: float, cnn: FrameCNNOptions) -> None:
        super().__init__()
        self.cnn = FrameCNN(spec.frame_shape, cnn)
        self.project = nn.Linear(self.cnn.out_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, spec.seq_len

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        batch, steps = clips.shape[:2]
        features = self.cnn(clips.flatten(0, 1)).unflatten(0, (batch, steps))
        return self.dropout(self.project(features)), None


class ClipStem(nn.Module):
    """Frames [B, T, C, H, W] handed on as they are, for families that read raw clips; out_dim is (C, H, W)."""

    def __init__(self, spec: ClassifySpec) -> None:
        super().__init__()
        self.out_dim, self.seq_len = tuple(spec.frame_shape), spec.seq_len

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        return clips, None


# (spec, dim, dropout, frame CNN options) -> stem; each stem reads only what its input needs.
StemFactory = Callable[[ClassifySpec, int, float, FrameCNNOptions], nn.Module]
STEMS: dict[tuple[str, str], StemFactory] = {
    ("tokens", "steps"): lambda spec, dim, dropout, cnn: TokenStem(spec, dim, dropout),
    ("vectors", "steps"): lambda spec, dim, dropout, cnn: VectorStem(spec, dim, dropout),
    ("frames", "steps"): FrameStem,
    ("frames", "clip"): lambda spec, dim, dropout, cnn: ClipStem(spec),
}


def build_stem(
    spec: ClassifySpec, dim: int, dropout: float, reads: str = "steps", frame_cnn: FrameCNNOptions | None = None
) -> nn.Module:
    """The stem that turns spec.input_kind into what the family reads ("steps" or "clip").

    An unknown kind lists the registered ones; a kind that cannot give what the family reads (raw clips from
    keypoint vectors) names the kinds that can.
    """
    kind = spec.input_kind
    kinds = sorted({k for k, _ in STEMS})
    if kind not in kinds:
        raise ConfigError(f"no stem for input_kind {kind!r}; registered: {', '.join(kinds)}")
    if (kind, reads) not in STEMS:
        givers = sorted(k for k, r in STEMS if r == reads)
        feeds = sorted(r for k, r in STEMS if k == kind)
        raise ConfigError(
            f"the family reads {reads!r} input, which input_kind {', '.join(givers)} gives but {kind!r} "
            f"does not; choose a family that reads {' or '.join(map(repr, feeds))} "
            "(e.g. rnn, transformer, cnn_rnn_transformer)"
        )
    return STEMS[kind, reads](spec, dim, dropout, frame_cnn or FrameCNNOptions())


__all__ = ["STEMS", "ClipStem", "FrameStem", "TokenStem", "VectorStem", "build_stem"]
