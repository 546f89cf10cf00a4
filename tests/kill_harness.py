"""Kill -9 trials for tests/test_kill_resume.py, run as a script in its own process.

The parent imports clipadapt once, then forks a child per step so each trial costs a
fork, not a fresh Python start (the point: dozens of trials in a minute on a small CPU).
A child runs the real CLI (`clipadapt train ... --resume`, `clipadapt extract ...`) and
SIGKILLs itself at its k-th "event": a file replaced or renamed (before or after the
rename), a feature-store batch written, an optimiser step. k is drawn, seeded, from the
events an uninterrupted run goes through, so kills land in extraction, training,
evaluation and the final writes alike. Then the run is resumed (sometimes killed again
first) until it completes, and its outputs are compared with the uninterrupted run's.

    python kill_harness.py WORK_DIR --train-trials 16 --extract-trials 8 --seed 0

prints one JSON document: the reference's event counts and one record per trial.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402

torch.set_num_threads(1)

from clipadapt.cli.main import app  # noqa: E402  (imports every command's modules up front, before forking)
from clipadapt.features.store import FeatureSet, FeatureStore  # noqa: E402
import clipadapt.workflow  # noqa: E402, F401
import clipadapt.metrics.plots  # noqa: E402, F401
import open_clip  # noqa: E402
from clipadapt.backbone import create_backbone  # noqa: E402

# Loading the BPE vocabulary takes ~1 s; load it once in the parent and let every forked
# child share it (the same tokenizer either way: only the harness's speed changes).
open_clip.get_tokenizer = functools.lru_cache(maxsize=None)(open_clip.get_tokenizer)
create_backbone("clipadapt-micro", None).tokenizer  # registers clipadapt's model configs, then loads it


# ----------------------------------------------------------------------------- data and config
def make_data(root: Path) -> None:
    """40 train + 12 test 32-px images, 4 brightness classes, as a manifest data set."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 12)):
        rows = ["img_path,shade"]
        for i in range(n):
            label = i % 4
            pixels = rng.integers(0, 50, (32, 32, 3)) + 60 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"{split}{i}.png")
            rows.append(f"{split}{i}.png,c{label}")
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")


def write_config(path: Path, data: Path, cache: Path) -> Path:
    cfg = {"backbone": {"name": "clipadapt-micro", "pretrained": None},
           "data": {"format": "manifest", "train_manifest": str(data / "train.csv"),
                    "test_manifest": str(data / "test.csv"), "attributes": ["shade"], "val_fraction": 0.2},
           "method": {"name": "mhadapter", "params": {}},
           "train": {"epochs": 4, "batch_size": 8, "warmup_epochs": 1, "patience": None, "lr": 1e-2, "device": "cpu"},
           "features": {"dir": str(cache), "batch_size": 8}}
    path.write_text(yaml.safe_dump(cfg))
    return path


# ----------------------------------------------------------------------------- events and kills
def instrument(kill_at: int, log: list | None = None) -> None:
    """Count events in this (child) process; SIGKILL it at event `kill_at` (0: never)."""
    count = [0]

    def event(kind: str) -> None:
        count[0] += 1
        if log is not None:
            log.append(kind)
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def around(name: str, real):
        def wrapped(*args, **kwargs):
            event(f"before {name}")
            out = real(*args, **kwargs)
            event(f"after {name}")
            return out
        return wrapped

    os.replace = around("os.replace", os.replace)
    os.rename = around("os.rename", os.rename)
    FeatureSet.write = around("FeatureSet.write", FeatureSet.write)
    register_optimizer_step_post_hook(lambda *_: event("optimizer step"))


def in_child(kill_at: int, args: list[str], log_path: Path | None = None) -> str:
    """Run the CLI with `args` in a forked child; 'killed', 'ok' or 'failed (status)'."""
    pid = os.fork()
    if pid == 0:  # child: never returns into the parent's code
        status = 1
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the CLI's tables and progress; the parent's stdout carries the result
        try:
            log: list | None = [] if log_path else None
            instrument(kill_at, log)
            try:
                app(args, standalone_mode=False)
                status = 0
            except SystemExit as exc:
                status = int(exc.code or 0)
            if log_path:
                log_path.write_text(json.dumps(log))
        except BaseException as exc:  # report, never unwind into the parent's stack
            sys.stderr.write(f"child error: {type(exc).__name__}: {exc}\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    code = os.WEXITSTATUS(status)
    return "ok" if code == 0 else f"failed ({code})"


# ----------------------------------------------------------------------------- comparisons
def run_outputs(run: Path) -> dict:
    return {"checkpoint": load_file(str(run / "checkpoint.safetensors")),
            "metrics": json.loads((run / "metrics.json").read_text()),
            "history": json.loads((run / "history.json").read_text())}


def same_run(a: dict, b: dict) -> list[str]:
    """What differs between two runs' outputs ([] when nothing)."""
    diffs = []
    if a["checkpoint"].keys() != b["checkpoint"].keys():
        diffs.append("checkpoint keys")
    else:
        diffs += [f"tensor {k}" for k in a["checkpoint"] if not torch.equal(a["checkpoint"][k], b["checkpoint"][k])]
    diffs += [name for name in ("metrics", "history") if a[name] != b[name]]
    return diffs


def store_arrays(cache: Path) -> dict:
    out = {}
    for entry in FeatureStore(cache).entries():
        done = np.load(entry.path / "done.npy")
        out[entry.key] = {"done": bool(done.all()),
                          "embeds": np.load(entry.path / "embeds.npy"),
                          "tokens": np.load(entry.path / "tokens.npy") if (entry.path / "tokens.npy").exists() else None}
    return out


def same_store(a: dict, b: dict) -> list[str]:
    if a.keys() != b.keys():
        return [f"entries {sorted(a)} vs {sorted(b)}"]
    diffs = []
    for key in a:
        if not b[key]["done"]:
            diffs.append(f"{key} incomplete")
        for name in ("embeds", "tokens"):
            if a[key][name] is not None and not np.array_equal(a[key][name], b[key][name]):
                diffs.append(f"{key} {name}")
    return diffs


def debris(*folders: Path) -> list[str]:
    """Temporary files or folders a kill left behind (names starting with '.')."""
    return sorted(str(p.relative_to(p.parents[1])) for f in folders if f.exists() for p in f.rglob(".*"))


# ----------------------------------------------------------------------------- trials
def kinds_at(log: list[str], k: int) -> str:
    return log[k - 1] if 0 < k <= len(log) else "?"


def train_trial(work: Path, data: Path, rng: random.Random, n: int, log: list[str], reference: dict) -> dict:
    cache, out = work / f"cache{n}", work / f"run{n}"
    config = write_config(work / f"train{n}.yaml", data, cache)
    args = ["train", str(config), "--out", str(out), "--resume", "--quiet"]
    kills = [rng.randint(1, len(log))]
    if rng.random() < 0.3:  # a second kill during the resumed run
        kills.append(rng.randint(1, len(log)))
    outcomes = [in_child(k, args) for k in kills]
    final = in_child(0, args)
    record = {"kind": "train", "kills": kills, "killed_at": [kinds_at(log, k) for k in kills],
              "outcomes": outcomes, "final": final}
    record["diffs"] = same_run(reference, run_outputs(out)) if final == "ok" else ["did not finish"]
    record["debris"] = debris(out, cache)
    return record


def extract_trial(work: Path, data: Path, rng: random.Random, n: int, log: list[str], reference: dict) -> dict:
    cache = work / f"xcache{n}"
    config = write_config(work / f"extract{n}.yaml", data, cache)
    args = ["extract", str(config), "--quiet"]
    kill = rng.randint(1, len(log))
    outcome = in_child(kill, args)
    final = in_child(0, args)
    record = {"kind": "extract", "kills": [kill], "killed_at": [kinds_at(log, kill)], "outcomes": [outcome],
              "final": final}
    record["diffs"] = same_store(reference, store_arrays(cache)) if final == "ok" else ["did not finish"]
    record["debris"] = debris(cache)
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--train-trials", type=int, default=16)
    parser.add_argument("--extract-trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    work, data = opts.work, opts.work / "data"
    data.mkdir(parents=True, exist_ok=True)
    make_data(data)
    rng = random.Random(opts.seed)

    # the uninterrupted runs, counting their events
    train_log_path, extract_log_path = work / "train_events.json", work / "extract_events.json"
    ref_cfg = write_config(work / "reference.yaml", data, work / "ref_cache")
    assert in_child(0, ["train", str(ref_cfg), "--out", str(work / "reference"), "--quiet"], train_log_path) == "ok"
    x_cfg = write_config(work / "x_reference.yaml", data, work / "x_ref_cache")
    assert in_child(0, ["extract", str(x_cfg), "--quiet"], extract_log_path) == "ok"
    train_log, extract_log = json.loads(train_log_path.read_text()), json.loads(extract_log_path.read_text())
    reference, x_reference = run_outputs(work / "reference"), store_arrays(work / "x_ref_cache")

    trials = [train_trial(work, data, rng, n, train_log, reference) for n in range(opts.train_trials)]
    trials += [extract_trial(work, data, rng, n, extract_log, x_reference) for n in range(opts.extract_trials)]
    print(json.dumps({"train_events": dict(Counter(train_log)), "extract_events": dict(Counter(extract_log)),
                      "trials": trials}))


if __name__ == "__main__":
    main()
