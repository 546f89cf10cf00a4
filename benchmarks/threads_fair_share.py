"""Benchmark: a training run's slowdown on a shared machine, before and after clipadapt
chose its own thread counts (issue 32).

One representative run (CLIP-MHAdapter on the embedded tiny CLIP, the backbone every step,
no feature store) is timed, as a `clipadapt train` process, in three situations:
- alone;
- three identical runs started together (each one's wall time);
- beside two plain torch jobs (a matmul loop at torch's default threads) that run
  throughout.
each under two settings, interleaved repeat by repeat: "before" (CLIPADAPT_THREADS=torch:
torch's default threads and OpenMP wait policy, as clipadapt ran until now) and "after"
(the default, auto: a fair share of the cores, idle workers sleep). On N cores shared by
k equal jobs a fair share costs k/N of a core each: with 3 jobs on 2 cores every job
should take about 3x its time alone, not more. Figures: median wall seconds, and each
situation's ratio to the same setting's run alone; "quiet" compares the two settings alone.

    .venv/bin/python benchmarks/threads_fair_share.py [--repeats 3] [--epochs 4] [--demo]

`--demo` adds the street-view demo (`clipadapt demo`, its full size) alone and beside two
torch jobs, under both settings, once each (about 15 minutes). Writes
benchmarks/results/threads_fair_share.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "clipadapt.cli.main"]
SETTINGS = {"before": "torch", "after": "auto"}
# A plain torch job: a matmul loop at torch's default threads, as another user's script would run.
COMPETITOR = ("import torch, sys, time\n"
              "a = torch.randn(384, 384)\n"
              "end = time.time() + float(sys.argv[1])\n"
              "while time.time() < end:\n"
              "    a = torch.tanh(a @ a)\n")


def run_config(folder: Path, epochs: int) -> Path:
    """A small MHAdapter run whose every step runs the backbone (train.end_to_end, no store)."""
    config = folder / "run.yaml"
    config.write_text(json.dumps({
        "backbone": {"name": "clipadapt-tiny", "pretrained": "embedded"},
        "data": {"format": "synthetic-gss", "root": str(folder / "data"), "attributes": ["weather"],
                 "synthetic": {"n_train": 240, "n_test": 60, "seed": 0, "image_size": 96}},
        "method": {"name": "mhadapter", "params": {"beta": 0.8, "heads": 4}},
        "train": {"epochs": epochs, "batch_size": 32, "warmup_epochs": 1, "patience": None, "end_to_end": True,
                  "eval_batch_size": 64},
        "features": {"cache": "off"},
    }))
    return config


def env_for(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["CLIPADAPT_THREADS"] = setting
    return env


def start_training(config: Path, out: Path, setting: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "train", str(config), "--out", str(out), "--quiet"], env=env_for(setting),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_timed(processes: list[subprocess.Popen], started: float) -> list[float]:
    """Each process's wall seconds from `started`; a failure stops the benchmark with its stderr."""
    times = [0.0] * len(processes)
    pending = dict(enumerate(processes))
    while pending:
        for i, proc in list(pending.items()):
            if proc.poll() is not None:
                times[i] = time.perf_counter() - started
                if proc.returncode != 0:
                    raise SystemExit(f"a benchmark run failed:\n{proc.stderr.read()}")
                del pending[i]
        time.sleep(0.05)
    return times


def competitors(count: int, seconds: float) -> list[subprocess.Popen]:
    """`count` plain torch jobs at their default threads, for `seconds`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS",
                                                              "CLIPADAPT_THREADS")}
    jobs = [subprocess.Popen([sys.executable, "-c", COMPETITOR, str(seconds)], env=env) for _ in range(count)]
    time.sleep(2.0)  # let them import torch and start multiplying before the run starts
    return jobs


def stop(jobs: list[subprocess.Popen]) -> None:
    for job in jobs:
        job.kill()
        job.wait()


def situation(name: str, config: Path, work: Path, setting: str, limit: float) -> list[float]:
    """Wall seconds of the run(s) timed in one situation."""
    outs = [work / f"{name}-{setting}-{i}-{time.monotonic_ns()}" for i in range(3)]
    if name == "alone":
        started = time.perf_counter()
        return wait_timed([start_training(config, outs[0], setting)], started)
    if name == "three together":
        started = time.perf_counter()
        return wait_timed([start_training(config, out, setting) for out in outs], started)
    jobs = competitors(2, limit)
    try:
        started = time.perf_counter()
        return wait_timed([start_training(config, outs[0], setting)], started)
    finally:
        stop(jobs)


def measure(config: Path, work: Path, repeats: int) -> dict:
    """Median wall seconds per (situation, setting), interleaved repeat by repeat."""
    walls: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeats):
        for name in ("alone", "three together", "beside two torch jobs"):
            for label, setting in SETTINGS.items():
                times = situation(name, config, work, setting, limit=600)
                walls.setdefault((name, label), []).extend(times)
                print(f"  {name:24s} {label:6s} {', '.join(f'{t:.1f}' for t in times)} s", flush=True)
    return {f"{name} | {label}": statistics.median(values) for (name, label), values in walls.items()}


def demo_times(work: Path) -> dict:
    """The street-view demo alone and beside two torch jobs, under each setting (once each)."""
    figures = {}
    for name in ("alone", "beside two torch jobs"):
        for label, setting in SETTINGS.items():
            jobs = competitors(2, 3600) if name != "alone" else []
            try:
                started = time.perf_counter()
                proc = subprocess.run([*CLI, "demo", "--out", str(work / f"demo-{name}-{label}"), "--quiet"],
                                      env=env_for(setting), capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"the demo failed:\n{proc.stderr}")
                figures[f"demo {name} | {label}"] = time.perf_counter() - started
            finally:
                stop(jobs)
            print(f"  demo {name:24s} {label:6s} {figures[f'demo {name} | {label}']:.1f} s", flush=True)
    return figures


def table(medians: dict) -> str:
    lines = ["| situation | before (torch's threads) | after (auto) |", "|---|---|---|"]
    for name in ("alone", "three together", "beside two torch jobs"):
        cells = []
        for label in SETTINGS:
            wall = medians[f"{name} | {label}"]
            ratio = wall / medians[f"alone | {label}"]
            cells.append(f"{wall:.1f} s ({ratio:.2f}x)")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines.append(f"| quiet speed, after / before | | {medians['alone | after'] / medians['alone | before']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--demo", action="store_true", help="also time the street-view demo (about 15 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "threads_fair_share.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = run_config(work, args.epochs)
        print("rendering the data and warming up ...", flush=True)
        situation("alone", config, work, "auto", limit=600)
        medians = measure(config, work, args.repeats)
        if args.demo:
            medians.update(demo_times(work))
    print(table(medians))
    record = {"when": time.strftime("%Y-%m-%d %H:%M"), "cores": len(os.sched_getaffinity(0)),
              "repeats": args.repeats, "epochs": args.epochs, "median_seconds": medians}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
