"""MLflow plumbing: where runs go, which experiment, and the tags that make a run reproducible."""

import functools
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mlflow.tracking import MlflowClient

STORE_DIR = Path("mlruns")
PROJECT_PACKAGES = ("datamodules", "lightning_modules", "experiments")
# MLflow's async logger otherwise polls its queue with a 1 s timeout, and every flush or set_terminated waits out
# that poll (three to four waits per run); with buffering, it waits on the stop event and shuts down at once.
os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")
VERSIONED_PACKAGES = (
    "torch",
    "lightning",
    "torchmetrics",
    "mlflow",
    "optuna",
    "optuna-integration",
    "pandas",
    "numpy",
    "st-workbench",
)


def default_tracking_uri(uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else SQLite in ./mlruns (MLflow 3.17 refuses a bare file store)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    STORE_DIR.mkdir(exist_ok=True)
    return f"sqlite:///{(STORE_DIR / 'mlflow.db').resolve()}"


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts beside a local SQLite store (in its folder); remote servers choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The experiment called `name`, created on first use (one experiment per dataset)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _artifact_root(tracking_uri)
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def git_state() -> dict[str, str]:
    """Commit of the project checkout and whether its packages differ from it (`dirty`)."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", *PROJECT_PACKAGES)
    return {"stw.git_commit": commit, "stw.git_dirty": str(bool(changed)).lower()}


# Installed packages cannot change under a running process, so a sweep reads them once, not once per trial.
@functools.cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[f"stw.version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions["stw.version.python"] = sys.version.split()[0]
    return versions


@functools.cache
def pip_freeze() -> str:
    return "\n".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())) + "\n"


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
