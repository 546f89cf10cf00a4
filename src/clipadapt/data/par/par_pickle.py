"""The `par-pickle` format: the field's dataset_all.pkl / pad.pkl / dataset_zs_run0.pkl,
read through the restricted unpickler, or their safe converted copy.

`convert_par_pickle(src, dst_dir)` reads such a pickle once, explicitly, and writes
`par.json` (names, partitions, sentences) + `labels.npy`; the reader prefers that copy
whenever it finds one, so day-to-day runs read no pickle at all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from clipadapt.config import DataConfig
from clipadapt.data.par.options import ParOptions, check_par_settings, dataset_root, par_options, under_root
from clipadapt.data.par.partitions import as_splits, choose
from clipadapt.data.par.record import ParRecord, record_from_fields
from clipadapt.data.par.safe_unpickle import load_plain_pickle
from clipadapt.data.par.table import ParTable, to_splits
from clipadapt.data.paths import is_inside
from clipadapt.io import atomic_write
from clipadapt.errors import ClipAdaptError
from clipadapt.format_index import DataFormat

CONVERTED = "par.json"
LABELS = "labels.npy"
FORMAT_VERSION = 1
# The field's file names, most specific first; found under data.root when data.par.annotation is unset.
PICKLE_NAMES = ("pad.pkl", "dataset_all.pkl", "dataset_zs_pad.pkl", "dataset_zs_run0.pkl", "dataset.pkl")
_SENTENCE_TABLES = {"pa100k": "pa100k", "peta": "peta", "rap": "rap", "rap2": "rap2", "wider": "wider"}


def read_par_pickle(cfg: DataConfig, options: ParOptions | dict | None = None):
    """(train, val, test) LabelledImages of a PAR pickle or its converted copy."""
    opts = par_options(cfg, options)
    root = dataset_root(cfg, "par-pickle", "the PAR pickle (or its converted par.json)")
    source = _find_source(root, opts)
    record = load_record(source)
    return to_splits(record_table(record, source, root, opts), cfg, opts.check_images)


PAR_PICKLE_FORMAT = DataFormat(read=read_par_pickle, check=check_par_settings, reads=("par",),
                               summary="a pedestrian-attribute pickle (dataset_all.pkl) or its converted copy")


def load_record(source: Path) -> ParRecord:
    """A ParRecord from a .pkl (restricted unpickler) or a converted folder / par.json."""
    source = Path(source)
    if source.is_dir():
        source = source / CONVERTED
    if source.suffix.lower() == ".json":
        return _read_converted(source)
    return record_from_fields(load_plain_pickle(source), str(source))


def convert_par_pickle(src: Path | str, dst_dir: Path | str) -> Path:
    """Write the safe equivalent of a PAR pickle: dst_dir/par.json + dst_dir/labels.npy.

    Returns the path of par.json. The files are written next to each other under
    temporary names and renamed, so an interrupted conversion leaves no half copy.
    """
    record = load_record(Path(src))
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    labels = record.labels.astype(np.int64) if np.all(np.mod(record.labels, 1) == 0) else record.labels
    document = {
        "clipadapt_par": FORMAT_VERSION,
        "converted_from": Path(src).name,
        "description": record.description,
        "root": record.root,
        "image_name": record.image_names,
        "attr_name": record.attr_names,
        "attributes": record.sentences,
        "label_idx_eval": record.eval_index,
        "partition": {k: [a.tolist() for a in v] for k, v in record.partition.items()},
        "labels": LABELS,
    }
    _atomic(dst / LABELS, lambda f: np.save(f, labels, allow_pickle=False))
    _atomic(dst / CONVERTED, lambda f: f.write(json.dumps(document).encode("utf-8")))
    return dst / CONVERTED


def record_table(record: ParRecord, source: Path, root: Path, opts: ParOptions) -> ParTable:
    rows = {}
    for split, partitions in record.partition.items():
        rows[split] = choose(partitions, opts.split_index, f"{source.name}: partition.{split}")
    return ParTable(
        dataset=record.description.upper() or source.name,
        source=source,
        image_names=record.image_names,
        labels=record.labels,
        names=record.attr_names,
        default_columns=record.default_columns(),
        value_map={1: 1, 0: 0, -1: -1, 2: opts.uncertain_label},
        splits=as_splits(rows),
        image_root=_image_root(record, root, opts),
        sentences=_SENTENCE_TABLES.get(record.description.lower()),
        extra_sentences=record.sentence_map(),
    )


# ----------------------------------------------------------------- locating files
def _find_source(root: Path, opts: ParOptions) -> Path:
    if opts.annotation is not None:
        return under_root(root, opts.annotation)
    if (root / CONVERTED).is_file():
        return root / CONVERTED
    found = [root / n for n in PICKLE_NAMES if (root / n).is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ClipAdaptError(
            f"No PAR annotation under {root}: looked for {CONVERTED} and {', '.join(PICKLE_NAMES)}. "
            "Set data.par.annotation to the file."
        )
    raise ClipAdaptError(
        f"Several PAR annotation files under {root} ({', '.join(p.name for p in found)}); they describe different "
        "splits. Choose one with data.par.annotation."
    )


def _image_root(record: ParRecord, root: Path, opts: ParOptions) -> Path:
    """data.par.image_dir, else the file's own root if it exists inside data.root, else a folder of
    the same name under data.root (e.g. Pad_datasets/), else data.root itself."""
    chosen = under_root(root, opts.image_dir)
    if chosen is not None:
        return chosen
    candidates = []
    # The file names its own image folder; a file from elsewhere must not steer a run to a
    # folder outside data.root (data.par.image_dir can, being the user's own setting).
    if record.root:
        if is_inside(record.root, root):
            candidates.append(Path(record.root))
        leaf = re.split(r"[\\/]", record.root.rstrip("\\/"))[-1]
        if leaf not in ("", ".", ".."):
            candidates.append(root / leaf)
    candidates.append(root)
    first = record.image_names[0] if record.image_names else ""
    for candidate in candidates:
        if first and (candidate / first).is_file():
            return candidate
    existing = [c for c in candidates if c.is_dir()]
    return existing[0] if existing else root  # to_splits names the folder if images are missing


# ----------------------------------------------------------------- converted copy
def _read_converted(path: Path) -> ParRecord:
    if not path.is_file():
        raise ClipAdaptError(f"Converted PAR annotation not found: {path}.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipAdaptError(f"Cannot read {path} as JSON: {exc}. Convert the pickle again.") from None
    if not isinstance(document, dict) or document.get("clipadapt_par") != FORMAT_VERSION:
        raise ClipAdaptError(f"{path} is not a converted PAR annotation (format {FORMAT_VERSION}); convert the pickle again.")
    labels_path = path.parent / str(document.get("labels", LABELS))
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ClipAdaptError(f"Cannot read the label matrix {labels_path}: {exc}. Convert the pickle again.") from None
    fields = {
        "description": document.get("description", ""),
        "root": document.get("root", ""),
        "image_name": document.get("image_name"),
        "attr_name": document.get("attr_name"),
        "attributes": document.get("attributes"),
        "label": labels,
        "partition": {k: [np.asarray(a, dtype=np.int64) for a in v] for k, v in (document.get("partition") or {}).items()},
    }
    if document.get("label_idx_eval") is not None:
        fields["label_idx"] = {"eval": document["label_idx_eval"]}
    return record_from_fields(fields, str(path))


def _atomic(path: Path, write) -> None:
    def write_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write(path, write_file)
