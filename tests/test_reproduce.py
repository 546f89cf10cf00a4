"""`clipadapt reproduce`: a table's recipe runs as resumable run folders on the synthetic
CoOp layout (the embedded tiny CLIP, few shots, two seeds, two epochs), each published
figure gets a verdict that this file recomputes from the run folders' own metrics, a
data set missing under --data is listed with how to get it while the rest runs, a second
invocation (also after an interruption) trains nothing already finished, and every
shipped table validates with a source for its figures, each in [0, 100]."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.engine.trainer import SupervisedSteps
from clipadapt.errors import ClipAdaptError
from clipadapt.reproduce import Options, load_table, plan_table, shipped_tables
from clipadapt.reproduce.compare import FLOOR, verdict
from clipadapt.reproduce.tables import BASE_TO_NOVEL, PERCENT_METRICS
from clipadapt.synthetic.coop_layout import write_coop_birds

pytestmark = pytest.mark.filterwarnings("ignore")
SYNTHETIC = Path(__file__).resolve().parent / "synthetic-birds-table.yaml"
TINY = ["--set", "backbone.name=clipadapt-tiny", "--set", "backbone.pretrained=embedded", "--set", "train.device=cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """$DATA with the birds as caltech-101/ (16 train, 4 val, 5 test images per class) and no dtd/."""
    base = tmp_path_factory.mktemp("data")
    write_coop_birds(base, n_train=16, n_val=4, n_test=5)
    return base


def invoke(*args: str):
    result = CliRunner().invoke(app, ["reproduce", *args, "--quiet"])
    assert result.exit_code == 0, result.output
    return result


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def recomputed(folders: list[Path], metric: str, published: float) -> tuple[float, str]:
    """The verdict from the runs' metrics.json alone: mean over seeds, sample sd, the rule."""
    values = [100 * json.loads((f / "metrics.json").read_text())["mean"][metric] for f in folders]
    mean = sum(values) / len(values)
    tolerance = max(2 * statistics.stdev(values), 0.5) if len(values) > 1 else 0.5
    if abs(mean - published) <= tolerance:
        return mean, "within"
    return mean, "above" if mean > published else "below"


def test_recipe_runs_compare_with_verdicts_list_the_missing_set_and_resume(data, tmp_path):
    out = tmp_path / "out"
    first = invoke(str(SYNTHETIC), "--data", str(data), "--out", str(out))
    assert "5 runs trained, 0 already finished" in first.output  # zero-shot once, linear probe and CoOp x 2 seeds
    report = json.loads((out / "comparison.json").read_text())
    rows = {(r["method"], r["dataset"], r["metric"]): r for r in report["rows"]}
    folders = {"zeroshot": [out / "caltech101/zeroshot/zero-shot"],
               **{m: [out / f"caltech101/{m}/4shot-seed{s}" for s in (1, 2)] for m in ("linear_probe", "coop")}}
    judged = 0
    for (method, dataset, metric), row in rows.items():
        if row["published"] is None or row["verdict"] == "not run":
            continue
        mean, said = recomputed(folders[method], metric, row["published"])
        assert row["verdict"] == said and row["mean"] == pytest.approx(mean), row
        judged += 1
    assert judged == 4
    assert rows[("zeroshot", "caltech101", "accuracy")]["verdict"] == "below"  # 99 % is out of the tiny CLIP's reach
    assert rows[("linear_probe", "caltech101", "accuracy")]["verdict"] == "above"  # and 1 % below chance
    # (a "wide spread" note for the data set may follow: the two seeds' runs are 2 epochs long)
    assert rows[("zeroshot", "caltech101", "accuracy")]["notes"][0] == "one run: the method does not train"
    assert rows[("coop", "caltech101", "accuracy")]["verdict"] == "no published figure"
    assert rows[("coop", "caltech101", "macro_f1")]["verdict"] == "no published figure"  # ours, with no figure
    assert len(rows[("coop", "caltech101", "accuracy")]["values"]) == 2
    for cell in (("zeroshot", "dtd", "accuracy"), ("coop", "dtd", "accuracy")):
        assert rows[cell]["verdict"] == "not run" and "DTD is not under" in " ".join(rows[cell]["notes"])
    (missing,) = {(b["dataset"], b["why"], b["how_to_get_it"]) for b in report["not_run"]}
    assert missing[0] == "dtd" and str(data / "dtd" / "split_zhou_DescribableTextures.json") in missing[1]
    assert "dtd-r1.0.1.tar.gz" in missing[2] and "DATASETS.md#dtd" in missing[2]
    markdown = (out / "comparison.md").read_text()
    assert "| linear_probe | caltech101 | accuracy | above |" in markdown and "Not run here" in markdown
    assert "max(2 x sd over the seeds, 0.5 points)" in markdown and "invented for the test" in markdown
    page = (out / "comparison.html").read_text()
    assert "<table>" in page and "<script" not in page and 'src="http' not in page
    assert (out / "comparison.csv").read_text().count("\n") == len(rows) + 1
    assert (out / "table.md").is_file()  # the bench's own paper-style table beside it

    finished = snapshot(out / "caltech101")
    again = invoke(str(SYNTHETIC), "--data", str(data), "--out", str(out))
    assert "0 runs trained, 5 already finished" in again.output
    assert snapshot(out / "caltech101") == finished  # not one file of a finished run rewritten
    assert json.loads((out / "comparison.json").read_text())["rows"] == report["rows"]


def test_coop_16shot_on_the_synthetic_coop_layout_resumes_after_an_interruption(data, tmp_path, monkeypatch):
    """The acceptance line: the shipped coop-16shot table, shrunk to the tiny CLIP, two
    seeds, two epochs and two of its data sets (caltech101 is the birds, dtd is absent)."""
    out = tmp_path / "out"
    args = ["coop-16shot", "--data", str(data), "--out", str(out), *TINY, "--set", "train.epochs=2",
            "--seeds", "1,2", "--datasets", "caltech101,dtd"]
    epochs = []
    real_epoch = SupervisedSteps.start_epoch

    def killed(self, *a, **k):  # the third epoch is seed 2's first: the grid is killed there
        epochs.append(1)
        if len(epochs) == 3:
            raise KeyboardInterrupt
        return real_epoch(self, *a, **k)

    monkeypatch.setattr(SupervisedSteps, "start_epoch", killed)
    stopped = CliRunner().invoke(app, ["reproduce", *args, "--quiet"])
    assert stopped.exit_code != 0 and not (out / "comparison.md").exists()
    done = {name: snapshot(out / "caltech101" / name) for name in ("zeroshot", "coop/16shot-seed1")}

    epochs.clear()
    result = invoke(*args)
    assert "1 run trained, 2 already finished" in result.output and len(epochs) == 2
    assert {name: snapshot(out / "caltech101" / name) for name in done} == done
    markdown = (out / "comparison.md").read_text()
    assert "| coop | caltech101 | accuracy | no published figure |" in markdown
    assert "| zeroshot, coop | dtd | DTD is not under" in markdown  # listed, not dropped
    assert "| coop | imagenet |" not in markdown and "left out 18" in markdown  # --datasets: counted, not shown
    listed = invoke(*args, "--dry-run").output.splitlines()
    assert [line.split()[0] for line in listed[:3]] == ["done"] * 3 and listed[3].startswith("blocked  dtd / ")


def test_weights_neither_on_disk_nor_downloadable_are_listed_with_the_fix(data, tmp_path, monkeypatch):
    import open_clip.pretrained

    def not_cached(*args, **kwargs):
        raise FileNotFoundError("not in the cache")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub does not answer
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", not_cached)  # whatever this machine caches
    plan = plan_table("coop-16shot", Options(data=data, datasets=["caltech101"]), tmp_path / "out")
    assert plan.protocol.cells == [] and {b.method for b in plan.blocked} == {"zeroshot", "coop"}
    (missing,) = {b.missing for b in plan.blocked}
    assert "ViT-B-16-quickgelu:openai" in missing.reason and "--weights PATH" in missing.fetch
    local = tmp_path / "ViT-B-16.safetensors"
    plan = plan_table("coop-16shot", Options(data=data, datasets=["caltech101"], weights=str(local)), tmp_path / "out")
    assert {b.missing.reason for b in plan.blocked} == {f"the weights file {local} does not exist"}


def test_list_prints_every_shipped_table_with_its_source():
    result = invoke("--list")
    for path in shipped_tables():
        table = load_table(path).table
        assert f"{table.name}  {table.title}" in result.output
        assert f"{table.source.paper}, arXiv {table.source.arxiv}, {table.source.table}" in result.output
        assert f"kind: {table.kind}; cells: {len(table.cells)}" in result.output


@pytest.mark.parametrize("path", shipped_tables(), ids=lambda p: p.stem)
def test_every_shipped_table_validates_and_plans(path, tmp_path, monkeypatch):
    """Every table in the folder, the other tables' authors' included: the schema, a
    source for its figures, each figure in [0, 100] of a metric the kind allows, and a
    recipe whose every run config validates (planned against an empty --data)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    table = load_table(path).table
    assert table.name == path.stem and table.source.paper and table.source.arxiv and table.source.table
    assert table.source.checked.strip()
    if any(table.figure(*cell) is not None for cell in table.cells):  # a shipped figure says where it was read
        assert table.source.read_from and all(where.strip() for where in table.source.read_from)
    allowed = BASE_TO_NOVEL if table.kind == "base_to_novel" else PERCENT_METRICS
    for method, dataset, metric in table.cells:
        figure = table.figure(method, dataset, metric)
        assert metric in allowed and (figure is None or 0 <= figure <= 100), (method, dataset, metric, figure)
    plan = plan_table(path, Options(data=tmp_path / "empty"), tmp_path / "out")
    assert plan.protocol.cells == [] and plan.blocked  # nothing is here: every cell listed with its reason


OTHER_KINDS = {
    "standard": {"kind": "standard", "metrics": ["accuracy"], "recipe": {
        "set": {"backbone.name": "clipadapt-tiny", "backbone.pretrained": "embedded", "train.device": "cpu",
                "data.format": "benchmark", "data.shots": 4, "train.epochs": 1},
        "methods": ["linear_probe"], "datasets": ["caltech101"], "seeds": [1, 2]},
        "published": {"linear_probe": {"caltech101": {"accuracy": 1.0}}}},
    "base_to_novel": {"kind": "base_to_novel", "metrics": ["base", "novel", "H"], "recipe": {
        "set": {"backbone.name": "clipadapt-tiny", "backbone.pretrained": "embedded", "train.device": "cpu"},
        "methods": ["zeroshot"], "datasets": ["caltech101"], "shots": 4, "epochs": {4: 1}},
        "published": {"zeroshot": {"caltech101": {"base": 1.0, "novel": 99.0, "H": None}}}},
    "label_free": {"kind": "label_free", "metrics": ["accuracy"], "recipe": {
        "set": {"backbone.name": "clipadapt-tiny", "backbone.pretrained": "embedded", "train.device": "cpu",
                "data.format": "synthetic-finegrained", "data.root": "finegrained",
                "data.synthetic": {"n_train_per_class": 4, "n_test_per_class": 3, "image_size": 32},
                "train.epochs": 1, "train.batch_size": 16},
        "methods": ["microclip"], "datasets": ["birds"], "seeds": [1]},
        "published": {"microclip": {"birds": {"accuracy": 1.0}}}},
}


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_the_other_kinds_run_and_resume_through_the_same_runner(kind, data, tmp_path):
    from clipadapt.reproduce import reproduce

    spec = dict(OTHER_KINDS[kind], unchecked=[])
    path = write_table(tmp_path, name="synthetic-birds-table", **spec)
    outcome = reproduce(path, Options(data=data), tmp_path / "out")
    rows = {(r.method, r.dataset, r.metric): r for r in outcome.rows}
    assert outcome.ran == len(outcome.results) > 0 and not outcome.plan.blocked
    if kind == "base_to_novel":
        base, novel, h = (rows[("zeroshot", "caltech101", m)] for m in ("base", "novel", "H"))
        assert (base.verdict, novel.verdict, h.verdict) == ("above", "below", "no published figure")
        assert h.mean == pytest.approx(2 * base.mean * novel.mean / (base.mean + novel.mean))
    else:
        (row,) = rows.values()
        assert row.verdict == "above" and 0 < row.mean <= 100 and row.n == len(spec["recipe"]["seeds"])
    again = reproduce(path, Options(data=data), tmp_path / "out")
    assert again.ran == 0 and [r.verdict for r in again.rows] == [r.verdict for r in outcome.rows]


def test_transfer_scores_the_targets_that_are_here_and_lists_the_one_that_is_not(tmp_path):
    from clipadapt.reproduce import reproduce
    from test_benchmark_datasets import write_set

    for dataset in ("oxford_pets", "dtd"):
        write_set(tmp_path / "data", dataset)
    path = write_table(tmp_path, kind="transfer", metrics=["accuracy"], unchecked=[], recipe={
        "set": {"backbone.name": "clipadapt-micro", "backbone.pretrained": None, "train.device": "cpu",
                "train.batch_size": 8},
        "methods": {"coop": {"method.params.n_ctx": 2}}, "datasets": ["oxford_pets", "dtd", "eurosat"],
        "source": "oxford_pets", "shots": 2, "seeds": [1], "epochs": {2: 1}},
        published={"coop": {"oxford_pets": {"accuracy": 1.0}, "dtd": {"accuracy": 1.0}, "eurosat": {"accuracy": 1.0}}})
    outcome = reproduce(path, Options(data=tmp_path / "data"), tmp_path / "out")
    (result,) = outcome.results
    assert list(result.cell.evaluations) == ["dtd"]  # eurosat is not here: not scored, listed
    assert [r.dataset for r in outcome.rows] == ["oxford_pets", "dtd", "eurosat"]  # the recipe's order
    assert [r.verdict in ("within", "above", "below") for r in outcome.rows] == [True, True, False]
    assert outcome.rows[2].verdict == "not run"
    assert {(b.method, b.dataset) for b in outcome.plan.blocked} == {("coop", "eurosat")}
    scored = json.loads((tmp_path / "out/oxford_pets/coop/2shot-seed1/eval-dtd/metrics.json").read_text())
    assert outcome.rows[1].mean == pytest.approx(100 * scored["mean"]["accuracy"])


def test_the_rule_and_its_floor():
    assert verdict(70.0, 1.0, 71.9) == (2.0, "within")  # 2 sd
    assert verdict(70.0, 1.0, 72.1) == (2.0, "below")
    assert verdict(70.0, 0.1, 70.4) == (FLOOR, "within")  # the floor, not 2 x 0.1
    assert verdict(70.0, None, 69.4) == (FLOOR, "above")  # one seed: the floor alone


def write_table(folder: Path, **changes) -> Path:
    raw = yaml.safe_load(SYNTHETIC.read_text())
    raw.update(changes)
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize(("changes", "message"), [
    ({"published": {"coop": {"caltech101": {"accuracy": 120.0}}}},
     r"'published.coop.caltech101.accuracy': 120.0 is outside \[0, 100\]"),
    ({"published": {"coop": {"cub200": {"accuracy": 50.0}}}}, r"'published.coop.cub200': the recipe has no data set"),
    ({"metrics": ["acuracy"]}, r"'metrics': 'acuracy' is not a metric"),
    ({"unchecked": ["coop/caltech101: why"]}, r"'unchecked\[0\]'"),
    ({"source": {"paper": "p", "arxiv": "2109.01134", "table": "1"}}, r"'source.checked'"),
    ({"name": "other-name"}, r"'name': is 'other-name', but the file is"),
    ({"recipe": {"methods": ["coop"], "datasets": ["caltech101"], "shots": [4, 8]}}, r"'recipe.shots' must be one K"),
])
def test_a_broken_table_is_one_error_naming_the_file_and_key(tmp_path, changes, message):
    name = changes.pop("name", None)
    path = write_table(tmp_path, **changes)
    if name:
        path = path.rename(tmp_path / "synthetic-birds-table.yaml")
        raw = yaml.safe_load(path.read_text())
        raw["name"] = name
        path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ClipAdaptError, match=message) as caught:
        load_table(path)
    assert str(path) in str(caught.value)
