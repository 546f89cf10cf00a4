"""The benchmark scripts run on tiny shapes (so they cannot rot) and write their records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(script: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], check=True, cwd=ROOT,
                   capture_output=True, timeout=300)


def test_feature_store_benchmark_on_tiny_shapes(tmp_path):
    out = tmp_path / "store.json"
    run("feature_store_vs_end_to_end.py", "--images", "8", "--batch-size", "4", "--backbone", "clipadapt-micro",
        "--out", str(out))
    record = json.loads(out.read_text())
    # timings on tiny shapes are noise; the record must be complete and positive
    assert record["store_epoch_s"] > 0 and record["end_to_end_epoch_s"] > 0
    assert record["speedup_store_vs_end_to_end"] > 0 and record["images"] == 8


def test_promptpar_benchmark_on_tiny_shapes(tmp_path):
    out = tmp_path / "pp.json"
    run("promptpar_step.py", "--backbone", "clipadapt-micro", "--batch", "2", "--attributes", "3", "--repeats", "1",
        "--out", str(out))
    record = json.loads(out.read_text())
    assert record["promptpar_step_s"] > 0 and record["frozen_forward_s"] > 0 and record["tokens"] > 16
    assert record["peak_rss_mib"]["after_train_step"] >= record["peak_rss_mib"]["after_forward"]
