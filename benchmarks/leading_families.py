"""Today's leading cheap families on ETTh1 (multivariate, H = 96), one run each, beside their published figures.

    python benchmarks/leading_families.py                  # every row below
    python benchmarks/leading_families.py --rows sparsetsf

Each row is its paper's published ETTh1 recipe (lookback, segment or period, learning rate, batch size) with
fewer epochs, so a run fits a few minutes of a loaded 2-core CPU (the epochs used are in the table); SegRNN's
GRU is also narrower than the paper's 512 (d_model 128, a sixteenth of the recurrent cost), for the same reason.
CycleNet is a linear backbone with a learnt residual cycle (task.cycle_len) and keeps its script's 30 epochs.
Writes benchmarks/results/leading_families.json and .md, replacing only the rows it ran. Runs are tracked like
any other (default ./mlruns).
Data: $STW_DATA_DIR (the shared folder in CI), else ./data with a checked download.
"""

import argparse
import json
from pathlib import Path
from typing import Any

from experiments.config import config_from_dict
from experiments.sweep.space import deep_merge
from experiments.train import run_training

RESULTS = Path(__file__).parent / "results"
COMMON = {"data": {"name": "ett", "horizon": 96, "mode": "M"}, "trainer": {"progress": False}}
ROWS: dict[str, dict[str, Any]] = {
    # scripts/SegRNN/Lookback_96/etth1.sh: seg_len 24, d_model 512, dropout 0.5, lr 0.001, batch 256, 30 epochs.
    "segrnn": {
        "data": {"lookback": 96, "batch_size": 256},
        # d_model 128, not 512: a 512-wide GRU costs ~16x as much per step on CPU; the script's 30 epochs kept.
        "model": {"family": "segrnn", "seg_len": 24, "d_model": 128, "dropout": 0.5},
        "optim": {"lr": 0.001},
        "trainer": {"max_epochs": 30, "patience": 5},
    },
    # scripts/SparseTSF/linear/etth1.sh: L 720, period 24, lr 0.02, batch 256, 30 epochs, patience 5.
    "sparsetsf": {
        "data": {"lookback": 720, "batch_size": 256},
        "model": {"family": "sparsetsf", "period": 24},
        "optim": {"lr": 0.02},
        "trainer": {"max_epochs": 10, "patience": 5},
    },
    # scripts/CycleNet/Linear-Input-96/etth1.sh: CycleNet/Linear (one Linear(L, H) shared by the channels, RevIN
    # without affine weights, cycle 24), L 96, lr 0.01, batch 256, 30 epochs, patience 5; run.py's lradj type3
    # (lr x 0.8 an epoch from epoch 3) is here a step schedule x 0.8 every epoch, from epoch 2.
    "cyclenet": {
        "data": {"lookback": 96, "batch_size": 256},
        "model": {"family": "linear", "decomposition": False},
        "task": {"channel_independent": True, "revin": True, "cycle_len": 24},
        "optim": {"lr": 0.01, "scheduler": "step", "step_size": 1, "gamma": 0.8},
        "trainer": {"max_epochs": 30, "patience": 5},
    },
}
# (published test MSE, MAE, lookback, where it was read: repository @ commit : path)
PUBLISHED = {
    "segrnn": [
        (0.368, 0.395, 96, "lss-1138/SegRNN @ 01708ba7 : README.md (Comparison Results for Lookback L = 96)"),
        (0.351, 0.392, 720, "lss-1138/SparseTSF @ 8c26c2d0 : README.md (Full results, drop_last bug fixed)"),
    ],
    "sparsetsf": [(0.362, 0.388, 720, "lss-1138/SparseTSF @ 8c26c2d0 : README.md (Full results, drop_last bug fixed)")],
    # The mean of the five seeds (2024-2028) the repository logged for each setting.
    "cyclenet": [
        (0.378, 0.391, 96, "ACAT-SCUT/CycleNet @ af6e06cc : result.txt (ETTh1_96_96 linear, mean of 5 seeds)"),
        (0.374, 0.396, 336, "ACAT-SCUT/CycleNet @ af6e06cc : result.txt (ETTh1_336_96 linear, mean of 5 seeds)"),
    ],
}


def run(name: str, tracking_uri: str | None) -> dict[str, Any]:
    config = config_from_dict(deep_merge(COMMON, ROWS[name]))
    result = run_training(config, tracking_uri, quiet=True, tags={"stw.benchmark": "leading_families"})
    row = {
        "model": name,
        "lookback": config["data"]["lookback"],
        "epochs": config["trainer"]["max_epochs"],
        "val_mse": result.best_score,  # trainer.monitor (val_loss, the MSE) at the checkpoint that was tested
        "test_mse": result.metrics["test_mse"],
        "test_mae": result.metrics["test_mae"],
        "parameters": result.metrics.get("model_parameters"),
        "fit_seconds": result.metrics["fit_seconds"],
        "published": [dict(zip(("mse", "mae", "lookback", "source"), p, strict=True)) for p in PUBLISHED[name]],
        "run_id": result.run_id,
    }
    print(json.dumps(row), flush=True)
    return row


def write(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "leading_families.json"
    ran = {row["model"] for row in rows}
    kept = [row for row in json.loads(path.read_text()) if row["model"] not in ran] if path.exists() else []
    rows = kept + rows
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Leading cheap families on ETTh1, H = 96 (one run each, loaded 2-core CPU)",
        "",
        "| model | L | epochs | params | val MSE | test MSE | test MAE | fit s | published MSE / MAE (L, source) | run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        published = "; ".join(f"{p['mse']} / {p['mae']} (L={p['lookback']}, {p['source']})" for p in row["published"])
        val = "n/a" if row["val_mse"] is None else f"{row['val_mse']:.3f}"
        params = "n/a" if row["parameters"] is None else f"{row['parameters']:.0f}"
        lines.append(
            f"| {row['model']} | {row['lookback']} | {row['epochs']} | {params} | {val} | {row['test_mse']:.3f} "
            f"| {row['test_mae']:.3f} | {row['fit_seconds']:.0f} | {published} | `{row['run_id'][:8]}` |"
        )
    (RESULTS / "leading_families.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated: {', '.join(ROWS)}")
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    write([run(name, args.tracking_uri) for name in args.rows.split(",")])


if __name__ == "__main__":
    main()
