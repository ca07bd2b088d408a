"""Reading a clip into a uint8 array [frames, H, W, C], once: PyAV for video files, Pillow for frame folders.

Both readers convert and resize with the same Pillow calls, so a video and its extracted (lossless) frames
give identical arrays. `FrameCache` keeps every decoded clip as a .npy file keyed by the clip's path, size and
mtime and the decode options, so later epochs and later runs (sweep trials) never decode again.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from datamodules.errors import DataError
from datamodules.paths import is_writable
from datamodules.video.layouts import FRAME_SUFFIXES, frame_files

CACHE_FORMAT = 1  # bump when the cached arrays change meaning, so stale cache files are never read


class UnreadableClip(Exception):
    """A clip that cannot be read: a missing or corrupt file, or a folder without frames."""


@dataclass(frozen=True)
class DecodeOptions:
    resize: int | None  # square side in pixels, or None to keep the original size
    channels: int  # 3 = RGB, 1 = grayscale


def to_array(image: Image.Image, options: DecodeOptions) -> np.ndarray:
    image = image.convert("L" if options.channels == 1 else "RGB")
    if options.resize:
        image = image.resize((options.resize, options.resize), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


def stacked(frames: list[np.ndarray], path: Path) -> np.ndarray:
    if not frames:
        raise UnreadableClip(
            f"{path}: no frames: the folder holds no {', '.join(sorted(FRAME_SUFFIXES))} image; add the clip's "
            "frames or delete the folder"
        )
    sizes = sorted({frame.shape[1::-1] for frame in frames})  # (width, height)
    if len(sizes) > 1:
        raise DataError(f"{path}: frames of different sizes (width, height) {sizes}; set --data.resize to resize them")
    return np.stack(frames)


REENCODE = "re-encode the clip (e.g. ffmpeg -i <file> out.mp4) or replace it with a complete copy"


def undecodable(path: Path, why: str) -> UnreadableClip:
    return UnreadableClip(f"{path}: no video frames could be decoded ({why}); {REENCODE}")


def frames_missing(declared: int, decoded: int) -> bool:
    """True when fewer frames decoded than a cut-short file would give: a container's frame count can be off by
    a frame or two (the HMDB51 samples decode 1 fewer or 3 more), so only more than 2 frames and 5% missing count."""
    return declared - decoded > max(2, 0.05 * declared)


def decode_video(path: Path, options: DecodeOptions) -> np.ndarray:
    """Every frame of the first video stream of a file; UnreadableClip when none decodes or the file is cut short."""
    if path.stat().st_size == 0:
        raise undecodable(path, "the file is empty, 0 bytes")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise undecodable(path, "the file holds no video stream")
            declared = container.streams.video[0].frames  # 0 when the container does not say
            frames = [to_array(frame.to_image(), options) for frame in container.decode(video=0)]
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:  # IndexError: a stream without any frame
        raise undecodable(path, f"{type(error).__name__}: {error}") from error
    if not frames:
        raise undecodable(path, "its video stream holds no frame")
    if frames_missing(declared, len(frames)):
        raise UnreadableClip(
            f"{path}: only {len(frames)} of the {declared} video frames its header declares could be decoded: the "
            f"file is cut short or damaged; {REENCODE}"
        )
    return stacked(frames, path)


def read_frame_folder(path: Path, options: DecodeOptions) -> np.ndarray:
    """Every image of a frame folder, in natural order."""
    frames = []
    for file in frame_files(path):
        try:
            with Image.open(file) as image:
                frames.append(to_array(image, options))
        except OSError as error:  # PIL.UnidentifiedImageError and truncated images are OSErrors
            raise UnreadableClip(f"{file}: not a readable image ({error}); replace or delete the frame") from error
    return stacked(frames, path)


def read_clip(path: Path, options: DecodeOptions) -> np.ndarray:
    """A frame folder or a video file as uint8 [frames, H, W, C]."""
    if not path.exists():
        raise UnreadableClip(f"{path}: no such file or folder")
    return (read_frame_folder if path.is_dir() else decode_video)(path, options)


class FrameCache:
    """Decoded clips as uint8 .npy files in `folder`, one per clip and decode options."""

    def __init__(self, folder: Path, options: DecodeOptions) -> None:
        self.folder, self.options = folder, options
        self.writable = is_writable(folder)  # else clips are decoded on every read: slower, never wrong

    def key(self, clip: Path) -> str:
        """Changes when the clip's files change (path, size, mtime) or the decode options do."""
        if not clip.exists():
            raise UnreadableClip(f"{clip}: no such file or folder")
        sources = frame_files(clip) if clip.is_dir() else [clip]
        stamps = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in sources]
        payload = json.dumps([CACHE_FORMAT, str(clip.resolve()), stamps, asdict(self.options)])
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def frames(self, clip: Path) -> np.ndarray:
        """The clip's frames, decoded on the first call only."""
        file = self.folder / f"{self.key(clip)}.npy"
        if file.is_file():
            return np.load(file)
        frames = read_clip(clip, self.options)
        if not self.writable:
            return frames
        partial = file.with_name(f"{file.stem}.{os.getpid()}.partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                np.save(handle, frames)
            os.replace(partial, file)  # atomic: an interrupted run never leaves a truncated file under the real name
        except OSError:  # a full disk or a read-only file system: the cache only saves time
            partial.unlink(missing_ok=True)
        return frames
