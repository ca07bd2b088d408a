"""Video benchmark: does a model use time? Test accuracy per family and wall time on two tasks.

  moving-shapes  direction of a moving shape (4 directions, 1000 clips of 8 frames), where one frame says nothing
                 of the direction: every family, beside frame_avg, the spatial-only reference (per-frame CNN
                 averaged over time). Targets: a temporal family >= 95% accuracy while frame_avg stays within 5
                 points of chance; the train loader delivers >= 10x the frames per second that training consumes.
  gestures       11 ground-guide gestures from 15-frame windows of 8 body keypoints, leave-one-person-out (test
                 terri, validate chris, train the other three): the best trial of a small sweep over the
                 temporal families, beside the majority class and the best trial of an equal sweep of frame_avg
                 (the frame-only model), both chosen by validation F1. Target: the best beats both clearly.

    python benchmarks/video.py                   # both parts, about 20 minutes on 2 busy cores (1 torch thread)
    python benchmarks/video.py --part shapes

Writes benchmarks/results/video.json and .md (a part not run keeps its previous figures). Runs are tracked like
any other (default ./mlruns); generated clips go to the cache ($STW_CACHE_DIR, else ./data/cache).
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from datamodules.specs import ClassifySpec
from datamodules.video.throughput import loader_frames_per_second
from experiments.config import config_from_dict, datamodule_for
from experiments.sweep.cli import build_plan, sweep_parser
from experiments.sweep.driver import run_sweep
from experiments.sweep.space import deep_merge
from experiments.train import run_training

RESULTS = Path(__file__).parent / "results"

# 250 clips per direction; 30% test (300 clips) keeps the standard error of a chance-level accuracy near 2.5 points.
SHAPES = {
    "data": {
        "name": "moving-shapes",
        "n_clips": 250,
        "directions": 4,
        "test_fraction": 0.3,
        "clip_len": 8,
        "batch_size": 32,
    },
    "trainer": {"patience": 0, "progress": False},
}  # fixed epochs: the loss sits at chance for a few epochs first
SHAPES_RUNS = {
    "frame_avg (spatial only)": {"model": {"family": "frame_avg"}, "trainer": {"max_epochs": 10}},
    "rnn (frame CNN -> LSTM)": {"model": {"family": "lstm"}, "trainer": {"max_epochs": 20}},
    "cnn_rnn_transformer (seed pipeline)": {"model": {"family": "cnn_rnn_transformer"}, "trainer": {"max_epochs": 20}},
    "c3d": {"model": {"family": "c3d"}, "trainer": {"max_epochs": 10}},
    "convlstm": {"model": {"family": "convlstm"}, "trainer": {"max_epochs": 12}},
}
CHANCE = 1 / SHAPES["data"]["directions"]

# Both gesture sweeps: the same windows (the source's 15 frames, every 4th start: neighbours overlap by 11 frames,
# so little is lost and an epoch costs a quarter), so the same test items, and the same budget, epochs and seed.
GESTURE_SWEEP = [
    "--data",
    "gestures",
    "--pruner",
    "none",
    "data.clip_len=15",
    "data.stride=4",
    "trainer.max_epochs=6",
    "trainer.patience=2",
]
TEMPORAL_FAMILIES = "rnn,cnn,transformer,cnn_rnn_transformer"


def shapes_config(name: str) -> dict[str, Any]:
    return config_from_dict(deep_merge(SHAPES, SHAPES_RUNS[name]))


def run_shapes(name: str, tracking_uri: str | None) -> dict[str, Any]:
    config = shapes_config(name)
    started = time.perf_counter()
    result = run_training(config, tracking_uri, quiet=True, tags={"stw.benchmark": "video"})
    wall = time.perf_counter() - started
    spec = datamodule_spec(config)
    # Frames training reads per epoch: every training and validation clip, clip_len frames each.
    frames = config["trainer"]["max_epochs"] * (spec.details["n_train"] + spec.details["n_val"]) * spec.seq_len
    row = {
        "model": name,
        "family": config["model"]["family"],
        "test_acc": result.metrics["test_acc"],
        "baseline_majority_acc": result.metrics["baseline_majority_acc"],
        "epochs": config["trainer"]["max_epochs"],
        "fit_seconds": result.metrics["fit_seconds"],
        "wall_seconds": wall,
        "training_fps": frames / result.metrics["fit_seconds"],
        "run_id": result.run_id,
    }
    print(json.dumps(row), flush=True)
    return row


def datamodule_spec(config: dict[str, Any]) -> ClassifySpec:
    datamodule = datamodule_for(config)
    datamodule.setup()
    return datamodule.spec


def part_shapes(tracking_uri: str | None) -> dict[str, Any]:
    config = shapes_config("frame_avg (spatial only)")
    loader_fps = loader_frames_per_second(datamodule_for(config), n_batches=60)
    rows = [run_shapes(name, tracking_uri) for name in SHAPES_RUNS]
    spec = datamodule_spec(config)
    fastest = max(rows, key=lambda row: row["training_fps"])
    return {
        "data": SHAPES["data"],
        **{name: spec.details[name] for name in ("n_train", "n_val", "n_test")},
        "chance": CHANCE,
        "runs": rows,
        "loader_fps": loader_fps,
        "fastest_training_fps": fastest["training_fps"],
        "fastest_training_model": fastest["model"],
        "loader_to_training_ratio": loader_fps / fastest["training_fps"],
    }


def sweep(study: str, families: str, trials: int, storage: Path, tracking_uri: str | None) -> dict[str, Any]:
    words = [
        "--study",
        study,
        "--families",
        families,
        "--trials",
        str(trials),
        "--storage",
        f"sqlite:///{storage}",
        "--quiet",
        *(["--tracking-uri", tracking_uri] if tracking_uri else []),
        *GESTURE_SWEEP,
    ]
    plan = build_plan(sweep_parser().parse_args(words))
    started = time.perf_counter()
    study_obj, parent = run_sweep(plan)
    seconds = time.perf_counter() - started
    best = study_obj.best_trial
    states = [trial.state.name for trial in study_obj.trials]
    row = {
        "study": study,
        "families": families,
        "seconds": seconds,
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"),
        "best_val_f1": best.value,
        "best_test_acc": best.user_attrs["test_acc"],
        "best_test_f1": best.user_attrs["test_f1"],
        "baseline_majority_acc": best.user_attrs["baseline_majority_acc"],
        "best_params": best.params,
        "best_run_id": best.user_attrs["mlflow_run_id"],
        "parent_run_id": parent,
    }
    print(json.dumps(row), flush=True)
    return row


def part_gestures(trials: int, tracking_uri: str | None, storage_dir: Path) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    storage = storage_dir / f"video-bench-{stamp}.db"
    temporal = sweep(f"video-gestures-temporal-{stamp}", TEMPORAL_FAMILIES, trials, storage, tracking_uri)
    frame_only = sweep(f"video-gestures-frame-only-{stamp}", "frame_avg", trials, storage, tracking_uri)
    return {
        "trials_per_sweep": trials,
        "temporal": temporal,
        "frame_only": frame_only,
        "margin_over_frame_only": temporal["best_test_acc"] - frame_only["best_test_acc"],
        "margin_over_majority": temporal["best_test_acc"] - temporal["baseline_majority_acc"],
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Video benchmark ({results.get('date', '?')}, {results.get('threads', '?')} torch thread(s), 2-core CPU)",
        "",
    ]
    if shapes := results.get("shapes"):
        temporal = [r for r in shapes["runs"] if r["family"] != "frame_avg"]
        best = max(temporal, key=lambda r: r["test_acc"])
        [spatial] = [r for r in shapes["runs"] if r["family"] == "frame_avg"]
        lines += [
            f"## moving-shapes: direction of motion, {shapes['data']['directions']} directions (chance "
            f"{shapes['chance']:.2f})",
            "",
            f"{shapes['n_train']} training, {shapes['n_val']} validation and {shapes['n_test']} test clips of "
            f"{shapes['data']['clip_len']} frames, 32x32 grayscale.",
            "",
            "| model | test acc | epochs | fit s | wall s | training frames/s |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['test_acc']:.3f} | {r['epochs']} | {r['fit_seconds']:.0f} | {r['wall_seconds']:.0f} | "
            f"{r['training_fps']:.0f} |"
            for r in shapes["runs"]
        ]
        lines += [
            "",
            f"- best temporal family: {best['model']} at {best['test_acc']:.3f} (target >= 0.95: "
            f"{'met' if best['test_acc'] >= 0.95 else 'NOT met'})",
            f"- frame_avg (spatial only): {spatial['test_acc']:.3f}, {100 * (spatial['test_acc'] - shapes['chance']):+.1f} "
            f"points from chance (target within 5: {'met' if abs(spatial['test_acc'] - shapes['chance']) <= 0.05 else 'NOT met'})",
            f"- train loader: {shapes['loader_fps']:.0f} frames/s vs {shapes['fastest_training_fps']:.0f} frames/s "
            f"consumed by the fastest training ({shapes['fastest_training_model']}): "
            f"{shapes['loader_to_training_ratio']:.0f}x (target >= 10x: "
            f"{'met' if shapes['loader_to_training_ratio'] >= 10 else 'NOT met'})",
            f"- part wall time: {shapes['minutes']:.1f} min",
            "",
        ]
    if gestures := results.get("gestures"):
        temporal, frame_only = gestures["temporal"], gestures["frame_only"]
        lines += [
            "## gestures: 11 classes, leave-one-person-out (test terri, validation chris)",
            "",
            f"Two sweeps of {gestures['trials_per_sweep']} trials each, same windows (15 frames, stride 4) and "
            "epochs; "
            "each reports its best trial by validation F1.",
            "",
            "| model | test acc | test macro F1 | sweep min |",
            "|---|---|---|---|",
            f"| majority class | {temporal['baseline_majority_acc']:.3f} | | |",
            f"| frame_avg (frame only, no temporal model) | {frame_only['best_test_acc']:.3f} | "
            f"{frame_only['best_test_f1']:.3f} | {frame_only['seconds'] / 60:.1f} |",
            f"| best temporal trial ({temporal['best_params'].get('family')}) | {temporal['best_test_acc']:.3f} | "
            f"{temporal['best_test_f1']:.3f} | {temporal['seconds'] / 60:.1f} |",
            "",
            f"- margin over frame-only: {100 * gestures['margin_over_frame_only']:+.1f} points; over the majority "
            f"class: {100 * gestures['margin_over_majority']:+.1f} points",
            f"- part wall time: {gestures['minutes']:.1f} min",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["shapes", "gestures", "all"], default="all")
    parser.add_argument("--gesture-trials", type=int, default=6, help="trials in each gestures sweep")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--storage-dir", type=Path, default=Path("mlruns"), help="folder of the Optuna study database")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a busy 2-core machine)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = args.out / "video.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(date=time.strftime("%Y-%m-%d %H:%M"), threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.storage_dir.mkdir(parents=True, exist_ok=True)
    parts = {
        "shapes": lambda: part_shapes(args.tracking_uri),
        "gestures": lambda: part_gestures(args.gesture_trials, args.tracking_uri, args.storage_dir),
    }
    for name, run_part in parts.items():
        if args.part in (name, "all"):
            started = time.perf_counter()
            results[name] = {**run_part(), "minutes": (time.perf_counter() - started) / 60}
            path.write_text(json.dumps(results, indent=2))  # after every part, so a stopped run keeps what it measured
            (args.out / "video.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
