"""moving-shapes: a seeded synthetic video task where only motion tells the classes apart.

A square, circle or triangle moves in a straight line across small frames; the label is its direction (or
direction and shape). The frames wrap around at the edges (a torus), so the shape's position in any one frame
is uniform whatever its direction, and size, speed, colour and shape are drawn independently of the label:
a model that sees one frame can do no better than chance, which is what makes it a test of temporal modelling.

The clips are written once as PNG frames in layout (a) under <data root>/generated/moving-shapes-<hash>/ (the
hash covers the generator options and version), or under <cache root>/generated/ when the data root is
read-only such as the shared data folder, and are read back through the same loader as any frame folder.
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from datamodules import register_dataset
from datamodules.errors import ConfigError, DataError
from datamodules.paths import is_writable
from datamodules.video.datamodule import FrameDataModule, SplitOptions
from datamodules.video.layouts import ClipRef, find_class_clips
from datamodules.video.storage import generated_root

GENERATOR_VERSION = 1  # bump whenever the pictures change, so folders written by older code are not reused
SHAPES = ("square", "circle", "triangle")
_DIAGONAL = 2**-0.5
# Unit steps in image coordinates (y grows downwards); the first four are used with directions=4.
DIRECTIONS = {
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "left": (-1.0, 0.0),
    "down": (0.0, 1.0),
    "up-right": (_DIAGONAL, -_DIAGONAL),
    "up-left": (-_DIAGONAL, -_DIAGONAL),
    "down-left": (-_DIAGONAL, _DIAGONAL),
    "down-right": (_DIAGONAL, _DIAGONAL),
}


@dataclass
class MovingShapesOptions(SplitOptions):
    """A seeded synthetic clip set: one shape moving in one direction per clip.

    Args:
        seed: seeds the generated clips and their split; the same seed gives the same clips on every run.
        n_clips: clips per class.
        frame_size: side of the square frames in pixels.
        n_frames: frames per generated clip; training samples clip_len of them from a random offset.
        directions: 4 (right, up, left, down) or 8 (adding the diagonals).
        label: "direction", or "direction+shape" for directions x 3 shapes classes.
        resize: frames are generated small, so they are read at their own size by default.
        flip: off by default: a horizontal flip would swap left and right and so the label.
        channels: 1 writes grayscale frames, 3 coloured ones.
    """

    n_clips: int = 100
    frame_size: int = 32
    n_frames: int = 16
    directions: int = 4
    label: Literal["direction", "direction+shape"] = "direction"
    resize: int | None = None
    flip: bool = False
    channels: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.directions not in (4, 8) or self.label not in ("direction", "direction+shape"):
            raise ConfigError(
                f"data options directions={self.directions} and label={self.label!r}: "
                "directions is 4 or 8, label is direction or direction+shape"
            )
        if self.n_clips < 1 or self.n_frames < 2 or self.frame_size < 12:
            raise ConfigError("data options need n_clips >= 1, n_frames >= 2 and frame_size >= 12")


def class_specs(options: MovingShapesOptions) -> list[tuple[str, str, str | None]]:
    """(class name, direction, shape or None for a random shape) per class."""
    directions = list(DIRECTIONS)[: options.directions]
    if options.label == "direction":
        return [(direction, direction, None) for direction in directions]
    return [(f"{direction}_{shape}", direction, shape) for direction in directions for shape in SHAPES]


def sprite(shape: str, size: int, radius: float) -> np.ndarray:
    """A filled shape centred on a size x size canvas, as a float mask in [0, 1]."""
    canvas = Image.new("L", (size, size))
    centre = size / 2
    box = [centre - radius, centre - radius, centre + radius, centre + radius]
    draw = ImageDraw.Draw(canvas)
    if shape == "square":
        draw.rectangle(box, fill=255)
    elif shape == "circle":
        draw.ellipse(box, fill=255)
    else:
        corners = [(centre, centre - radius), (centre - radius, centre + radius), (centre + radius, centre + radius)]
        draw.polygon(corners, fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255


def render_clip(rng: np.random.Generator, direction: str, shape: str, options: MovingShapesOptions) -> np.ndarray:
    """uint8 frames [n_frames, size, size, channels] of one shape moving in `direction` on a torus."""
    size = options.frame_size
    mask = sprite(shape, size, radius=rng.uniform(size / 10, size / 6))
    speed = rng.uniform(1.0, size / 12)  # pixels per frame, far below size / 2 so the motion never aliases
    start = rng.uniform(0, size, 2)  # (x, y), uniform on the torus: one frame's position says nothing of direction
    colour = rng.integers(128, 256, options.channels)
    step = np.array(DIRECTIONS[direction]) * speed
    frames = []
    for t in range(options.n_frames):
        x, y = np.round(start + t * step - size / 2).astype(int)
        frames.append(np.roll(mask, (y, x), axis=(0, 1))[..., None] * colour)
    return np.stack(frames).round().astype(np.uint8)


def write_moving_shapes(folder: Path, options: MovingShapesOptions) -> None:
    """Generate every clip into `folder`/<class>/clip_NNNN/frame_NN.png, atomically (all or nothing)."""
    rng = np.random.default_rng(options.seed)
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for class_name, direction, shape in class_specs(options):
        for i in range(options.n_clips):
            clip_dir = partial / class_name / f"clip_{i:04d}"
            clip_dir.mkdir(parents=True)
            frames = render_clip(rng, direction, shape or SHAPES[rng.integers(len(SHAPES))], options)
            for t, frame in enumerate(frames):
                Image.fromarray(frame.squeeze(-1) if options.channels == 1 else frame).save(
                    clip_dir / f"frame_{t:02d}.png"
                )
    try:
        partial.rename(folder)
    except OSError:  # another process finished the same folder first; its clips are identical
        shutil.rmtree(partial)


GENERATOR_OPTIONS = ("n_clips", "frame_size", "n_frames", "directions", "label", "channels", "seed")


@register_dataset("moving-shapes")
class MovingShapes(FrameDataModule):
    """Synthetic clips of a moving shape, labelled by direction: solvable only by looking at several frames."""

    Options = MovingShapesOptions

    def generated_folder(self) -> Path:
        chosen = {name: asdict(self.options)[name] for name in GENERATOR_OPTIONS}
        digest = hashlib.sha256(json.dumps([GENERATOR_VERSION, chosen], sort_keys=True).encode()).hexdigest()[:12]
        return generated_root(self.options.root, self.options.cache_dir) / f"moving-shapes-{digest}"

    def find_clips(self) -> tuple[list[ClipRef], list[Path]]:
        folder = self.generated_folder()
        if not folder.is_dir():
            if not is_writable(folder.parent):
                raise DataError(
                    f"{folder}: the clips are not generated yet and cannot be written there, as the data root and "
                    f"the cache folder {folder.parent.parent} are read-only; point --data.cache_dir (or "
                    "$STW_CACHE_DIR) at a writable folder"
                )
            folder.parent.mkdir(parents=True, exist_ok=True)
            write_moving_shapes(folder, self.options)
        return find_class_clips(folder, "frames")
