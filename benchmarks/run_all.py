"""The benchmark suite: every row a ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/run_all.py                 # all rows, full-size shapes (~30-60 min on 2 CPU cores)
    .venv/bin/python benchmarks/run_all.py --rows a,d      # some rows
    .venv/bin/python benchmarks/run_all.py --quick         # tiny shapes, seconds: proves the code runs
    .venv/bin/python benchmarks/run_all.py --rows i,j --from-records   # i, j from their standalone records

Rows: (a) image encoding vs open_clip encode_image (+ the lossy opt-ins), (b) one
MHAdapter epoch from the feature store vs end to end, (c) eight GSS attributes from one
backbone pass vs eight single-attribute models, (d) predict on 2048x1024 JPEGs vs
backbone-only throughput, (e) peak resident memory of store-backed training at 1x and
10x data, (f) PromptPAR and microCLIP step time and memory, (g) the share of the
machine's measured matmul rate that (a) reaches, (h) image encoding of the other model
families (SigLIP, EVA02) vs open_clip, (i) `clipadapt aggregate` of 1 M and 10 M
prediction rows, streamed vs a pandas read-then-groupby (rows/s; peak RSS 10 M / 1 M),
(j) `clipadapt serve` under load, new vs old server (requests/s at 32 clients, p99).
Random weights of full-size models: compute does not depend on the values. Rows i and j
run the standalone benchmarks/aggregate_scale.py and serve_load.py (many minutes at full
size); --from-records takes them from those scripts' last records instead
(benchmarks/results/aggregate_scale.json, serve_load.json), each row with the record's
time. Writes suite.md and suite.json; a run of some rows keeps the other rows of the
earlier record (of the same kind, quick or full), each row with the time it was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench_common import Row, machine, matmul_rate, quiet

ROWS = "abcdefhij"  # g is computed with a


@dataclass
class Context:
    """Sizes and shared measurements for the rows of one run."""

    quick: bool
    repeats: int
    model: str
    batch: int
    compile: bool = False
    flops_per_image: dict = field(default_factory=dict)

    def command(self, rows: str) -> str:
        return f"python benchmarks/run_all.py --rows {rows}" + (" --quick" if self.quick else "")


def row_modules(letters: str) -> list:
    import row_aggregate
    import row_eight_attributes
    import row_encode
    import row_families
    import row_predict_jpeg
    import row_serve_load
    import row_steps
    import row_store_epoch
    import row_store_memory

    table = {"a": row_encode, "b": row_store_epoch, "c": row_eight_attributes, "d": row_predict_jpeg,
             "e": row_store_memory, "f": row_steps, "h": row_families, "i": row_aggregate, "j": row_serve_load}
    return [table[x] for x in letters]


def _module_letter(key: str) -> str:
    """The --rows letter whose module measures a row key ("f-microclip" -> f; g comes with a)."""
    return "a" if key == "g" else key[0]


def earlier_rows(path: Path, rerun: str, quick: bool) -> list[Row]:
    """The rows of an earlier record at `path` that this run does not measure again, so a
    run of some rows does not wipe the others. A quick record and a full one never mix."""
    if not path.is_file():
        return []
    try:
        earlier = json.loads(path.read_text())
        if earlier.get("quick") != quick:
            return []
        kept = [Row(**row) for row in earlier["rows"] if _module_letter(row["key"]) not in rerun]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        print(f"note: {path} is not a suite record we can read ({exc}); it is replaced", flush=True)
        return []
    for row in kept:  # records from before rows carried their own time
        row.details.setdefault("measured", earlier.get("when", "?"))
    return kept


def earlier_header(path: Path, quick: bool) -> dict | None:
    """The header (time, machine, matmul rate) of an earlier record of the same kind at `path`:
    a run that only imports rows from records measures nothing, so the record keeps it."""
    try:
        earlier = json.loads(path.read_text())
        if earlier.get("quick") == quick:
            return {key: earlier[key] for key in ("when", "machine", "repeats", "quick", "matmul")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    return None


def suite_order(rows: list[Row]) -> list[Row]:
    """Rows in table order: by module letter, a row's own lines in the order it gave them."""
    return sorted(rows, key=lambda r: ROWS.index(_module_letter(r.key)))


def markdown(rows: list[Row], header: dict) -> str:
    lines = [f"# Benchmark suite ({header['when']})", "",
             f"Machine: {header['machine']['machine']}, {header['machine']['cpu_threads']} threads, torch "
             f"{header['machine']['torch']} ({header['machine']['cpu_capability']}); measured fp32 matmul rate "
             f"{header['matmul']['gflops']} GFLOP/s at the start (rows a-d time their own matmuls beside the workload, "
             "under the same load). Each figure is a ratio against a baseline timed in the same run "
             f"(median of {header['repeats']} repeats, timed in turn). Rows run at another time keep "
             "theirs (column measured).", "",
             "| row | what | figure | target | met? | command | notes | measured |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        met = "n/a" if r.met is None else ("yes" if r.met else "**no**")
        figure = "-" if r.figure is None else f"{r.figure:g} {r.unit}"
        cells = [r.key, r.title, figure, r.target, met, f"`{r.command}`", r.note, r.details.get("measured", "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a "|" would split a cell
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=ROWS, help="letters of the rows to run, e.g. a,d (g comes with a)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one repeat: a smoke run, not a measurement")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per contender (default 5, quick 1)")
    parser.add_argument("--model", default=None, help="image tower for rows a, c, d (default ViT-B-16)")
    parser.add_argument("--batch", type=int, default=None, help="images per batch in rows a, c, d (default 8)")
    parser.add_argument("--compile", action="store_true", help="row a: also time torch.compile (minutes to compile)")
    parser.add_argument("--from-records", action="store_true",
                        help="rows i, j: take the standalone benchmarks' last full-size records, not measure")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    quiet()
    letters = "".join(sorted({x for x in args.rows.replace(",", "").lower() if x in ROWS + "g"}))
    letters = letters.replace("g", "") + ("a" if "g" in letters and "a" not in letters else "")
    if not letters:
        parser.error(f"--rows: pick from {ROWS}g")
    if args.from_records:
        without = [x for x, m in zip(letters, row_modules(letters)) if not hasattr(m, "from_record")]
        if args.quick or without:
            parser.error("--from-records: full-size rows with a standalone record only (i, j); "
                         + ("not with --quick" if args.quick else f"rows {','.join(without)} have none"))
    ctx = Context(quick=args.quick, repeats=args.repeats or (1 if args.quick else 5),
                  model=args.model or ("clipadapt-micro" if args.quick else "ViT-B-16"),
                  batch=args.batch or (2 if args.quick else 8), compile=args.compile)
    header = earlier_header(args.out_dir / "suite.json", ctx.quick) if args.from_records else None
    if header is None:
        header = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "repeats": ctx.repeats,
                  "quick": ctx.quick, "matmul": matmul_rate(256 if ctx.quick else 1536, 3 if ctx.quick else 7)}
    kept = earlier_rows(args.out_dir / "suite.json", letters, ctx.quick)
    rows: list[Row] = []
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for module in row_modules("".join(sorted(letters))):
        started = time.perf_counter()
        new = module.from_record(ctx) if args.from_records else module.run(ctx)
        for row in new:
            if not args.from_records:  # imported rows carry their record's time
                row.details["row_seconds"] = round(time.perf_counter() - started, 1)
                row.details["measured"] = header["when"]
            print(f"[{row.key}] {row.title}: {row.figure} {row.unit} (target {row.target}) {row.note}", flush=True)
        rows += new
        # written after every row: a long run that is stopped keeps what it measured
        table = suite_order(rows + kept)
        (args.out_dir / "suite.json").write_text(json.dumps({**header, "rows": [r.as_dict() for r in table]}, indent=2) + "\n")
        (args.out_dir / "suite.md").write_text(markdown(table, header))
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
