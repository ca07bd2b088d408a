"""A logged run fetched by its ID from any MLflow tracking URI: its tags, metrics and the artifacts that rebuild it.

`stw reproduce`, `predict`, `show` and `compare` all start here, so an unknown, deleted or foreign run ID and a
run that lacks what a command needs fail the same clear way, before any work starts.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from datamodules.errors import RunError
from experiments.config import config_from_dict
from experiments.plugins import missing_plugins
from experiments.tracking import TOOL, Tag, default_tracking_uri, final_metrics

CONFIG, FINGERPRINT, PREPROCESSING, CHECKPOINT = (
    "config.yaml",
    "fingerprint.json",
    "preprocessing.json",
    "checkpoints/best.ckpt",
)
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass
class LoggedRun:
    """One st-workbench run and the client that reads it. Artifacts are downloaded on demand into `folder`,
    which is removed when the run is used as a context manager (`with fetch_run(...) as run:`)."""

    client: MlflowClient
    run: Run
    tracking_uri: str
    folder: Path | None = None

    def __enter__(self) -> "LoggedRun":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def tags(self) -> dict[str, str]:
        return self.run.data.tags

    @property
    def metrics(self) -> dict[str, float]:
        return self.run.data.metrics

    def final_metrics(self) -> dict[str, float]:
        return final_metrics(self.metrics)

    def artifact_paths(self, folder: str | None = None) -> list[str]:
        """Every artifact file of the run, as paths relative to its artifact root."""
        paths = []
        for item in self.client.list_artifacts(self.run_id, folder):
            paths += self.artifact_paths(item.path) if item.is_dir else [item.path]
        return paths

    def require(self, *names: str) -> None:
        """Raise RunError naming every artifact in `names` the run does not have."""
        folders = {str(Path(name).parent) if "/" in name else None for name in names}
        present = {item.path for folder in folders for item in self.client.list_artifacts(self.run_id, folder)}
        missing = [name for name in names if name not in present]
        if missing:
            raise RunError(
                f"run {self.run_id} has no {', '.join(missing)} artifact{'s' * (len(missing) > 1)}"
                f" (status {self.run.info.status}){self._why_incomplete()}"
            )

    def _why_incomplete(self) -> str:
        if self.tags.get(Tag.ROLE) == "sweep":
            return f"; it is a sweep's parent run: pick one of its trials with `stw runs --sweep {self.run_id}`"
        if error := self.tags.get(Tag.ERROR):
            return f"; it failed with: {error}"
        if self.tags.get(Tag.TRIAL_STATE) == "PRUNED":
            return "; it is a pruned sweep trial, stopped before it was tested: choose a completed trial"
        if self.run.info.status == "FINISHED":
            return ("; it finished without writing it (it was stopped before its first validation, or its artifacts "
                    "were deleted from the store): choose another run or retrain it")  # fmt: skip
        return f"; it is {self.run.info.status}, so it did not finish logging: choose a run that completed"

    def download(self, name: str) -> Path:
        self.folder = self.folder or Path(tempfile.mkdtemp(prefix="stw-run-artifacts-"))
        with _no_progress_bar():
            return Path(self.client.download_artifacts(self.run_id, name, str(self.folder)))

    def text(self, name: str) -> str:
        return self.download(name).read_text()

    def json(self, name: str) -> Any:
        return json.loads(self.text(name))

    def config(self) -> dict[str, Any]:
        """The run's exact config, rebuilt and validated from its saved config.yaml (never from the flat params)."""
        try:
            stored = yaml.safe_load(self.text(CONFIG))
        except yaml.YAMLError as error:  # safe_load refuses tags (!!python/...): a tampered file is refused here
            raise RunError(f"run {self.run_id}: its {CONFIG} is not a valid run config ({error}); it was edited "
                           "or damaged after the run, so the run cannot be rebuilt from it") from None  # fmt: skip
        if not isinstance(stored, dict):
            raise RunError(f"run {self.run_id}: its {CONFIG} holds {type(stored).__name__}, not a run config")
        if missing := missing_plugins(stored, self.tags):
            raise RunError(f"run {self.run_id}: {missing}")
        return config_from_dict(stored)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar per downloaded file; for a few small files it is only noise in the output."""
    saved = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = saved


def fetch_run(run_id: str, tracking_uri: str | None = None) -> LoggedRun:
    """The st-workbench run `run_id` in the store at `tracking_uri` (default: the local store)."""
    uri = default_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise RunError(
                f"no run {run_id!r} in {uri}; list the runs there with `stw runs --tracking-uri {uri}`"
            ) from None
        raise RunError(f"cannot read run {run_id!r} from {uri}: {error.message}") from None
    if run.info.lifecycle_stage == "deleted":
        raise RunError(
            f"run {run_id} in {uri} is deleted; restore it with `mlflow runs restore --run-id {run_id}` "
            "or choose another run"
        )
    if run.data.tags.get(Tag.TOOL) != TOOL:
        raise RunError(
            f"run {run_id} in {uri} was not made by st-workbench (it has no stw.tool tag), so its config "
            "and artifacts are not in the form stw rebuilds runs from"
        )
    return LoggedRun(client, run, uri)
