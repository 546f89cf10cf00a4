"""The index of data formats: each format's name and the module it lives in.

The config checks a `data.format` name, and has the format check its own `data.*`
settings, through this index; it imports no reader to do so (the one format a config
names is imported when its settings are checked). A format module declares itself with
a `DataFormat`: its reader, the check of its settings, and which of the format-specific
keys below it reads, so a key that no reader of the chosen format reads is an error, not
a setting silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from clipadapt.errors import ClipAdaptError
from clipadapt.registry import Registry

# data.* keys that only some formats read, and their default (a value other than the
# default, for a format that does not read the key, is refused).
FORMAT_SPECIFIC_KEYS: dict[str, Any] = {
    "train_manifest": None, "test_manifest": None, "val_manifest": None, "split_column": None,
    "attribute_file": None, "dataset": None, "synthetic": {}, "par": {}, "val_group_column": None,
}


@dataclass(frozen=True)
class DataFormat:
    """A data format: `read(data_config) -> (train, val, test)`, the check of its own
    settings (run when a config is loaded, before any file is read), and the
    format-specific keys (FORMAT_SPECIFIC_KEYS) it reads. `summary`: one line for
    `clipadapt list formats`. `single_label`: its attributes
    are single-label whatever data.task says (so data.task: multilabel is refused).
    `draws_shots`: the reader draws the K-shot subset itself (Dassl's draws), so
    build_splits does not."""

    read: Callable[[Any], tuple]
    check: Callable[[Any], None] | None = None
    reads: tuple[str, ...] = ()
    summary: str = ""
    single_label: bool = False
    draws_shots: bool = False


DATA_FORMATS: Registry[DataFormat | Callable] = Registry("data format")
for _name, _where in {
    "gss": "clipadapt.data.gss:GSS_FORMAT",
    "manifest": "clipadapt.data.manifest:MANIFEST_FORMAT",
    "folder": "clipadapt.data.folder:FOLDER_FORMAT",
    # Pedestrian attribute recognition: one binary attribute per column, -1 = ignored.
    "pa100k": "clipadapt.data.par.pa100k:PA100K_FORMAT",
    "peta": "clipadapt.data.par.peta:PETA_FORMAT",
    "rap": "clipadapt.data.par.rap:RAP_FORMAT",
    "wider": "clipadapt.data.par.wider:WIDER_FORMAT",
    "par-pickle": "clipadapt.data.par.par_pickle:PAR_PICKLE_FORMAT",
    # The field's classification benchmarks (data.dataset) with their split files; Dassl's K-shot subsets.
    "benchmark": "clipadapt.data.benchmark:BENCHMARK_FORMAT",
    # Rendered on first use under data.root (the demos and tests).
    "synthetic-gss": "clipadapt.synthetic.formats:SYNTHETIC_GSS",
    "synthetic-par": "clipadapt.synthetic.formats:SYNTHETIC_PAR",
    "synthetic-finegrained": "clipadapt.synthetic.formats:SYNTHETIC_FINEGRAINED",
    "synthetic-coop": "clipadapt.synthetic.formats:SYNTHETIC_COOP",
}.items():
    DATA_FORMATS.register_at(_name, _where)


def data_format(name: str) -> DataFormat:
    """The format registered as `name`; a plain reader function registered by a user is
    a format that reads no format-specific key and checks nothing up front."""
    entry = DATA_FORMATS.get(name)
    return entry if isinstance(entry, DataFormat) else DataFormat(read=entry, reads=tuple(FORMAT_SPECIFIC_KEYS))


def describe_formats() -> list[str]:
    """One line per format: its name, what it reads and the format-specific keys it takes."""
    lines = []
    for name in DATA_FORMATS.names():
        fmt = DATA_FORMATS.get(name)
        if not isinstance(fmt, DataFormat):  # a plain reader function
            lines.append(f"{name}: registered by you")
            continue
        keys = f"; keys: data.{', data.'.join(fmt.reads)}" if fmt.reads else ""
        lines.append(f"{name}: {fmt.summary or 'registered by you'}{keys}")
    return lines


def check_data_settings(data) -> None:
    """Raise one ClipAdaptError listing every problem of `data` (a DataConfig): keys its
    format does not read, data.task: multilabel for single-label classes, and what the
    format's own check finds."""
    fmt = data_format(data.format)
    problems = []
    unread = [key for key, default in FORMAT_SPECIFIC_KEYS.items()
              if key not in fmt.reads and getattr(data, key) not in (default, None)]
    if unread:
        readers = {key: [n for n in DATA_FORMATS.names() if key in _reads(n)] for key in unread}
        listed = "; ".join(f"data.{key} is read by format {' / '.join(readers[key]) or 'none'}" for key in unread)
        problems.append(f"format '{data.format}' does not read {', '.join('data.' + k for k in unread)} ({listed}). "
                        "Remove it, or set data.format to a format that reads it")
    if fmt.single_label and data.task == "multilabel":
        problems.append(f"format '{data.format}' reads single-label classes; data.task: multilabel applies to format "
                        "manifest (the pedestrian formats are multi-label already). Remove data.task")
    if fmt.check is not None:
        try:
            fmt.check(data)
        except ClipAdaptError as exc:
            problems.append(str(exc).rstrip("."))
    if problems:
        raise ClipAdaptError("; ".join(problems) + ".")


def _reads(name: str) -> tuple[str, ...]:
    try:
        entry = DATA_FORMATS.get(name)
    except ClipAdaptError:  # a format that cannot be imported reads nothing here; its own use says why
        return ()
    return entry.reads if isinstance(entry, DataFormat) else ()
