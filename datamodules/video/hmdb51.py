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
from urllib.parse import quote

from datamodules import register_dataset
from datamodules.download import Source
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
# The six clips as ../shared/data/video/PROVENANCE.md traces them: five from one repository, one from another.
CLIPS_A = (
    "https://raw.githubusercontent.com/JohnPPinto/HMDB51_human_motion_recognition_pytorch/"
    "ae9d25a210332a2a58aabecf9f106ef481aeb747/demo_file/examples"
)
CLIPS_B = (
    "https://raw.githubusercontent.com/fdsa1860/hmdb51Activity/"
    "379f0f6a760397da7478de95f34a1da8351693fb/3rdParty/improved_trajectory_original/testSeq"
)
SHA256 = {
    (CLIPS_A, "(HQ)_Rock_Climbing_-_Free_Solo_Speed_Climb_-_Dan_Osman_climb_f_cm_np1_le_med_2.avi"):
        "4c020f56fcbe7660f5524874bb72deb69c7689507826237c6103c1a55ddf7193",
    (CLIPS_A, "6arrowswithin30seconds_shoot_bow_f_nm_np1_fr_med_3.avi"):
        "a55b45022341ffac3371c4c3cc3a5aca045bc48b3cfcfb35ac1c729dc096b47a",
    (CLIPS_A, "AdvancedBoxingTechniquesandExercises_punch_u_nm_np1_ba_med_23.avi"):
        "a3b023a76c51082fc840bd6e68128659be252f3196874797b4c9f3ed7722053c",
    (CLIPS_A, "BaseballHitinSlowMotion_swing_baseball_f_nm_np1_fr_bad_0.avi"):
        "2dd249c4faac09691dc3f4f04bd545135c1ea3ce568311c86f75c058368229ab",
    (CLIPS_A, "Golf_Tips_-_Hit_The_Driver_300+_Yards!!!_golf_f_nm_np1_fr_med_0.avi"):
        "8623c567d17bae0c7eb7efa9c2b28caf6c78280b91f02ca0952d244a52ffcee9",
    (CLIPS_B, "KOREAN_TEA_CEREMONY_-_Simple_Demo_pour_u_nm_np1_fr_med_0.avi"):
        "491dd7f9723c79c91ffe62f96d8a64133d18a157d6ceea707f0cfe5690a4e97e",
}  # fmt: skip
# clip file name -> its pinned source; names hold ( ) ! +, so they are percent-encoded in the URL.
SOURCES = {name: Source(f"{base}/{quote(name)}", sha256) for (base, name), sha256 in SHA256.items()}
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

    def folder(self) -> Path:
        return data_root(self.options.root) / "video" / "hmdb51_samples"

    def sources(self) -> dict[Path, Source]:
        return {self.folder() / name: source for name, source in SOURCES.items()}

    def find_clips(self) -> tuple[list[ClipRef], list[Path]]:
        folder = self.folder()
        videos = sorted(filter(is_video_file, folder.glob("*"))) if folder.is_dir() else []
        if not videos:
            raise DataError(
                f"{folder}: no HMDB51 clips; run with data.download=true to fetch the six clips, or point "
                "--data.root (or $STW_DATA_DIR) at the data folder that holds video/hmdb51_samples"
            )
        return [ClipRef(path, hmdb51_class(path)) for path in videos], []

    def split(self, clips: list[ClipRef]) -> dict[str, list[int]]:
        every_clip = list(range(len(clips)))
        return {name: every_clip for name in SPLITS}
