"""Row (b): one CLIP-MHAdapter training epoch from the feature store vs end to end the
authors' way (open_clip's image forward and the text features recomputed every step),
on real-size JPEGs; plus the FLOP ratio of the two steps, the ratio's ceiling."""

from __future__ import annotations

from bench_common import Row
from feature_store_vs_end_to_end import measure

TARGET = 30.0


def run(ctx) -> list[Row]:
    """Measure (b): 64 images of 2048x1024, batch 32 (quick: 8 tiny images)."""
    n, batch, frame = (8, 4, (128, 64)) if ctx.quick else (64, 32, (2048, 1024))
    record = measure(n, batch, ctx.model if ctx.quick else "ViT-B-16", repeats=min(ctx.repeats, 3), frame=frame,
                     authors=True, flops=True)
    figure, bound = record["speedup_store_vs_end_to_end"], record["flop_ratio_end_to_end_over_store"]
    rate = record["matmul_gflops"]
    record["matmul_fraction"] = {k: round(record[f"{k}_gflops_achieved"] / rate, 3) for k in ("store", "end_to_end")}
    note = (f"store epoch {record['store_epoch_s']} s vs {record['end_to_end_epoch_s']} s (in CPU seconds "
            f"{record['speedup_in_cpu_seconds']}x); FLOP ratio of the two steps "
            f"{bound}x is the ceiling at equal arithmetic rates (the adapter's own forward+backward stays); "
            f"matmul-rate share: store {record['matmul_fraction']['store']}, "
            f"end to end {record['matmul_fraction']['end_to_end']}")
    return [Row("b", f"one MHAdapter epoch ({n} JPEGs {frame[0]}x{frame[1]}, batch {batch}): store vs end to end",
                figure, "x", f">= {TARGET:g}x", figure >= TARGET, ctx.command("b"), note, record)]
