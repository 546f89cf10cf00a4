"""What every benchmark row shares: interleaved median timing, memory readings, FLOP
counting, the machine's measured matmul rate, and the row record.

Absolute times on a shared machine drift by 2x within minutes; a ratio of two things
timed in turn, repeat by repeat, drifts far less. So every row times its contenders
interleaved (a, b, a, b, ...) and reports medians and their ratio.
"""

from __future__ import annotations

import json
import logging
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class Row:
    """One line of the suite's table: a measured figure against its target."""

    key: str
    title: str
    figure: float | None
    unit: str
    target: str
    met: bool | None
    command: str
    note: str = ""
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def rows_from_committed_record(record: Path, rows_from_record: Callable[[dict, str], list["Row"]], command: str,
                               root: Path, date_key: str) -> list["Row"]:
    """A standalone benchmark's rows from its committed JSON record (`run_all.py
    --from-records`): `rows_from_record(record, command)`, each row marked with the record's
    date (`record[date_key]`) and the record's path relative to `root`."""
    data = json.loads(Path(record).read_text())
    rows = rows_from_record(data, command)
    for row in rows:
        row.details.update(measured=data.get(date_key, "?"), from_record=str(Path(record).relative_to(root)))
    return rows


def quiet() -> None:
    """Silence open_clip's per-model random-init warnings and similar chatter."""
    logging.getLogger().setLevel(logging.ERROR)
    logging.disable(logging.WARNING)


def interleaved_medians(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                        cpu_seconds: dict | None = None) -> dict[str, float]:
    """Median wall seconds of each callable, timed in turn each repeat (after `warmup` untimed
    rounds); `cpu_seconds`, if given, receives the median CPU seconds of this process, which
    other programs' load disturbs far less (but which misses work done in child processes)."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    if cpu_seconds is not None:
        cpu_seconds.update({name: statistics.median(values) for name, values in cpu.items()})
    return {name: statistics.median(values) for name, values in wall.items()}


def timed_with_matmul_rate(contenders: dict[str, Callable[[], object]], repeats: int, gemm: tuple[int, int, int],
                           warmup: int = 1, cpu_seconds: dict | None = None) -> tuple[dict[str, float], float]:
    """`interleaved_medians` of the contenders plus fp32 matmuls of shape `gemm` (m, k, n) timed
    in the same rounds, so the machine's matmul rate (GFLOP/s, best of BLAS and oneDNN) is
    read under the same load as the workload it is compared with."""
    gemms, flops = matmul_contenders(*gemm)

    def under_inference(fn):
        def run():
            with torch.inference_mode():
                fn()
        return run

    timed = {**contenders, **{name: under_inference(fn) for name, fn in gemms.items()}}
    medians = interleaved_medians(timed, repeats, warmup, cpu_seconds)
    rate = max(flops / medians.pop(name) / 1e9 for name in gemms)
    for name in gemms:
        (cpu_seconds or {}).pop(name, None)
    return medians, rate


def tower_gemm(backbone, batch: int) -> tuple[int, int, int]:
    """The shape of an image tower's largest matmul: its MLP's first layer over every token."""
    return batch * (backbone.num_patches + 1), backbone.width, 4 * backbone.width


def peak_rss_mib() -> float:
    """Peak resident set of this process so far: VmHWM. (Not ru_maxrss: Linux carries the
    parent's size at fork into a child's ru_maxrss across exec, so a benchmark started from
    a big process would report the parent's peak.)"""
    try:
        return proc_status_mib("VmHWM")["VmHWM"]
    except (OSError, KeyError):  # no /proc: ru_maxrss (KiB on Linux)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mib(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB (VmHWM, VmRSS, RssAnon, RssFile ...)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in keys:
                out[name] = int(value.split()[0]) / 1024
    return out


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count (VmHWM) from the current size (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call (multiply-add = 2), by torch's FLOP counter.

    Fused kernels hide their matmuls from the counter (nn.MultiheadAttention's inference
    fast path, oneDNN's linear, CPU flash attention), so count on the plain ops: run `fn`
    on a backbone with `.fast = False`; the MHA fast path is switched off here.
    """
    from torch.utils.flop_counter import FlopCounterMode

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
    return int(counter.get_total_flops())


def matmul_contenders(m: int, k: int, n: int) -> tuple[dict[str, Callable[[], object]], int]:
    """Callables multiplying [m, k] by [k, n] in fp32 with BLAS (torch.mm) and with oneDNN (the
    library clipadapt's fast path uses), and the FLOPs of one product: time them beside a
    workload to know the machine's matmul rate under the same load."""
    a, b = torch.randn(m, k), torch.randn(n, k)
    contenders = {"matmul_blas": lambda: torch.mm(a, b.t())}
    try:
        torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
        contenders["matmul_onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    except Exception:  # a build without the op: BLAS alone
        pass
    return contenders, 2 * m * k * n


def matmul_rate(size: int = 1536, repeats: int = 5) -> dict:
    """The machine's fp32 matrix-multiply rate now (GFLOP/s, this process's threads): the best
    of BLAS and oneDNN on a square product."""
    contenders, flops = matmul_contenders(size, size, size)
    with torch.inference_mode():
        medians = interleaved_medians(contenders, repeats)
    rates = {name: flops / t / 1e9 for name, t in medians.items()}
    return {"gflops": round(max(rates.values()), 1), **{k: round(v, 1) for k, v in rates.items()}, "size": size}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Lowest row-wise cosine similarity of two [B, ...] outputs."""
    return float(F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=-1).min())


def machine() -> dict:
    """What the figures were measured on."""
    return {"machine": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def save_record(record: dict, out, width: int = 30) -> None:
    """Write a standalone benchmark's record as JSON to `out` and print it, one key per line."""
    import json
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    for key, value in record.items():
        print(f"{key:>{width}}: {value}")
