"""Stopping cleanly: SIGTERM (`kill`, a batch scheduler's time limit) ends a command the way Ctrl-C does."""

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # One stop request is enough: later ones are ignored so that closing the runs (KILLED) is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")


def stop_like_ctrl_c() -> None:
    """Turn the first SIGINT or SIGTERM into KeyboardInterrupt, which every run and sweep closes as KILLED."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
