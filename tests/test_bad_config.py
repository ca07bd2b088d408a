"""Bad values, files and paths on the command line: each is refused before any work with one message (exit 2)
that names the key, file or option, what is wrong and what is valid. One case a row."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main

ETT = ["--data", "ett", "--model", "linear"]
SMS = ["--data", "sms", "--model", "cnn"]

# (words after `stw train`, substrings the message must hold)
BAD_TRAIN = [
    ([*ETT, "trainer.max_epochs=0"], ["trainer.max_epochs=0", "at least 1"]),
    ([*ETT, "trainer.max_epochs=-1"], ["trainer.max_epochs=-1", "at least 1"]),
    ([*ETT, "trainer.patience=-2"], ["trainer.patience=-2", "0 (no early stopping) or more"]),
    ([*ETT, "trainer.limit_train_batches=0"], ["trainer.limit_train_batches=0", "a fraction in (0, 1]"]),
    ([*ETT, "trainer.limit_val_batches=0.0"], ["trainer.limit_val_batches=0.0", "a count of at least 1"]),
    ([*ETT, "trainer.limit_test_batches=1.5"], ["trainer.limit_test_batches=1.5", "a fraction in (0, 1]"]),
    ([*ETT, "trainer.gradient_clip_val=-1"], ["trainer.gradient_clip_val=-1", "0 (no clipping) or more"]),
    ([*ETT, "optim.lr=0"], ["optim.lr=0", "greater than 0"]),
    ([*ETT, "optim.lr=-0.01"], ["optim.lr=-0.01", "greater than 0"]),
    ([*ETT, "optim.weight_decay=-1"], ["optim.weight_decay", "0 or more"]),
    ([*ETT, "seed=-1"], ["seed=-1", "from 0 to 2**32 - 1"]),
    ([*ETT, "seed=4294967296"], ["seed=4294967296", "from 0 to 2**32 - 1"]),
    ([*ETT, "data.seed=-5"], ["data.seed=-5", "from 0 to 2**32 - 1"]),
    ([*ETT, "data.batch_size=0"], ["data.batch_size=0", "at least 1"]),
    ([*ETT, "trainer.monitor=val_acc"], ["trainer.monitor='val_acc'", "val_mse", "val_loss"]),
    ([*SMS, "trainer.monitor=val_mse"], ["trainer.monitor='val_mse'", "val_f1", "val_acc"]),
    ([*ETT, "trainer.monitor=train_loss"], ["not a metric this task logs on validation"]),
    ([*ETT, "trainer.accelerator=tpu"], ["trainer.accelerator", "cpu"]),
    ([*ETT, "trainer.precision=16-mixed", "trainer.accelerator=cpu"], ["16-mixed does not train on cpu", "bf16-mixed"]),
    ([*ETT, "trainer.strategy=fsdp", "trainer.accelerator=cpu"], ["trainer.strategy=fsdp", "CUDA devices only"]),
    ([*ETT, "trainer.strategy=ddp_spawn"], ["trainer.strategy", "'ddp'", "ddp_spawn"]),
    ([*ETT, "trainer.precision=16"], ["trainer.precision", "'16-mixed'"]),
    ([*ETT, "trainer.devices=0"], ["trainer.devices=0", "a count of at least 1, or auto"]),
    ([*ETT, "trainer.num_nodes=0"], ["trainer.num_nodes=0", "at least 1"]),
    ([*ETT, "model.hiden=3"], ["hiden", "valid keys"]),
    ([*ETT, "data.lookback=0"], ["lookback", "at least 1"]),
]


@pytest.mark.parametrize(("words", "expected"), BAD_TRAIN, ids=[" ".join(words[4:]) for words, _ in BAD_TRAIN])
def test_a_bad_run_value_is_refused_before_any_work(words, expected, tracking_uri, capsys):
    assert main(["train", *words, "--tracking-uri", tracking_uri]) == 2
    error = capsys.readouterr().err
    for text in expected:
        assert text in error
    assert "Traceback" not in error
    store = Path(tracking_uri.removeprefix("sqlite:///"))
    assert not store.exists() or not MlflowClient(tracking_uri).search_runs(
        [e.experiment_id for e in MlflowClient(tracking_uri).search_experiments()]
    ), "no run is opened for a refused config"


def _config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ["--config", "cannot read it"]),
        ("data: [unclosed\n", ["--config", "not valid YAML"]),
        ("data: !!python/object/apply:os.system ['true']\n", ["--config", "tags such as !!python"]),
        ("- just\n- a list\n", ["--config", "holds a list, not a mapping"]),
    ],
    ids=["missing", "unparsable", "yaml-tag", "a-list"],
)
def test_a_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, text, expected):
    path = str(tmp_path / "missing.yaml") if text is None else _config_file(tmp_path, text)
    assert main(["train", "--config", path]) == 2
    error = capsys.readouterr().err
    assert path in error and all(part in error for part in expected)


BAD_SWEEP = [
    (["--trials", "0"], ["--trials", "at least 1"]),
    (["--workers", "0"], ["--workers", "at least 1"]),
    (["--timeout", "0"], ["--timeout", "above 0"]),
    (["--max-failures", "0"], ["--max-failures", "at least 1"]),
    (["--storage", "sqlite:////no/such/folder/optuna.db"], ["/no/such/folder", "does not exist"]),
    (["--storage", "redis://localhost/0"], ["redis://localhost/0", "not a storage URL"]),
]


@pytest.mark.parametrize(("words", "expected"), BAD_SWEEP, ids=[" ".join(w) for w, _ in BAD_SWEEP])
def test_a_bad_sweep_option_is_refused_before_any_work(words, expected, tmp_path, capsys):
    assert main(["sweep", *words, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    error = capsys.readouterr().err
    assert all(part in error for part in expected)
    assert not (tmp_path / "mlflow.db").exists()


def test_a_storage_path_that_is_a_folder_is_refused(tmp_path, capsys):
    assert main(["sweep", "--storage", f"sqlite:///{tmp_path}"]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "0" * 32, "--input", "x.csv", "--output", "/no/such/folder/out.csv"],
        ["compare", "0" * 32, "1" * 32, "--plot", "/no/such/folder/curves.png"],
    ],  # fmt: skip
    ids=["predict --output", "compare --plot"],
)
def test_an_output_in_a_missing_folder_is_refused_before_any_work(command, tmp_path, capsys):
    assert main([*command, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    error = capsys.readouterr().err
    assert "/no/such/folder" in error and "does not exist" in error
    assert not (tmp_path / "mlflow.db").exists()  # refused before the run was even looked up


@pytest.mark.slow
def test_a_model_too_large_for_the_machine_is_refused_with_its_parameter_count(tracking_uri, capsys):
    words = ["--data", "ett", "--model", "mlp", "model.hidden_size=400000", "model.num_layers=3"]
    assert main(["train", *words, "--tracking-uri", tracking_uri]) == 2
    error = capsys.readouterr().err
    assert "parameters, which need about" in error and "GiB" in error and "model.hidden_size" in error


@pytest.mark.slow
def test_every_run_logs_its_parameter_count(tracking_uri):
    words = ["--data", "ett", "--model", "linear", "data.lookback=48", "data.horizon=24", "trainer.max_epochs=1",
             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip
    assert main(["train", *words, "--tracking-uri", tracking_uri, "--quiet"]) == 0
    client = MlflowClient(tracking_uri)
    [run] = client.search_runs([client.get_experiment_by_name("ett").experiment_id])
    assert run.data.metrics["model_parameters"] > 0
