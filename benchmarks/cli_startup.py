"""How fast `stw` answers `--help` and argument errors: each command in a fresh process, median of N runs.

Target (house issue): under 1.5 s. Every parser except `stw train`'s is built before torch, Lightning or MLflow
is imported; `stw train --help` lists the chosen dataset's and family's options from their dataclasses, which
live beside their torch modules, so it pays for those imports.

    python benchmarks/cli_startup.py [--repeats 5]
Writes benchmarks/results/cli_startup.json and .md. Measure on a quiet machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TARGET_S = 1.5
CASES = {
    "stw --help": ["--help"],
    "stw sweep --help": ["sweep", "--help"],
    "stw runs --help": ["runs", "--help"],
    "stw show --help": ["show", "--help"],
    "stw compare --help": ["compare", "--help"],
    "stw reproduce --help": ["reproduce", "--help"],
    "stw predict --help": ["predict", "--help"],
    "stw ui --help": ["ui", "--help"],
    "stw sweep --trials many (argument error)": ["sweep", "--trials", "many"],
    "stw train --help": ["train", "--help"],
}


def seconds(words: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments.cli", *words], capture_output=True, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, words in CASES.items():
        times = [seconds(words) for _ in range(args.repeats)]
        rows.append({"command": name, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                     "met": statistics.median(times) < TARGET_S})  # fmt: skip
        print(f"{name:45s} {rows[-1]['median_s']:.3f} s")
    load = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.json").write_text(
        json.dumps({"repeats": args.repeats, "load_1min": load, "rows": rows}, indent=2)
    )
    lines = [f"# CLI start-up (median of {args.repeats}, 1-min load {load:.2f})", "",
             "| command | median s | max s | under 1.5 s |", "|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| `{r['command']}` | {r['median_s']:.3f} | {r['max_s']:.3f} | {'yes' if r['met'] else 'no'} |" for r in rows
    ]
    (RESULTS / "cli_startup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
