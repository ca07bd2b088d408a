"""Finding clips on disk, and which split a split file puts them in.

Layout (a) frames:  <clips_dir>/<class>/<clip>/<frame>.jpg|png   (frames in natural order: 2 before 10)
Layout (b) videos:  <clips_dir>/<class>/<clip>.avi|mp4|mkv|mov|webm
Layout (c) a split file listing clips by their path relative to <clips_dir>: either a CSV with the header
    clip,label[,split][,group], or a UCF101 trainlistNN.txt (`Class/clip.avi 1` lines) with its testlistNN.txt
    beside it. A listed video name also matches its extracted frame folder (the name without the suffix).
    Each clip is listed once: a clip in two splits would be tested on what it was trained on.
"""

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.errors import DataError
from datamodules.headers import first_line, header_names
from datamodules.paths import climbs_out

SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm"})
FRAME_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
UCF_GROUP = re.compile(r"_(g\d+)_c\d+")  # v_ApplyEyeMakeup_g08_c01: clips of one group share actors and scenes


@dataclass(frozen=True)
class ClipRef:
    """One clip: a video file or a folder of frames, its class, and, when known, its group and split."""

    path: Path
    label: str
    group: str | None = None  # clips of one group (person, source video) never straddle splits
    split: str | None = None  # set when a split file says where the clip belongs


def natural_key(path: Path) -> list[str | int]:
    """Sort key that puts frame_2 before frame_10 (re.split alternates text and digit runs)."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", path.name))]


def visible_entries(folder: Path) -> list[Path]:
    return sorted((entry for entry in folder.iterdir() if not entry.name.startswith(".")), key=natural_key)


def frame_files(clip_dir: Path) -> list[Path]:
    """The image files of a frame folder, in frame order."""
    return [entry for entry in visible_entries(clip_dir) if entry.suffix.lower() in FRAME_SUFFIXES]


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


IS_CLIP = {"frames": Path.is_dir, "videos": is_video_file}
LAYOUTS = tuple(IS_CLIP)


def find_class_clips(folder: Path, layout: str) -> tuple[list[ClipRef], list[Path]]:
    """Every clip under <folder>/<class>/ in `layout` ("frames" or "videos"), and the class folders holding none."""
    if not folder.is_dir():
        raise DataError(
            f"{folder}: clips folder not found; set --data.clips_dir (or --data.root) to a folder of class folders"
        )
    is_clip = IS_CLIP[layout]
    clips: list[ClipRef] = []
    empty: list[Path] = []
    for class_dir in filter(Path.is_dir, visible_entries(folder)):
        found = [ClipRef(entry, class_dir.name) for entry in visible_entries(class_dir) if is_clip(entry)]
        clips += found
        if not found:
            empty.append(class_dir)
    if not clips and not empty:
        raise DataError(f"{folder}: no class folders; expected {folder}/<class>/<clip> in the {layout!r} layout")
    return clips, empty


def clip_path(folder: Path, name: str, place: str) -> Path:
    """The clip a split file lists at `place` ("<file> line N"), which must lie inside the clips folder."""
    if climbs_out(name):
        raise DataError(
            f"{place}: clip {name!r} climbs out of the clips folder {folder} with '..'; list clips by their path "
            "inside it (move or link clips from elsewhere into it)"
        )
    path = folder / name
    if not path.exists() and path.with_suffix("").is_dir():
        return path.with_suffix("")  # UCF lists name .avi files; extracted frames sit in a folder of that stem
    return path


def read_split_csv(path: Path, folder: Path) -> list[tuple[str, ClipRef]]:
    header_names(first_line(path), path, "line 1 must be the header clip,label[,split][,group]")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    missing = [column for column in ("clip", "label") if column not in columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)}; the header must be clip,label[,split][,group]")
    clips = []
    for line, row in enumerate(rows, start=2):
        split = row.get("split")
        if split is not None and split not in SPLITS:
            raise DataError(
                f"{path} line {line}: split {split!r}; use train, val or test (or drop the split column "
                "to let the seeded split decide)"
            )
        if not row["clip"] or not row["label"]:
            raise DataError(f"{path} line {line}: empty clip or label; fill or delete the line")
        place = f"{path} line {line}"
        clip = ClipRef(clip_path(folder, row["clip"], place), row["label"], row.get("group") or None, split)
        clips.append((place, clip))
    return clips


def read_ucf_lists(path: Path, folder: Path) -> list[tuple[str, ClipRef]]:
    if "trainlist" not in path.name:
        raise DataError(
            f"{path}: a .txt split file must be a UCF101 trainlistNN.txt (its testlistNN.txt is read from "
            "beside it); list other splits in a CSV with the header clip,label,split"
        )
    test_path = path.with_name(path.name.replace("trainlist", "testlist"))
    if not test_path.is_file():
        raise DataError(f"{test_path}: not found; a UCF101 trainlist needs its testlist beside it")
    clips = []
    for split, list_path in (("train", path), ("test", test_path)):
        for line, text in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            name = text.split()[0]  # trainlist lines end in a 1-based class index; the folder already names the class
            if "/" not in name:
                raise DataError(f"{list_path} line {line}: {name!r} has no class folder; expected Class/clip.avi")
            group, place = UCF_GROUP.search(name), f"{list_path} line {line}"
            clip = ClipRef(clip_path(folder, name, place), name.split("/")[0], group and group.group(1), split)
            clips.append((place, clip))
    return clips


def read_split_file(path: Path, folder: Path) -> list[ClipRef]:
    """The clips a split file lists, with their labels, splits and groups, resolved against `folder`."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found; set --data.split_file relative to the clips folder {folder}")
    listed = (read_split_csv if path.suffix.lower() == ".csv" else read_ucf_lists)(path, folder)
    check_listed_once(listed)
    return [clip for _, clip in listed]


def check_listed_once(listed: list[tuple[str, ClipRef]]) -> None:
    """A clip listed twice would be trained and tested on (or, without a split column, could be): a DataError
    naming the clip and both listings, each "<split file> line N"."""

    def where(place: str, clip: ClipRef) -> str:
        return f"in the {clip.split} split ({place})" if clip.split else f"at {place}"

    first: dict[Path, tuple[str, ClipRef]] = {}
    for place, clip in listed:
        if clip.path in first:
            raise DataError(
                f"{clip.path}: listed {where(*first[clip.path])} and {where(place, clip)}; a clip belongs to one "
                "split: delete one of the two lines"
            )
        first[clip.path] = (place, clip)
