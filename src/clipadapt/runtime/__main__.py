"""`python -m clipadapt.runtime IMAGES --model model.onnx --out preds.csv`: predict with an
exported ONNX file, without torch (the same table as `clipadapt predict --model`).

It runs the code of `clipadapt predict --model` (workflow/predict.py `predict_run`): a
manifest's id and coordinates (or the columns --keep names, or coordinates joined from
--metadata by uuid) travel with the rows, boxes in frames are cut, a track column adds
OUT-STEM.tracks.csv, and Parquet output with coordinates is GeoParquet. argparse, not
typer: the torch-free install (docs/export.md) has numpy, Pillow, onnxruntime and pandas."""

from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from clipadapt.errors import ClipAdaptError, ClipAdaptWarning


def _whole(least: int, what: str):
    """An argparse type: an integer of at least `least`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number ({what})") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least} ({what})")
        return value
    return parse


def _probability(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]: the threshold is a probability")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The options: the names of `clipadapt predict --model`'s, with the same meaning."""
    parser = argparse.ArgumentParser(prog="python -m clipadapt.runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="Image folders, files, glob patterns or manifests (CSV/Parquet).")
    parser.add_argument("--model", "-m", required=True, help="An .onnx file written by `clipadapt export`.")
    parser.add_argument("--out", "-o", default="predictions.csv",
                        help=".csv or .parquet (GeoParquet when the rows carry lat and lon); with a track column "
                             "also OUT-STEM.tracks.csv, one row per track.")
    parser.add_argument("--keep", metavar="COL[,COL...]", default=None,
                        help="Manifest columns to carry, right after path: names, 'all' or 'none' (default: uuid or "
                             "id, a box's columns and track, and lat/lon as lat and lon, when the manifest has them).")
    parser.add_argument("--metadata", type=Path, default=None,
                        help="A CSV/Parquet of uuid, lat, lon (as GSS's metadata tables): coordinates for rows "
                             "without them, matched by uuid (or the image file name's stem).")
    parser.add_argument("--batch-size", type=_whole(1, "images per forward pass"), default=64,
                        help="Images per forward pass.")
    parser.add_argument("--num-workers", type=_whole(0, "decoding threads"), default=0,
                        help="Images decoded at a time, in threads (0: one).")
    parser.add_argument("--threshold", type=_probability, default=None,
                        help="Multi-label models: present when p > threshold (default: the run's).")
    parser.add_argument("--on-bad-image", choices=("skip", "fail"), default="skip",
                        help="skip: an unusable image gets ok=false and is listed, with the reason, in a CSV next "
                             "to OUT; fail: it stops the job.")
    parser.add_argument("--decode", choices=("draft", "full"), default="draft",
                        help="draft: large JPEGs are decoded at reduced scale straight to about the model's input "
                             "size (fast); full: every pixel is decoded first.")
    parser.add_argument("--threads", type=_whole(1, "onnxruntime threads"), default=None,
                        help="onnxruntime's intra-op threads (default: all cores).")
    return parser


@contextmanager
def _warning_lines():
    """Show every warning raised meanwhile as one `warning: ...` line on stderr (as the
    clipadapt CLI does, without its rich console, which the torch-free install lacks)."""
    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        if not issubclass(category, ClipAdaptWarning):
            text = f"{category.__name__}: {text}"
        print(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the command on `argv` (None: sys.argv); 0 when the tables were written, 2 on a
    ClipAdaptError (printed as one `error:` line)."""
    args = build_parser().parse_args(argv)
    # predict_run imports no torch on the --model path (tests/test_runtime_parity.py blocks it)
    from clipadapt.workflow.predict import PredictOptions, predict_run

    options = PredictOptions(batch_size=args.batch_size, num_workers=args.num_workers, threshold=args.threshold,
                             on_bad_image=args.on_bad_image, decode=args.decode, threads=args.threads)
    try:
        with _warning_lines():
            outcome = predict_run(args.inputs, args.out, model=args.model, options=options, progress=False,
                                  keep=args.keep, metadata=args.metadata)
    except ClipAdaptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in outcome.lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
