"""The gestures dataset: keypoint windows of the real ground-guide recordings, split by participant."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules.errors import DataError
from datamodules.video.gestures import GESTURES, KEYPOINT_COLUMNS, GestureOptions, Gestures, read_recording

PEOPLE = ["chris", "janie", "john", "stephen", "terri"]


@pytest.fixture(scope="module")
def gestures(shared_data: Path) -> Gestures:
    # root given explicitly: a module-scoped fixture runs before the per-test $STW_DATA_DIR fixture
    module = Gestures(
        GestureOptions(root=str(shared_data), clip_len=15, stride=3, test_person="terri", val_person="chris")
    )
    module.setup()
    return module


def recordings_of(shared_data: Path, person: str) -> list[pd.DataFrame]:
    folder = shared_data / "video" / "ground_guide_pose" / "images"
    return [pd.read_csv(path) for path in sorted(folder.glob(f"{person}_*/gesture_data.csv"))]


def test_no_participant_is_in_two_splits(gestures: Gestures) -> None:
    persons = gestures.spec.details["persons"]
    assert persons == {"train": ["janie", "john", "stephen"], "val": ["chris"], "test": ["terri"]}
    other = Gestures(GestureOptions(test_person="john", val_person="janie"))
    other.setup()
    assert other.spec.details["persons"] == {"train": ["chris", "stephen", "terri"], "val": ["janie"], "test": ["john"]}


def test_windows_are_one_recordings_frames_labelled_by_the_last_frame(gestures: Gestures, shared_data: Path) -> None:
    expected_x, expected_y = [], []
    for table in recordings_of(shared_data, "terri"):
        values, labels = table[list(KEYPOINT_COLUMNS)].to_numpy(np.float32), table["gesture"].to_numpy()
        for start in range(0, len(table) - 15 + 1, 3):
            expected_x.append(values[start : start + 15])
            expected_y.append(labels[start + 14])
    test = gestures.datasets["test"]
    x, y = test[list(range(len(test)))]
    assert x.shape == (len(expected_y), 15, 16) and x.dtype == torch.float32 and y.dtype == torch.long
    assert y.tolist() == expected_y
    torch.testing.assert_close(
        x * gestures.std + gestures.mean, torch.from_numpy(np.stack(expected_x)), atol=1e-5, rtol=1e-5
    )


def test_windows_are_views_of_one_tensor_until_batched(gestures: Gestures) -> None:
    train = gestures.datasets["train"]
    assert train.windows.untyped_storage().data_ptr() == gestures.datasets["test"].windows.untyped_storage().data_ptr()
    assert train.windows.shape[1:] == (16, 15)


def test_standardisation_uses_the_training_participants_only(gestures: Gestures, shared_data: Path) -> None:
    train = pd.concat(
        [table for person in ("janie", "john", "stephen") for table in recordings_of(shared_data, person)]
    )
    values = train[list(KEYPOINT_COLUMNS)].to_numpy(np.float64)
    torch.testing.assert_close(gestures.mean.double(), torch.from_numpy(values.mean(0)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gestures.std.double(), torch.from_numpy(values.std(0, ddof=1)), atol=1e-5, rtol=1e-5)
    everyone = pd.concat([table for person in PEOPLE for table in recordings_of(shared_data, person)])
    assert not np.allclose(everyone[list(KEYPOINT_COLUMNS)].to_numpy().mean(0), values.mean(0), atol=1e-3)


def test_spec_and_a_json_round_trip_of_the_fitted_statistics_give_the_same_predict_inputs(
    gestures: Gestures, shared_data: Path
) -> None:
    spec = gestures.spec
    assert spec.input_kind == "vectors" and spec.n_inputs == 16 and spec.num_classes == len(GESTURES)
    assert spec.seq_len == 15 and sum(spec.class_counts) == spec.details["n_train"]
    restored = Gestures(GestureOptions(clip_len=15, stride=3))
    restored.load_state_dict(json.loads(json.dumps(gestures.state_dict())))
    recording = sorted((shared_data / "video" / "ground_guide_pose" / "images").glob("terri_*/gesture_data.csv"))[0]
    windows = restored.inputs_for(recording)
    n_windows = len(range(0, len(pd.read_csv(recording)) - 15 + 1, 3))
    torch.testing.assert_close(windows, gestures.datasets["test"][list(range(n_windows))][0])


def test_fingerprint_counts_every_recording_although_all_share_one_file_name(gestures: Gestures) -> None:
    assert len(gestures.fingerprint()["files"]) == 74


def test_bad_recordings_and_options_raise_data_errors_naming_the_fix(tmp_path: Path, shared_data: Path) -> None:
    source = sorted((shared_data / "video" / "ground_guide_pose" / "images").glob("chris_*/gesture_data.csv"))[0]
    header, *rows = [line.split(",") for line in source.read_text().splitlines()[:6]]
    broken = tmp_path / "chris_broken" / "gesture_data.csv"
    broken.parent.mkdir()

    def write(lines: list[list[str]]) -> None:
        broken.write_text("".join(",".join(fields) + "\n" for fields in lines))

    write([header, *rows[:2], [*rows[2][:5], "n/a", *rows[2][6:]], *rows[3:]])
    with pytest.raises(DataError, match=r"gesture_data.csv line 4: a keypoint is missing"):
        read_recording(broken)
    write([[name.replace("left_wrist_x", "lw_x") for name in header], *rows])
    with pytest.raises(DataError, match="no column left_wrist_x"):
        read_recording(broken)
    write([header, rows[0], [rows[1][0], "12", *rows[1][2:]], *rows[2:]])
    with pytest.raises(DataError, match=r"line 3: gesture 12 is not a label 0\.\.10"):
        read_recording(broken)
    with pytest.raises(DataError, match="choose one of: chris, janie, john, stephen, terri"):
        Gestures(GestureOptions(test_person="nobody")).setup()
