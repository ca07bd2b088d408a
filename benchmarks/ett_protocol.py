"""ETTh1, the standard long-horizon protocol at H = 96: test MSE/MAE and training seconds per family, beside
the published figures, plus the framework overhead of a tracked Lightning run against a hand-written loop.

    python benchmarks/ett_protocol.py                       # every family below, then the overhead check
    python benchmarks/ett_protocol.py --families linear --skip-overhead

Writes benchmarks/results/ett_protocol.json and .md. Runs are tracked like any other (default ./mlruns).
Data: $STW_DATA_DIR (the shared folder in CI), else ./data with a checked download.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from experiments.config import config_from_dict, datamodule_for
from experiments.train import make_deterministic, run_training
from lightning_modules import TASKS

RESULTS = Path(__file__).parent / "results"
HORIZON = 96

# Per family, the knobs of its benchmark run. DLinear's recipe for linear (lr 0.005 halved every epoch, batch 32);
# RevIN + channel independence for the others, as in RLinear and PatchTST.
COMMON = {"data": {"name": "ett", "horizon": HORIZON, "mode": "M"}, "trainer": {"max_epochs": 10, "patience": 3}}
RUNS = {
    "linear (DLinear)": {
        "data": {"lookback": 336, "batch_size": 32},
        "model": {"family": "linear", "decomposition": True},
        "task": {"channel_independent": True},
        "optim": {"lr": 0.005, "scheduler": "step", "step_size": 1, "gamma": 0.5},
    },
    "linear (RLinear)": {
        "data": {"lookback": 336, "batch_size": 32},
        "model": {"family": "linear", "decomposition": False},
        "task": {"channel_independent": True, "revin": True},
        "optim": {"lr": 0.005, "scheduler": "step", "step_size": 1, "gamma": 0.5},
    },
    "linear (RLinear L=512)": {
        "data": {"lookback": 512, "batch_size": 32},
        "model": {"family": "linear", "decomposition": False},
        "task": {"channel_independent": True, "revin": True},
        "optim": {"lr": 0.005, "scheduler": "step", "step_size": 1, "gamma": 0.5},
    },
    # PatchTST's own recipe (stride 8, 100 epochs) takes hours on 2 cores; non-overlapping patches and 4 epochs fit.
    "transformer (PatchTST-style)": {
        "data": {"lookback": 336, "batch_size": 128},
        "trainer": {"max_epochs": 4},
        "model": {
            "family": "transformer",
            "d_model": 16,
            "n_heads": 4,
            "n_layers": 3,
            "ff_dim": 128,
            "dropout": 0.3,
            "patch_len": 16,
            "stride": 16,
        },
        "task": {"channel_independent": True, "revin": True},
        "optim": {"lr": 0.001, "scheduler": "cosine"},
    },
    "mlp": {
        "data": {"lookback": 336, "batch_size": 64},
        "model": {"family": "mlp", "hidden_size": 256, "num_layers": 2},
        "task": {"channel_independent": True, "revin": True},
        "optim": {"lr": 0.001},
    },
    "cnn": {
        "data": {"lookback": 336, "batch_size": 64},
        "model": {"family": "cnn", "channels": 32, "num_layers": 3, "kernel_size": 5, "pool": "avg", "pool_size": 4},
        "task": {"channel_independent": True, "revin": True},
        "optim": {"lr": 0.001},
    },
    "rnn (GRU)": {
        "data": {"lookback": 96, "batch_size": 64},
        "model": {"family": "gru", "hidden_size": 64},
        "task": {"revin": True, "head": "last"},
        "optim": {"lr": 0.001},
    },
    "cnn_rnn_transformer": {
        "data": {"lookback": 96, "batch_size": 64},
        "model": {"family": "cnn_rnn_transformer"},
        "task": {"revin": True, "head": "last"},
        "optim": {"lr": 0.001},
    },
}
PUBLISHED = {  # ETTh1 multivariate H=96 (MSE, MAE), from ../shared/data/ett/PROVENANCE.md
    "DLinear (L=336)": (0.375, 0.399),
    "PatchTST/64 (L=512)": (0.370, 0.400),
    "PatchTST/42 (L=336)": (0.375, 0.399),
    "iTransformer (L=96)": (0.386, 0.405),
    "TimeMixer (L=96)": (0.375, 0.400),
}


def config_for(name: str, seed: int = 0) -> dict:
    from experiments.sweep.space import deep_merge

    return config_from_dict(deep_merge(deep_merge(COMMON, RUNS[name]), {"seed": seed, "trainer": {"progress": False}}))


def benchmark_family(name: str, tracking_uri: str | None) -> dict:
    config = config_for(name)
    load_before = os.getloadavg()[0]
    result = run_training(config, tracking_uri, quiet=True, tags={"stw.benchmark": "ett_protocol"})
    row = {
        "model": name,
        "lookback": config["data"]["lookback"],
        "test_mse": result.metrics["test_mse"],
        "test_mae": result.metrics["test_mae"],
        "train_seconds": result.metrics["fit_seconds"],
        "epochs": config["trainer"]["max_epochs"],
        "load_average": [load_before, os.getloadavg()[0]],
        "run_id": result.run_id,
    }
    print(json.dumps(row), flush=True)
    return row


def hand_written_loop(config: dict) -> tuple[float, float]:
    """The same model, batches and epochs as the tracked run, trained by a plain torch loop.

    Returns the whole run's seconds and those of its train/validate epochs alone (what `fit_seconds` times).
    """
    started = time.perf_counter()
    make_deterministic(config["seed"])
    datamodule = datamodule_for(config)
    datamodule.setup()
    model = TASKS["forecast"](config, datamodule.spec).model
    optimizer = torch.optim.Adam(model.parameters(), lr=config["optim"]["lr"])
    loss_fn = torch.nn.MSELoss()
    loop_started = time.perf_counter()
    for _ in range(config["trainer"]["max_epochs"]):
        model.train()
        for x, y, start in datamodule.train_dataloader():
            optimizer.zero_grad()
            loss_fn(model(x, start), y).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = [loss_fn(model(x, start), y).item() for x, y, start in datamodule.val_dataloader()]
    loop_seconds = time.perf_counter() - loop_started
    with torch.no_grad():
        test = [loss_fn(model(x, start), y).item() for x, y, start in datamodule.test_dataloader()]
    assert val and test
    return time.perf_counter() - started, loop_seconds


def tracked_run(config: dict, tracking_uri: str | None) -> tuple[float, float]:
    """Seconds of a whole `stw train` run (tracking, test, baselines, plots, artifacts) and of its fit alone."""
    started = time.perf_counter()
    result = run_training(config, tracking_uri, quiet=True, tags={"stw.benchmark": "ett_overhead"})
    return time.perf_counter() - started, result.metrics["fit_seconds"]


def benchmark_overhead(name: str, epochs: int, repeats: int, tracking_uri: str | None) -> dict:
    """Interleaved (hand, tracked, hand, tracked, ...) so drifts in machine load hit both alike, after one untimed
    1-epoch pair that pays the process's one-time costs (imports, MLflow store setup)."""
    config = config_for(name)
    config["trainer"].update(max_epochs=epochs, patience=0)  # fixed epochs for both
    config["optim"].update(scheduler="none")
    warm_up = {**config, "trainer": {**config["trainer"], "max_epochs": 1}}
    hand_written_loop(warm_up), tracked_run(warm_up, tracking_uri)  # one-time imports and store setup, not timed
    hand, tracked, load_before = [], [], os.getloadavg()[0]
    for _ in range(repeats):
        hand.append(hand_written_loop(config))
        tracked.append(tracked_run(config, tracking_uri))
    (hand_total, hand_loop), (tracked_total, tracked_fit) = (
        list(zip(*hand, strict=False)),
        list(zip(*tracked, strict=False)),
    )
    row = {
        "model": name,
        "epochs": epochs,
        "repeats": repeats,
        "hand_seconds": hand_total,
        "tracked_seconds": tracked_total,
        "ratio_of_medians": statistics.median(tracked_total) / statistics.median(hand_total),
        "hand_loop_seconds": hand_loop,
        "tracked_fit_seconds": tracked_fit,
        "loop_ratio_of_medians": statistics.median(tracked_fit) / statistics.median(hand_loop),
        "load_average": [load_before, os.getloadavg()[0]],
    }
    print(json.dumps(row), flush=True)
    return row


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{s:.1f}" for s in values)


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.3f}" if key in row else "n/a"


def _load(row: dict) -> str:
    return "-".join(f"{v:.1f}" for v in row.get("load_average", [])) or "n/a"


def markdown(rows: list[dict], overhead: list[dict]) -> str:
    lines = [
        "# ETTh1 multivariate, H = 96 (standard protocol, 2-core CPU)",
        "",
        "Train seconds depend on what else the 2 cores were doing: the load average at start and end is shown.",
        "",
        "| model | lookback | test MSE | test MAE | train s | load | MLflow run |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | {r['lookback']} | {r['test_mse']:.3f} | {r['test_mae']:.3f} | {r['train_seconds']:.0f} | "
        f"{_load(r)} | `{r['run_id'][:8]}` |"
        for r in rows
    ]
    lines += ["", "Published (PROVENANCE.md):", "", "| model | MSE | MAE |", "|---|---|---|"]
    lines += [f"| {name} | {mse:.3f} | {mae:.3f} |" for name, (mse, mae) in PUBLISHED.items()]
    if overhead:
        lines += [
            "",
            "## Framework overhead: tracked Lightning run vs hand-written torch loop",
            "",
            "Whole run: the hand loop trains, validates every epoch and tests; the tracked run is a full `stw train` "
            "(MLflow run, checkpoint, test with baselines, plots, artifacts). Epochs only: the hand loop's "
            "train/validate epochs against the tracked run's `fit_seconds`. Target: whole-run ratio <= 1.05.",
            "",
            "| model | epochs | hand s (each) | tracked s (each) | whole-run ratio | epochs-only ratio | load |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {o['model']} | {o['epochs']} | {_seconds(o['hand_seconds'])} | {_seconds(o['tracked_seconds'])} | "
            f"{o['ratio_of_medians']:.3f} | {_ratio(o, 'loop_ratio_of_medians')} | {_load(o)} |"
            for o in overhead
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(RUNS), help="comma-separated names from RUNS")
    parser.add_argument("--overhead-models", default="linear (DLinear),rnn (GRU)")
    parser.add_argument(
        "--overhead-epochs",
        type=int,
        default=10,
        help="fixed epochs of each overhead run (10: the benchmark runs above)",
    )
    parser.add_argument("--overhead-repeats", type=int, default=2)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.families.split(",") if n]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ett_protocol.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    # Measurements of models not run this time are kept, so the table can be completed in several sittings.
    rows = [r for r in earlier.get("runs", []) if r["model"] not in names]
    overhead = [] if not args.skip_overhead else earlier.get("overhead", [])

    def save() -> None:  # after every measurement, so a crash or Ctrl-C keeps what was measured
        stamp = {"date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads}
        path.write_text(json.dumps({**stamp, "runs": rows, "overhead": overhead}, indent=2))
        (args.out / "ett_protocol.md").write_text(markdown(rows, overhead))

    for name in names:
        rows.append(benchmark_family(name, args.tracking_uri))
        save()
    for name in [] if args.skip_overhead else [n for n in args.overhead_models.split(",") if n]:
        overhead.append(benchmark_overhead(name, args.overhead_epochs, args.overhead_repeats, args.tracking_uri))
        save()
    print(markdown(rows, overhead))


if __name__ == "__main__":
    main()
