"""Where a run trains, without GPUs: the device type and count a config resolves to, what this machine cannot
train refused before any run is opened, a GPU for every sweep worker, and how a reproduction on other devices is
told apart from a failed one."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

from datamodules.errors import ConfigError
from experiments.cli import main
from experiments.config import parse_run_args
from experiments.devices import Placement, check_placement, placement, relaunchable, worker_gpu
from experiments.reproduce import MetricRow, device_difference, placed_elsewhere, suggested_tolerance
from experiments.sweep import driver
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.train import run_training

ETT = ["--data", "ett", "--model", "linear"]


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(MPSAccelerator, "is_available", staticmethod(lambda: False))
    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: count > 0))
    monkeypatch.setattr(CUDAAccelerator, "auto_device_count", staticmethod(lambda: count))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)


@pytest.fixture()
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)


@pytest.fixture()
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 1)


def _trainer(*words: str) -> dict:
    return parse_run_args([*ETT, *words])["trainer"]


def test_auto_trains_on_the_cpu_of_a_machine_without_gpus(no_gpu):
    assert placement(_trainer()) == Placement("cpu", 1)
    assert placement(_trainer("trainer.devices=auto")) == Placement("cpu", 1)
    assert placement(_trainer("trainer.devices=2", "trainer.num_nodes=3")) == Placement("cpu", 6)


def test_auto_takes_the_gpu_when_there_is_one(one_gpu):
    assert placement(_trainer()) == Placement("cuda", 1)
    assert placement(_trainer("trainer.accelerator=cpu")) == Placement("cpu", 1)


# (GPUs on the machine, words after `stw train --data ett --model linear`, what the message must say)
REFUSED_HERE = [
    (0, ["trainer.precision=16-mixed"], ["trainer.precision=16-mixed does not train on cpu", "auto is cpu here"]),
    (0, ["trainer.accelerator=gpu"], ["trainer.accelerator=gpu", "no CUDA or MPS GPU"]),
    (0, ["trainer.strategy=fsdp"], ["trainer.strategy=fsdp does not train on cpu", "needs cuda"]),
    (0, ["trainer.devices=2", "data.batch_size=1"], ["data.batch_size=1 is the global batch", "at least 2"]),
    (1, ["trainer.devices=2"], ["trainer.devices=2", "has 1 CUDA device(s)"]),
]


@pytest.mark.parametrize(("gpus", "words", "expected"), REFUSED_HERE, ids=[" ".join(w) for _, w, _ in REFUSED_HERE])
def test_devices_this_machine_cannot_train_on_are_refused_before_a_run_opens(
    gpus, words, expected, monkeypatch, tracking_uri, capsys
):
    _gpus(monkeypatch, gpus)
    assert main(["train", *ETT, *words, "--tracking-uri", tracking_uri]) == 2
    error = capsys.readouterr().err
    assert all(text in error for text in expected), error
    assert not Path(tracking_uri.removeprefix("sqlite:///")).exists(), "refused before the run's store is opened"


def test_several_processes_train_only_from_the_commands_that_are_one_run(no_gpu, tracking_uri):
    """Lightning's ddp launcher re-runs the command line per device: from pytest it would re-run the tests."""
    config = parse_run_args([*ETT, "trainer.devices=2"])
    with pytest.raises(ConfigError, match="only `stw train` and `stw reproduce` can"):
        run_training(config, tracking_uri, quiet=True)
    with relaunchable():
        assert check_placement(config) == Placement("cpu", 2)
    with pytest.raises(ConfigError, match="--workers N"):
        check_placement(config)


def test_a_sweep_refuses_multi_process_trials_before_it_starts(tmp_path, no_gpu):
    words = ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
             "--families", "linear", "trainer.devices=2"]  # fmt: skip
    with pytest.raises(ConfigError, match="a sweep uses several devices with --workers N"):
        build_plan(sweep_parser().parse_args(words))


def test_stw_train_help_documents_every_device_key(capsys):
    with pytest.raises(SystemExit):
        main(["train", *ETT, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for text in ("--trainer.accelerator {auto,cpu,gpu,cuda,mps}", "--trainer.devices DEVICES",
                 "--trainer.strategy {auto,ddp,fsdp}", "--trainer.num_nodes NUM_NODES",
                 "--trainer.precision {32-true,bf16-mixed,16-mixed}", "data.batch_size stays the global batch",
                 "ddp_spawn is not offered"):  # fmt: skip
        assert text in help_text, text


@pytest.mark.parametrize(
    ("workers", "gpus", "expected"),
    [(1, 4, [None]), (2, 0, [None, None]), (3, 2, [None] * 3), (2, 2, ["0", "1"]), (2, 8, ["0", "1"])],
)
def test_each_sweep_worker_gets_a_gpu_of_its_own_only_when_there_is_one_for_every_worker(workers, gpus, expected):
    assert [worker_gpu(i, workers, gpus) for i in range(workers)] == expected


def test_spawned_sweep_workers_are_handed_their_gpus(monkeypatch):
    started = []

    class Process:
        def __init__(self, target, args, name):
            started.append(args)

        def start(self) -> None: ...

        def join(self) -> None: ...

    monkeypatch.setattr(driver.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(driver.multiprocessing, "get_context", lambda method: SimpleNamespace(Process=Process))
    monkeypatch.setattr(driver.time, "sleep", lambda seconds: None)
    plan = SimpleNamespace(workers=2)
    driver.run_workers(plan, remaining=5, timeout=None)
    assert [args[-1] for args in started] == ["0", "1"]


def test_a_reproduction_on_other_devices_says_how_they_differ(no_gpu):
    config = parse_run_args(ETT)
    gpu_run = {"stw.device": "cuda", "stw.devices": "1", "stw.device_name": "NVIDIA H200"}
    assert device_difference(gpu_run, config) == (
        "the run trained on cuda x1 (NVIDIA H200), this reproduction trains on cpu x1"
    )
    assert device_difference({"stw.device": "cpu", "stw.devices": "2"}, config).endswith("trains on cpu x1")
    assert device_difference({"stw.device": "cpu", "stw.devices": "1"}, config) is None
    assert device_difference({}, config) is None  # a run from before the device tags


def test_a_reproduction_moves_only_where_a_run_trains(no_gpu):
    config = parse_run_args(ETT)
    moved, notes = placed_elsewhere(config, ["trainer.devices=2", "trainer.accelerator=cpu"])
    assert moved["trainer"]["devices"] == 2 and {**moved, "trainer": config["trainer"]} == config
    assert notes == ["trainer.devices: the run used 1; reproducing with 2",
                     "trainer.accelerator: the run used 'auto'; reproducing with 'cpu'"]  # fmt: skip
    for word in ("data.batch_size=8", "trainer.precision=bf16-mixed", "trainer.devices"):
        with pytest.raises(ConfigError, match="changes only where it trains"):
            placed_elsewhere(config, [word])


def test_the_suggested_tolerance_is_the_power_of_ten_just_above_the_largest_difference():
    rows = [MetricRow("test_mse", 0.5, 0.50032), MetricRow("test_mae", 0.4, 0.39999), MetricRow("skill", 1.0, None)]
    assert suggested_tolerance(rows) == pytest.approx(1e-3)
    assert suggested_tolerance([MetricRow("test_mse", 0.5, 0.5)]) == 0.0
