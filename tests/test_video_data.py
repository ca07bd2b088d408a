"""The video-frame data layer: layouts, PyAV decoding and its cache, clip sampling and augmentation,
moving-shapes, hmdb51-samples and bad input. Real clips come from the shared hmdb51_samples folder."""

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import DATASETS, StwDataModule
from datamodules.errors import DataError
from datamodules.video.clips import ClipDataset, ClipSampling, ClipTransform
from datamodules.video.datamodule import ClipOptions, FolderOptions, VideoFolder
from datamodules.video.decode import DecodeOptions, UnreadableClip, decode_video
from datamodules.video.hmdb51 import Hmdb51Samples, hmdb51_class
from datamodules.video.moving_shapes import DIRECTIONS, MovingShapes, MovingShapesOptions, render_clip
from datamodules.video.throughput import loader_frames_per_second
from experiments.config import datamodule_for, parse_run_args

# Decoded frame counts and classes from video/PROVENANCE.md.
HMDB51_FRAMES = {"climb": 242, "shoot_bow": 81, "punch": 172, "swing_baseball": 140, "golf": 89, "pour": 430}


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-frame cache for the tests that do not test the cache, so the real clips decode once."""
    return tmp_path_factory.mktemp("frame-cache")


@pytest.fixture(autouse=True)
def _cache_dir(monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> None:
    monkeypatch.setenv("STW_CACHE_DIR", str(session_cache))


@pytest.fixture()
def hmdb_dir(shared_data: Path) -> Path:
    return shared_data / "video" / "hmdb51_samples"


def write_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    """A frame folder of lossless PNGs."""
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{t}.png")
    return folder


def flat_frames(n: int, value: int, size: tuple[int, int] = (8, 8)) -> list[np.ndarray]:
    return [np.full((*size, 3), value + t, dtype=np.uint8) for t in range(n)]


def tiny_folder(root: Path, per_class: int = 4, n_frames: int = 5) -> Path:
    """Two classes of small flat-colour frame clips; class "dark" is darker than class "light"."""
    for label, value in (("dark", 10), ("light", 200)):
        for i in range(per_class):
            write_clip(root / label / f"clip_{i}", flat_frames(n_frames, value + 5 * i))
    return root


def folder_module(clips_dir: Path, **options) -> VideoFolder:
    return VideoFolder(
        FolderOptions(clips_dir=str(clips_dir), **{"layout": "frames", "resize": None, "clip_len": 3, **options})
    )


def frames_by_clip(module: VideoFolder) -> dict[str, torch.Tensor]:
    """Every clip's decoded frames, keyed by clip name (file stem or folder name)."""
    found = {}
    for split, dataset in module.datasets.items():
        for clip, start, length in zip(
            module.clips[split], dataset.starts.tolist(), dataset.lengths.tolist(), strict=False
        ):
            found[clip.path.stem] = dataset.frames[start : start + length]
    return found


# --- real clips: decoding and hmdb51-samples ----------------------------------------------------------------------


def test_hmdb51_samples_decode_with_the_frame_counts_in_provenance() -> None:
    module = Hmdb51Samples(ClipOptions(resize=16))
    module.setup()
    lengths = {
        clip.label: length
        for clip, length in zip(module.clips["train"], module.datasets["train"].lengths.tolist(), strict=False)
    }
    assert lengths == HMDB51_FRAMES
    assert module.spec.class_names == sorted(HMDB51_FRAMES)


def test_decoding_keeps_the_original_size_without_resize(hmdb_dir: Path) -> None:
    frames = decode_video(
        hmdb_dir / "BaseballHitinSlowMotion_swing_baseball_f_nm_np1_fr_bad_0.avi", DecodeOptions(None, 3)
    )
    assert frames.shape == (140, 240, 424, 3) and frames.dtype == np.uint8


def test_hmdb51_class_is_the_longest_class_name_before_the_body_part_token(hmdb_dir: Path) -> None:
    assert sorted(hmdb51_class(path) for path in hmdb_dir.glob("*.avi")) == sorted(HMDB51_FRAMES)
    assert hmdb51_class(Path("Stairs_Of_Doom_climb_stairs_f_cm_np1_ba_med_0.avi")) == "climb_stairs"
    with pytest.raises(DataError, match="not an HMDB51 file name"):
        hmdb51_class(Path("holiday_video.avi"))


def test_hmdb51_samples_put_every_clip_in_every_split_with_multi_clip_test_batches() -> None:
    module = Hmdb51Samples(ClipOptions(resize=16, crop=12, clip_len=4, frame_stride=2, test_clips=3))
    module.setup()
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (6, 4, 3, 12, 12) and x.dtype == torch.float32 and y.dtype == torch.long
    x_test, y_test = next(iter(module.test_dataloader()))
    assert x_test.shape == (6, 3, 4, 3, 12, 12)
    assert sorted(y_test.tolist()) == list(range(6))
    spec = module.spec
    assert spec.input_kind == "frames" and spec.frame_shape == [3, 12, 12] and spec.test_clips == 3
    assert (
        spec.details["n_train"] == spec.details["n_val"] == spec.details["n_test"] == 6 and spec.class_counts == [1] * 6
    )


def test_hmdb51_samples_say_why_their_test_scores_are_no_evaluation_and_real_datasets_do_not() -> None:
    assert Hmdb51Samples.smoke_check and "every split" in Hmdb51Samples.smoke_check
    assert StwDataModule.smoke_check is None
    assert all(DATASETS[name].smoke_check is None for name in ("video-folder", "moving-shapes", "gestures", "sms"))


def test_setting_up_hmdb51_samples_warns_that_its_scores_are_training_fit() -> None:
    module = Hmdb51Samples(ClipOptions(resize=16))
    with pytest.warns(UserWarning, match="training fit"):
        module.setup()


def test_decoded_frames_are_cached_so_later_epochs_and_runs_never_decode(
    hmdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = []
    for split, name in zip(
        ("train", "val", "test"), ("shoot_bow_f_nm_np1_fr_med_3", "golf_f_nm_np1_fr_med_0", "bad_0"), strict=False
    ):
        path = next(hmdb_dir.glob(f"*{name}.avi"))
        (tmp_path / "clips" / "all").mkdir(parents=True, exist_ok=True)
        (tmp_path / "clips" / "all" / path.name).symlink_to(path)
        rows.append(f"all/{path.name},all,{split}")
    (tmp_path / "clips" / "splits.csv").write_text("clip,label,split\n" + "\n".join(rows) + "\n")
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(args[0]) or real_open(*args, **kwargs))

    def module(resize: int) -> VideoFolder:
        return folder_module(
            tmp_path / "clips", split_file="splits.csv", resize=resize, cache_dir=str(tmp_path / "cache")
        )

    first = module(resize=8)
    first.setup()
    assert len(opened) == 3
    for _epoch in range(2):
        for _batch in first.train_dataloader():
            pass
    second = module(resize=8)  # a later run, e.g. the next sweep trial
    second.setup()
    assert len(opened) == 3
    assert torch.equal(second.datasets["train"].frames, first.datasets["train"].frames)
    module(resize=12).setup()
    assert len(opened) == 6  # other decode options are another cache entry


# --- layouts ----------------------------------------------------------------------------------------------------------


@pytest.fixture()
def same_clips_two_layouts(hmdb_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The 6 real clips as classes a (3 clips) and b (3 clips): videos (symlinks) and their first 6 frames as PNGs."""
    videos, frames = tmp_path / "videos", tmp_path / "frames"
    for i, path in enumerate(sorted(hmdb_dir.glob("*.avi"))):
        label = "ab"[i // 3]
        (videos / label).mkdir(parents=True, exist_ok=True)
        (videos / label / path.name).symlink_to(path)
        with av.open(str(path)) as container:
            decoded = [
                frame.to_ndarray(format="rgb24") for _, frame in zip(range(6), container.decode(video=0), strict=False)
            ]
        write_clip(frames / label / path.stem, decoded)
    return videos, frames


def test_layouts_a_b_and_a_split_file_load_the_same_clips_labels_and_frames(
    same_clips_two_layouts: tuple[Path, Path],
) -> None:
    videos, frames = same_clips_two_layouts
    options = {"resize": 16, "val_fraction": 1 / 3, "test_fraction": 1 / 3}
    from_videos = folder_module(videos, **{**options, "layout": "videos"})
    from_frames = folder_module(frames, **options)
    from_videos.setup()
    from_frames.setup()
    clip_lists = [
        {split: [(c.path.stem, c.label) for c in clips] for split, clips in module.clips.items()}
        for module in (from_videos, from_frames)
    ]
    assert clip_lists[0] == clip_lists[1]
    assert all(len(clips) == 2 for clips in clip_lists[0].values())  # one clip of each class per split
    video_frames, image_frames = frames_by_clip(from_videos), frames_by_clip(from_frames)
    for name, images in image_frames.items():
        assert len(images) == 6
        assert torch.equal(images, video_frames[name][:6])  # same pixels through PyAV and through Pillow

    # A CSV split file naming the video files finds the same clips in the frames folder (name without suffix).
    rows = [f"{label}/{name}.avi,{label},{split}" for split, clips in clip_lists[0].items() for name, label in clips]
    (frames / "splits.csv").write_text("clip,label,split\n" + "\n".join(rows) + "\n")
    from_csv = folder_module(frames, **options, split_file="splits.csv")
    from_csv.setup()
    assert {split: [(c.path.stem, c.label) for c in clips] for split, clips in from_csv.clips.items()} == clip_lists[0]
    assert from_csv.spec.class_counts == from_frames.spec.class_counts


def test_a_ucf101_trainlist_keeps_its_test_list_and_carves_val_by_group(tmp_path: Path) -> None:
    lines = {"train": [], "test": []}
    for label in ("Archery", "Bowling"):
        for group in range(1, 7):
            for clip in (1, 2):
                name = f"{label}/v_{label}_g{group:02d}_c{clip:02d}"
                write_clip(tmp_path / name, flat_frames(3, 40 * group))
                lines["test" if group == 1 else "train"].append(f"{name}.avi")
    (tmp_path / "trainlist01.txt").write_text(
        "".join(f"{line} {1 + line.startswith('B')}\n" for line in lines["train"])
    )
    (tmp_path / "testlist01.txt").write_text("".join(f"{line}\n" for line in lines["test"]))
    module = folder_module(tmp_path, split_file="trainlist01.txt", val_fraction=0.2)
    module.setup()
    assert sorted(c.path.name for c in module.clips["test"]) == sorted(Path(line).stem for line in lines["test"])
    groups = {split: {c.path.name.split("_")[2] for c in clips} for split, clips in module.clips.items()}
    assert groups["test"] == {"g01"} and groups["val"] and not groups["val"] & groups["train"]
    assert len(module.clips["train"]) + len(module.clips["val"]) == len(lines["train"])


def test_a_split_file_listing_one_clip_in_two_splits_is_an_error_naming_the_clip_both_splits_and_the_file(
    tmp_path: Path,
) -> None:
    clips = tiny_folder(tmp_path)
    rows = [
        f"{label}/clip_{i},{label},{('train', 'val', 'test', 'train')[i]}"
        for label in ("dark", "light")
        for i in range(4)
    ]
    rows.append("light/clip_1,light,test")  # light/clip_1 is already in val
    (clips / "splits.csv").write_text("clip,label,split\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        DataError,
        match=r"light/clip_1: listed in the val split \(.*splits\.csv line 7\) and in the test split \(.*splits\.csv line 10\)",
    ):
        folder_module(clips, split_file="splits.csv").setup()


def test_a_ucf101_clip_in_both_the_train_and_the_test_list_is_an_error(tmp_path: Path) -> None:
    for group in (1, 2):
        write_clip(tmp_path / f"Archery/v_Archery_g0{group}_c01", flat_frames(3, 40 * group))
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\nArchery/v_Archery_g02_c01.avi 1\n")
    (tmp_path / "testlist01.txt").write_text("Archery/v_Archery_g02_c01.avi\n")
    with pytest.raises(
        DataError,
        match=r"v_Archery_g02_c01: listed in the train split \(.*trainlist01\.txt line 2\) and in the test split \(.*testlist01\.txt line 1\)",
    ):
        folder_module(tmp_path, split_file="trainlist01.txt").setup()


def grouped_split_file(clips: Path, group_of: dict[str, str]) -> None:
    """splits.csv listing tiny_folder's clips with the header clip,label,group; a clip not in group_of has none."""
    rows = [
        f"{label}/clip_{i},{label},{group_of.get(f'{label}/clip_{i}', '')}"
        for label in ("dark", "light")
        for i in range(4)
    ]
    (clips / "splits.csv").write_text("clip,label,group\n" + "\n".join(rows) + "\n")


def test_one_clip_without_a_group_among_grouped_clips_is_an_error_naming_that_clip(tmp_path: Path) -> None:
    clips = tiny_folder(tmp_path)
    groups = {f"{label}/clip_{i}": f"person{i}" for label in ("dark", "light") for i in range(4)}
    del groups["light/clip_2"]
    grouped_split_file(clips, groups)
    with pytest.raises(DataError, match=r"(?s)light/clip_2: no group.*7 of 8 clips have one.*group column"):
        folder_module(clips, split_file="splits.csv").setup()


def test_clips_without_any_group_are_split_stratified_by_class(tmp_path: Path) -> None:
    clips = tiny_folder(tmp_path)
    grouped_split_file(clips, {})
    module = folder_module(clips, split_file="splits.csv", val_fraction=0.25, test_fraction=0.25)
    module.setup()
    for name in ("val", "test"):  # 0.25 of 4 clips per class: one clip of each class
        assert sorted(c.label for c in module.clips[name]) == ["dark", "light"]


# --- clip sampling and augmentation -------------------------------------------------------------------------------


def test_crop_and_flip_are_drawn_once_per_clip_and_applied_to_every_frame() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 150, (4, 1, 20, 20, 3), dtype=np.uint8)
    frames = torch.from_numpy((base + 10 * np.arange(6).reshape(1, 6, 1, 1, 1)).astype(np.uint8).reshape(24, 20, 20, 3))
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    transform = ClipTransform(crop=12, flip=True, mean=mean, std=std)
    starts, lengths = torch.arange(4) * 6, torch.full((4,), 6)
    dataset = ClipDataset(frames, starts, lengths, torch.arange(4), ClipSampling(6, 1), transform, seed=1)
    seen = set()
    for _draw in range(10):
        x, _ = dataset[[0, 1, 2, 3]]
        pixels = x * std.view(-1, 1, 1) + mean.view(-1, 1, 1)  # back to [0, 1]
        steps = pixels - pixels[:, :1]
        expected = (10 * torch.arange(6) / 255).view(1, 6, 1, 1, 1).expand_as(steps)
        torch.testing.assert_close(steps, expected, atol=1e-5, rtol=0)  # same crop window and flip in every frame
        first = (pixels[0, 0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        windows = {
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if np.array_equal(first, (np.flip(base[0, 0], 1) if flip else base[0, 0])[top : top + 12, left : left + 12])
        }
        assert len(windows) == 1  # the output is one crop of the original, maybe flipped
        seen |= windows
    assert len(seen) > 3 and {flip for _, _, flip in seen} == {False, True}


def test_evaluation_clips_are_centred_and_test_clips_evenly_spaced() -> None:
    frames = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 2, 2, 1).contiguous()
    transform = ClipTransform(crop=None, flip=True, mean=torch.zeros(1), std=torch.ones(1))
    sampling = ClipSampling(clip_len=4, stride=2)  # spans 7 frames
    one = ClipDataset(frames, torch.tensor([0]), torch.tensor([20]), torch.tensor([0]), sampling, transform)
    assert (one[[0]][0][0, :, 0, 0, 0] * 255).round().tolist() == [6, 8, 10, 12]  # offset 13 // 2
    three = ClipDataset(
        frames, torch.tensor([0]), torch.tensor([20]), torch.tensor([0]), sampling, transform, n_clips=3
    )
    starts = (three[[0]][0][0, :, 0, 0, 0, 0] * 255).round().tolist()
    assert starts == [2, 6, 10]  # centres of three equal thirds of the 13 possible offsets


# --- moving-shapes ----------------------------------------------------------------------------------------------------


def test_moving_shapes_is_deterministic_for_a_seed_balanced_and_written_beside_writable_data(tmp_path: Path) -> None:
    def built(seed: int, root: Path) -> MovingShapes:
        module = MovingShapes(
            MovingShapesOptions(
                root=str(root),
                n_clips=6,
                frame_size=16,
                n_frames=6,
                clip_len=4,
                directions=8,
                seed=seed,
                val_fraction=1 / 3,
                test_fraction=1 / 3,
            )
        )
        module.setup()
        return module

    first, again, other = built(0, tmp_path / "one"), built(0, tmp_path / "two"), built(1, tmp_path / "one")
    assert (tmp_path / "one" / "generated").is_dir() and len(list((tmp_path / "one" / "generated").iterdir())) == 2
    assert torch.equal(first.datasets["train"].frames, again.datasets["train"].frames)
    assert first.fingerprint()["digest"] == again.fingerprint()["digest"]
    assert not torch.equal(first.datasets["train"].frames, other.datasets["train"].frames)
    spec = first.spec
    assert spec.class_names == sorted(DIRECTIONS) and spec.class_counts == [2] * 8
    assert spec.details["n_val"] == spec.details["n_test"] == 16 and spec.frame_shape == [1, 16, 16]


def moving_shapes_for_run(root: Path, *words: str) -> MovingShapes:
    """moving-shapes as `stw train` builds it from these CLI words."""
    small = ["data.n_clips=4", "data.frame_size=16", "data.n_frames=6", "data.clip_len=4", "data.batch_size=4"]
    config = parse_run_args(["--data", "moving-shapes", f"data.root={root}", *small, *words])
    module = datamodule_for(config)
    module.setup()
    return module


def test_moving_shapes_clips_depend_on_the_data_seed_and_not_on_the_run_seed(tmp_path: Path) -> None:
    seed1, seed2 = moving_shapes_for_run(tmp_path, "seed=1"), moving_shapes_for_run(tmp_path, "seed=2")
    assert torch.equal(seed1.datasets["train"].frames, seed2.datasets["train"].frames)
    assert seed1.clips == seed2.clips  # the same split too
    assert seed1.fingerprint() == seed2.fingerprint()
    assert len(list((tmp_path / "generated").iterdir())) == 1
    # The run's seed still orders the training batches.
    assert not torch.equal(next(iter(seed1.train_dataloader()))[1], next(iter(seed2.train_dataloader()))[1])

    other_data = moving_shapes_for_run(tmp_path, "seed=1", "data.seed=5")
    assert not torch.equal(seed1.datasets["train"].frames, other_data.datasets["train"].frames)
    assert seed1.fingerprint()["digest"] != other_data.fingerprint()["digest"]


def test_moving_shapes_fall_back_to_the_cache_dir_when_the_data_root_is_read_only(tmp_path: Path) -> None:
    # Mode r-x as the shared data folder has: the mode bits decide (datamodules.video.storage.is_writable), so the
    # folder counts as read-only for root too, who could write there anyway.
    root, cache = tmp_path / "data", tmp_path / "cache"
    root.mkdir(mode=0o555)
    try:
        module = MovingShapes(MovingShapesOptions(root=str(root), cache_dir=str(cache), n_clips=3, n_frames=4))
        assert module.generated_folder().parent == cache / "generated"
        module.find_clips()
        assert module.generated_folder().is_dir() and not (root / "generated").exists()
    finally:
        root.chmod(0o755)  # so pytest can delete tmp_path


def test_one_moving_shapes_frame_does_not_reveal_the_direction_but_two_frames_do() -> None:
    options = MovingShapesOptions(frame_size=32, n_frames=2, channels=1)
    rng = np.random.default_rng(7)
    directions = list(DIRECTIONS)[:4]
    clips, labels = [], []
    for _ in range(60):
        for label, direction in enumerate(directions):
            clips.append(
                render_clip(rng, direction, ("square", "circle", "triangle")[rng.integers(3)], options)[..., 0] / 255.0
            )
            labels.append(label)
    clips, labels = np.stack(clips), np.array(labels)
    # One frame: a nearest-class-mean classifier fitted on half the clips is at chance on the other half.
    first = clips[:, 0].reshape(len(clips), -1)
    means = np.stack([first[: len(first) // 2][labels[: len(first) // 2] == k].mean(0) for k in range(4)])
    guesses = np.argmin(((first[len(first) // 2 :, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (guesses == labels[len(first) // 2 :]).mean() < 0.4
    # Two frames: the shift of the (circular) centre of brightness names the direction every time.
    angles = 2 * np.pi * np.arange(32) / 32

    def centre(frames: np.ndarray, axis: int) -> np.ndarray:
        mass = frames.sum(axis=axis)
        return np.arctan2((mass * np.sin(angles)).sum(-1), (mass * np.cos(angles)).sum(-1))

    shift = [np.angle(np.exp(1j * (centre(clips[:, 1], a) - centre(clips[:, 0], a)))) for a in (1, 2)]  # (x, y)
    units = np.array([DIRECTIONS[d] for d in directions])
    assert (np.argmax(np.stack(shift, 1) @ units.T, axis=1) == labels).all()


# --- bad input ------------------------------------------------------------------------------------------------------


def test_an_empty_class_folder_is_skipped_with_a_warning_or_raises(tmp_path: Path) -> None:
    (tiny_folder(tmp_path) / "empty_class").mkdir()
    module = folder_module(tmp_path)
    with pytest.warns(UserWarning, match="empty_class: empty class folder"):
        module.setup()
    assert module.spec.class_names == ["dark", "light"] and module.spec.details["empty_class_folders"] == 1
    with pytest.raises(DataError, match="empty_class"):
        folder_module(tmp_path, bad_files="error").setup()


def test_short_clips_are_padded_with_their_last_frame_or_skipped(tmp_path: Path) -> None:
    write_clip(tiny_folder(tmp_path) / "dark" / "short", flat_frames(2, 100))
    padded = folder_module(tmp_path, clip_len=4, short_clips="pad")
    padded.setup()
    assert padded.spec.details["padded_clips"] == 1 and padded.spec.details["skipped_clips"] == 0
    split = next(name for name, clips in padded.clips.items() if any(c.path.name == "short" for c in clips))
    item = [c.path.name for c in padded.clips[split]].index("short")
    x, _ = padded.datasets[split][[item]]
    pixels = x[0, :, 0, 0, 0] * padded.std[0] + padded.mean[0]
    assert (pixels * 255).round().tolist() == [100, 101, 101, 101]
    skipped = folder_module(tmp_path, clip_len=4, short_clips="skip")
    skipped.setup()
    assert skipped.spec.details["skipped_clips"] == 1
    assert sum(skipped.spec.details[f"n_{name}"] for name in ("train", "val", "test")) == 8


def test_corrupt_files_are_skipped_with_one_warning_or_raise(tmp_path: Path, hmdb_dir: Path) -> None:
    clips = tiny_folder(tmp_path / "frames")
    (clips / "light" / "clip_0" / "frame_2.png").write_bytes(b"not a png")
    module = folder_module(clips)
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unreadable.*clip_0/frame_2\.png"):
        module.setup()
    assert module.spec.details["skipped_bad_files"] == 1
    with pytest.raises(DataError, match=r"frame_2\.png"):
        folder_module(clips, bad_files="error").setup()

    (tmp_path / "videos" / "golf").mkdir(parents=True)
    (tmp_path / "videos" / "golf" / "broken.avi").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UnreadableClip, match="broken.avi"):
        decode_video(tmp_path / "videos" / "golf" / "broken.avi", DecodeOptions(8, 3))
    with pytest.raises(DataError, match="broken.avi"):
        folder_module(tmp_path / "videos", layout="videos", bad_files="error").setup()


def test_mixed_frame_sizes_are_resized_or_raise_when_resizing_is_off(tmp_path: Path) -> None:
    clips = tiny_folder(tmp_path / "between")
    write_clip(clips / "light" / "big", flat_frames(5, 90, size=(12, 10)))
    with pytest.raises(DataError, match="set --data.resize"):
        folder_module(clips).setup()
    resized = folder_module(clips, resize=6)
    resized.setup()
    assert resized.spec.frame_shape == [3, 6, 6]

    within = tiny_folder(tmp_path / "within")
    (within / "dark" / "clip_0" / "frame_4.png").unlink()
    Image.fromarray(np.zeros((9, 8, 3), dtype=np.uint8)).save(within / "dark" / "clip_0" / "frame_4.png")
    with pytest.raises(DataError, match=r"clip_0: frames of different sizes"):
        folder_module(within).setup()


# --- fitted preprocessing, predict inputs, fingerprint, throughput -----------------------------------------------------


def test_normalisation_uses_training_clips_only_and_survives_a_json_round_trip(tmp_path: Path) -> None:
    clips = tiny_folder(tmp_path, per_class=6)
    split_of = {0: "test", 1: "val"}  # the darkest clip of each class tests, so all clips are brighter than train
    rows = [f"{label}/clip_{i},{label},{split_of.get(i, 'train')}" for label in ("dark", "light") for i in range(6)]
    (clips / "splits.csv").write_text("clip,label,split\n" + "\n".join(rows) + "\n")
    module = folder_module(clips, test_clips=2, split_file="splits.csv")
    module.setup()
    train_pixels = torch.cat(
        [
            module.datasets["train"].frames[s : s + n]
            for s, n in zip(
                module.datasets["train"].starts.tolist(), module.datasets["train"].lengths.tolist(), strict=False
            )
        ]
    )
    torch.testing.assert_close(module.mean, train_pixels.double().mean((0, 1, 2)).float() / 255)
    all_pixels = module.datasets["train"].frames.double()
    assert not torch.allclose(module.mean, all_pixels.mean((0, 1, 2)).float() / 255, atol=1e-3)

    restored = folder_module(clips, test_clips=2, split_file="splits.csv")
    restored.load_state_dict(json.loads(json.dumps(module.state_dict())))
    test_clip = module.clips["test"][0].path
    x_test, _ = module.datasets["test"][[0]]
    for source in (module, restored):
        torch.testing.assert_close(source.inputs_for(test_clip), x_test)
    assert x_test.shape == (1, 2, 3, 3, 8, 8)


def test_fingerprint_covers_every_frame_file_and_ignores_where_clips_live(tmp_path: Path) -> None:
    one = tiny_folder(tmp_path / "one")
    two = tiny_folder(tmp_path / "two")
    digest = folder_module(one).fingerprint()
    assert len(digest["files"]) == 8 * 5 and "clips_dir" not in digest["options"]
    assert folder_module(two, batch_size=3, cache_dir=str(tmp_path)).fingerprint()["digest"] == digest["digest"]
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(two / "dark" / "clip_1" / "frame_3.png")
    assert folder_module(two).fingerprint()["digest"] != digest["digest"]


def test_loader_throughput_is_measured_in_frames_per_second(tmp_path: Path) -> None:
    module = MovingShapes(MovingShapesOptions(root=str(tmp_path), n_clips=8, n_frames=4, clip_len=4, batch_size=4))
    frames_per_second = loader_frames_per_second(module, n_batches=5)
    assert math.isfinite(frames_per_second) and frames_per_second > 0
