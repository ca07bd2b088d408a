"""The example plugin on its own: its dataset and family keep stw's contracts, and stw trains the pair."""

import numpy as np
import pandas as pd
import pytest
import torch
from stw_example_plugin.last_linear import LastLinearConfig, LastLinearEncoder
from stw_example_plugin.noisy_sine import CHANNELS, NoisySine, NoisySineOptions, series

from datamodules import DATASETS, build_datamodule
from datamodules.errors import ConfigError, DataError
from lightning_modules.families import FAMILIES, build_encoder


def _set_up(**options) -> NoisySine:
    datamodule = build_datamodule("noisy-sine", options)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def test_importing_the_modules_registers_the_dataset_and_the_family():
    assert DATASETS["noisy-sine"] is NoisySine
    assert FAMILIES["last_linear"].encoder is LastLinearEncoder


def test_the_series_is_seeded_hourly_and_varies_with_its_seed():
    frame = series(100, 0.1, seed=3)
    assert list(frame.columns) == CHANNELS and len(frame) == 100
    assert (frame.index[1:] - frame.index[:-1] == pd.Timedelta(hours=1)).all()
    pd.testing.assert_frame_equal(frame, series(100, 0.1, seed=3))
    assert not np.allclose(frame.to_numpy(), series(100, 0.1, seed=4).to_numpy())


def test_splits_are_70_10_20_in_time_order_and_the_fingerprint_is_the_options():
    datamodule = _set_up(rows=1000, lookback=24, horizon=12)
    train, val, test = (datamodule.split_timestamps(split) for split in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (700, 100 + 24, 200 + 24)
    assert train[-1] < val[24] and val[-1] < test[24]  # the first val/test windows look back into the part before
    assert len(datamodule.datasets["test"]) == 200 - 12 + 1  # every stride-1 window whose horizon fits
    again, noisier = _set_up(rows=1000, lookback=24, horizon=12), _set_up(rows=1000, lookback=24, horizon=12, noise=0.5)
    assert datamodule.fingerprint()["digest"] == again.fingerprint()["digest"] != noisier.fingerprint()["digest"]


def test_new_rows_are_read_from_a_csv_in_the_dataset_format(tmp_path):
    frame = series(48, 0.1, seed=0)
    frame.to_csv(tmp_path / "new.csv")
    inputs, targets = NoisySine(NoisySineOptions()).features_from_files([tmp_path / "new.csv"])
    np.testing.assert_allclose(inputs.to_numpy(), frame.to_numpy())
    assert list(targets.columns) == CHANNELS and (inputs.index == frame.index).all()
    (tmp_path / "bad.csv").write_text("date,daily\n2024-01-01 00:00:00,0.5\n")
    with pytest.raises(DataError, match="missing columns"):
        NoisySine(NoisySineOptions()).features_from_files([tmp_path / "bad.csv"])


def test_bad_options_are_refused_by_name():
    with pytest.raises(ConfigError, match="data.noise"):
        NoisySineOptions(noise=-1)
    with pytest.raises(ConfigError, match="needs a fixed seq_len"):
        build_encoder("last_linear", None, in_dim=2, seq_len=None)


def test_the_encoder_hands_the_head_the_last_step_beside_linear_features():
    encoder = build_encoder("last_linear", {"hidden_size": 5}, in_dim=3, seq_len=8)
    x = torch.randn(4, 8, 3)
    h, mask = encoder(x)
    assert h.shape == (4, 1, 3 + 5) == (4, encoder.out_len, encoder.out_dim) and mask is None
    torch.testing.assert_close(h[:, 0, :3], x[:, -1])
    assert isinstance(encoder, LastLinearEncoder) and LastLinearConfig().hidden_size == 16


@pytest.mark.slow
def test_stw_trains_the_family_on_the_dataset(tmp_path):
    from experiments.config import config_from_dict
    from experiments.train import run_training

    config = config_from_dict({"data": {"name": "noisy-sine"}, "model": {"family": "last_linear"},
                               "trainer": {"max_epochs": 1, "limit_train_batches": 4, "progress": False}})  # fmt: skip
    result = run_training(config, f"sqlite:///{tmp_path / 'mlflow.db'}", quiet=True)
    assert result.status == "FINISHED"
    assert np.isfinite(result.metrics["test_mse"]) and "baseline_seasonal_mse" in result.metrics
