"""The stock search spaces: every configuration a sweep can draw builds a model that reads the windows."""

import optuna
import pytest
import torch

from datamodules.specs import ClassifySpec, ForecastSpec
from experiments.config import config_from_dict
from experiments.sweep.space import load_space, nest, sample_overrides
from lightning_modules import TASKS

FEATURES = ["spy_open", "spy_high", "spy_low", "spy_close", "spy_volume"]


def spec_for(data: str, lookback: int, calendar: bool) -> ForecastSpec | ClassifySpec:
    names = FEATURES + (["dow_sin", "dow_cos", "month_sin", "month_cos"] if calendar else [])
    if data == "stock":
        return ForecastSpec("values", lookback, 5, names, ["spy_close"], [3], 5, target_kind="return",
                            main_target="spy_close", target_mean=[0.0003], target_std=[0.012], naive_mae=[0.012])  # fmt: skip
    return ClassifySpec("vectors", ["down", "up"], [900, 1000], seq_len=lookback, n_inputs=len(names))


@pytest.mark.parametrize("data", ["stock", "stock-direction"])
def test_every_drawn_stock_trial_builds_a_model_that_reads_its_windows(data: str) -> None:
    space, task = load_space(), TASKS["classify" if data == "stock-direction" else "forecast"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for family in task.sweep_families:
        for lookback in space["datasets"][data]["data.lookback"]["choice"]:
            trial = study.ask()
            drawn = sample_overrides(trial, space, data, family, fixed={"data.lookback"})
            config = config_from_dict(
                nest({**drawn, "data.name": data, "data.lookback": lookback, "model.family": family})
            )
            spec = spec_for(data, lookback, config["data"]["calendar"])
            module = task(config, spec).eval()
            with torch.no_grad():
                out = module(torch.randn(2, lookback, spec.n_inputs))
            assert out.shape[0] == 2, (family, lookback, drawn)
            study.tell(trial, 0.0)


def test_the_stock_space_never_turns_revin_on_and_offers_a_robust_loss() -> None:
    stock = load_space()["datasets"]["stock"]
    assert "task.revin" not in stock and stock["task.loss"]["choice"] == ["mse", "huber"]
