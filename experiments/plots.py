"""Figures logged with runs: people would rather look at a learning curve than read one."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs happen on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def learning_curves(history: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """One line per metric over epochs: `history` maps a metric name to (epoch, value) pairs."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in sorted(history.items()):
        if points:
            epochs, values = zip(*points)
            ax.plot(epochs, values, marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def forecast_vs_actual(
    context: np.ndarray, actual: np.ndarray, forecast: np.ndarray,
    context_time: list[pd.DatetimeIndex], target_time: list[pd.DatetimeIndex], channel: str, path: Path, title: str,
) -> Path:
    """One panel per test window: the lookback, the truth after it, and the model's forecast (original units)."""
    n = len(actual)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.4 * n), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(context_time[i], context[i], color="0.6", lw=1, label="lookback")
        ax.plot(target_time[i], actual[i], color="black", lw=1.2, label="actual")
        ax.plot(target_time[i], forecast[i], color="tab:red", lw=1.2, label="forecast")
        ax.set_ylabel(channel)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
