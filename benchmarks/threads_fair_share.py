"""Benchmark: a training run's slowdown on a shared machine, before and after clipadapt
chose its own thread counts (issue 32).

One representative run (CLIP-MHAdapter on the embedded tiny CLIP, the backbone every step,
no feature store) is timed, as a `clipadapt train` process, in three situations:
- alone;
- beside one, and beside two, plain torch jobs (a matmul loop at torch's default
  threads) that run throughout;
- three identical runs started together (each one's wall time).
each under two settings, interleaved repeat by repeat: "before" (CLIPADAPT_THREADS=torch:
torch's default threads, as clipadapt ran until now) and "after" (the default, auto: a fair
share of the cores). On N cores shared by
k equal jobs a fair share costs k/N of a core each: with 3 jobs on 2 cores every job
should take about 3x its time alone, not more. Figures: median wall seconds, and each
situation's ratio to the same setting's run alone; "quiet" compares the two settings alone.

    .venv/bin/python benchmarks/threads_fair_share.py [--repeats 3] [--epochs 4] [--demo]

`--demo` adds the street-view demo (`clipadapt demo`, its full size) alone and beside one
and two torch jobs, once each under each setting of `--demo-settings` (default after; the
"before" runs beside other jobs take 10-20 minutes each). Writes
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
SITUATIONS = ("alone", "beside one torch job", "beside two torch jobs", "three together")
COMPETING = {"beside one torch job": 1, "beside two torch jobs": 2}
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
    outs = [work / f"{name}-{setting}-{i}-{time.monotonic_ns()}".replace(" ", "-") for i in range(3)]
    jobs = competitors(COMPETING[name], limit) if name in COMPETING else []
    try:
        started = time.perf_counter()
        runs = outs if name == "three together" else outs[:1]
        return wait_timed([start_training(config, out, setting) for out in runs], started)
    finally:
        stop(jobs)


def measure(config: Path, work: Path, repeats: int, quiet_repeats: int, situations=SITUATIONS) -> dict:
    """Median wall seconds per (situation, setting), interleaved repeat by repeat; the run
    alone (cheap, and the baseline of every ratio) `quiet_repeats` times more often."""
    walls: dict[tuple[str, str], list[float]] = {}
    for r in range(max(repeats, quiet_repeats)):
        for name in (situations if r < repeats else ("alone",)):
            for label, setting in SETTINGS.items():
                times = situation(name, config, work, setting, limit=600)
                walls.setdefault((name, label), []).extend(times)
                print(f"  {name:24s} {label:6s} {', '.join(f'{t:.1f}' for t in times)} s", flush=True)
    return {f"{name} | {label}": statistics.median(values) for (name, label), values in walls.items()}


def demo_times(work: Path, labels: list[str]) -> dict:
    """The street-view demo alone and beside one and two torch jobs, once per setting in `labels`."""
    figures = {}
    for name in ("alone", "beside one torch job", "beside two torch jobs"):
        for label in labels:
            jobs = competitors(COMPETING[name], 3600) if name in COMPETING else []
            try:
                started = time.perf_counter()
                proc = subprocess.run([*CLI, "demo", "--out", str(work / f"demo-{name}-{label}".replace(" ", "-")),
                                       "--quiet"], env=env_for(SETTINGS[label]), capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"the demo failed:\n{proc.stderr}")
                figures[f"demo {name} | {label}"] = time.perf_counter() - started
            finally:
                stop(jobs)
            print(f"  demo {name:24s} {label:6s} {figures[f'demo {name} | {label}']:.1f} s", flush=True)
    return figures


def table(medians: dict) -> str:
    """The run's rows (wall seconds and the ratio to the same setting alone), then the demo's."""
    lines = ["| situation | before (torch's threads) | after (auto) |", "|---|---|---|"]
    for prefix, names in (("", SITUATIONS), ("demo ", SITUATIONS[:3])):
        for name in names:
            cells = []
            for label in SETTINGS:
                wall, alone = medians.get(f"{prefix}{name} | {label}"), medians.get(f"{prefix}alone | {label}")
                cells.append("-" if wall is None else f"{wall:.1f} s ({wall / alone:.2f}x)" if alone else f"{wall:.1f} s")
            if cells != ["-", "-"]:
                lines.append(f"| {prefix}{name} | {' | '.join(cells)} |")
    lines.append(f"| quiet speed, after / before | | {medians['alone | after'] / medians['alone | before']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quiet-repeats", type=int, default=6, help="repeats of the run alone (the baseline)")
    parser.add_argument("--situations", default=",".join(SITUATIONS), help="comma-separated subset to time")
    parser.add_argument("--demo", action="store_true", help="also time the street-view demo (15 minutes and more)")
    parser.add_argument("--demo-settings", default="after", help="comma-separated: before, after")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "threads_fair_share.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = run_config(work, args.epochs)
        print("rendering the data and warming up ...", flush=True)
        situation("alone", config, work, "auto", limit=600)
        chosen = tuple(x.strip() for x in args.situations.split(",") if x.strip() in SITUATIONS)
        medians = measure(config, work, args.repeats, args.quiet_repeats, chosen)
        if args.demo:
            medians.update(demo_times(work, [x for x in args.demo_settings.split(",") if x in SETTINGS]))
    print(table(medians))
    record = {"when": time.strftime("%Y-%m-%d %H:%M"), "cores": len(os.sched_getaffinity(0)),
              "repeats": args.repeats, "epochs": args.epochs, "median_seconds": medians}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
