"""The frame datamodule: clips found on disk, decoded once into a cache, split, and served as tensors.

Reading order, each step guarding the next: find the clips (a layout or a split file), read each through the
decoded-frame cache (unreadable clips and empty class folders: skip with one warning, or DataError), pad or
skip clips shorter than one clip span, check that all frames share one size, split by clip, fit per-channel
normalisation on the training split, then cut batches from one uint8 frame tensor.
Batches are (x float32 [B, T, C, H, W], y LongTensor [B]); test batches with test_clips > 1 are
[B, n_clips, T, C, H, W] and the LightningModule averages its scores over the clips.

`FrameDataModule` is the shared machinery; a subclass says where its clips are (`find_clips`) and may change
how they split (`split`). `video-folder` reads your own clips in any layout of datamodules.video.layouts;
moving-shapes and hmdb51-samples have fixed sources.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from datamodules import register_dataset
from datamodules.base import DataOptions, StwDataModule
from datamodules.errors import ConfigError, DataError
from datamodules.fingerprint import fingerprint
from datamodules.paths import cache_root, check_inside, data_root
from datamodules.specs import ClassifySpec
from datamodules.video.clips import ClipDataset, ClipSampling, ClipTransform, channel_stats, cut_clips
from datamodules.video.decode import DecodeOptions, FrameCache, UnreadableClip, read_clip
from datamodules.video.layouts import (
    LAYOUTS,
    SPLITS,
    VIDEO_SUFFIXES,
    ClipRef,
    find_class_clips,
    frame_files,
    read_split_file,
)
from datamodules.video.splits import split_clips


@dataclass
class ClipOptions(DataOptions):
    """How clips are sampled, augmented and normalised, and what bad input does.

    Args:
        clip_len: frames per clip (T).
        frame_stride: take every frame_stride-th frame, so a clip spans (clip_len - 1) * frame_stride + 1 frames.
        test_clips: clips per video at test time, evenly spaced; the model averages its scores over them.
        resize: resize every frame to resize x resize pixels once, into the cache (the aspect ratio is not kept);
            None keeps the original size, which must then be the same for every frame.
        crop: side of a square crop of every clip, random in training and centred otherwise; None keeps the frame.
        flip: flip training clips horizontally at random (turn off when left and right carry the label).
        channels: 3 reads frames as RGB, 1 as grayscale.
        short_clips: clips shorter than one clip span: "pad" repeats their last frame, "skip" drops them.
        bad_files: unreadable or corrupt clips and empty class folders: "skip" drops them with one warning
            listing them all, "error" raises a DataError.
        seed: seeds the split of the clips (the run's --seed seeds the training order and each training
            batch's clip offsets, crops and flips).
        cache_dir: folder of the decoded-frame cache; default $STW_CACHE_DIR, else ./data/cache.
    """

    clip_len: int = 8
    frame_stride: int = 1
    test_clips: int = 1
    resize: int | None = 64
    crop: int | None = None
    flip: bool = True
    channels: int = 3
    short_clips: Literal["pad", "skip"] = "pad"
    bad_files: Literal["skip", "error"] = "skip"
    seed: int = 0
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        choices = {"short_clips": ("pad", "skip"), "bad_files": ("skip", "error"), "channels": (1, 3)}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"data option {name}={getattr(self, name)!r}; choose one of: {', '.join(map(str, valid))}"
                )
        sizes = {
            "clip_len": self.clip_len,
            "frame_stride": self.frame_stride,
            "test_clips": self.test_clips,
            "resize": self.resize or 1,
            "crop": self.crop or 1,
        }
        too_small = [f"{name}={value}" for name, value in sizes.items() if value < 1]
        if too_small:
            raise ConfigError(f"data options {', '.join(too_small)} must be >= 1")
        if self.crop and self.resize and self.crop > self.resize:
            raise ConfigError(f"data option crop={self.crop} is larger than resize={self.resize}")


@dataclass
class SplitOptions(ClipOptions):
    """Frame datasets split by a seeded draw of whole clips.

    Args:
        val_fraction: share of each class's clips (of the groups, when clips have groups) for validation,
            unless a split file names val clips.
        test_fraction: the same for testing, unless a split file gives the splits.
    """

    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ConfigError(
                f"val_fraction={self.val_fraction} and test_fraction={self.test_fraction} must be > 0 and sum to < 1"
            )


@dataclass
class FolderOptions(SplitOptions):
    """Your own clips: a folder of class folders, or a split file that lists the clips.

    Args:
        clips_dir: folder of the clips, absolute or relative to root (then inside it: no '..').
        layout: "frames" for <clips_dir>/<class>/<clip>/<frame>.jpg|png, "videos" for <clips_dir>/<class>/<clip>.avi|mp4.
        split_file: a CSV with the header clip,label[,split][,group] or a UCF101 trainlistNN.txt, absolute or
            relative to clips_dir (then inside it: no '..'); it replaces the class folders as the list of clips.
    """

    clips_dir: str = ""
    layout: Literal["frames", "videos"] = "videos"
    split_file: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layout not in LAYOUTS:
            raise ConfigError(f"data option layout={self.layout!r}; choose one of: {', '.join(LAYOUTS)}")
        check_inside(
            self.clips_dir,
            "clips_dir",
            "a relative clips_dir is inside the data folder: give the absolute path of clips elsewhere",
        )
        if self.split_file:
            check_inside(
                self.split_file,
                "split_file",
                "a relative split_file is inside clips_dir: give the absolute path of a split file elsewhere",
            )


# Options that say where files are, never what the tensors hold: kept out of the fingerprint.
LOCATION_OPTIONS = frozenset({"cache_dir", "clips_dir", "split_file"})


def check_same_size(clips: list[ClipRef], arrays: list[np.ndarray]) -> None:
    shapes = [array.shape[1:] for array in arrays]
    for clip, shape in zip(clips, shapes, strict=False):
        if shape != shapes[0]:
            raise DataError(
                f"{clip.path}: frames are {shape[1]}x{shape[0]} but {clips[0].path} has "
                f"{shapes[0][1]}x{shapes[0][0]}; set --data.resize (e.g. 64) to resize every frame"
            )


class FrameDataModule(StwDataModule):
    """Classify clips of frames. Subclasses say where the clips are (`find_clips`)."""

    Options = SplitOptions
    task = "classify"
    input_kind = "frames"

    def __init__(self, options: ClipOptions) -> None:
        super().__init__(options)
        self.class_names: list[str] | None = None
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self.frame_shape: list[int] | None = None
        self.clips: dict[str, list[ClipRef]] = {}  # per split, in dataset order
        self.datasets: dict[str, ClipDataset] = {}
        self.counts: dict[str, int] = {}

    def find_clips(self) -> tuple[list[ClipRef], list[Path]]:
        """The clips, and the class folders that hold none."""
        raise NotImplementedError

    def split(self, clips: list[ClipRef]) -> dict[str, list[int]]:
        """Clip indices per split."""
        return split_clips(clips, self.options.val_fraction, self.options.test_fraction, self.options.seed)

    # --- building the tensors ---------------------------------------------------------------------------------
    @property
    def decode_options(self) -> DecodeOptions:
        return DecodeOptions(self.options.resize, self.options.channels)

    @property
    def sampling(self) -> ClipSampling:
        return ClipSampling(self.options.clip_len, self.options.frame_stride)

    @property
    def transform(self) -> ClipTransform:
        return ClipTransform(self.options.crop, self.options.flip, self.mean, self.std)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # Lightning calls setup once per stage; the tensors are the same for every stage
        clips, empty_folders = self.find_clips()
        clips, arrays = self.read_clips(clips, empty_folders)
        clips, arrays = self.drop_or_pad_short(clips, arrays)
        check_same_size(clips, arrays)
        class_names = sorted({clip.label for clip in clips})
        if self.class_names is not None and self.class_names != class_names:
            raise DataError(
                f"classes {class_names} differ from the restored state's {self.class_names}; "
                "use the data the state was fitted on"
            )
        splits = self.split(clips)
        self.check_splits(clips, splits)
        frames = torch.from_numpy(np.concatenate(arrays))  # [all frames, H, W, C] uint8, indexed per batch
        lengths = torch.tensor([len(array) for array in arrays])
        starts = lengths.cumsum(0) - lengths
        labels = torch.tensor([class_names.index(clip.label) for clip in clips])
        rows = {name: torch.tensor(splits[name], dtype=torch.long) for name in SPLITS}
        if self.mean is None:  # a loaded state_dict is kept: predict and reproduce reuse a run's statistics
            self.mean, self.std = channel_stats(frames, starts[rows["train"]], lengths[rows["train"]])
        self.check_crop(frames.shape[1:3])
        height, width, channels = frames.shape[1:]
        self.frame_shape = [channels, self.options.crop or height, self.options.crop or width]
        self.class_names = class_names
        self.clips = {name: [clips[i] for i in splits[name]] for name in SPLITS}
        self.datasets = {
            name: ClipDataset(
                frames,
                starts[index],
                lengths[index],
                labels[index],
                self.sampling,
                self.transform,
                n_clips=self.options.test_clips if name == "test" else 1,
                # Augmentation is training randomness like the order, so the run's seed; + 1 draws a stream
                # independent of the shuffle's.
                seed=self.options.shuffle_seed + 1 if name == "train" else None,
            )
            for name, index in rows.items()
        }

    def read_clips(self, clips: list[ClipRef], empty_folders: list[Path]) -> tuple[list[ClipRef], list[np.ndarray]]:
        cache = FrameCache(cache_root(self.options.cache_dir) / "frames", self.decode_options)
        if not cache.writable:
            warnings.warn(
                f"the frame cache {cache.folder} is read-only, so every clip is decoded again on every run; point "
                "--data.cache_dir (or $STW_CACHE_DIR) at a writable folder to decode each clip once",
                stacklevel=3,
            )
        kept, arrays, bad = [], [], [f"{folder}: empty class folder" for folder in empty_folders]
        for clip in clips:
            try:
                arrays.append(cache.frames(clip.path))
                kept.append(clip)
            except UnreadableClip as error:
                bad.append(str(error))
        self.counts["skipped_bad_files"] = len(bad) - len(empty_folders)
        self.counts["empty_class_folders"] = len(empty_folders)
        if bad and self.options.bad_files == "error":
            raise DataError(
                "unreadable clips or empty class folders:\n  "
                + "\n  ".join(bad)
                + "\nfix or remove them, or set --data.bad_files skip"
            )
        if bad:
            warnings.warn(
                f"skipped {len(bad)} unreadable clips or empty class folders:\n  " + "\n  ".join(bad), stacklevel=3
            )
        if not kept:
            raise DataError(f"no readable clips among {len(clips)} found; see the list above")
        return kept, arrays

    def drop_or_pad_short(
        self, clips: list[ClipRef], arrays: list[np.ndarray]
    ) -> tuple[list[ClipRef], list[np.ndarray]]:
        """Padding happens at sampling time (frame numbers stop at a clip's last frame); skipping happens here."""
        short = [len(array) < self.sampling.span for array in arrays]
        pad = self.options.short_clips == "pad"
        self.counts["padded_clips"] = sum(short) if pad else 0
        self.counts["skipped_clips"] = 0 if pad else sum(short)
        if pad:
            return clips, arrays
        kept = [i for i, is_short in enumerate(short) if not is_short]
        if not kept:
            raise DataError(
                f"all {len(clips)} clips are shorter than one clip span of {self.sampling.span} frames; "
                "lower --data.clip_len or --data.frame_stride, or set --data.short_clips pad"
            )
        return [clips[i] for i in kept], [arrays[i] for i in kept]

    def check_splits(self, clips: list[ClipRef], splits: dict[str, list[int]]) -> None:
        for name in SPLITS:
            if not splits[name]:
                raise DataError(
                    f"the {name} split is empty: {len(clips)} clips in {len({c.label for c in clips})} classes "
                    "are too few for the split fractions; add clips or change --data.val_fraction/test_fraction"
                )

    def check_crop(self, size: tuple[int, int]) -> None:
        if self.options.crop and self.options.crop > min(size):
            raise DataError(
                f"data option crop={self.options.crop} is larger than the {size[1]}x{size[0]} frames; "
                "lower --data.crop or raise --data.resize"
            )

    # --- LightningDataModule ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Class names, the training split's per-channel mean and std, and the frame shape; JSON-serialisable."""
        if self.mean is None:
            return {}
        return {
            "class_names": self.class_names,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "frame_shape": self.frame_shape,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.class_names, self.frame_shape = list(state["class_names"]), list(state["frame_shape"])
        self.mean, self.std = torch.tensor(state["mean"]), torch.tensor(state["std"])
        for dataset in self.datasets.values():  # restored after setup: cut batches with the loaded statistics
            dataset.transform = self.transform

    # --- what models, evaluation and predict read ---------------------------------------------------------------
    @property
    def spec(self) -> ClassifySpec:
        if not self.datasets:
            raise RuntimeError("call setup() before reading spec")
        counts = torch.bincount(self.datasets["train"].labels, minlength=len(self.class_names))
        return ClassifySpec(
            input_kind=self.input_kind,
            class_names=self.class_names,
            class_counts=counts.tolist(),
            seq_len=self.options.clip_len,
            test_clips=self.options.test_clips,
            frame_shape=self.frame_shape,
            details={**{f"n_{name}": len(self.datasets[name]) for name in SPLITS}, **self.counts},
        )

    def inputs_for(self, path: str | Path) -> Tensor:
        """Model inputs for one new clip (a video file or a folder of frames), cut like test clips with the
        fitted statistics: [1, T, C, H, W], or [1, n, T, C, H, W] with test_clips > 1. Short clips are padded."""
        if self.mean is None:
            raise RuntimeError("no fitted statistics: call setup() or load_state_dict() first")
        path = Path(path)
        try:
            frames = torch.from_numpy(read_clip(path, self.decode_options))
        except UnreadableClip as error:
            found = "a folder" if path.is_dir() else f"a {path.suffix} file" if path.suffix else "a file without suffix"
            raise DataError(
                f"{error}. This run classifies clips: give a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or a "
                f"folder of frame images, one clip per input; {path.name} is {found}"
            ) from None
        x = cut_clips(
            frames,
            torch.tensor([0]),
            torch.tensor([len(frames)]),
            self.sampling,
            self.transform,
            self.options.test_clips,
            generator=None,
        )
        if list(x.shape[-3:]) != self.frame_shape:
            raise DataError(
                f"{path}: frames give inputs of shape {list(x.shape[-3:])} but the model was trained on "
                f"{self.frame_shape}; set --data.resize so every clip is resized alike"
            )
        return x

    def shaping_options(self) -> dict[str, Any]:
        return {k: v for k, v in super().shaping_options().items() if k not in LOCATION_OPTIONS}

    def source_files(self) -> list[Path]:
        """The raw files behind the tensors: every kept clip's video file or frame images."""
        self.setup()
        paths = dict.fromkeys(
            clip.path for split in self.clips.values() for clip in split
        )  # a clip may be in several splits
        return [file for path in paths for file in (frame_files(path) if path.is_dir() else [path])]

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.source_files(), self.shaping_options())


@register_dataset("video-folder")
class VideoFolder(FrameDataModule):
    """Your own clips: a folder of class folders (frame folders or video files), or a split file listing them."""

    Options = FolderOptions

    def clips_folder(self) -> Path:
        if not self.options.clips_dir:
            raise DataError("data option clips_dir is empty; set --data.clips_dir to the folder of your clips")
        return data_root(self.options.root) / Path(self.options.clips_dir).expanduser()

    def split_file(self) -> Path | None:
        return self.clips_folder() / self.options.split_file if self.options.split_file else None

    def find_clips(self) -> tuple[list[ClipRef], list[Path]]:
        split_file = self.split_file()
        if split_file:
            return read_split_file(split_file, self.clips_folder()), []
        return find_class_clips(self.clips_folder(), self.options.layout)

    def source_files(self) -> list[Path]:
        split_file = self.split_file()
        return super().source_files() + ([split_file] if split_file else [])
