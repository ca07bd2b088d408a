"""Scale-out benchmarks on real engines (2-core CPU machine; measure it quiet):

  sweep  a fixed 12-trial sweep (linear/mlp/cnn, L = 96, 8 epochs, no pruning) on PostgreSQL + `mlflow server`,
         run by one `stw sweep` process, then by two processes standing for two machines (each --workers 1, each
         pinned to its own core):
         wall-time ratio two/one (target <= 0.65).
  ddp    one epoch of the same small model on ETTh1 with strategy=ddp over 2 CPU processes (gloo) against a single
         process: epoch-time ratio, as measured (on 2 cores DDP is not expected to be faster).

    eval "$(bash .ci/services start /tmp/stw-bench-services)"     # PostgreSQL and an mlflow server
    python benchmarks/scale.py --part all
Writes benchmarks/results/scale.json and .md (parts not run keep their previous figures).
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
SWEEP = ["--trials", "12", "--families", "linear,mlp,cnn", "--pruner", "none", "--quiet", "data.lookback=96",
         "data.horizon=96", "trainer.max_epochs=8", "trainer.patience=0"]  # fmt: skip
TRAIN = ["--data", "ett", "--model", "mlp", "data.lookback=96", "data.horizon=96", "trainer.max_epochs=1",
         "trainer.patience=0", "trainer.accelerator=cpu", "--quiet"]  # fmt: skip


def stw(*words: str, cores: set[int] | None = None) -> subprocess.Popen:
    """`stw WORDS` in a child process, pinned to `cores` when given (a machine of its own, in miniature)."""
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", *words], cwd=REPO, preexec_fn=pin)


def timed(processes: list[subprocess.Popen]) -> float:
    started = time.perf_counter()
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a benchmark command failed: {process.args}")
    return time.perf_counter() - started


def sweep_part() -> dict:
    storage, tracking = os.environ["STW_TEST_POSTGRES_URL"], os.environ["STW_TEST_MLFLOW_URI"]
    common = ["--storage", storage, "--tracking-uri", tracking, "--workers", "1", *SWEEP]

    cores = sorted(os.sched_getaffinity(0))

    def machines(count: int) -> float:
        # Each "machine" gets its own share of the cores, as separate machines would: two processes that each
        # assumed the whole machine would oversubscribe it (the first measurement ran 3.9x slower that way).
        study = f"scale-{count}-{uuid.uuid4().hex[:6]}"
        shares = [set(cores[i::count]) for i in range(count)]
        return timed([stw("sweep", "--study", study, *common, cores=share) for share in shares])

    one, two = machines(1), machines(2)
    return {"one_process_s": round(one, 1), "two_processes_s": round(two, 1), "ratio": round(two / one, 3),
            "target": 0.65, "met": two / one <= 0.65}  # fmt: skip


def ddp_part() -> dict:
    single = timed([stw("train", *TRAIN, "trainer.devices=1")])
    ddp = timed([stw("train", *TRAIN, "trainer.devices=2", "trainer.strategy=ddp")])
    return {"single_process_s": round(single, 1), "ddp_2_processes_s": round(ddp, 1), "ratio": round(ddp / single, 3),
            "note": "whole `stw train` runs of one epoch, start-up included; 2 cores"}  # fmt: skip


PARTS = {"sweep": sweep_part, "ddp": ddp_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    args = parser.parse_args()
    path = RESULTS / "scale.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in PARTS if args.part == "all" else [args.part]:
        results[name] = {**PARTS[name](), "load_1min_after": round(os.getloadavg()[0], 2)}
        print(name, results[name], flush=True)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    lines = ["# Scale-out benchmarks (benchmarks/scale.py)", ""]
    lines += [
        f"- **{name}**: " + ", ".join(f"{k} {v}" for k, v in figures.items()) for name, figures in results.items()
    ]
    (RESULTS / "scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
