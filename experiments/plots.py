"""Figures logged with runs: people would rather look at a learning curve than read one.

Drawn on plain matplotlib Figures, which need no GUI backend and no pyplot state: runs happen on servers and in CI.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def learning_curves(history: dict[str, list[tuple[int, float]]], path: Path, title: str) -> Path:
    """One line per metric over epochs: `history` maps a metric name to (epoch, value) pairs."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name, points in sorted(history.items()):
        if points:
            epochs, values = zip(*points, strict=False)
            ax.plot(epochs, values, marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


# Naive forecasts are drawn in these, never in the model's red or the truth's black.
NAIVE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:cyan")


def own_dates(ax: Axes) -> None:
    """Date ticks on this panel's own x-axis: Figure.autofmt_xdate would hide every panel's dates but the last."""
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def forecast_figure(
    context: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    context_time: list[pd.DatetimeIndex],
    target_time: list[pd.DatetimeIndex],
    channel: str,
    units: str,
    title: str,
    baselines: dict[str, np.ndarray] | None = None,
) -> Figure:
    """One panel per test window [n, steps], each on its own dates: the lookback, the truth after it, the model's
    forecast and, faintly, the naive forecasts (label -> [n, H]) it is scored against; values in `units`."""
    n = len(actual)
    fig = Figure(figsize=(9, 2.6 * n))
    axes = fig.subplots(n, 1, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(context_time[i], context[i], color="0.6", lw=1, label="lookback")
        for (label, values), colour in zip((baselines or {}).items(), NAIVE_COLOURS, strict=False):
            ax.plot(target_time[i], values[i], color=colour, lw=0.9, ls="--", alpha=0.45, label=label)
        ax.plot(target_time[i], actual[i], color="black", lw=1.2, label="actual")
        ax.plot(target_time[i], forecast[i], color="tab:red", lw=1.4, label="forecast")
        ax.set_ylabel(f"{channel}\n({units})")
        own_dates(ax)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def error_by_step(errors: dict[str, np.ndarray], model: str, path: Path, title: str) -> Path:
    """MSE by step ahead (label -> [H]): the model's line bold, the naive forecasts' faint beside it."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    naive_colours = iter(NAIVE_COLOURS)
    for label, values in errors.items():
        steps = np.arange(1, len(values) + 1)
        mine = label == model
        ax.plot(steps, values, lw=1.8 if mine else 1.0, alpha=1.0 if mine else 0.55,
                color="tab:red" if mine else next(naive_colours, "0.5"),
                marker="o" if len(values) <= 24 else None, ms=3, label=label)  # fmt: skip
    ax.set(xlabel="step ahead (h)", ylabel="test MSE (scaled units)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def equity_curves(days: pd.DatetimeIndex, curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """Growth of 1 over the test days (label -> [days]), one line per strategy; marked as an evaluation."""
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    for label, equity in curves.items():
        ax.plot(days, equity, lw=1.2, label=label)
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set(ylabel="equity (start = 1)", title=title)
    own_dates(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.99, 0.01, "backtest of test-period forecasts: evaluation, not advice", ha="right", va="bottom",
             fontsize=8, color="0.35")  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, path)


MAX_ANNOTATED_CLASSES = 20  # beyond this the numbers overlap; the colours still read


def _annotate(ax: Axes, values: np.ndarray, fmt: str) -> None:
    for (i, j), value in np.ndenumerate(values):
        dark = value > values.max() / 2
        ax.text(j, i, fmt.format(value), ha="center", va="center", color="white" if dark else "black", fontsize=8)


def confusion_matrix(counts: np.ndarray, class_names: list[str], path: Path, title: str) -> Path:
    """Two panels: test counts, and each true class's row normalised to shares (the per-class recall on the diagonal)."""
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = min(2.5 + 0.45 * len(class_names), 12)
    fig = Figure(figsize=(2 * size + 1, size))
    axes = fig.subplots(1, 2)
    panels = ((axes[0], counts, "count", "{:.0f}"), (axes[1], shares, "share of true class", "{:.2f}"))
    for ax, values, label, fmt in panels:
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ticks = np.arange(len(class_names))
        ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=label)
        ax.set_xticklabels(class_names, rotation=45, ha="right")
        ax.set_yticklabels(class_names)
        if len(class_names) <= MAX_ANNOTATED_CLASSES:
            _annotate(ax, values, fmt)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def compare_learning_curves(histories: dict[str, dict[str, list[tuple[int, float]]]], path: Path, title: str) -> Path:
    """One panel per metric, one line per run: `histories` maps a run's label to {metric: (epoch, value) pairs}."""
    metrics = sorted({name for history in histories.values() for name in history})
    fig = Figure(figsize=(6 * len(metrics), 4))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        for run, history in histories.items():
            if points := history.get(metric):
                epochs, values = zip(*points, strict=False)
                ax.plot(epochs, values, marker="o", label=run)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
