"""What `stw reproduce` checks before it trains: is it the same data, and is it the same code?

Each check returns the problems that block an exact reproduction (as sentences) and, for code, the notes that
do not. Only the project's own packages count as code: a changed README or benchmark cannot change a run.
"""

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.tracking import PROJECT_PACKAGES

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
            lines.append(f"file {name}: sha256 {short(then) if then else '(absent)'} in the run, "
                         f"{short(now) if now else '(absent)'} now")
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
    commit, head = run_tags.get("stw.git_commit", "unknown"), current["stw.git_commit"]
    if "unknown" in (commit, head):
        check.problems.append(f"the code version is unknown (commit {commit} in the run, {head} here): "
                              "only runs trained from a git checkout, reproduced in one, can be checked")
        return check
    if run_tags.get("stw.git_dirty") != "false":
        check.problems.append(f"the run was trained from commit {short(commit)} with uncommitted changes to "
                              f"{', '.join(PROJECT_PACKAGES)}, so its exact code was never recorded")
    if current["stw.git_dirty"] == "true":
        check.problems.append(f"this checkout has uncommitted changes in: {listing(uncommitted_files(repo)) or '?'}")
    if commit == head:
        return check
    changed = files_changed_since(repo, commit, head)
    if changed is None:
        check.problems.append(f"the run's commit {short(commit)} is not in this clone ({repo}); fetch it")
    elif changed:
        check.problems.append(f"this checkout is at commit {short(head)}, not the run's {short(commit)}, and these "
                              f"project files differ: {listing(changed)}")
    else:
        check.notes.append(f"this checkout is at commit {short(head)}, not the run's {short(commit)}, but no file in "
                           f"{', '.join(PROJECT_PACKAGES)} differs, so the run's code is unchanged")
    return check
