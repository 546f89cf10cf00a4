"""How many CPU threads torch may use: a fair share of the cores.

torch's default takes every core for intra-op threads. Alone that is fastest; beside other
work it is not: on 2 cores, a small training run beside two torch jobs at their defaults
took 4.0x its quiet time, against the 3x a fair share of the machine would give, because
its threads fight the others' for the same cores (docs/experiments/threads.md). So by
default ("auto") clipadapt measures how many cores other programs keep busy and takes the
rest, at least one. OpenMP's wait policy is left as it is: letting idle workers sleep
(OMP_WAIT_POLICY=PASSIVE) cost 10-17% of the tiny CLIP's quiet speed, and once the thread
count fits the free cores there is no one to spin against.

When the count is read: once per process, when the first run (or prediction) starts. A
training run keeps it to the end, because torch's reductions split their sums by thread,
so the count changes a result's last bits (tiny CLIP, 3 epochs: test NLL 0.80874853 at one
thread, 0.80874856 at two); a run must repeat bit for bit at a given count, and a resumed
run continues at the count it started with (`continue_at`). Prediction, whose outputs do
not feed anything later, re-reads the load between batches (`recheck_share`, in the main
thread only: a server's concurrent predictions keep the count they started with) and
follows jobs that start or end beside it. Runs record their count in the card (`cpu_threads`).

The setting, in order of precedence:
- the environment variable CLIPADAPT_THREADS;
- `train.threads` of a run config (or the value a command passes);
- OMP_NUM_THREADS, when the user set it: that many, fixed;
- otherwise "auto".
Values: "auto"; a whole number N (N threads, fixed); "torch" (leave torch's own choice, as
clipadapt did before it managed threads).

Ground floor: imports no layer of clipadapt (torch only when a thread count is applied).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from clipadapt.errors import ClipAdaptError

ENV = "CLIPADAPT_THREADS"
# How often a running process re-reads the machine's load. Long enough that the sample
# is not noise (the kernel counts CPU time in 10 ms ticks), short enough to follow a job
# that starts or ends beside it within a few batches.
RECHECK_SECONDS = 3.0
# The first reading, taken before any work: short, since every command waits for it once.
FIRST_SAMPLE_SECONDS = 0.25
# Another program counts as holding a core from this share of one upward; less (a shell,
# an editor, a log writer) does not take a thread away.
BUSY_CORE_SHARE = 0.5


def parse_setting(value: object, source: str) -> str | int:
    """'auto' | 'torch' | a whole number >= 1, from a config value or an environment string;
    anything else is one clear error naming `source`."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text in ("auto", "torch"):
            return text
        try:
            number = int(text)
        except ValueError:
            raise ClipAdaptError(f"{source} = {value!r}: use auto (a fair share of the cores, the default), a "
                                 "number of threads such as 1, or torch (torch's own choice).") from None
    if number < 1:
        raise ClipAdaptError(f"{source} = {value!r}: the number of threads must be at least 1 (or auto).")
    return number


def resolve_setting(configured: object = "auto") -> str | int:
    """The setting in force: CLIPADAPT_THREADS, else `configured` (a run's train.threads),
    else OMP_NUM_THREADS when the user set it, else auto."""
    if os.environ.get(ENV, "").strip():
        return parse_setting(os.environ[ENV], f"environment variable {ENV}")
    setting = parse_setting(configured if configured is not None else "auto", "train.threads")
    if setting == "auto" and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return setting


def usable_cores() -> list[int]:
    """The CPUs this process may run on (its affinity; every CPU where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds spent so far: on `cores` by every program, and by this process."""

    at: float
    all_busy: float
    own: float


def _busy_seconds(cores: list[int]) -> float | None:
    """Busy CPU seconds of `cores` since boot, from /proc/stat (None off Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cores}
    ticks = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy
            values = [int(v) for v in fields[1:9]]
            ticks += sum(values) - values[3] - values[4]
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def read_sample(cores: list[int]) -> CpuSample | None:
    """A reading of the machine's and this process's CPU time (None where /proc/stat is missing)."""
    busy = _busy_seconds(cores)
    if busy is None:
        return None
    return CpuSample(time.monotonic(), busy, _own_seconds())


def others_busy_cores(before: CpuSample, after: CpuSample) -> float:
    """How many cores other programs kept busy between two readings."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    others = (after.all_busy - before.all_busy) - (after.own - before.own)
    return max(0.0, others / elapsed)


def fair_threads(cores: int, others_busy: float) -> int:
    """The threads that leave other programs their cores: the free ones, at least one."""
    held = int(others_busy + 1.0 - BUSY_CORE_SHARE)  # 0.5 -> 1 core, 1.4 -> 1, 1.5 -> 2
    return max(1, min(cores, cores - held))


class ThreadShare:
    """The thread count of this process, kept at a fair share of the cores while it works.

    `start(setting)` applies the setting once per process (and again when it changes);
    `recheck()`, called between batches, re-reads the load every RECHECK_SECONDS under
    "auto" and is a clock read otherwise.
    """

    def __init__(self):
        self.setting: str | int | None = None
        self.threads: int | None = None
        self.cores = usable_cores()
        self._last: CpuSample | None = None

    def start(self, configured: object = None) -> int | None:
        """Apply the setting in force (see `resolve_setting`); returns the thread count set
        (None: torch's own choice). `configured` None keeps a setting already applied in
        this process (a Ray actor's, a run's) and is "auto" otherwise."""
        if configured is None and self.setting is not None and not os.environ.get(ENV, "").strip():
            return self.threads
        setting = resolve_setting(configured)
        if setting == self.setting:
            return self.threads
        self.setting = setting
        if setting == "torch":
            self.threads = None
            return None
        _set_interop_threads_once()
        if isinstance(setting, int):
            return self._apply(setting)
        first = read_sample(self.cores)
        if first is None:  # no /proc/stat: every usable core, as torch would take
            return self._apply(len(self.cores))
        time.sleep(FIRST_SAMPLE_SECONDS)
        self._last = read_sample(self.cores)
        return self._apply(fair_threads(len(self.cores), others_busy_cores(first, self._last)))

    def recheck(self) -> None:
        """Under "auto", follow the machine's load (cheap when no re-read is due). Only the
        main thread does: torch's thread count is the process's, and changing it while a
        server's or a thread pool's other predictions run would change their last bits."""
        if self.setting != "auto" or self._last is None or threading.current_thread() is not threading.main_thread():
            return
        if time.monotonic() - self._last.at < RECHECK_SECONDS:
            return
        now = read_sample(self.cores)
        if now is not None:
            busy = others_busy_cores(self._last, now)
            self._last = now
            self._apply(fair_threads(len(self.cores), busy))

    def _apply(self, threads: int) -> int:
        if threads != self.threads:
            import torch

            torch.set_num_threads(threads)
            self.threads = threads
        return threads


def _set_interop_threads_once() -> None:
    """One inter-op thread: clipadapt runs no parallel graph branches, and torch's default
    pool (a thread per core) only adds threads that contend. torch allows setting it once,
    before any inter-op work; afterwards the call is refused and the pool stays as it is."""
    import torch

    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


SHARE = ThreadShare()


def share_cores(configured: object = None) -> int | None:
    """Set this process's torch threads to its fair share (see the module docstring);
    `configured`: a run's train.threads, or None (keep what this process applied, else auto)."""
    return SHARE.start(configured)


def recheck_share() -> None:
    """Between prediction batches: follow the machine's load under the "auto" setting
    (never inside a training run: see the module docstring)."""
    SHARE.recheck()


def current_threads() -> int:
    """The intra-op threads torch uses now in this process."""
    import torch

    return torch.get_num_threads()


def continue_at(threads: int | None) -> None:
    """A resumed run continues at the thread count its first part ran at (under "auto"; a
    fixed setting stays as set), so it repeats the uninterrupted run bit for bit."""
    if threads and SHARE.setting == "auto":
        SHARE._apply(int(threads))
