"""Cutting model inputs out of decoded clips: T frames at a stride, cropped, flipped and normalised.

All clips of a dataset live in one uint8 tensor [frames, H, W, C]; a batch is one fancy index of frame
numbers [B, n_clips, T], so the loader never decodes, resizes or collates. Each clip's crop and flip are drawn
once and applied to all of its frames: a crop that moved from frame to frame would look like motion.
"""

from dataclasses import dataclass

import torch
from torch import Generator, Tensor
from torch.utils.data import Dataset

from datamodules.windows import process_shard, rank_seed


@dataclass(frozen=True)
class ClipSampling:
    """Which frames make a clip: `clip_len` frames, `stride` apart."""

    clip_len: int
    stride: int

    @property
    def span(self) -> int:
        """Frames from a clip's first to its last sampled frame."""
        return (self.clip_len - 1) * self.stride + 1

    def offsets(self, lengths: Tensor, n_clips: int, generator: Generator | None) -> Tensor:
        """First frame of each clip [B, n_clips]: uniform at random with a generator (training), else the
        centres of n_clips equal segments of the possible range (one clip: centred)."""
        room = (lengths - self.span).clamp(min=0)
        if generator is not None:
            return (torch.rand(len(lengths), n_clips, generator=generator) * (room + 1)[:, None]).long()
        centres = (torch.arange(n_clips) + 0.5) / n_clips
        return (centres[None] * room[:, None]).floor().long()

    def frame_numbers(self, starts: Tensor, lengths: Tensor, offsets: Tensor) -> Tensor:
        """Rows of the frame tensor [B, n_clips, T]; a clip shorter than the span repeats its last frame."""
        steps = offsets[..., None] + torch.arange(self.clip_len) * self.stride
        return starts[:, None, None] + torch.minimum(steps, (lengths - 1)[:, None, None])


@dataclass(frozen=True)
class ClipTransform:
    """Crop and flip, drawn once per clip, then normalisation."""

    crop: int | None  # square side; None keeps the whole frame
    flip: bool  # random horizontal flip, only when a generator is given
    mean: Tensor  # [C], in [0, 1] pixel units, from the training split
    std: Tensor  # [C]

    def __call__(self, clips: Tensor, generator: Generator | None) -> Tensor:
        """uint8 [B, n, T, H, W, C] -> float32 [B, n, T, C, h, w]; random crop and flip need a generator."""
        clips = self.cropped(clips, generator)
        if self.flip and generator is not None:
            flipped = torch.rand(len(clips), generator=generator) < 0.5
            clips[flipped] = clips[flipped].flip(-2)  # -2 is the width axis of [.., H, W, C]
        # (pixel / 255 - mean) / std as one scale and shift, in place on the one float copy the permute makes
        scale, shift = 1 / (255 * self.std), -self.mean / self.std
        x = clips.permute(0, 1, 2, 5, 3, 4).float()
        return x.mul_(scale.view(-1, 1, 1)).add_(shift.view(-1, 1, 1))

    def cropped(self, clips: Tensor, generator: Generator | None) -> Tensor:
        if self.crop is None:
            return clips
        size, (height, width) = self.crop, clips.shape[3:5]
        if generator is None:
            tops, lefts = [(height - size) // 2] * len(clips), [(width - size) // 2] * len(clips)
        else:
            tops = torch.randint(0, height - size + 1, (len(clips),), generator=generator).tolist()
            lefts = torch.randint(0, width - size + 1, (len(clips),), generator=generator).tolist()
        return torch.stack(
            [
                clip[..., top : top + size, left : left + size, :]
                for clip, top, left in zip(clips, tops, lefts, strict=True)
            ]
        )


def channel_stats(frames: Tensor, starts: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std in [0, 1] pixel units over the given clips' frames: exact, from histograms of
    the uint8 values, so no float copy of the training split is ever made."""
    channels = frames.shape[-1]
    histogram = torch.zeros(channels, 256, dtype=torch.int64)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=False):
        pixels = frames[start : start + length].reshape(-1, channels)
        for channel in range(channels):
            histogram[channel] += torch.bincount(pixels[:, channel], minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255
    count = histogram.sum(1)
    mean = (histogram * values).sum(1) / count
    variance = (histogram * values.square()).sum(1) / count - mean.square()
    std = variance.clamp(min=0).sqrt().clamp(min=1 / 255)  # a constant channel stays finite
    return mean.float(), std.float()


def cut_clips(
    frames: Tensor,
    starts: Tensor,
    lengths: Tensor,
    sampling: ClipSampling,
    transform: ClipTransform,
    n_clips: int,
    generator: Generator | None,
) -> Tensor:
    """Model inputs for clips at `starts` with `lengths` in `frames`: [B, T, C, h, w], or [B, n, T, C, h, w] for n_clips > 1."""
    numbers = sampling.frame_numbers(starts, lengths, sampling.offsets(lengths, n_clips, generator))
    # numpy's take copies whole frame rows; torch's uint8 fancy index is far slower (about 5 ms vs 0.1 ms a batch)
    x = transform(torch.from_numpy(frames.numpy().take(numbers.numpy(), axis=0)), generator)
    return x if n_clips > 1 else x[:, 0]


class ClipDataset(Dataset):
    """The clips of one split, served a whole batch at a time: (x float32, y LongTensor [B]).

    With a `seed` every batch draws random offsets, crops and flips (training); without one, clips are
    centred or evenly spaced and centre-cropped, the same on every pass (evaluation).
    """

    def __init__(
        self,
        frames: Tensor,
        starts: Tensor,
        lengths: Tensor,
        labels: Tensor,
        sampling: ClipSampling,
        transform: ClipTransform,
        n_clips: int = 1,
        seed: int | None = None,
    ) -> None:
        self.frames, self.starts, self.lengths, self.labels = frames, starts, lengths, labels
        self.sampling, self.transform, self.n_clips = sampling, transform, n_clips
        self.seed, self.generator = seed, None

    def draws(self) -> Generator | None:
        """The generator of the training draws, made on first use: by then a data-parallel process knows its rank,
        and each rank draws its own offsets and crops for its share of a batch."""
        if self.seed is not None and self.generator is None:
            self.generator = torch.Generator().manual_seed(rank_seed(self.seed, process_shard()[0]))
        return self.generator

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(index)
        x = cut_clips(
            self.frames,
            self.starts[index],
            self.lengths[index],
            self.sampling,
            self.transform,
            self.n_clips,
            self.draws(),
        )
        return x, self.labels[index]
