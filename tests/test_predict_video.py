"""`stw predict` and `stw reproduce` on video runs: moving-shapes clips (frame folders) and gesture keypoint
recordings give the model's own test probabilities, and a moving-shapes run retrains to identical metrics."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from experiments import tracking
from experiments.cli import main
from experiments.tracking import final_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=2",
    "--quiet",
]
# Two evenly spaced test clips per video (6 frames, clip_len 4): predict must average them as testing does.
SHAPES = [
    "--data",
    "moving-shapes",
    "data.n_clips=6",
    "data.frame_size=16",
    "data.n_frames=6",
    "data.clip_len=4",
    "data.batch_size=4",
    "data.test_clips=2",
    "--model",
    "frame_avg",
    "task.embed_dim=8",
    "stem.channels=4",
    "stem.layers=2",
    *TINY,
]
GESTURES = ["--data", "gestures", "data.stride=8", "--model", "gru", "model.hidden_size=8", "task.embed_dim=8", *TINY]


def _head() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


@pytest.fixture(scope="module")
def _isolated(tmp_path_factory, shared_data):
    """Generated clips and decoded frames go to a throwaway cache, never into the repository. Training and
    reproducing happen in one working tree that may hold uncommitted work; here it is seen as clean at HEAD."""
    state = {"stw.git_commit": _head(), "stw.git_dirty": "false"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STW_DATA_DIR", str(shared_data))
        patch.setenv("STW_CACHE_DIR", str(tmp_path_factory.mktemp("video-cache")))
        patch.setattr(tracking, "git_state", lambda: dict(state))
        yield


@pytest.fixture(scope="module")
def logged(_isolated, tmp_path_factory) -> SimpleNamespace:
    """One store with a tiny moving-shapes run and a tiny gestures run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"
    ids = {}
    for name, words in (("moving-shapes", SHAPES), ("gestures", GESTURES)):
        assert main(["train", *words, "--tracking-uri", uri]) == 0
        client = MlflowClient(uri)
        ids[name] = client.search_runs([client.get_experiment_by_name(name).experiment_id])[0].info.run_id
    return SimpleNamespace(uri=uri, shapes=ids["moving-shapes"], gestures=ids["gestures"])


@pytest.fixture(autouse=True)
def _module_environment(_isolated) -> None:
    """Every test of the file reads the module's cache and sees the clean checkout."""


def _predict(logged, run_id: str, inputs: list[Path], output: Path) -> int:
    return main(
        ["predict", run_id, "--input", *map(str, inputs), "--output", str(output), "--tracking-uri", logged.uri]
    )


def _probs(table: pd.DataFrame, names: list[str]) -> torch.Tensor:
    return torch.tensor(table[[f"prob_{name}" for name in names]].to_numpy(), dtype=torch.float32)


def test_each_clips_probabilities_are_the_models_average_over_its_test_clips(load_logged, logged, tmp_path):
    datamodule, module, _ = load_logged(logged.shapes, logged.uri)
    x, labels = next(iter(datamodule.test_dataloader()))
    clips = [clip.path for clip in datamodule.clips["test"][: len(labels)]]
    assert x.shape[1] == 2 and all(path.is_dir() for path in clips)  # two clips per video; frame folders
    assert _predict(logged, logged.shapes, clips, tmp_path / "clips.csv") == 0
    table = pd.read_csv(tmp_path / "clips.csv")
    names = module.class_names
    assert list(table.columns) == ["clip", "label", *(f"prob_{name}" for name in names)]
    assert list(table["clip"]) == list(map(str, clips))
    with torch.no_grad():
        expected, first_clip_only = module.predict_proba(x, clips=2), module.predict_proba(x[:, 0])
    torch.testing.assert_close(_probs(table, names), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(expected, first_clip_only, atol=1e-6)  # the average is not just one clip's
    assert list(table.label) == [names[i] for i in expected.argmax(dim=1).tolist()]


def test_a_moving_shapes_run_reproduces_with_identical_metrics(logged, capsys):
    capsys.readouterr()
    assert main(["reproduce", logged.shapes, "--tracking-uri", logged.uri, "--quiet"]) == 0
    client = MlflowClient(logged.uri)
    [copy] = client.search_runs(
        [client.get_run(logged.shapes).info.experiment_id], f"tags.`stw.reproduces` = '{logged.shapes}'"
    )
    final = lambda run_id: final_metrics(client.get_run(run_id).data.metrics)  # noqa: E731
    assert "test_acc" in final(logged.shapes) and final(copy.info.run_id) == final(logged.shapes)
    assert "reproduced: all" in capsys.readouterr().out


def test_each_gesture_window_gets_its_frame_range_and_the_models_own_probabilities(
    load_logged, logged, shared_data, tmp_path
):
    datamodule, module, _ = load_logged(logged.gestures, logged.uri)
    folder = shared_data / "video" / "ground_guide_pose" / "images"
    recording = pd.read_csv(sorted(folder.glob("terri_*/gesture_data.csv"))[0])  # the run's test participant
    unlabelled = tmp_path / "new_recording.csv"
    recording.drop(columns="gesture").to_csv(unlabelled, index=False)  # predicting needs no labels
    assert _predict(logged, logged.gestures, [unlabelled], tmp_path / "windows.csv") == 0
    table = pd.read_csv(tmp_path / "windows.csv")
    names = module.class_names
    starts = list(range(0, len(recording) - 15 + 1, 8))  # clip_len 15, stride 8
    assert list(table.columns) == ["file", "first_frame", "last_frame", "label", *(f"prob_{name}" for name in names)]
    assert list(table.first_frame) == starts and list(table.last_frame) == [start + 14 for start in starts]
    assert set(table.file) == {str(unlabelled)}
    x, _ = datamodule.datasets["test"][list(range(len(starts)))]  # the test split's windows of that recording
    with torch.no_grad():
        expected = module.predict_proba(x)
    torch.testing.assert_close(_probs(table, names), expected, rtol=0, atol=1e-6)
    assert list(table.label) == [names[i] for i in expected.argmax(dim=1).tolist()]


def test_a_recording_shorter_than_one_window_is_a_data_error(logged, shared_data, tmp_path, capsys):
    short = tmp_path / "short.csv"
    recording = sorted((shared_data / "video" / "ground_guide_pose" / "images").glob("terri_*/gesture_data.csv"))[0]
    pd.read_csv(recording).head(10).to_csv(short, index=False)
    assert _predict(logged, logged.gestures, [short], tmp_path / "out.csv") == 2
    error = capsys.readouterr().err
    assert str(short) in error and "10 frames are fewer than one window of 15" in error
    assert not (tmp_path / "out.csv").exists()
