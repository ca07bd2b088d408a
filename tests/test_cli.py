"""The `stw` command line: help and argument errors without heavy imports, and `stw ui` stopping its servers."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "mlflow", "optuna")


def _imports_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter has imported after running `code`."""
    probe = (
        f"import sys\n{code}\nprint('imported:' + ','.join({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    return set(filter(None, result.stdout.rpartition("imported:")[2].strip().split(",")))


@pytest.mark.parametrize("command", ["", "sweep", "runs", "show", "compare", "reproduce", "predict", "ui"])
def test_help_imports_no_heavy_library(command):
    words = [command, "--help"] if command else ["--help"]
    code = f"from experiments.cli import main\ntry:\n    main({words!r})\nexcept SystemExit:\n    pass"
    assert _imports_after(code) == set()


def test_an_argument_error_imports_no_heavy_library():
    code = (
        "from experiments.cli import main\ntry:\n    main(['sweep', '--trials', 'many'])\nexcept SystemExit:\n    pass"
    )
    assert _imports_after(code) == set()


def test_an_unknown_command_prints_the_usage_and_exits_2(capsys):
    from experiments.cli import main

    assert main(["trian"]) == 2
    assert "commands:" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_stw_ui_stopped_with_sigterm_stops_its_server_and_frees_the_port(tmp_path):
    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "experiments.cli", "ui", "--port", str(port), "--tracking-uri",
                           f"sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _serving(port):
            assert ui.poll() is None and time.monotonic() < deadline, "stw ui did not start serving"
            time.sleep(1)
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _serving(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _serving(port)
        with socket.socket() as probe:
            # SO_REUSEADDR lets the bind pass over the server's closed connections lingering in TIME_WAIT, and still
            # fails while anything listens on the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # free again
            probe.listen()
    finally:
        if ui.poll() is None:
            ui.kill()
