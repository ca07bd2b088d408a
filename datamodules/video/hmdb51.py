"""hmdb51-samples: the 6 real HMDB51 clips in <root>/video/hmdb51_samples, one per class.

Six clips cannot train or evaluate anything, so this dataset is a smoke test of the real-video path
(PyAV decoding, the frame cache, clip sampling and a model's forward pass): every clip is in every split.

The class comes from the HMDB51 file name `<source>_<class>_<body part>_<camera motion>_<people>_<viewpoint>_
<quality>_<index>`. Source titles and class names both contain underscores, so the class is the longest
HMDB51 class name that ends the part before the body-part token.
"""

import re
import warnings
from pathlib import Path

from datamodules import register_dataset
from datamodules.errors import DataError
from datamodules.paths import data_root
from datamodules.video.datamodule import ClipOptions, FrameDataModule
from datamodules.video.layouts import SPLITS, ClipRef, is_video_file

# The 51 classes of Kuehne et al., "HMDB: a large video database for human motion recognition", ICCV 2011.
HMDB51_CLASSES = (
    "brush_hair",
    "cartwheel",
    "catch",
    "chew",
    "clap",
    "climb",
    "climb_stairs",
    "dive",
    "draw_sword",
    "dribble",
    "drink",
    "eat",
    "fall_floor",
    "fencing",
    "flic_flac",
    "golf",
    "handstand",
    "hit",
    "hug",
    "jump",
    "kick",
    "kick_ball",
    "kiss",
    "laugh",
    "pick",
    "pour",
    "pullup",
    "punch",
    "push",
    "pushup",
    "ride_bike",
    "ride_horse",
    "run",
    "shake_hands",
    "shoot_ball",
    "shoot_bow",
    "shoot_gun",
    "sit",
    "situp",
    "smile",
    "smoke",
    "somersault",
    "stand",
    "swing_baseball",
    "sword",
    "sword_exercise",
    "talk",
    "throw",
    "turn",
    "walk",
    "wave",
)
# _<body part f|h|u|l>_<camera motion cm|nm>_np<people>_<viewpoint fr|ba|le|ri>_<quality bad|med|goo>_<index>
NAME_TAIL = re.compile(r"_[fhul]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$")


def hmdb51_class(path: Path) -> str:
    """The class in an HMDB51 file name, e.g. "shoot_bow" for 6arrowswithin30seconds_shoot_bow_f_nm_np1_fr_med_3.avi."""
    tail = NAME_TAIL.search(path.stem)
    head = path.stem[: tail.start()] if tail else ""
    matches = [name for name in HMDB51_CLASSES if head == name or head.endswith(f"_{name}")]
    if not matches:
        raise DataError(
            f"{path}: not an HMDB51 file name (<source>_<class>_<body part>_<camera>_np<n>_<view>_<quality>_<index> "
            "with one of the 51 HMDB51 classes); rename it or read the folder with --data video-folder"
        )
    return max(matches, key=len)  # "climb_stairs" wins over "climb" only when the name ends with it


@register_dataset("hmdb51-samples")
class Hmdb51Samples(FrameDataModule):
    """Six real HMDB51 clips, decoded with PyAV: a smoke test with every clip in every split."""

    Options = ClipOptions
    smoke_check = (
        "Six clips, one per class, cannot make a split, so every clip is in every split and its test scores are "
        "training fit."
    )

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:  # Lightning calls setup once per stage; warn once, when the splits are made
            warnings.warn(
                f"hmdb51-samples is a decoding smoke check, not an evaluation: {self.smoke_check} "
                "Do not compare its scores with other runs' or report them.",
                UserWarning,
                stacklevel=2,
            )
        super().setup(stage)

    def find_clips(self) -> tuple[list[ClipRef], list[Path]]:
        folder = data_root(self.options.root) / "video" / "hmdb51_samples"
        videos = sorted(filter(is_video_file, folder.glob("*"))) if folder.is_dir() else []
        if not videos:
            raise DataError(
                f"{folder}: no HMDB51 clips; point --data.root (or $STW_DATA_DIR) at the shared data "
                "folder that holds video/hmdb51_samples"
            )
        return [ClipRef(path, hmdb51_class(path)) for path in videos], []

    def split(self, clips: list[ClipRef]) -> dict[str, list[int]]:
        every_clip = list(range(len(clips)))
        return {name: every_clip for name in SPLITS}
