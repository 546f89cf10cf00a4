"""A trained run scored on another class list: another data set's test split with its class
names (methods whose classifier comes from text rebuild it), the novel classes of a
base-to-novel split, a subset of the run's classes (linear probe: its rows for those
classes), the refusal for a per-class head on classes it never saw, and ImageNet-A / -R
restricted to the classes they hold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clipadapt.config import RunConfig
from clipadapt.data.formats import build_splits
from clipadapt.engine.checkpoint import load_run
from clipadapt.errors import ClipAdaptError
from clipadapt.workflow import eval_run, train_run
from test_benchmark_datasets import WNIDS, read, write_imagenet, write_set, write_variant

pytestmark = pytest.mark.filterwarnings("ignore")


def run_config(root, dataset, method, **data) -> RunConfig:
    return RunConfig.model_validate({
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "benchmark", "dataset": dataset, "root": str(root), **data},
        "method": {"name": method}, "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "seed": 1}})


def trained(tmp_path, dataset, method, **data):
    root = write_set(tmp_path / "data", dataset)
    cfg = run_config(root, dataset, method, **data)
    return train_run(cfg, tmp_path / f"{dataset}-{method}", progress=False), cfg


@pytest.mark.parametrize("method", ["coop", "mhadapter", "clip_adapter", "zeroshot"])
def test_a_text_classifier_run_scores_another_data_set_with_its_class_names(tmp_path, method):
    outcome, _ = trained(tmp_path, "oxford_pets", method)
    target = run_config(write_set(tmp_path / "data", "dtd"), "dtd", method)
    metrics = eval_run(outcome.run_dir, target, out=tmp_path / "eval-dtd", progress=False)
    assert metrics["attributes"]["class"]["n"] == 9  # dtd's 3 classes x 3 test images
    assert "rebuilt" in metrics["notes"][0] and "3 classes (trained on 3)" in metrics["notes"][0]
    predictions = (tmp_path / "eval-dtd" / "predictions.csv").read_text()
    assert "banded" in predictions and "abyssinian" not in predictions  # dtd's names, not the pets'
    method_obj, _ = load_run(outcome.run_dir)  # the run folder itself is unchanged
    assert method_obj.task.attributes[0].classes[0] == "abyssinian"
    assert json.loads((tmp_path / "eval-dtd" / "metrics.json").read_text())["notes"] == metrics["notes"]


def test_the_rebuilt_classifier_keeps_the_trained_tensors_and_uses_the_new_prompts(tmp_path):
    from clipadapt.engine.class_lists import method_for_classes

    outcome, _ = trained(tmp_path, "oxford_pets", "coop")
    method, _ = load_run(outcome.run_dir)
    dtd = read(write_set(tmp_path / "data", "dtd"), "dtd")
    scored, notes = method_for_classes(method, dtd.task, "run")
    assert torch.equal(scored.contexts[0], method.contexts[0])
    assert scored.prompts()["class"][0].endswith("banded.")
    assert scored.task.attributes[0].classes == ("banded", "blotchy", "braided")


def test_base_to_novel_scores_the_novel_classes_of_a_base_run(tmp_path):
    outcome, cfg = trained(tmp_path, "oxford_pets", "mhadapter", class_subset="base")
    assert outcome.card["task"]["attributes"][0]["classes"] == ["abyssinian", "american_bulldog"]  # ceil(3 / 2)
    novel = cfg.model_copy(update={"data": cfg.data.model_copy(update={"class_subset": "novel"})})
    metrics = eval_run(outcome.run_dir, novel, out=tmp_path / "novel", progress=False)
    assert metrics["attributes"]["class"]["n"] == 3  # the novel class's test images
    assert metrics["attributes"]["class"]["accuracy"] == 1.0  # one class: every prediction is it
    table = (tmp_path / "novel" / "predictions.csv").read_text().splitlines()
    assert table[0].startswith("path,class:true,class") and all(",bengal,bengal," in row for row in table[1:])


def test_a_per_class_head_is_refused_for_classes_it_was_not_trained_on(tmp_path):
    outcome, _ = trained(tmp_path, "oxford_pets", "linear_probe")
    target = run_config(write_set(tmp_path / "data", "dtd"), "dtd", "linear_probe")
    with pytest.raises(ClipAdaptError) as excinfo:
        eval_run(outcome.run_dir, target, out=tmp_path / "eval-dtd", progress=False)
    message = str(excinfo.value)
    assert "method 'linear_probe' has a trained output per class" in message
    assert "'banded', 'blotchy', 'braided'" in message and "coop, clip_adapter, mhadapter" in message


def test_a_per_class_head_scores_a_subset_of_its_classes(tmp_path):
    outcome, cfg = trained(tmp_path, "oxford_pets", "linear_probe")
    novel = cfg.model_copy(update={"data": cfg.data.model_copy(update={"class_subset": "novel"})})
    metrics = eval_run(outcome.run_dir, novel, out=tmp_path / "novel", progress=False)
    assert "outputs for those classes only" in metrics["notes"][0]
    assert metrics["attributes"]["class"]["accuracy"] == 1.0  # restricted to the one novel class


def test_imagenet_a_and_r_are_scored_over_the_classes_they_hold(tmp_path):
    imagenet = write_imagenet(tmp_path)
    cfg = run_config(imagenet, "imagenet", "linear_probe")
    outcome = train_run(cfg, tmp_path / "imagenet-probe", progress=False)
    for key, present in (("imagenet_a", [1, 3]), ("imagenet_r", [0, 2])):
        root = write_variant(tmp_path, key)
        splits = build_splits(run_config(root, key, "linear_probe").data)
        assert splits.task.attributes[0].classes == tuple(WNIDS[k][1] for k in present)  # relabelled 0, 1
        assert sorted(set(splits.test.labels[:, 0].tolist())) == [0, 1]
        metrics = eval_run(outcome.run_dir, run_config(root, key, "linear_probe"), out=tmp_path / key, progress=False)
        probs = [c for c in (tmp_path / key / "predictions.csv").read_text().splitlines()[0].split(",") if ":p" in c]
        assert len(probs) == 2 and metrics["notes"]  # a 2-way softmax over the classes present
        whole = build_splits(run_config(root, key, "linear_probe", restrict_to_present_classes=False).data)
        assert whole.task.attributes[0].num_classes == 4  # ImageNet's label space, as read
        assert np.array_equal(np.sort(np.unique(whole.test.labels[:, 0])), present)


def test_other_attribute_names_are_still_refused(tmp_path):
    from clipadapt.engine.class_lists import method_for_classes
    from clipadapt.task import Attribute, TaskSpec

    outcome, _ = trained(tmp_path, "oxford_pets", "coop")
    method, _ = load_run(outcome.run_dir)
    with pytest.raises(ClipAdaptError, match=r"predicts attributes \['class'\], but the data has \['species'\]"):
        method_for_classes(method, TaskSpec((Attribute("species", ("a", "b")),)), "run")


def test_eval_config_on_the_command_line_says_how_it_scored(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from clipadapt.cli.main import app

    outcome, cfg = trained(tmp_path, "oxford_pets", "clip_adapter")
    other = tmp_path / "dtd.yaml"
    other.write_text(yaml.safe_dump(run_config(write_set(tmp_path / "data", "dtd"), "dtd", "clip_adapter")
                                    .model_dump(mode="json")))
    result = CliRunner().invoke(app, ["eval", str(outcome.run_dir), "--config", str(other), "--out",
                                      str(tmp_path / "eval-dtd"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "note: scored with the data's class list (class: 3 classes (trained on 3)): clip_adapter's text side " \
           "was rebuilt" in " ".join(result.output.split())
    probe, _ = trained(tmp_path, "oxford_pets", "linear_probe")
    result = CliRunner().invoke(app, ["eval", str(probe.run_dir), "--config", str(other), "--quiet"])
    assert result.exit_code == 2 and "has a trained output per class" in result.output
