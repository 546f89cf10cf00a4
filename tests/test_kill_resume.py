"""kill -9 at seeded random points of `clipadapt extract` and `clipadapt train --resume`
(22 trials), then resume: every run completes, and its checkpoint tensors, metrics,
history and feature-store arrays equal an uninterrupted run's exactly (CPU, same seed),
with no temporary file left behind. The trials run in tests/kill_harness.py, one
subprocess that forks a child per attempt (see its docstring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("kill_harness.py")
TRAIN_TRIALS, EXTRACT_TRIALS, SEED = 14, 8, 0


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("kill")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(work), "--train-trials", str(TRAIN_TRIALS),
         "--extract-trials", str(EXTRACT_TRIALS), "--seed", str(SEED)],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    print(json.dumps({"train_events": result["train_events"], "extract_events": result["extract_events"]}))
    for trial in result["trials"]:
        print(trial)
    return result


def test_at_least_twenty_trials_each_really_killed(report):
    trials = report["trials"]
    assert len(trials) >= 20
    assert Counter(t["kind"] for t in trials) == {"train": TRAIN_TRIALS, "extract": EXTRACT_TRIALS}
    assert all(t["outcomes"][0] == "killed" for t in trials)  # the first attempt of every trial died by SIGKILL
    assert sum(len(t["kills"]) > 1 for t in trials) >= 2  # some runs were killed again while resuming


def test_kills_landed_in_extraction_training_and_file_writes(report):
    places = Counter(where for t in report["trials"] for where in t["killed_at"])
    assert places["optimizer step"] >= 2
    assert places["before FeatureSet.write"] + places["after FeatureSet.write"] >= 2
    assert places["before os.replace"] >= 2  # a file written under its temporary name, not yet in place
    assert places["after os.replace"] >= 2
    assert places["after os.rename"] >= 1  # a store entry just created


def test_every_resumed_run_equals_the_uninterrupted_one(report):
    failed = [t for t in report["trials"] if t["final"] != "ok" or t["diffs"]]
    assert not failed, failed


def test_no_temporary_files_are_left_behind(report):
    littered = [t for t in report["trials"] if t["debris"]]
    assert not littered, littered
