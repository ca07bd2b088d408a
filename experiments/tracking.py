"""MLflow plumbing: where runs go, the tags every run carries, what counts as a final metric, and `TrackedRun`,
the one place a tracked run is opened and closed.

MLflow is imported inside the functions that talk to it, so commands that only parse arguments stay fast.
"""

import functools
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

STORE_DIR = Path("mlruns")
PROJECT_PACKAGES = ("datamodules", "lightning_modules", "experiments")
VERSIONED_PACKAGES = (
    "torch", "lightning", "torchmetrics", "mlflow", "optuna", "optuna-integration", "pandas", "numpy", "st-workbench",
)  # fmt: skip
TOOL = "st-workbench"
INPUT_ATTEMPTS = 3  # logging dataset inputs: the first try and two retries (TrackedRun.log_inputs)


class Tag:
    """The names of the tags st-workbench writes; every reader and writer uses these."""

    TOOL = "stw.tool"
    DATA = "stw.data"
    FAMILY = "stw.family"
    SEED = "stw.seed"
    COMMAND = "stw.command"
    GIT_COMMIT = "stw.git_commit"
    GIT_DIRTY = "stw.git_dirty"
    VERSION = "stw.version."  # + package name
    FINGERPRINT = "stw.data_fingerprint"
    PLUGINS = "stw.plugins"  # the plugins its dataset and family came from: dist==version, or a --plugin module
    SMOKE_CHECK = "stw.smoke_check"  # the dataset's reason why its test scores are not an evaluation
    DEVICE = "stw.device"  # the device type the run trained on: cpu, cuda or mps
    DEVICES = "stw.devices"  # how many of them, over all nodes: the data-parallel world size
    DEVICE_NAME = "stw.device_name"  # the GPU model, for CUDA runs
    ERROR = "stw.error"
    CLOSE_ERROR = "stw.close_error"  # what failed while the run was being closed (its artifacts or reports)
    ENSEMBLE_MEMBERS = "stw.ensemble_members"  # an ensemble's member run IDs, comma-separated
    ENSEMBLE_RUN_ID = "stw.ensemble_run_id"  # on a sweep's parent: the ensemble of its top trials
    ROLE = "stw.role"  # "sweep" (a study's parent), "trial", "confirm" or "ensemble"; a plain `stw train` run has none
    STUDY = "stw.study"
    TRIAL_NUMBER = "stw.trial_number"
    TRIAL_STATE = "stw.trial_state"
    RECIPE = "stw.recipe"  # the search space's recipe a trial ran (experiments/sweep/recipes.py)
    CUT_BY = "stw.cut_by"  # the time budget that stopped a trial's training: sweep_timeout or trial_timeout
    REPRODUCES = "stw.reproduces"
    REPRODUCE_ALLOWED = "stw.reproduce_allowed"
    BEST_RUN_ID = "stw.best_run_id"
    BEST_TRIAL = "stw.best_trial"
    CONFIRMS_TRIAL = "stw.confirms_trial"  # a confirm run (role "confirm"): the trial whose config it retrains
    CONFIRMS_RUN = "stw.confirms_run"  # ... and that trial's run ID
    CHOSEN_TRIAL = "stw.chosen_trial"  # on a confirmed sweep's parent: the configuration with the best mean val score
    CHOSEN_RUN_ID = "stw.chosen_run_id"
    PARENT = "mlflow.parentRunId"
    NOTE = "mlflow.note.content"  # the run's one-line description, shown by the MLflow UI


# Metrics a run logs once, after testing; the per-epoch train_*/val_* curves are not among them.
FINAL_METRIC_PREFIXES = ("test_", "baseline_", "skill")


def is_final_metric(name: str) -> bool:
    return name.startswith(FINAL_METRIC_PREFIXES)


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The test, baseline and skill scores of a run: what reproduction compares and reports show."""
    return {name: float(value) for name, value in metrics.items() if is_final_metric(name)}


def database_url(url: str) -> str:
    """SQLAlchemy reads plain postgresql:// as the psycopg2 driver; stw's `postgres` extra installs psycopg 3, so a
    plain URL means that driver. A URL whose driver is missing is refused naming the extra to install."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgresql+psycopg://") and importlib.util.find_spec("psycopg") is None:
        from datamodules.errors import TrackingError

        raise TrackingError(f"{url.split('@')[-1]}: PostgreSQL needs its driver, which is not installed; "
                            "install it with: pip install 'st-workbench[postgres]'")  # fmt: skip
    return url


def default_tracking_uri(uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else SQLite in ./mlruns (MLflow 3.17 refuses a bare file store)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return database_url(uri)
    STORE_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def use_fast_async_logging() -> None:
    """MLflow's async logger otherwise polls its queue with a 1 s timeout, and every flush or set_terminated waits
    out that poll (three to four waits per run); with buffering it waits on the stop event and shuts down at once.
    Called by the entry points before MLflow is used, never at import time."""
    os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts beside a local SQLite store (in its folder); remote servers choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    """The experiment called `name`, created on first use (one experiment per dataset). Machines starting at the
    same moment may both find it missing: the one whose create loses the race reads the winner's."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _artifact_root(tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS" or (experiment := client.get_experiment_by_name(name)) is None:
            raise
        return experiment.experiment_id


def flush(tracking_uri: str) -> None:
    """Wait for the async logging queue of this store. mlflow.flush_async_logging() would flush the *default*
    store, and creating that default store writes ./mlflow.db into the working directory."""
    from mlflow.tracking._tracking_service.utils import _get_store  # stores are cached per URI; mlflow is pinned

    _get_store(tracking_uri).flush_async_logging()


def git_state() -> dict[str, str]:
    """Commit of the project checkout and whether its packages differ from it (`dirty`)."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", *PROJECT_PACKAGES)
    return {Tag.GIT_COMMIT: commit, Tag.GIT_DIRTY: str(bool(changed)).lower()}


# Installed packages cannot change under a running process, so a sweep reads them once, not once per trial.
@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[f"{Tag.VERSION}{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions[f"{Tag.VERSION}python"] = sys.version.split()[0]
    return versions


@functools.cache
def pip_freeze() -> str:
    return "\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())) + "\n"


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def provenance_tags() -> dict[str, str]:
    """What every run and sweep records about where it came from: the tool, the command, the code, the packages."""
    return {Tag.TOOL: TOOL, Tag.COMMAND: command_line(), **git_state(), **package_versions()}


CloseStep = Callable[[str], None]  # called with the run's closing status ("FINISHED", "FAILED", "KILLED")


class TrackedRun:
    """One MLflow run, open for the `with` block and closed with the right status whatever happens inside.

    FINISHED when the block ends normally or with one of `finished_on` (e.g. a pruned trial), KILLED on
    KeyboardInterrupt, FAILED on anything else, with the error in the `stw.error` tag. Steps registered with
    `at_close` (artifacts that are useful even from a failed run) run before the run is closed; a step that fails
    is recorded in `stw.close_error` and makes a finishing run FAILED, but is never raised from the exit, so the
    original exception (if any) is what the caller sees and the run is always closed.
    """

    def __init__(self, tracking_uri: str | None, experiment: str, name: str, tags: dict[str, str],
                 params: dict[str, Any] | None = None, finished_on: tuple[type[BaseException], ...] = (),
                 resume_run_id: str | None = None) -> None:  # fmt: skip
        from mlflow.tracking import MlflowClient

        use_fast_async_logging()
        self.tracking_uri = default_tracking_uri(tracking_uri)
        self.client = MlflowClient(self.tracking_uri)
        self.experiment_id = experiment_id(self.client, experiment, self.tracking_uri)
        self.name, self.tags, self.params, self.finished_on = name, tags, params or {}, finished_on
        self.run_id = resume_run_id or ""
        self.status = "RUNNING"
        self._close_steps: list[tuple[str, CloseStep]] = []

    def __enter__(self) -> "TrackedRun":
        from mlflow.entities import Param

        if self.run_id:  # a resumed sweep reopens its parent run
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(self.experiment_id, run_name=self.name, tags=self.tags).info.run_id
        try:
            params = [Param(key, str(value)) for key, value in self.params.items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[start : start + 100])
        except BaseException as error:
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def at_close(self, label: str, step: CloseStep) -> None:
        """Run `step(status)` when the run closes, in registration order; `label` names it in stw.close_error."""
        self._close_steps.append((label, step))

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def log_metric(self, key: str, value: float) -> None:
        self.client.log_metric(self.run_id, key, value)

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_inputs(self, datasets: list[Any]) -> None:
        """mlflow.entities.DatasetInput records: the data the run read, for the UI's Dataset column. Sweep workers
        logging one new dataset at once race to create it in the store: the loser's insert fails on the store's
        unique key (seen in CI), rolled back whole, and its retry finds the winner's dataset."""
        from mlflow.exceptions import MlflowException

        for attempt in range(INPUT_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=datasets)
                return
            except MlflowException:
                if attempt == INPUT_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def log_model(self, name: str, save: Callable[[Path, Any], None]) -> str:
        """An MLflow LoggedModel linked to this run as its output, so `runs:/<run>/<name>` and the UI's Models column
        find it; `save(folder, mlflow_model)` writes the model there (e.g. mlflow.pyfunc.save_model). Done with this
        run's client, not mlflow.<flavor>.log_model, which would resolve the store and experiment from the
        process-wide defaults rather than this run's. Returns the model's ID."""
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model

        model = self.client.create_logged_model(self.experiment_id, name=name, source_run_id=self.run_id,
                                                params={key: str(value) for key, value in self.params.items()})  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="stw-model-") as tmp:
            folder = Path(tmp) / name
            save(folder, Model(artifact_path=model.artifact_location, run_id=self.run_id, model_uuid=model.model_id,
                               model_id=model.model_id))  # fmt: skip
            self.client.log_model_artifacts(model.model_id, str(folder))
        self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return model.model_id

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if error is None or isinstance(error, self.finished_on):
            self.status = "FINISHED"
        elif isinstance(error, KeyboardInterrupt):
            self.status = "KILLED"
            self._tag_quietly(Tag.ERROR, f"stopped: {error}")
        else:
            self.status = "FAILED"
            self._tag_quietly(Tag.ERROR, f"{type(error).__name__}: {error}"[:5000])
        failures = []
        for label, step in self._close_steps:
            try:
                step(self.status)
            except Exception as step_error:  # a report must never keep the run open or hide the real error
                failures.append(f"{label}: {type(step_error).__name__}: {step_error}")
        if failures:
            self._tag_quietly(Tag.CLOSE_ERROR, "; ".join(failures)[:5000])
            if self.status == "FINISHED":
                self.status = "FAILED"
                self._tag_quietly(Tag.ERROR, f"closing the run failed: {failures[0]}"[:5000])
        try:
            flush(self.tracking_uri)
        finally:
            self.client.set_terminated(self.run_id, self.status)
        return False

    def _tag_quietly(self, key: str, value: str) -> None:
        try:
            self.set_tag(key, value)
        except Exception:  # the store itself failing: closing the run is what matters now
            pass
