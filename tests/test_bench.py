"""`clipadapt bench`: a protocol file becomes a grid of run folders; a grid killed in the middle
of a cell resumes where it stopped (finished cells untouched, the interrupted run resumed from
its last epoch, the rest filled); base-to-novel and transfer tables; the refusal of a
per-class head for classes it never trained on; the outputs (Markdown, CSV, HTML + figure)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clipadapt.protocols import cell_state, read_protocol, run_protocol
from clipadapt.protocols.page import write_outputs
from clipadapt.protocols.tables import harmonic_mean, tables
from clipadapt.cli.main import app
from clipadapt.engine.trainer import SupervisedSteps
from clipadapt.errors import ClipAdaptError
from test_benchmark_datasets import write_set

pytestmark = pytest.mark.filterwarnings("ignore")
MICRO = {"backbone.name": "clipadapt-micro", "backbone.pretrained": None, "train.device": "cpu",
         "train.batch_size": 8}


def protocol_file(tmp_path: Path, **spec) -> Path:
    for dataset in ("oxford_pets", "dtd"):
        write_set(tmp_path / "data", dataset)
    spec.setdefault("set", MICRO)
    spec.setdefault("datasets", {"oxford_pets": {"data.root": "data/oxford_pets"}, "dtd": {"data": {"root": "data/dtd"}}})
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_killed_grid_resumes_where_it_stopped(tmp_path, monkeypatch):
    path = protocol_file(tmp_path, methods=["zeroshot", "linear_probe"], shots=[1, 2], seeds=[1, 2],
                         epochs={1: 3, 2: 3})
    protocol = read_protocol(path)
    names = [str(c.folder) for c in protocol.cells]
    assert names[:5] == ["oxford_pets/zeroshot/zero-shot", "oxford_pets/linear_probe/1shot-seed1",
                         "oxford_pets/linear_probe/1shot-seed2", "oxford_pets/linear_probe/2shot-seed1",
                         "oxford_pets/linear_probe/2shot-seed2"] and len(names) == 10
    cell = protocol.cells[4]
    assert (cell.config.data.shots, cell.config.data.split_seed, cell.config.train.seed) == (2, 2, 2)
    assert cell.config.train.epochs == 3 and cell.config.data.root == tmp_path / "data" / "oxford_pets"
    out = tmp_path / "out"

    epochs, kill_at = [], [11]
    real_epoch = SupervisedSteps.start_epoch

    def killed(self, *args, **kwargs):  # the 11th epoch is the 2nd of the 4th training cell: killed there
        epochs.append(1)
        if len(epochs) == kill_at[0]:
            raise RuntimeError("killed")
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(SupervisedSteps, "start_epoch", killed)
    with pytest.raises(RuntimeError, match="killed"):
        run_protocol(protocol, out)
    states = [cell_state(out, c) for c in protocol.cells]
    assert states == ["done"] * 4 + ["started"] + ["new"] * 5
    assert (out / names[4] / "resume.safetensors").is_file()  # its first epoch
    finished = {name: snapshot(out / name) for name in names[:4]}

    epochs.clear()
    kill_at[0] = None
    results = run_protocol(read_protocol(path), out)
    assert [r.ran for r in results] == [False] * 4 + [True] * 6
    assert len(epochs) == 2 + 4 * 3  # the interrupted cell's last two epochs, then four new cells
    assert {name: snapshot(out / name) for name in names[:4]} == finished  # not touched, not re-run
    assert len(json.loads((out / names[4] / "history.json").read_text())) == 3
    assert all(cell_state(out, c) == "done" for c in protocol.cells)

    epochs.clear()
    again = run_protocol(read_protocol(path, ["features.dir=" + str(tmp_path / "elsewhere")]), out)
    assert not any(r.ran for r in again) and not epochs  # a finished grid only re-reads
    assert [r.scores for r in again] == [r.scores for r in results]
    with pytest.raises(ClipAdaptError, match=r"linear_probe/1shot-seed1 was run with other settings .*train.lr: 0.0005 -> 0.5"):
        run_protocol(read_protocol(path, ["train.lr=0.5"]), out)  # its scores would not be the protocol's


def test_a_zero_shot_method_is_one_cell_per_data_set_shown_at_every_k(tmp_path):
    path = protocol_file(tmp_path, methods=["zeroshot"], shots=[1, 2], seeds=[1, 2, 3])
    protocol = read_protocol(path)
    assert [str(c.folder) for c in protocol.cells] == ["oxford_pets/zeroshot/zero-shot", "dtd/zeroshot/zero-shot"]
    results = run_protocol(protocol, tmp_path / "out")
    (table,) = tables(protocol, results)
    assert table.header == ["data set", "method", "1 shot", "2 shots"]
    assert table.rows[0][2] == table.rows[0][3] and table.rows[2][0] == "average of 2"


def test_base_to_novel_through_the_command_line(tmp_path):
    path = protocol_file(tmp_path, protocol="base_to_novel", methods={"zeroshot": None, "coop": {"method.params.n_ctx": 2}},
                         datasets={"oxford_pets": {"data.root": "data/oxford_pets"}}, shots=2, seeds=[1, 2],
                         epochs={2: 2})
    result = CliRunner().invoke(app, ["bench", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    cell = out / "oxford_pets" / "coop" / "base-2shot-seed1"
    assert json.loads((cell / "card.json").read_text())["task"]["attributes"][0]["classes"] == [
        "abyssinian", "american_bulldog"]  # trained on the base half
    assert json.loads((cell / "eval-novel" / "metrics.json").read_text())["attributes"]["class"]["n"] == 3
    assert "| data set | method | base | novel | H |" in result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    coop = {r["scored_on"]: r for r in rows if r["method"] == "coop"}
    assert set(coop) == {"base", "novel", "H (harmonic mean)"} and coop["base"]["n"] == "2"
    b, n = float(coop["base"]["mean"]), float(coop["novel"]["mean"])
    assert float(coop["H (harmonic mean)"]["mean"]) == pytest.approx(harmonic_mean(b, n), abs=1e-3)
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Base-to-novel" in page
    assert "| coop |" in (out / "table.md").read_text()
    listed = CliRunner().invoke(app, ["bench", str(path), "--out", str(out), "--dry-run"])
    assert listed.exit_code == 0 and listed.output.split().count("done") == 3  # zero-shot + 2 seeds of coop
    assert "(+ scored on novel)" in listed.output


def test_transfer_scores_each_target_with_its_own_class_names(tmp_path):
    path = protocol_file(tmp_path, protocol="transfer", source="oxford_pets", methods=["mhadapter"], shots=2,
                         seeds=[1], epochs={2: 2})
    protocol = read_protocol(path)
    (cell,) = protocol.cells
    assert list(cell.evaluations) == ["dtd"] and cell.evaluations["dtd"].data.dataset == "dtd"
    results = run_protocol(protocol, tmp_path / "out")
    assert set(results[0].scores) == {"test", "dtd"}
    predictions = (tmp_path / "out" / "oxford_pets" / "mhadapter" / "2shot-seed1" / "eval-dtd" / "predictions.csv")
    assert "banded" in predictions.read_text()
    made = write_outputs(protocol, results, tmp_path / "out")
    assert made[0].header == ["method", "oxford_pets (source)", "dtd", "average (targets)"]


def test_protocols_that_score_unseen_classes_refuse_a_per_class_head(tmp_path):
    path = protocol_file(tmp_path, protocol="base_to_novel", methods=["coop", "linear_probe"])
    with pytest.raises(ClipAdaptError, match="method 'linear_probe' has a trained output per class"):
        read_protocol(path)


def test_a_mistake_in_any_cell_is_reported_before_anything_runs(tmp_path):
    path = protocol_file(tmp_path, methods={"coop": {"method.params.n_ctxx": 2}}, shots=[1], seeds=[1])
    with pytest.raises(ClipAdaptError, match="n_ctxx"):
        read_protocol(path)
    path = protocol_file(tmp_path, methods=["coop"], shots=[3], seeds=[1])
    with pytest.raises(ClipAdaptError, match="epochs has no entry for 3 shots"):
        read_protocol(path)
    assert not (tmp_path / "out").exists()


def test_few_shot_mhadapter_beats_zero_shot_on_birds_in_a_coop_layout(tmp_path):
    """The learning check: synthetic birds rendered in CoOp's Caltech101 layout (split_zhou
    file, data.format synthetic-coop, read as format benchmark), the embedded tiny CLIP, which
    knows the class names (zero-shot is above the 10 % of chance) but not the body colour each
    species also has (species_tones); 16 shots of MHAdapter learn it. About 40 s."""
    path = tmp_path / "protocol.yaml"
    path.write_text(yaml.safe_dump({
        "set": {"backbone.name": "clipadapt-tiny", "backbone.pretrained": "embedded", "train.device": "cpu",
                "train.lr": 1e-3, "train.warmup_epochs": 2, "data.format": "synthetic-coop", "data.root": "birds",
                "data.synthetic": {"species_tones": True, "n_test": 20}},
        "methods": ["zeroshot", "mhadapter"], "datasets": ["birds"], "shots": [16], "seeds": [1], "epochs": {16: 20}}))
    protocol = read_protocol(path)
    results = run_protocol(protocol, tmp_path / "out")
    split = json.loads((tmp_path / "birds" / "caltech-101" / "split_zhou_Caltech101.json").read_text())
    assert [len(split[s]) for s in ("train", "val", "test")] == [160, 40, 200]
    zero_shot, adapted = (r.scores["test"]["accuracy"] for r in results)
    assert 0.2 < zero_shot < 0.55  # knows the names, not the colours (measured 0.38)
    assert adapted > zero_shot + 0.1, (zero_shot, adapted)  # measured 0.62 (20 epochs; 0.615 at 30)
