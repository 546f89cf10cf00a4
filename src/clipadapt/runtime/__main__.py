"""`python -m clipadapt.runtime IMAGES --model model.onnx --out preds.csv`: predict with an
exported ONNX file, without torch (the same table as `clipadapt predict`)."""

from __future__ import annotations

import argparse
import sys

from clipadapt.errors import ClipAdaptError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipadapt.runtime", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="Image folders, files, glob patterns or manifests (CSV/Parquet).")
    parser.add_argument("--model", "-m", required=True, help="An .onnx file written by `clipadapt export`.")
    parser.add_argument("--out", "-o", default="predictions.csv", help=".csv or .parquet")
    parser.add_argument("--batch-size", type=int, default=64, help="Images per forward pass.")
    parser.add_argument("--num-workers", type=int, default=0, help="Images decoded at a time, in threads (0: one).")
    parser.add_argument("--threshold", type=float, default=None,
                        help="Multi-label models: present when p > threshold (default: the run's).")
    parser.add_argument("--on-bad-image", choices=("skip", "fail"), default="skip")
    parser.add_argument("--decode", choices=("draft", "full"), default="draft")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime's intra-op threads (default: all cores).")
    args = parser.parse_args(argv)
    from clipadapt.data.inputs import collect_images
    from clipadapt.predict.tables import write_predictions
    from clipadapt.runtime.model import OnnxModel
    from clipadapt.runtime.predict import predict_onnx

    try:
        paths = [p for spec in args.inputs for p in collect_images(spec)]
        table = predict_onnx(OnnxModel(args.model, threads=args.threads), paths, batch_size=args.batch_size,
                             threshold=args.threshold, on_bad_image=args.on_bad_image, decode=args.decode,
                             num_workers=args.num_workers)
        skipped, listed = write_predictions(table, args.out)
    except ClipAdaptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(table)} rows to {args.out}; {len(skipped)} of {len(table)} images skipped"
          + (f" (listed with the reason in {listed})" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
