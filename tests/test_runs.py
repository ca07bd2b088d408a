"""`stw runs`, `stw show` and `stw compare` on real logged runs: two `stw train` runs and a two-trial sweep."""

import io
import json
from types import SimpleNamespace

import matplotlib.image
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep

pytestmark = pytest.mark.slow

SMALL = [
    "--data",
    "ett",
    "data.lookback=48",
    "data.horizon=24",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
    "--quiet",
]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, shared_data) -> SimpleNamespace:
    """A store holding a linear run, an LSTM run with another learning rate, and a sweep with two trials."""
    folder = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STW_DATA_DIR", str(shared_data))
        assert main(["train", *SMALL, "--model", "linear", "--tracking-uri", uri]) == 0
        assert (
            main(["train", *SMALL, "--model", "lstm", "model.hidden_size=8", "optim.lr=0.003", "--tracking-uri", uri])
            == 0
        )
        plan = build_plan(
            sweep_parser().parse_args(
                [
                    "--storage",
                    f"sqlite:///{folder / 'optuna.db'}",
                    "--tracking-uri",
                    uri,
                    "--study",
                    "s",
                    "--trials",
                    "2",
                    "--families",
                    "linear",
                    "--pruner",
                    "none",
                    "data.horizon=24",
                    "trainer.max_epochs=1",
                    "trainer.limit_train_batches=4",
                    "trainer.limit_val_batches=2",
                    "trainer.limit_test_batches=2",
                    "--quiet",
                ]
            )
        )
        _, parent = run_sweep(plan)
    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("ett").experiment_id], order_by=["attributes.start_time ASC"]
    )
    by_role = {role: [r for r in runs if r.data.tags.get("stw.role") == role] for role in ("trial", "sweep", None)}
    linear, lstm = by_role[None]
    return SimpleNamespace(
        uri=uri,
        client=client,
        runs={r.info.run_id: r for r in runs},
        linear=linear.info.run_id,
        lstm=lstm.info.run_id,
        parent=parent,
        trials={r.info.run_id for r in by_role["trial"]},
    )


def _stw(capsys, *words: str) -> str:
    capsys.readouterr()
    assert main(list(words)) == 0
    return capsys.readouterr().out


def _rows(text: str) -> dict[str, list[str]]:
    """A printed table as {first cell: the other cells}; cells hold no spaces here."""
    return {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}


def test_runs_lists_an_experiment_best_first_as_a_table(logged, capsys):
    out = _stw(capsys, "runs", "--data", "ett", "--top", "0", "--tracking-uri", logged.uri)
    header = out.splitlines()[0].split()
    for column in (
        "run_id",
        "kind",
        "family",
        "lookback",
        "horizon",
        "lr",
        "val_loss",
        "test_mse",
        "test_mae",
        "skill_vs_best_naive",
        "status",
        "duration_s",
    ):
        assert column in header, column
    listed = [line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("5 of")]
    assert set(listed) == set(logged.runs)
    by_val = sorted(
        (r for r in logged.runs.values() if "val_mse" in r.data.metrics), key=lambda r: r.data.metrics["val_mse"]
    )
    assert listed == [r.info.run_id for r in by_val] + [logged.parent]  # the sweep parent has no val_mse: last
    assert "5 of 5 runs, ranked by val_mse, best first" in out  # validation, never test, unless --metric asks


def test_runs_of_a_sweep_rank_by_the_sweeps_own_objective_with_test_beside(logged, capsys):
    out = _stw(capsys, "runs", "--sweep", logged.parent, "--tracking-uri", logged.uri)
    header = out.splitlines()[0].split()
    assert {"best_val_mse", "val_mse", "test_mse"} <= set(header)
    assert "2 of 2 runs, ranked by best_val_mse, best first" in out  # the score of the checkpoint each trial tested
    trials = [logged.runs[run_id] for run_id in logged.trials]
    assert all(r.data.metrics["best_val_mse"] == min(m.value for m in logged.client.get_metric_history(
        r.info.run_id, "val_mse")) for r in trials)  # fmt: skip


def test_runs_as_csv_and_json_hold_the_logged_values(logged, capsys):
    table = pd.read_csv(
        io.StringIO(_stw(capsys, "runs", "--data", "ett", "--format", "csv", "--tracking-uri", logged.uri))
    )
    assert len(table) == 5
    for row in table.itertuples():
        metrics = logged.runs[row.run_id].data.metrics
        assert row.test_mse == metrics["test_mse"] if "test_mse" in metrics else pd.isna(row.test_mse)
    assert table.set_index("run_id").loc[logged.lstm, "lr"] == 0.003
    records = json.loads(_stw(capsys, "runs", "--data", "ett", "--format", "json", "--tracking-uri", logged.uri))
    kinds = {record["run_id"]: record["kind"] for record in records}
    assert kinds == {
        logged.linear: "train",
        logged.lstm: "train",
        logged.parent: "sweep",
        **{trial: "trial" for trial in logged.trials},
    }
    assert all(record["status"] == "FINISHED" and record["duration_s"] > 0 for record in records)


def test_runs_of_a_sweep_are_its_trials(logged, capsys):
    records = json.loads(
        _stw(capsys, "runs", "--sweep", logged.parent, "--format", "json", "--tracking-uri", logged.uri)
    )
    assert {record["run_id"] for record in records} == logged.trials and len(logged.trials) == 2


def test_top_and_metric_pick_the_best_runs_in_the_metrics_direction(logged, capsys):
    [best] = json.loads(
        _stw(capsys, "runs", "--top", "1", "--metric", "test_mae", "--format", "json", "--tracking-uri", logged.uri)
    )
    scored = [r for r in logged.runs.values() if "test_mae" in r.data.metrics]
    assert best["run_id"] == min(scored, key=lambda r: r.data.metrics["test_mae"]).info.run_id
    [best] = json.loads(
        _stw(
            capsys,
            "runs",
            "--top",
            "1",
            "--metric",
            "skill_vs_best_naive",
            "--format",
            "json",
            "--tracking-uri",
            logged.uri,
        )
    )
    assert best["run_id"] == max(scored, key=lambda r: r.data.metrics["skill_vs_best_naive"]).info.run_id


def test_runs_of_an_unknown_dataset_is_a_clear_error(logged, capsys):
    assert main(["runs", "--data", "nope", "--tracking-uri", logged.uri]) == 2
    assert "no experiment 'nope'" in capsys.readouterr().err


def test_show_prints_config_metrics_tags_artifacts_and_the_reproduce_command(logged, capsys):
    out = _stw(capsys, "show", logged.lstm, "--tracking-uri", logged.uri)
    run = logged.runs[logged.lstm]
    assert "config:" in out and "hidden_size: 8" in out and "lr: 0.003" in out
    rows = _rows(out)
    assert rows["test_mse"] == [f"{run.data.metrics['test_mse']:.9g}"]
    assert rows["stw.data_fingerprint"] == [run.data.tags["stw.data_fingerprint"]]
    assert "  checkpoints/best.ckpt" in out and "  preprocessing.json" in out
    assert out.rstrip().endswith(f"reproduce it: stw reproduce {logged.lstm} --tracking-uri {logged.uri}")
    parent = _stw(capsys, "show", logged.parent, "--tracking-uri", logged.uri)
    assert "no config.yaml" in parent and f"stw runs --sweep {logged.parent}" in parent


def test_compare_shows_differing_params_metrics_and_learning_curves(logged, capsys, tmp_path):
    png = tmp_path / "curves.png"
    out = _stw(capsys, "compare", logged.linear, logged.lstm, "--plot", str(png), "--tracking-uri", logged.uri)
    params, metrics = out.split("metrics:")
    rows = _rows(params)
    assert rows["model.family"] == ["linear", "lstm"] and rows["optim.lr"] == ["0.001", "0.003"]
    assert rows["model.hidden_size"] == ["-", "8"]
    assert "data.lookback" not in rows  # the same in both runs
    values = _rows(metrics)
    expected = [f"{logged.runs[run].data.metrics['test_mse']:.6g}" for run in (logged.linear, logged.lstm)]
    assert values["test_mse"] == expected
    image = matplotlib.image.imread(png)
    assert png.read_bytes()[:4] == b"\x89PNG" and image.shape[1] > image.shape[0] > 100  # two panels side by side
