"""benchmarks/gpu_check.py's dry run (--device cpu): every step of the GPU check, tiny, on the CPU."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check  # noqa: E402

pytestmark = pytest.mark.slow


def test_the_dry_run_writes_the_report_a_gpu_machine_would(tmp_path, monkeypatch):
    monkeypatch.setenv("STW_CACHE_DIR", str(tmp_path / "cache"))
    output = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["device"] == "cpu" and report["precision"] == "bf16-mixed"
    assert report["gpu_tests"]["exit_code"] == 0 and "skipped" in report["gpu_tests"]["summary"]
    assert set(report["workloads"]) == set(gpu_check.WORKLOADS)
    for workload in report["workloads"].values():
        assert workload["device_run"]["samples_per_s"] > 0 and workload["cpu_run"]["samples_per_s"] > 0
        assert workload["device_run"]["metrics"] and workload["repeat_identical"] is True  # the CPU is deterministic
        assert workload["repeat_largest_difference"] == 0
