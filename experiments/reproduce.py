"""`stw reproduce RUN_ID`: retrain a logged run from its own saved config and show whether the numbers match.

Every check runs before training, so a refusal costs seconds: the run must be an st-workbench run with its
config, fingerprint and final metrics; the data this checkout reads must have the run's fingerprint; the
project code must be the run's commit with a clean tree; the recorded package versions must be installed. Each
check gives the problems that block an exact reproduction (as sentences) and, for code, notes that do not: only
the project's own packages count as code, so a changed README or benchmark cannot change a run. The
reproduction is a new run in the same experiment, tagged stw.reproduces=<RUN_ID>. On the same machine and
package versions a CPU run reproduces bit for bit, because run_training seeds everything and uses deterministic
kernels. On another device type, GPU model or number of processes (the run's stw.device* tags, or trainer.*
words that move it) sums are taken in another order, so the metrics are compared within a tolerance instead.
"""

import argparse
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from datamodules.errors import ConfigError
from experiments import tracking
from experiments.config import config_from_dict, datamodule_for
from experiments.devices import is_worker_process, placement, placement_tags, relaunchable
from experiments.logged_run import CONFIG, FINGERPRINT, LoggedRun, RunError, fetch_run
from experiments.plugins import installed_versions, recorded
from experiments.tables import text_table
from experiments.tracking import PROJECT_PACKAGES, Tag, final_metrics

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def short(digest: str) -> str:
    return digest[:12]


def data_differences(original: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Files and shaping options that differ between two fingerprints (datamodules.fingerprint), one line each."""
    lines = []
    files_then, files_now = original.get("files", {}), current.get("files", {})
    for name in sorted(files_then.keys() | files_now.keys()):
        then, now = files_then.get(name), files_now.get(name)
        if then != now:
            lines.append(
                f"file {name}: sha256 {short(then) if then else '(absent)'} in the run, "
                f"{short(now) if now else '(absent)'} now"
            )
    options_then, options_now = original.get("options", {}), current.get("options", {})
    for name in sorted(options_then.keys() | options_now.keys()):
        then, now = options_then.get(name, "(unset)"), options_now.get(name, "(unset)")
        if then != now:
            lines.append(f"option {name}: {then!r} in the run, {now!r} now")
    if not lines and original.get("digest") != current.get("digest"):
        lines.append("the fingerprints differ in how they were computed (the datamodule code changed)")
    return lines


def listing(files: list[str], limit: int = 10) -> str:
    return ", ".join(files[:limit]) + (f" and {len(files) - limit} more" if len(files) > limit else "")


def _git(repo: Path, *args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def uncommitted_files(repo: Path) -> list[str]:
    """Project files with uncommitted changes (modified, added or untracked)."""
    status = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", *PROJECT_PACKAGES) or ""
    return [line[3:] for line in status.splitlines() if line.strip()]


def files_changed_since(repo: Path, commit: str, head: str) -> list[str] | None:
    """Project files that differ between two commits; None when either commit is not in this clone."""
    diff = _git(repo, "diff", "--name-only", commit, head, "--", *PROJECT_PACKAGES)
    return None if diff is None else diff.splitlines()


@dataclass
class CodeCheck:
    problems: list[str] = field(default_factory=list)  # each one makes the code differ from the run's
    notes: list[str] = field(default_factory=list)  # differences that cannot change the run


def code_check(run_tags: dict[str, str], current: dict[str, str], repo: Path = PROJECT_ROOT) -> CodeCheck:
    """Compare the run's stw.git_commit/stw.git_dirty tags with `current` (tracking.git_state() of this checkout)."""
    check = CodeCheck()
    commit, head = run_tags.get(Tag.GIT_COMMIT, "unknown"), current[Tag.GIT_COMMIT]
    if "unknown" in (commit, head):
        check.problems.append(
            f"the code version is unknown (commit {commit} in the run, {head} here): "
            "only runs trained from a git checkout, reproduced in one, can be checked"
        )
        return check
    if run_tags.get(Tag.GIT_DIRTY) != "false":
        check.problems.append(
            f"the run was trained from commit {short(commit)} with uncommitted changes to "
            f"{', '.join(PROJECT_PACKAGES)}, so its exact code was never recorded"
        )
    if current[Tag.GIT_DIRTY] == "true":
        check.problems.append(f"this checkout has uncommitted changes in: {listing(uncommitted_files(repo)) or '?'}")
    if commit == head:
        return check
    changed = files_changed_since(repo, commit, head)
    if changed is None:
        check.problems.append(f"the run's commit {short(commit)} is not in this clone ({repo}); fetch it")
    elif changed:
        check.problems.append(
            f"this checkout is at commit {short(head)}, not the run's {short(commit)}, and these "
            f"project files differ: {listing(changed)}"
        )
    else:
        check.notes.append(
            f"this checkout is at commit {short(head)}, not the run's {short(commit)}, but no file in "
            f"{', '.join(PROJECT_PACKAGES)} differs, so the run's code is unchanged"
        )
    return check


class ReproduceRefused(RunError):
    """The run cannot be reproduced exactly; the message says what differs and which flag overrides it."""


@dataclass
class Plan:
    """A checked reproduction: the run's config, what to tell the user before training, the differences a flag
    overrode (recorded on the new run as stw.reproduce_allowed), and how its devices differ from the run's."""

    config: dict[str, Any]
    notes: list[str]
    allowed: list[str]  # the kinds of difference a flag overrode: "data", "code", "package"
    devices: str | None = None  # the run's devices and the reproduction's, when they differ


# Where a run trains, never what it computes: the trainer keys a reproduction may change.
PLACEMENT_KEYS = ("accelerator", "devices", "strategy", "num_nodes")
DEVICE_TAGS = (Tag.DEVICE, Tag.DEVICES, Tag.DEVICE_NAME)
# The default --tolerance across devices. 1 and 2 CPU processes differ by 1.2e-7 at most (tests/test_ddp.py); a GPU
# (TF32 convolutions, other kernels) differs more, which benchmarks/gpu_check.py measures on a GPU machine.
DEVICE_TOLERANCE = 1e-3


def placed_elsewhere(config: dict[str, Any], words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The config with the `trainer.KEY=VALUE` words applied (placement keys only), and a note for each."""
    moved = {}
    for word in words:
        key, sep, value = word.removeprefix("--").partition("=")
        section, _, name = key.partition(".")
        if not sep or section != "trainer" or name not in PLACEMENT_KEYS:
            raise ConfigError(f"{word!r}: a reproduction changes only where it trains, with trainer.KEY=VALUE for "
                              f"KEY in {', '.join(PLACEMENT_KEYS)}")  # fmt: skip
        moved[name] = yaml.safe_load(value)
    notes = [f"trainer.{name}: the run used {config['trainer'][name]!r}; reproducing with {value!r}"
             for name, value in moved.items() if value != config["trainer"][name]]  # fmt: skip
    return (config_from_dict({**config, "trainer": {**config["trainer"], **moved}}) if moved else config), notes


def on_devices(tags: dict[str, str]) -> str:
    return f"{tags[Tag.DEVICE]} x{tags[Tag.DEVICES]}" + (
        f" ({tags[Tag.DEVICE_NAME]})" if Tag.DEVICE_NAME in tags else ""
    )


def device_difference(run_tags: dict[str, str], config: dict[str, Any]) -> str | None:
    """The run's devices and those `config` trains on here, when they differ; None when they agree or the run
    recorded none (it predates the stw.device tags)."""
    then = {key: run_tags[key] for key in DEVICE_TAGS if key in run_tags}
    now = placement_tags(placement(config["trainer"]))
    if not then or then == now:
        return None
    return f"the run trained on {on_devices(then)}, this reproduction trains on {on_devices(now)}"


def suggested_tolerance(rows: list["MetricRow"]) -> float:
    """The power of ten just above the largest difference: a tolerance that accepts what was seen, no more."""
    largest = max((abs(row.difference) for row in rows if row.difference is not None), default=0.0)
    return 10.0 ** math.ceil(math.log10(largest)) if largest > 0 else 0.0


@dataclass
class MetricRow:
    name: str
    original: float | None
    reproduced: float | None

    @property
    def difference(self) -> float | None:
        if self.original is None or self.reproduced is None:
            return None
        return self.reproduced - self.original

    def within(self, tolerance: float) -> bool:
        if self.original is None or self.reproduced is None:
            return False
        if math.isnan(self.original) or math.isnan(self.reproduced):
            return math.isnan(self.original) and math.isnan(self.reproduced)
        return abs(self.reproduced - self.original) <= tolerance


def current_fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint of the data the run's config reads on this machine, as run_training computes it."""
    datamodule = datamodule_for(config)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule.fingerprint()


@dataclass
class Difference:
    """What makes a retraining differ from the run, line by line, and how to avoid it."""

    kind: str  # "data", "code" or "package": the --allow-<kind>-change flag overrides it
    heading: str
    details: list[str]
    fix: str

    def report(self, allowed: bool) -> str:
        flag = f"--allow-{self.kind}-change"
        ending = f"({flag}: retraining anyway)" if allowed else f"{self.fix}, or pass {flag} to retrain anyway."
        return "\n  ".join([self.heading, *self.details, ending])


def data_difference(run: LoggedRun, config: dict[str, Any]) -> Difference | None:
    original, current = run.json(FINGERPRINT), current_fingerprint(config)
    details = data_differences(original, current)
    heading = (
        f"the data fingerprint differs from run {run.run_id}'s ({short(original['digest'])} in the run, "
        f"{short(current['digest'])} now):"
    )
    return (
        Difference("data", heading, details, "Point data.root or $STW_DATA_DIR at the run's files") if details else None
    )


def code_difference(run: LoggedRun, problems: list[str]) -> Difference | None:
    commit = short(run.tags.get(Tag.GIT_COMMIT, "unknown"))
    fix = f"Check out commit {commit} with a clean tree"
    return Difference("code", "the code differs from the run's:", problems, fix) if problems else None


def package_difference(run: LoggedRun, current: dict[str, str]) -> Difference | None:
    """Recorded package versions (torch, lightning, numpy, ...) that differ from this environment's; the project's
    own version is the code check's business."""
    own = f"{Tag.VERSION}st-workbench"
    details = [
        f"{tag.removeprefix(Tag.VERSION)} {version} in the run, {current.get(tag, '(not installed)')} here"
        for tag, version in sorted(run.tags.items())
        if tag.startswith(Tag.VERSION) and tag != own and current.get(tag) != version
    ]
    fix = "Install the run's versions (its requirements.txt artifact lists every package)"
    return Difference("package", "the packages differ from the run's:", details, fix) if details else None


# Config keys that say where data lives or is written (not what it is): a stored config is data from a tracking
# server, so a reproduction never follows them; it uses this user's data folder (--data-root, $STW_DATA_DIR).
LOCATION_KEYS = ("root", "cache_dir")


def in_this_data_folder(config: dict[str, Any], data_root: str | None) -> tuple[dict[str, Any], list[str]]:
    """The config with its data locations replaced by this user's, and a note for each stored one that differs."""
    data = dict(config["data"])
    notes = [f"data.{key}: the run used {data[key]}; reproducing in {data_root or 'the data folder ($STW_DATA_DIR)'}"
             for key in LOCATION_KEYS if data.get(key) not in (None, data_root)]  # fmt: skip
    data.update({key: data_root for key in LOCATION_KEYS if key in data})
    return {**config, "data": data}, notes


def check_run(run: LoggedRun, allowed: dict[str, bool], data_root: str | None = None,
              placement_words: tuple[str, ...] = ()) -> Plan:  # fmt: skip
    """Everything that must hold before retraining; raises ReproduceRefused listing every blocking difference."""
    run.require(CONFIG, FINGERPRINT)
    if not run.final_metrics():
        state = run.tags.get(Tag.TRIAL_STATE, run.run.info.status)
        raise ReproduceRefused(
            f"run {run.run_id} logged no final test metrics ({state}), so there is nothing to "
            "compare a reproduction with; choose a run that finished testing"
        )
    config, location_notes = in_this_data_folder(run.config(), data_root)
    config, placement_notes = placed_elsewhere(config, list(placement_words))
    code = code_check(run.tags, tracking.git_state())
    found = (data_difference(run, config), code_difference(run, code.problems),
             package_difference(run, {**tracking.package_versions(), **installed_versions(run.tags)}))  # fmt: skip
    differences = [d for d in found if d is not None]
    if refused := [d.report(allowed=False) for d in differences if not allowed[d.kind]]:
        raise ReproduceRefused(f"refusing to reproduce run {run.run_id}:\n" + "\n".join(refused))
    # An installed plugin's version is checked like a package's; a --plugin module has no version to compare.
    plugin_notes = [f"the run used the plugin module {entry}, which is not an installed package, so its code cannot "
                    "be compared with the run's" for entry in recorded(run.tags) if "==" not in entry]  # fmt: skip
    notes = location_notes + placement_notes + code.notes + plugin_notes + [d.report(allowed=True) for d in differences]
    return Plan(config, notes, [d.kind for d in differences], device_difference(run.tags, config))


def compare_final_metrics(original: dict[str, float], reproduced: dict[str, float]) -> list[MetricRow]:
    original, reproduced = final_metrics(original), final_metrics(reproduced)
    names = sorted(original.keys() | reproduced.keys())
    return [MetricRow(name, original.get(name), reproduced.get(name)) for name in names]


def metrics_table(rows: list[MetricRow], tolerance: float) -> str:
    def difference(row: MetricRow) -> str:
        if row.difference is None:
            return "missing"
        text = "0" if row.difference == 0 else f"{row.difference:+.3e}"
        return text if row.within(tolerance) else f"{text}  <- beyond tolerance {tolerance:g}"

    # Nine significant digits tell float32 values apart, so "identical" in the table means identical.
    return text_table(
        ["metric", "original", "reproduced", "difference"],
        [[row.name, row.original, row.reproduced, difference(row)] for row in rows],
        digits=9,
    )


@dataclass
class Reproduction:
    """A retrained run beside the run it reproduces: the final metrics side by side and how close they must be."""

    original: str
    run_id: str
    rows: list[MetricRow]
    tolerance: float
    devices: str | None = None

    def report(self, what: str = "run") -> bool:
        """Print the comparison; True when every final metric is within the tolerance."""
        print(f"{what} {self.run_id} reproduces {what} {self.original}:")
        print(metrics_table(self.rows, self.tolerance))
        failed = [row.name for row in self.rows if not row.within(self.tolerance)]
        if failed:
            print(
                f"NOT reproduced: {len(failed)} of {len(self.rows)} final metrics differ by more than {self.tolerance:g}"
            )
            if self.devices:
                print(f"{self.devices}, so differences are expected; --tolerance {suggested_tolerance(self.rows):g} "
                      "accepts the ones seen here")  # fmt: skip
            return False
        print(f"reproduced: all {len(self.rows)} final metrics within {self.tolerance:g}")
        return True


def planned(run: LoggedRun, args: argparse.Namespace) -> Plan:
    """check_run with the command's --allow-* flags, --data-root and placement words."""
    allowed = {"data": args.allow_data_change, "code": args.allow_code_change, "package": args.allow_package_change}
    return check_run(run, allowed, args.data_root, tuple(args.placement))


def retrain(run: LoggedRun, args: argparse.Namespace, plan: Plan) -> Reproduction:
    """Retrain the checked `run` from its config (tagged stw.reproduces) and compare its final metrics."""
    from experiments.train import is_quiet, run_training

    tolerance = args.tolerance if args.tolerance is not None else DEVICE_TOLERANCE if plan.devices else 0.0
    if plan.devices:
        plan.notes.append(f"{plan.devices}: a bit-for-bit reproduction needs the same device type, model and "
                          "count (on others, sums run in another order), so the final metrics are compared "
                          f"within --tolerance {tolerance:g}")  # fmt: skip
    for note in plan.notes if not is_worker_process() else ():
        print(f"note: {note}", file=sys.stderr)
    tags = {
        Tag.REPRODUCES: run.run_id,
        **({Tag.REPRODUCE_ALLOWED: ",".join(plan.allowed)} if plan.allowed else {}),
    }
    with relaunchable():
        result = run_training(plan.config, run.tracking_uri, quiet=is_quiet(args.quiet or None), tags=tags)
    reproduced = run.client.get_run(result.run_id).data.metrics
    rows = compare_final_metrics(run.final_metrics(), reproduced)
    return Reproduction(run.run_id, result.run_id, rows, tolerance, plan.devices)


def reproduce_main(args: argparse.Namespace) -> int:
    """Exit 0 when every final metric is within the tolerance, 1 when one is not; refusals raise ReproduceRefused."""
    from experiments.ensemble import is_ensemble, reproduce_ensemble

    with fetch_run(args.run_id, args.tracking_uri) as run:
        if is_ensemble(run):
            return reproduce_ensemble(run, args)
        reproduction = retrain(run, args, planned(run, args))
    return 0 if reproduction.report() else 1
