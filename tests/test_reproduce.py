"""`stw reproduce RUN_ID`: bit-for-bit retraining, and every refusal that comes before training."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments import tracking
from experiments.cli import main
from experiments.logged_run import fetch_run
from experiments.reproduce import code_check
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.tracking import final_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
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
# Noise on the inputs draws random numbers every step, so only a re-seeded run can repeat it exactly.
NOISY_LSTM = ["--model", "lstm", "model.hidden_size=8", "task.input_noise=0.1", "seed=7"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the file: creating a store's tables costs seconds, and each test finds its own runs by ID."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


def _head() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


@pytest.fixture(autouse=True)
def _clean_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training and reproducing here happen in one working tree, which may hold uncommitted work; these tests
    see it as clean at HEAD. What the code check decides from real git state is tested with a throwaway repo."""
    state = {"stw.git_commit": _head(), "stw.git_dirty": "false"}
    monkeypatch.setattr(tracking, "git_state", lambda: dict(state))


def _runs(client: MlflowClient, experiment: str = "ett"):
    return client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], order_by=["attributes.start_time ASC"]
    )


def _train(tracking_uri: str, *words: str) -> str:
    assert main(["train", *SMALL, *words, "--tracking-uri", tracking_uri]) == 0
    return _runs(MlflowClient(tracking_uri))[-1].info.run_id


def _final(client: MlflowClient, run_id: str) -> dict[str, float]:
    return final_metrics(client.get_run(run_id).data.metrics)


def _reproduction_of(client: MlflowClient, run_id: str):
    return client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.`stw.reproduces` = '{run_id}'")


def test_a_cpu_run_reproduces_bit_for_bit_in_the_same_experiment(store, capsys):
    original = _train(store, *NOISY_LSTM)
    capsys.readouterr()
    assert main(["reproduce", original, "--tracking-uri", store, "--quiet"]) == 0
    client = MlflowClient(store)
    [copy] = _reproduction_of(client, original)
    assert copy.info.experiment_id == client.get_run(original).info.experiment_id
    assert copy.info.status == "FINISHED"
    assert _final(client, copy.info.run_id) == _final(client, original)  # exact, not approximate
    assert {"test_mse", "test_mae", "baseline_last_mse", "skill_vs_best_naive"} <= _final(client, original).keys()
    out = capsys.readouterr().out
    assert "metric" in out and "original" in out and "reproduced" in out and "difference" in out
    n_final = len(_final(client, original))  # every test, baseline and skill score the run logged
    assert f"reproduces run {original}" in out and f"reproduced: all {n_final} final metrics within 0" in out


@pytest.fixture()
def run_on_changed_data(tmp_path, shared_data, store, monkeypatch):
    """A run trained on a private copy of ETTh1.csv whose first OT value is then changed (allow_modified=true: a
    changed copy is no longer the published file, which reading it would rightly reject)."""
    folder = tmp_path / "data" / "ett"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "ett" / "ETTh1.csv", folder / "ETTh1.csv")
    monkeypatch.setenv("STW_DATA_DIR", str(tmp_path / "data"))
    run_id = _train(store, "--model", "linear", "data.download=false", "data.allow_modified=true")
    lines = (folder / "ETTh1.csv").read_text().splitlines(keepends=True)
    date, *values = lines[1].split(",")
    lines[1] = ",".join([date, *values[:-1], "99.0\n"])  # a training row: the scaler and every scaled value move
    (folder / "ETTh1.csv").write_text("".join(lines))
    return run_id


def test_a_changed_data_file_is_refused_with_the_fingerprint_message(run_on_changed_data, store, capsys):
    assert main(["reproduce", run_on_changed_data, "--tracking-uri", store]) != 0
    error = capsys.readouterr().err
    assert "data fingerprint differs" in error and "file ETTh1.csv: sha256" in error and "--allow-data-change" in error
    assert not _reproduction_of(MlflowClient(store), run_on_changed_data)  # refused before training: no new run


def test_allow_data_change_retrains_and_reports_the_differences(run_on_changed_data, store, capsys):
    assert main(["reproduce", run_on_changed_data, "--tracking-uri", store, "--allow-data-change", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "data fingerprint differs" in captured.err and "file ETTh1.csv" in captured.err
    assert "beyond tolerance 0" in captured.out and "NOT reproduced" in captured.out
    client = MlflowClient(store)
    [copy] = _reproduction_of(client, run_on_changed_data)
    assert copy.data.tags["stw.reproduce_allowed"] == "data"
    assert (
        copy.data.tags["stw.data_fingerprint"] != client.get_run(run_on_changed_data).data.tags["stw.data_fingerprint"]
    )
    assert _final(client, copy.info.run_id)["test_mse"] != _final(client, run_on_changed_data)["test_mse"]


def test_a_stored_data_root_is_never_followed_and_is_listed(store, tmp_path, capsys):
    """A run's config.yaml is data from a tracking server: a tampered data.root must not send the reproduction
    (which may download or cache files) into another folder."""
    run_id = _train(store, "--model", "linear")
    client = MlflowClient(store)
    elsewhere = tmp_path / "elsewhere" / "data"
    with fetch_run(run_id, store) as run:
        config = yaml.safe_load(run.text("config.yaml"))
    config["data"]["root"] = str(elsewhere)
    client.log_text(run_id, yaml.safe_dump(config), "config.yaml")
    capsys.readouterr()
    assert main(["reproduce", run_id, "--tracking-uri", store, "--quiet"]) == 0
    assert f"data.root: the run used {elsewhere}" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_a_run_from_other_code_is_refused_unless_allowed(store, capsys):
    run_id = _train(store, "--model", "linear")
    client = MlflowClient(store)
    client.set_tag(run_id, "stw.git_commit", "0123456789abcdef0123456789abcdef01234567")
    assert main(["reproduce", run_id, "--tracking-uri", store]) != 0
    error = capsys.readouterr().err
    assert "the code differs" in error and "012345678" in error and "--allow-code-change" in error
    assert not _reproduction_of(client, run_id)
    # The code is in fact the same, so with the override the numbers still match exactly.
    assert main(["reproduce", run_id, "--tracking-uri", store, "--allow-code-change", "--quiet"]) == 0
    assert _reproduction_of(client, run_id)[0].data.tags["stw.reproduce_allowed"] == "code"


def test_a_run_trained_with_other_package_versions_is_refused_naming_each_unless_allowed(store, capsys):
    run_id = _train(store, "--model", "linear")
    client = MlflowClient(store)
    client.set_tag(run_id, "stw.version.torch", "1.0.0")
    client.set_tag(run_id, "stw.version.numpy", "1.2.3")
    assert main(["reproduce", run_id, "--tracking-uri", store]) == 2
    error = capsys.readouterr().err
    assert "the packages differ" in error and "--allow-package-change" in error
    assert "torch 1.0.0 in the run" in error and "numpy 1.2.3 in the run" in error and "lightning" not in error
    assert not _reproduction_of(client, run_id)
    assert main(["reproduce", run_id, "--tracking-uri", store, "--allow-package-change", "--quiet"]) == 0
    assert _reproduction_of(client, run_id)[0].data.tags["stw.reproduce_allowed"] == "package"


def test_an_unknown_run_id_is_a_clear_error(store, capsys):
    assert main(["reproduce", "0" * 32, "--tracking-uri", store]) == 2
    error = capsys.readouterr().err
    assert f"no run '{'0' * 32}' in {store}" in error and "stw runs" in error and "Traceback" not in error


def test_deleted_foreign_and_incomplete_runs_are_refused_by_name(store, capsys):
    client = MlflowClient(store)
    experiment = client.create_experiment("refusals")
    foreign = client.create_run(experiment).info.run_id
    deleted = client.create_run(experiment, tags={"stw.tool": "st-workbench"}).info.run_id
    client.delete_run(deleted)
    empty = client.create_run(experiment, tags={"stw.tool": "st-workbench"}).info.run_id
    expected = {
        foreign: "not made by st-workbench",
        deleted: "is deleted",
        empty: "has no config.yaml, fingerprint.json artifacts",
    }
    for run_id, message in expected.items():
        assert main(["reproduce", run_id, "--tracking-uri", store]) == 2
        assert message in capsys.readouterr().err


def test_a_failed_run_is_refused_naming_the_missing_artifact_and_its_error(store, capsys):
    assert main(["train", *SMALL, "data.lookback=20000", "--tracking-uri", store]) == 2
    failed = _runs(MlflowClient(store))[-1].info.run_id
    capsys.readouterr()
    assert main(["reproduce", failed, "--tracking-uri", store]) == 2
    error = capsys.readouterr().err
    assert "has no fingerprint.json artifact" in error and "failed with: DataError" in error


def test_a_sweep_trial_reproduces_bit_for_bit(tmp_path, store, capsys):
    words = [
        "--storage",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        "--tracking-uri",
        store,
        "--study",
        "s",
        "--trials",
        "1",
        "--families",
        "linear,mlp",
        "data.horizon=24",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "--quiet",
    ]
    plan = build_plan(sweep_parser().parse_args(words))
    study, parent = run_sweep(plan)
    trial_run = study.best_trial.user_attrs["mlflow_run_id"]
    client = MlflowClient(plan.tracking_uri)
    assert client.get_run(trial_run).data.tags["mlflow.parentRunId"] == parent
    assert main(["reproduce", trial_run, "--tracking-uri", plan.tracking_uri, "--quiet"]) == 0
    [copy] = _reproduction_of(client, trial_run)
    assert _final(client, copy.info.run_id) == _final(client, trial_run)
    assert "stw.role" not in copy.data.tags  # a reproduction is not another trial of the study
    assert main(["reproduce", parent, "--tracking-uri", plan.tracking_uri]) == 2
    assert "sweep's parent run" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store and proxied artifacts, stopped afterwards."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    ]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_a_run_on_a_remote_mlflow_server_reproduces_from_it(mlflow_server, capsys):
    run_id = _train(mlflow_server, "--model", "linear")
    assert main(["reproduce", run_id, "--tracking-uri", mlflow_server, "--quiet"]) == 0
    client = MlflowClient(mlflow_server)
    [copy] = _reproduction_of(client, run_id)
    assert _final(client, copy.info.run_id) == _final(client, run_id)
    assert f"reproduces run {run_id}" in capsys.readouterr().out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def git_repo(tmp_path) -> tuple[Path, dict[str, str]]:
    """A project-shaped repo with three commits: the base, a README-only change, then a change to a package."""
    repo = tmp_path / "repo"
    (repo / "datamodules").mkdir(parents=True)
    _git(repo, "init", "-q")
    commits = {}
    for name, path, text in (
        ("base", "datamodules/ett.py", "x = 1\n"),
        ("readme", "README.md", "docs\n"),
        ("package", "datamodules/ett.py", "x = 2\n"),
    ):
        (repo / path).write_text(text)
        _git(repo, "add", "-A")
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", name)
        commits[name] = _git(repo, "rev-parse", "HEAD")
    return repo, commits


def _state(commit: str, dirty: bool = False) -> dict[str, str]:
    return {"stw.git_commit": commit, "stw.git_dirty": str(dirty).lower()}


def test_code_changed_only_outside_the_packages_is_a_note_not_a_refusal(git_repo):
    repo, commits = git_repo
    check = code_check(_state(commits["base"]), _state(commits["readme"]), repo)
    assert check.problems == [] and "no file in datamodules" in check.notes[0]


def test_code_changed_in_a_package_or_uncommitted_is_a_refusal_naming_the_files(git_repo):
    repo, commits = git_repo
    changed = code_check(_state(commits["base"]), _state(commits["package"]), repo)
    assert len(changed.problems) == 1 and "datamodules/ett.py" in changed.problems[0]
    (repo / "datamodules" / "new.py").write_text("y = 1\n")
    dirty = code_check(_state(commits["package"]), _state(commits["package"], dirty=True), repo)
    assert "uncommitted changes in: datamodules/new.py" in dirty.problems[0]
    from_dirty = code_check(_state(commits["package"], dirty=True), _state(commits["package"]), repo)
    assert "exact code was never recorded" in from_dirty.problems[0]
    unknown = code_check(_state("f" * 40), _state(commits["package"]), repo)
    assert "is not in this clone" in unknown.problems[0]
