"""gestures: windows of pose keypoints from the ground-guide gesture recordings, split by person.

<root>/video/ground_guide_pose/images/<person>_<name>/gesture_data.csv holds one row per video frame: 16
body-centred keypoint coordinates and a per-frame label 0..10. A window is `clip_len` consecutive frames of one
recording, labelled by its last frame (the source repository's rule: some recordings hold two gestures).
Participants never share a split (leave-one-person-out): test_person tests, val_person validates, the others
train, and the coordinates are standardised with the training participants' per-coordinate mean and std.
Windows are unfold views of one standardised tensor, indexed a whole batch at a time (see datamodules.windows).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules import register_dataset
from datamodules.base import DataOptions, StwDataModule
from datamodules.download import Source
from datamodules.errors import ConfigError, DataError
from datamodules.fingerprint import fingerprint
from datamodules.headers import first_line, header_names, shown
from datamodules.paths import data_root
from datamodules.specs import ClassifySpec
from datamodules.video.gesture_files import SHA256
from datamodules.video.layouts import SPLITS

# Label i is GESTURES[i] (the source repository's label_list; 10 is the non-gesture "standby").
GESTURES = (
    "attention",
    "ready",
    "crank",
    "stop",
    "move",
    "turn-left",
    "turn-right",
    "speed-up",
    "slow-down",
    "kill",
    "standby",
)
JOINTS = (
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
)
KEYPOINT_COLUMNS = tuple(f"{joint}_{axis}" for joint in JOINTS for axis in "xy")
LABEL_COLUMN = "gesture"


UPSTREAM = (
    "https://raw.githubusercontent.com/sschueth/ground-guide-gesture-dataset/edacdd38b03fff57e53282c31b7f43925d3c012a"
)
# recording -> where its gesture_data.csv is published, with its sha256.
SOURCES = {name: Source(f"{UPSTREAM}/images/{name}/gesture_data.csv", sha256) for name, sha256 in SHA256.items()}


@dataclass
class GestureOptions(DataOptions):
    """Pose-keypoint windows of the ground-guide gesture recordings, split by participant.

    Args:
        clip_len: frames per window (T); 15 is the source repository's window.
        stride: frames between the starts of consecutive windows of one recording.
        test_person: participant held out for testing: chris, janie, john, stephen or terri.
        val_person: participant held out for validation; the other participants train.
        seed: no effect here: the split is by participant and nothing is drawn (the run's --seed
            orders the training windows).
    """

    clip_len: int = 15
    stride: int = 1
    test_person: str = "terri"
    val_person: str = "chris"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.stride < 1:
            raise ConfigError(f"data options clip_len={self.clip_len} and stride={self.stride} must be >= 1")
        if self.test_person == self.val_person:
            raise ConfigError(
                f"data options test_person and val_person are both {self.test_person!r}; hold out two people"
            )


@dataclass(frozen=True)
class Recording:
    path: Path
    person: str
    keypoints: np.ndarray  # float32 [frames, 16]
    labels: np.ndarray  # int64 [frames]


def read_table(path: Path) -> pd.DataFrame:
    names = header_names(first_line(path), path, "line 1 must be the header naming the 16 keypoint columns")
    if missing := [column for column in KEYPOINT_COLUMNS if column not in names]:
        raise DataError(
            f"{path}: no column {', '.join(missing)}; found {shown(names)}. A recording needs the 16 keypoint "
            f"columns {', '.join(KEYPOINT_COLUMNS)}"
        )
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read as CSV ({str(error).strip()})") from None


def first_bad_line(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0]) + 2  # + header line, + 1-based


def keypoints_of(table: pd.DataFrame, path: Path) -> np.ndarray:
    values = (
        table[list(KEYPOINT_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32, copy=True)
    )  # writable
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path} line {first_bad_line(bad)}: a keypoint is missing or not a number; fix or delete the line"
        )
    return values


def labels_of(table: pd.DataFrame, path: Path) -> np.ndarray:
    if LABEL_COLUMN not in table.columns:
        raise DataError(f"{path}: no column {LABEL_COLUMN!r}; training needs a per-frame label 0..{len(GESTURES) - 1}")
    labels = pd.to_numeric(table[LABEL_COLUMN], errors="coerce")
    bad = ~labels.isin(range(len(GESTURES))).to_numpy()
    if bad.any():
        line = first_bad_line(bad)
        raise DataError(
            f"{path} line {line}: gesture {table[LABEL_COLUMN].iloc[line - 2]} is not a label 0..{len(GESTURES) - 1}"
        )
    return labels.to_numpy(np.int64)


def read_recording(path: Path) -> Recording:
    table = read_table(path)
    return Recording(path, path.parent.name.split("_")[0], keypoints_of(table, path), labels_of(table, path))


def window_starts(length: int, clip_len: int, stride: int) -> np.ndarray:
    """First rows of the windows of one recording of `length` rows; none when it is shorter than a window."""
    return np.arange(0, max(length - clip_len + 1, 0), stride)


class KeypointWindows(Dataset):
    """Windows of `clip_len` rows starting at `starts`, labelled by their last row: (x [B, T, F], y [B])."""

    def __init__(self, rows: Tensor, row_labels: Tensor, starts: Tensor, clip_len: int) -> None:
        self.windows = rows.unfold(0, clip_len, 1)  # [rows - T + 1, F, T], a view: no window is copied until batched
        self.starts = starts
        self.labels = row_labels[starts + clip_len - 1]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: list[int] | Tensor) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(index)
        return self.windows[self.starts[index]].transpose(1, 2), self.labels[index]


@register_dataset("gestures")
class Gestures(StwDataModule):
    """Classify ground-guide gestures from windows of 8 tracked body keypoints (leave-one-person-out)."""

    Options = GestureOptions
    task = "classify"
    input_kind = "vectors"

    def __init__(self, options: GestureOptions) -> None:
        super().__init__(options)
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self.datasets: dict[str, KeypointWindows] = {}
        self.persons: dict[str, list[str]] = {}
        self.skipped_recordings = 0

    def folder(self) -> Path:
        return data_root(self.options.root) / "video" / "ground_guide_pose" / "images"

    def sources(self) -> dict[Path, Source]:
        return {self.folder() / name / "gesture_data.csv": source for name, source in SOURCES.items()}

    def files(self) -> list[Path]:
        folder = self.folder()
        files = sorted(folder.glob("*/gesture_data.csv"))
        if not files:
            raise DataError(
                f"{folder}: no <recording>/gesture_data.csv files; run with data.download=true to fetch the 74 "
                f"recordings from {UPSTREAM}, or point --data.root (or $STW_DATA_DIR) at the data folder that "
                "holds video/ground_guide_pose"
            )
        return files

    def split_of(self, person: str) -> str:
        return {self.options.test_person: "test", self.options.val_person: "val"}.get(person, "train")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # Lightning calls setup once per stage; the tensors are the same for every stage
        recordings = [read_recording(path) for path in self.files()]
        people = sorted({recording.person for recording in recordings})
        for option in ("test_person", "val_person"):
            if getattr(self.options, option) not in people:
                raise DataError(
                    f"data option {option}={getattr(self.options, option)!r} is not a participant; "
                    f"choose one of: {', '.join(people)}"
                )
        splits = [self.split_of(recording.person) for recording in recordings]
        if self.mean is None:  # a loaded state_dict is kept: predict and reproduce reuse a run's statistics
            train = torch.from_numpy(
                np.concatenate([r.keypoints for r, s in zip(recordings, splits, strict=False) if s == "train"])
            )
            self.mean, self.std = train.mean(0), train.std(0).clamp(min=1e-6)
        rows = (torch.from_numpy(np.concatenate([r.keypoints for r in recordings])) - self.mean) / self.std
        row_labels = torch.from_numpy(np.concatenate([r.labels for r in recordings]))
        starts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
        first_row = 0
        for recording, name in zip(recordings, splits, strict=False):
            starts[name].append(
                first_row + window_starts(len(recording.labels), self.options.clip_len, self.options.stride)
            )
            first_row += len(recording.labels)
        self.skipped_recordings = sum(len(r.labels) < self.options.clip_len for r in recordings)
        self.persons = {
            name: sorted({r.person for r, s in zip(recordings, splits, strict=False) if s == name}) for name in SPLITS
        }
        self.datasets = {
            name: KeypointWindows(
                rows, row_labels, torch.from_numpy(np.concatenate(starts[name])), self.options.clip_len
            )
            for name in SPLITS
        }
        for name, dataset in self.datasets.items():
            if not len(dataset):
                raise DataError(
                    f"the {name} split ({', '.join(self.persons[name])}) has no window of "
                    f"{self.options.clip_len} frames; lower --data.clip_len"
                )

    def state_dict(self) -> dict[str, Any]:
        """Class and keypoint names and the training participants' per-coordinate mean and std; JSON-serialisable."""
        if self.mean is None:
            return {}
        return {
            "class_names": list(GESTURES),
            "feature_names": list(KEYPOINT_COLUMNS),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.mean, self.std = torch.tensor(state["mean"]), torch.tensor(state["std"])
        if self.datasets:  # restored after setup: standardise the tensors with the loaded statistics
            self.datasets = {}
            self.setup()

    @property
    def spec(self) -> ClassifySpec:
        if not self.datasets:
            raise RuntimeError("call setup() before reading spec")
        counts = torch.bincount(self.datasets["train"].labels, minlength=len(GESTURES))
        return ClassifySpec(
            input_kind=self.input_kind,
            class_names=list(GESTURES),
            class_counts=counts.tolist(),
            seq_len=self.options.clip_len,
            n_inputs=len(KEYPOINT_COLUMNS),
            details={
                "feature_names": list(KEYPOINT_COLUMNS),
                "persons": self.persons,
                **{f"n_{name}": len(self.datasets[name]) for name in SPLITS},
                "skipped_clips": self.skipped_recordings,
                "padded_clips": 0,
            },
        )

    def inputs_for(self, path: str | Path) -> Tensor:
        """Model inputs for a new recording (a CSV with the 16 keypoint columns; labels not needed): every
        window at the configured stride, standardised with the fitted statistics, [W, T, F]."""
        if self.mean is None:
            raise RuntimeError("no fitted statistics: call setup() or load_state_dict() first")
        path = Path(path)
        rows = (torch.from_numpy(keypoints_of(read_table(path), path)) - self.mean) / self.std
        starts = torch.from_numpy(window_starts(len(rows), self.options.clip_len, self.options.stride))
        if not len(starts):
            raise DataError(f"{path}: {len(rows)} frames are fewer than one window of {self.options.clip_len}")
        return rows.unfold(0, self.options.clip_len, 1)[starts].transpose(1, 2)

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(self.files(), self.shaping_options())
