"""Work split into shards of rows, each written as one Parquet file: the unit of
distribution and of resumption.

A shard's file appears only once complete (written to a hidden temporary name, then
renamed), so "the file exists" means "the shard is done": a rerun skips those shards.
`_plan.json` records what the shards were cut from (job kind, inputs, shard size);
a rerun into the same folder with other inputs is refused rather than mixing results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clipadapt.io import atomic_write, write_json
from clipadapt.errors import ClipAdaptError

PLAN_FILE = "_plan.json"  # leading underscore: Parquet dataset readers skip it
DEFAULT_SHARD_SIZE = 4096


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of a job's row list, written to `name`."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"part-{self.index:06d}.parquet"  # zero-padded: file order is row order


@dataclass(frozen=True)
class ShardPlan:
    """How a job's rows are cut: `rows` rows in shards of `shard_size`, for `inputs`
    (a digest of what the rows are, so a folder never mixes two jobs' results). With
    `group_rows`, no shard crosses a multiple of it (one shard, one augmented view)."""

    kind: str
    rows: int
    shard_size: int
    inputs: str
    group_rows: int | None = None

    def shards(self) -> list[Shard]:
        """Every shard of the plan, in row order."""
        group = self.group_rows or max(self.rows, 1)
        shards: list[Shard] = []
        for first in range(0, self.rows, group):
            end = min(first + group, self.rows)
            for start in range(first, end, self.shard_size):
                shards.append(Shard(len(shards), start, min(start + self.shard_size, end)))
        return shards


def digest(*parts) -> str:
    """Short sha256 of JSON-able parts (paths, settings): the identity of a job's inputs."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def make_plan(kind: str, rows: int, shard_size: int, *inputs, group_rows: int | None = None) -> ShardPlan:
    """A plan for `rows` rows; `inputs` (paths, settings...) identify the job."""
    if shard_size < 1:
        raise ClipAdaptError(f"--shard-size must be >= 1, got {shard_size}.")
    return ShardPlan(kind, int(rows), int(shard_size), digest(kind, *inputs), group_rows)


def claim_folder(out: Path, plan: ShardPlan) -> None:
    """Create `out` for `plan`, or check that the shards already there were made by the same plan."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ClipAdaptError(f"{out} is a file; the Ray engine writes Parquet shards into a folder. Give --out FOLDER.")
    plan_file = out / PLAN_FILE
    if plan_file.is_file():
        try:
            recorded = json.loads(plan_file.read_text())
        except ValueError:
            recorded = None
        if recorded != asdict(plan):
            raise ClipAdaptError(
                f"{out} holds shards of another job ({plan_file} differs: other inputs, checkpoint or shard size). "
                "Choose another --out folder, or delete this one to start over."
            )
        return
    if out.is_dir() and any(out.glob("part-*.parquet")):
        raise ClipAdaptError(f"{out} holds Parquet shards but no {PLAN_FILE}; choose another --out folder.")
    out.mkdir(parents=True, exist_ok=True)
    write_json(plan_file, asdict(plan))


def pending(out: Path, plan: ShardPlan) -> list[Shard]:
    """The shards of `plan` whose file is not in `out` yet."""
    return [s for s in plan.shards() if not (Path(out) / s.name).is_file()]


def write_shard(out: Path, shard: Shard, table: pd.DataFrame | pa.Table, metadata: dict | None = None) -> Path:
    """Write one shard atomically (`metadata`: JSON-able, kept in the file's schema metadata)."""
    arrow = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
    if metadata:
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                               b"clipadapt": json.dumps(metadata).encode()})
    path = Path(out) / shard.name
    atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))
    return path


def shard_metadata(path: Path) -> dict:
    """The `metadata` a shard was written with ({} if none)."""
    raw = (pq.read_schema(path).metadata or {}).get(b"clipadapt")
    return json.loads(raw) if raw else {}


def read_shards(out: Path, shards: Sequence[Shard] | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of a shard folder in row order (all its part files, or `shards`)."""
    out = Path(out)
    files = [out / s.name for s in shards] if shards is not None else sorted(out.glob("part-*.parquet"))
    if not files:
        raise ClipAdaptError(f"No Parquet shards (part-*.parquet) in {out}.")
    return pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)
