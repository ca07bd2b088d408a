"""Modality stems: what turns a batch's raw input into the [B, T, D] sequence every encoder family reads.

One registry, keyed by the spec's `input_kind`; each kind names its stem for each thing a family can read
(its `input`: "steps" for almost all, "clip" for the video families that convolve over raw frames) and the
options dataclass its stems take, if any (offered as `stem.*` on the command line). A new modality adds an
entry here and nothing else in the model changes. A stem maps an input batch to (h [B, T, D], mask [B, T] bool
True=real, or None) and exposes `out_dim` (D) and `seq_len` (T, or None when items differ in length); the
clip stem hands the frames on unchanged, with out_dim the frame shape (C, H, W).
"""

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from datamodules.errors import ConfigError
from datamodules.specs import Spec
from lightning_modules.frame_cnn import FrameCNN, FrameCNNOptions


class Stem(nn.Module):
    """Built as Stem(spec, dim, dropout, options); dim None keeps the input's own width where the stem can."""

    out_dim: int | tuple[int, int, int]
    seq_len: int | None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError


def projection(in_dim: int, dim: int | None) -> tuple[nn.Module, int]:
    """A Linear from in_dim to dim and its width, or the identity keeping in_dim when dim is None."""
    return (nn.Linear(in_dim, dim), dim) if dim else (nn.Identity(), in_dim)


class TokenStem(Stem):
    """Token ids [B, T] -> embeddings [B, T, dim]; padding ids embed to zeros and are masked out.

    Reads spec.vocab_size and spec.pad_id. Texts differ in length, so seq_len is None.
    """

    def __init__(self, spec: Spec, dim: int, dropout: float, options: None = None) -> None:
        super().__init__()
        self.pad_id = spec.pad_id
        self.embedding = nn.Embedding(spec.vocab_size, dim, padding_idx=self.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.out_dim, self.seq_len = dim, None

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.embedding(ids)), ids != self.pad_id


class VectorStem(Stem):
    """Per-step vectors [B, T, F] (a series' channel values, keypoints per frame) -> a linear projection [B, T, dim].

    Reads spec.n_inputs (F) and spec.seq_len (T when every item has the same length); dim None hands the
    values on as they are. Items are not padded, so the mask is None.
    """

    def __init__(self, spec: Spec, dim: int | None, dropout: float, options: None = None) -> None:
        super().__init__()
        self.project, self.out_dim = projection(spec.n_inputs, dim)
        self.dropout = nn.Dropout(dropout)
        self.seq_len = spec.seq_len

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dropout(self.project(x)), None


class FrameStem(Stem):
    """Frames [B, T, C, H, W] -> one feature vector per frame from a small 2D CNN, projected to [B, T, dim].

    Every frame goes through the same CNN on its own ([B*T, C, H, W] in one batch); reads spec.frame_shape
    and spec.seq_len. Clips are never padded, so the mask is None.
    """

    def __init__(self, spec: Spec, dim: int | None, dropout: float, options: FrameCNNOptions) -> None:
        super().__init__()
        self.cnn = FrameCNN(spec.frame_shape, options)
        self.project, self.out_dim = projection(self.cnn.out_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.seq_len = spec.seq_len

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        batch, steps = clips.shape[:2]
        features = self.cnn(clips.flatten(0, 1)).unflatten(0, (batch, steps))
        return self.dropout(self.project(features)), None


class ClipStem(Stem):
    """Frames [B, T, C, H, W] handed on as they are, for families that read raw clips; out_dim is (C, H, W).

    The frame CNN's options do not apply: the family convolves the frames itself."""

    def __init__(self, spec: Spec, dim: int | None, dropout: float, options: FrameCNNOptions) -> None:
        super().__init__()
        self.out_dim, self.seq_len = tuple(spec.frame_shape), spec.seq_len

    def forward(self, clips: Tensor) -> tuple[Tensor, Tensor | None]:
        return clips, None


@dataclass(frozen=True)
class InputKind:
    """The stems of one input kind, by what the family reads, and the options dataclass they take (or None)."""

    stems: dict[str, type[Stem]]
    options: type | None = None


STEMS: dict[str, InputKind] = {
    "values": InputKind({"steps": VectorStem}),  # forecasting windows [B, L, C]
    "vectors": InputKind({"steps": VectorStem}),
    "tokens": InputKind({"steps": TokenStem}),
    "frames": InputKind({"steps": FrameStem, "clip": ClipStem}, options=FrameCNNOptions),
}


def stem_options(input_kind: str) -> type | None:
    """The options dataclass of an input kind's stems (the `stem.*` config section), or None."""
    return STEMS[input_kind].options if input_kind in STEMS else None


def build_stem(
    spec: Spec, dim: int | None, dropout: float, reads: str = "steps", options: Any | dict[str, Any] | None = None
) -> Stem:
    """The stem that turns spec.input_kind into what the family reads ("steps" or "clip").

    `options` is the kind's options dataclass or a dict of its fields (None takes the defaults); kinds without
    options ignore it. An unknown kind lists the registered ones; a kind that cannot give what the family reads
    (raw clips from keypoint vectors) names the kinds that can.
    """
    kind = spec.input_kind
    if kind not in STEMS:
        raise ConfigError(f"no stem for input_kind {kind!r}; registered: {', '.join(sorted(STEMS))}")
    entry = STEMS[kind]
    if reads not in entry.stems:
        givers = sorted(k for k, other in STEMS.items() if reads in other.stems)
        raise ConfigError(
            f"the family reads {reads!r} input, which input_kind {', '.join(givers)} gives but {kind!r} "
            f"does not; choose a family that reads {' or '.join(map(repr, entry.stems))} "
            "(e.g. rnn, transformer, cnn_rnn_transformer)"
        )
    if entry.options is None:
        options = None
    elif not isinstance(options, entry.options):
        options = entry.options(**(options or {}))
    return entry.stems[reads](spec, dim, dropout, options)


__all__ = [
    "STEMS",
    "ClipStem",
    "FrameStem",
    "InputKind",
    "Stem",
    "TokenStem",
    "VectorStem",
    "build_stem",
    "stem_options",
]
