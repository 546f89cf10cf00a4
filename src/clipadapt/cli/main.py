"""`clipadapt` commands: train, eval, predict, extract, info, demo, import-mhadapter, list, serve."""

from __future__ import annotations

import json
import sys
import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from clipadapt.cli import help_format  # noqa: F401 - long words in --help fold instead of being cut
from clipadapt.cli.predict_command import predict_command
from clipadapt.data.policy import BadImagePolicy
from clipadapt.cli.engine_options import (
    ENGINE, RAY_ACTORS, RAY_ADDRESS, SHARD_SIZE, Engine, extraction_engine,
)
from clipadapt.cli.common import (
    RUN_FOLDER, console, out_console, parse_seeds, print_metrics, quiet_libraries, require_path, run_safely,
    skip_by_default,
)
from clipadapt.errors import ClipAdaptError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Adapt frozen CLIP models to attribute and fine-grained classification.")


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML run config (see configs/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting, e.g. --set train.lr=1e-3 (repeatable)."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds: one run per seed in OUT/seed-<s>, plus mean ± std."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in OUT from its last finished epoch."),
    restart: bool = typer.Option(False, help="Discard the progress of an interrupted run in OUT and start over "
                                             "(without --resume or --restart, such a folder is refused)."),
    on_bad_image: Optional[BadImagePolicy] = typer.Option(
        None, help="An unusable image stops the run (fail) or is left out and listed in OUT/skipped_images.csv "
                   "(skip). Default: data.on_bad_image of the config (fail)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Train a method, select on validation, evaluate on test and write the run folder."""
    from clipadapt.config import load_config

    def go():
        policy = [f"data.on_bad_image={on_bad_image.value}"] if on_bad_image else []
        cfg = load_config(config, [*set_, *policy])
        from clipadapt.workflow import train_run  # torch: only once the config is good
        if seeds:
            return _train_seeds(cfg, out, seeds, resume, quiet, restart)
        outcome = train_run(cfg, out, resume=resume, progress=not quiet, restart=restart, notify=_note)
        if outcome.card is None:  # a rank > 0 of a torchrun job: rank 0 reports
            return
        print_metrics(outcome.metrics, title=f"{cfg.method.name}: test")
        out_console.print(f"run folder: {outcome.run_dir}")

    run_safely(go)


def _note(message: str) -> None:
    """One 'note:' line on stderr (where a resumed run starts, what --restart discarded)."""
    console.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)


def _train_seeds(cfg, out: Path, seeds: str, resume: bool, quiet: bool, restart: bool = False):
    """`train --seeds`: the runs and the summary are the workflow's; this prints the table."""
    from clipadapt.metrics.aggregate import format_mean_std
    from clipadapt.metrics.table import HEADLINE
    from clipadapt.workflow import train_seeds

    outcome = train_seeds(cfg, out, parse_seeds(seeds), resume=resume, progress=not quiet, restart=restart,
                          notify=_note)
    if not (outcome.written and outcome.runs):
        return
    table = Table(title=f"{cfg.method.name}: test, mean ± std over {outcome.runs} seeds")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in HEADLINE:
        entry = outcome.summary["mean"][key]
        table.add_row(key, format_mean_std(entry["mean"], entry["std"]))
    out_console.print(table)


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder written by `clipadapt train`."),
    config: Optional[Path] = typer.Option(None, help="Data to evaluate on (default: the run's own config); another "
                                          "data set's or the novel classes need a method whose classifier comes from "
                                          "the class names (docs/benchmarks.md)."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting of the config."),
    out: Optional[Path] = typer.Option(None, help="Where to write metrics (default RUN_DIR/eval)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    retrieval: Optional[str] = typer.Option(None, "--retrieval", help="Also score attribute search: a text file "
                                            "with one query per line (e.g. Female & Backpack), or `default` (every "
                                            "attribute, and the 20 most frequent pairs); AP, R@k (docs/search.md)."),
):
    """Evaluate a trained run on a test split: metrics, confusion matrices, predictions."""
    from clipadapt.config import load_config, validate_overridden

    def go():
        require_path(run_dir, RUN_FOLDER)
        from clipadapt.engine.checkpoint import read_card  # torch: only once RUN_DIR is there
        from clipadapt.workflow import eval_run

        if config is not None:
            cfg = load_config(config, set_)
        else:
            cfg = validate_overridden(read_card(run_dir).config, set_, source=f"{run_dir}/card.json")
        if retrieval:  # a bad query fails now, not after the evaluation
            from clipadapt.search.retrieval import check_queries

            check_queries(retrieval, read_card(run_dir).task)
        started = time.time()
        metrics = eval_run(run_dir, cfg, out=out, progress=not quiet, retrieval=retrieval)
        for note in metrics.get("notes", []):  # another class list than the run's: how it was scored
            console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
        print_metrics(metrics, title=f"{run_dir}: test")
        if "retrieval" in metrics:
            from clipadapt.cli.search_command import print_retrieval

            print_retrieval(metrics["retrieval"])
        from clipadapt.run_files import RunFiles

        results = Path(out or Path(run_dir) / RunFiles.EVAL)
        written = sorted(p.name for p in results.iterdir() if p.is_file() and p.stat().st_mtime >= started - 1)
        out_console.print(f"wrote {len(written)} files to {results}: {', '.join(written)}", highlight=False, soft_wrap=True)

    run_safely(go)


app.command("predict")(predict_command)


@app.command()
def extract(
    config: Path = typer.Argument(..., help="YAML run config."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting."),
    on_bad_image: BadImagePolicy = skip_by_default("skip: unusable images are left out and listed in the store "
                                                    "entries; fail: the first one stops. Training reuses these "
                                                    "features only with the same data.on_bad_image."),
    engine: Engine = ENGINE,
    ray_address: Optional[str] = RAY_ADDRESS,
    ray_actors: Optional[int] = RAY_ACTORS,
    shard_size: int = SHARD_SIZE,
    shards: Optional[Path] = typer.Option(None, "--shards", help="--engine ray: folder for the Parquet shards "
                                                                  "(default: <feature store>/.ray-shards)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Fill the feature store for a config's splits ahead of training."""
    from clipadapt.config import load_config

    def go():
        cfg = load_config(config, [*set_, f"data.on_bad_image={on_bad_image.value}"])
        from clipadapt.workflow import extract_run  # torch: only once the config is good
        ray = extraction_engine(engine, ray_address, ray_actors, shard_size, shards)
        done = extract_run(cfg, progress=not quiet, ray=ray)
        if on_bad_image is BadImagePolicy.skip:
            from clipadapt.features.skip_lists import record_skipped_in_entries

            skipped, lists = record_skipped_in_entries(cfg, done)
            console.print(f"{len(skipped)} images skipped" + (f", listed in {', '.join(map(str, lists))}" if skipped else ""),
                          highlight=False, soft_wrap=True)
        out_console.print_json(json.dumps(done))

    run_safely(go)


@app.command()
def info(
    method: str = typer.Option("mhadapter", help="Method name (see `clipadapt list`)."),
    backbone: str = typer.Option("clipadapt-tiny", help="open_clip model name."),
    pretrained: Optional[str] = typer.Option(None, help="Weights (default: random; the count does not depend on them)."),
    attribute: str = typer.Option("weather", help="GSS attribute whose classes size the heads."),
    set_: List[str] = typer.Option([], "--set", help="Method params, e.g. --set heads=8."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Trainable and total parameters of a method on a backbone, its tap, and the feature-store size per image."""
    from clipadapt.backbone import open_backbone
    from clipadapt.config import apply_overrides
    from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
    from clipadapt.features.store import describe_per_image_bytes
    from clipadapt.methods import build_method
    from clipadapt.task import TaskSpec

    def go():
        quiet_libraries()
        if attribute not in GSS_SCHEMA:
            raise ClipAdaptError(f"--attribute must be one of {sorted(GSS_SCHEMA)}, got '{attribute}'.")
        bb = open_backbone(backbone, pretrained)
        task = TaskSpec((gss_attribute(attribute, GSS_SCHEMA[attribute][1]),))
        m = build_method(method, bb, task, apply_overrides({}, set_))
        needs = m.needs()
        token_shape = (bb.num_patches, bb.width) if needs.tap_block else None
        report = {
            "method": method, "backbone": backbone, "attribute": attribute, "classes": task.attributes[0].num_classes,
            "trainable_parameters": m.num_trainable(),
            "total_parameters": sum(p.numel() for p in m.parameters()),
            "backbone_parameters": sum(p.numel() for p in bb.parameters()),
            "tap": {"block": needs.tap_block, "of_blocks": bb.num_blocks,
                    "tokens_shape": list(token_shape) if token_shape else None},
            "feature_store": {"cacheable": needs.frozen_image_path,
                              "bytes_per_image": describe_per_image_bytes(token_shape, bb.embed_dim, 1) if needs.frozen_image_path else 0,
                              "holds": ("fp16 patch tokens " + "x".join(map(str, token_shape)) + " + " if token_shape else "")
                              + f"fp32 embedding {bb.embed_dim}"},
        }
        if as_json:
            out_console.print_json(json.dumps(report))
        else:
            for k, v in report.items():
                out_console.print(f"[bold]{k}[/]: {v}")

    run_safely(go)


@app.command("list")
def list_cmd(what: str = typer.Argument("methods", help="methods | backbones | formats")):
    """List registered methods, backbones or data formats."""
    def go():
        if what == "methods":
            from clipadapt.methods import describe_methods
            names = describe_methods()
        elif what == "backbones":
            from clipadapt.backbone.families import backbones_by_family
            from clipadapt.methods import METHODS  # each method says which families it runs on
            names = backbones_by_family([METHODS.get(m) for m in METHODS.names()])
        elif what == "formats":
            from clipadapt.format_index import describe_formats
            names = describe_formats()
        else:
            raise ClipAdaptError(f"Can list methods, backbones or formats, not '{what}'.")
        out_console.print("\n".join(names))

    run_safely(go)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for the data and the runs."),
    task: str = typer.Option("gss", help="gss (street-view attributes), par (pedestrian attributes, PromptPAR), "
                                         "unsupervised (fine-grained birds without labels, microCLIP) or city "
                                         "(street views on a synthetic city, mapped per H3 cell)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="--task unsupervised: self-training seeds, e.g. 0,1,2 "
                                        "(the table shows the mean and sd over them; default 0)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
):
    """Offline demo: render a synthetic data set (street views; pedestrians with --task par;
    look-alike birds with --task unsupervised), train CLIP-MHAdapter / PromptPAR / microCLIP
    and the baselines on it with the embedded tiny CLIP, and print a comparison table."""
    from clipadapt.cli.demo import run_demo

    def go():
        return run_demo(out, task=task, progress=not quiet, console=out_console,
                        seeds=parse_seeds(seeds) if seeds is not None else None)

    run_safely(go)


@app.command("import-mhadapter")
def import_mhadapter(
    checkpoint_file: Path = typer.Argument(..., help="The authors' Dassl checkpoint (model.pth.tar-N)."),
    attribute: str = typer.Option(..., help="GSS attribute the checkpoint was trained for."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    backbone: str = typer.Option("ViT-B-16-quickgelu", help="The CLIP model the checkpoint was trained on."),
    pretrained: Optional[str] = typer.Option("openai", help="Its weights: an open_clip tag or a local file."),
    beta: float = typer.Option(0.2, help="The blend weight the authors trained with."),
    heads: int = typer.Option(4, help="Attention heads of the authors' adapter."),
):
    """Convert an authors' CLIP-MHAdapter checkpoint into a clipadapt run folder (no pickled code runs)."""
    def go():
        require_path(checkpoint_file, ("", "Pass the authors' Dassl checkpoint (model.pth.tar-N)."))
        from clipadapt.importers.dassl_mhadapter import import_mhadapter_checkpoint

        path = import_mhadapter_checkpoint(checkpoint_file, attribute, None, backbone, pretrained, beta, heads, out)
        out_console.print(f"wrote {path}")

    run_safely(go)


class ImportPreprocess(str, Enum):
    resize = "resize"
    letterbox = "letterbox"


@app.command("import-promptpar")
def import_promptpar(
    checkpoint_file: Path = typer.Argument(..., help="The PromptPAR authors' checkpoint (.pth)."),
    attributes: Optional[Path] = typer.Option(
        None, help="YAML/JSON of the checkpoint's attributes in head order: names + the sentences it was trained with."),
    dataset: Optional[str] = typer.Option(
        None, help="Or a standard attribute set in file order: pa100k, peta, rap, rap2, wider (clipadapt's sentences)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write."),
    backbone: Optional[str] = typer.Option(None, help="open_clip name of the CLIP inside (default: inferred)."),
    overlap: int = typer.Option(2, min=0, help="Patch rows shared by neighbouring strips (authors' overlap_row)."),
    fusion_heads: Optional[int] = typer.Option(None, min=1, help="Heads of the fusion block (default width/64)."),
    preprocess: ImportPreprocess = typer.Option(
        ImportPreprocess.resize, help="resize: the authors' test transform (crop resized straight to 224 x 224). "
        "letterbox: raw crops padded to a centred black square first, as the authors' padded data sets are."),
):
    """Convert a PromptPAR authors' checkpoint into a clipadapt run folder (no pickled code runs);
    it decides at the authors' threshold, 0.45 (`clipadapt predict --threshold` changes it)."""
    from clipadapt.data.attribute_sets import read_attribute_file
    from clipadapt.task import TaskSpec

    def go():
        if (attributes is None) == (dataset is None):
            raise ClipAdaptError("Give exactly one of --attributes FILE or --dataset NAME.")
        require_path(checkpoint_file, ("", "Pass the PromptPAR authors' checkpoint (.pth)."))
        require_path(attributes)
        from clipadapt.importers.promptpar import import_promptpar_checkpoint, standard_task

        task = (TaskSpec(tuple(read_attribute_file(attributes)), multilabel=True) if attributes is not None
                else standard_task(dataset))
        path = import_promptpar_checkpoint(checkpoint_file, task, out, backbone_name=backbone, overlap=overlap,
                                           fusion_heads=fusion_heads, preprocess=preprocess.value,
                                           notify=lambda message: console.print(f"note: {escape(message)}",
                                                                                highlight=False, soft_wrap=True))
        out_console.print(f"wrote {path}")

    run_safely(go)


# Reporting commands live in their own module; registered here so `clipadapt --help` lists them.
from clipadapt.cli.adapt_command import adapt_command  # noqa: E402
from clipadapt.cli.aggregate_command import aggregate_command  # noqa: E402
from clipadapt.cli.bench_command import bench_command  # noqa: E402
from clipadapt.cli.describe_command import describe_command  # noqa: E402
from clipadapt.cli.export_command import export_command  # noqa: E402
from clipadapt.cli.report_commands import explain_command, report_command  # noqa: E402
from clipadapt.cli.reproduce_command import reproduce_command  # noqa: E402
from clipadapt.cli.search_command import search_command  # noqa: E402
from clipadapt.cli.serve_command import serve_command  # noqa: E402

app.command("report")(report_command)
app.command("explain")(explain_command)
app.command("describe")(describe_command)
app.command("adapt")(adapt_command)
app.command("serve")(serve_command)
app.command("bench")(bench_command)
app.command("export")(export_command)
app.command("aggregate")(aggregate_command)
app.command("reproduce")(reproduce_command)
app.command("search")(search_command)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
