"""Row (j): `clipadapt serve` under load, the new server (FastAPI, dynamic batching) vs the
old one (ThreadingHTTPServer of commit 1c9f4e4).

A thin row over benchmarks/serve_load.py: its `main` starts both servers, loads them in
turn and writes its record to a temporary file here, so the standalone record
benchmarks/results/serve_load.json is left alone; `rows_from_record` turns a record (that
one or the committed one) into the row: new / old requests/s at the most clients (32;
quick: 8), medians over the rounds, with each side's p99.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import serve_load
from bench_common import Row, rows_from_committed_record

RECORD = serve_load.ROOT / "benchmarks" / "results" / "serve_load.json"


def rows_from_record(record: dict, command: str) -> list[Row]:
    """The row of a serve_load record with both servers measured."""
    top = max(record["speedup"], key=lambda s: s["clients"])
    clients = top["clients"]
    merged = {r["server"]: r for r in serve_load.merged(record["rows"]) if r["clients"] == clients}
    old, new = merged["old"], merged["new"]
    others = ", ".join(f"{s['throughput_ratio_new_over_old']}x at {s['clients']}" for s in record["speedup"]
                       if s["clients"] != clients)
    failed = {side: serve_load.error_text(merged[side]["errors"]) for side in ("old", "new")}
    note = (f"{new['requests_per_s']:g} vs {old['requests_per_s']:g} requests/s; p99 {new['p99_ms']:g} vs "
            f"{old['p99_ms']:g} ms, p50 {new['p50_ms']:g} vs {old['p50_ms']:g} ms (new vs old); failed: new "
            f"{failed['new']}, old {failed['old']}; per server CPU-s {top.get('per_cpu_ratio_new_over_old')}x"
            + (f"; new / old {others} clients" if others else "")
            + f"; {record['settings']['rounds']} round(s) of {record['settings']['seconds']:g} s")
    details = {"clients": clients, "speedup": record["speedup"], "old": old, "new": new,
               "settings": record["settings"], "commits": record.get("commits"), "record_when": record.get("when"),
               "limit_rows": [{k: r.get(k) for k in ("server", "setting", "clients", "requests_per_s", "p99_ms",
                                                     "errors", "error")} for r in record.get("limit_rows", [])]}
    return [Row("j", f"serve under load, {clients} clients: new (FastAPI, batching) vs old requests/s",
                top["throughput_ratio_new_over_old"], "x requests/s", "ratio (no target)", None,
                command, note, details)]


def run(ctx) -> list[Row]:
    """Measure (j): 1/8/32 clients, 10 s each, 3 rounds, the above-the-limit row (quick: 1 and 8
    clients, 1.5 s, one round, no limit row)."""
    with tempfile.TemporaryDirectory(prefix="row-serve-load-") as tmp:
        out = Path(tmp) / "serve_load.json"
        quick = ["--clients", "1,8", "--seconds", "1.5", "--rounds", "1", "--warmup", "0.5", "--pause", "0.2",
                 "--images", "2", "--limit-args", ""] if ctx.quick else []
        serve_load.main([*quick, "--out", str(out)])
        record = json.loads(out.read_text())
    return rows_from_record(record, ctx.command("j"))


def from_record(ctx) -> list[Row]:
    """Row (j) from the standalone benchmark's committed record, with its date."""
    return rows_from_committed_record(RECORD, rows_from_record, ctx.command("j"), serve_load.ROOT, "when")
