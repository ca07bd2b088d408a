"""Typed specs: what a datamodule tells a model, saved in checkpoints as plain data and rebuilt on load."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from datamodules.specs import ClassifySpec, ForecastSpec, as_spec
from experiments.config import parse_run_args
from experiments.predict import load_module
from lightning_modules import TASKS

SERIES = ForecastSpec("values", 12, 3, ["a", "b", "c"], ["c"], [2], season=4)
FRAMES = ClassifySpec(
    "frames", ["left", "right"], [3, 5], seq_len=4, test_clips=2, frame_shape=[1, 8, 8], details={"n_train": 8}
)
CASES = {
    "forecast": (SERIES, ["--data", "ett", "--model", "cnn"], torch.randn(2, 12, 3)),
    "classify": (FRAMES, ["--data", "moving-shapes", "--model", "gru", "task.embed_dim=8"], torch.randn(2, 4, 1, 8, 8)),
}


def test_counts_and_lengths_follow_from_the_names_and_the_lookback() -> None:
    assert (SERIES.n_inputs, SERIES.n_targets, SERIES.seq_len) == (3, 1, 12)
    assert FRAMES.num_classes == 2


def test_a_spec_is_rebuilt_from_its_plain_form_and_kept_when_already_typed() -> None:
    assert as_spec(ForecastSpec, asdict(SERIES)) == SERIES
    assert as_spec(ClassifySpec, asdict(FRAMES)) == FRAMES
    assert as_spec(ClassifySpec, FRAMES) is FRAMES


@pytest.mark.parametrize("task", sorted(CASES))
def test_a_checkpoint_holds_the_spec_as_plain_data_and_loads_with_weights_only(task: str, tmp_path: Path) -> None:
    spec, words, x = CASES[task]
    torch.manual_seed(0)
    module = TASKS[task](parse_run_args(words), spec).eval()
    assert module.hparams["spec"] == asdict(spec) and isinstance(module.hparams["spec"], dict)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    loaded = load_module(path, task)  # torch.load(weights_only=True) inside
    assert as_spec(type(spec), loaded.hparams["spec"]) == spec
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))
