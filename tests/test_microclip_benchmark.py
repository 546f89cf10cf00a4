"""`clipadapt adapt` (microCLIP) on a field benchmark (`data.format: benchmark`), with class
descriptions in the forms the field publishes: CuPL's files ({class name: [sentences]},
names as the data set's class list spells them) and the microCLIP authors' files (the same
form, names in title case with spaces: "Apply Eye Makeup" for UCF101's Apply_Eye_Makeup).
Names match ignoring case, spaces and underscores; classes without sentences are listed in
one error before any work."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from clipadapt.backbone import create_backbone
from clipadapt.cli.main import app
from clipadapt.config import validate_config
from clipadapt.workflow import adapt_run
from clipadapt.errors import ClipAdaptError
from test_benchmark_datasets import write_set

pytestmark = pytest.mark.filterwarnings("ignore")

MICROCLIP_STYLE = {  # gpt_4o_descriptions/ucf101.json of the microCLIP repository: title case, spaces
    "Apply Eye Makeup": ["Apply Eye Makeup: a brush near the eyelid.", "A close-up of an eye with eyeshadow."],
    "Apply Lipstick": ["Apply Lipstick: a woman holds a lipstick tube near her lips."],
    "Archery": ["An archer draws the bowstring back.", "Archery: an arrow rests on the bow."],
    "Basketball": ["A player shoots a basketball."],  # a class the fixture does not have: ignored
}
CUPL_STYLE = {  # CuPL's files: the class list's own spelling (here the split file's)
    "Apply_Eye_Makeup": ["A photo of someone applying eye makeup."],
    "Apply_Lipstick": ["A photo of someone applying lipstick."],
    "Archery": ["A photo of archery."],
}


def adapt_config(root, descriptions) -> dict:
    return {"backbone": {"name": "clipadapt-micro", "pretrained": None},
            "data": {"format": "benchmark", "dataset": "ucf101", "root": str(root)},
            "method": {"name": "microclip", "params": {"crops": 1, "randaugment": None, "descriptions": str(descriptions)}},
            "train": {"epochs": 1, "batch_size": 8, "device": "cpu"}}


@pytest.mark.parametrize("style", [MICROCLIP_STYLE, CUPL_STYLE], ids=["microclip-authors", "cupl"])
def test_adapt_reads_a_benchmark_with_published_description_files(tmp_path, style):
    root = write_set(tmp_path / "data", "ucf101")
    described = tmp_path / "ucf101.json"
    described.write_text(json.dumps(style))
    cfg = validate_config(adapt_config(root, described), source="test")
    outcome = adapt_run(cfg, tmp_path / "run", progress=False, backbone=create_backbone("clipadapt-micro", None))
    per_class = outcome.card["heads"]["descriptions_per_class"]
    assert list(per_class) == ["apply_eye_makeup", "apply_lipstick", "archery"]  # the data set's classes, in order
    wanted = [style[k] for k in style if k != "Basketball"]
    assert list(per_class.values()) == [len(v) for v in wanted]  # sentences per class
    assert list(outcome.card["params"]["descriptions"].values()) == wanted  # the file's sentences, re-keyed
    assert outcome.card["data"] == {"format": "benchmark", "train": 15, "val": 0, "test": 9, "train_labels_used": False}
    assert set(outcome.comparison) >= {"zeroshot_templates", "zeroshot_descriptions", "microclip"}


def test_classes_without_sentences_are_listed_in_one_error_before_any_work(tmp_path):
    root = write_set(tmp_path / "data", "ucf101")
    described = tmp_path / "ucf101.json"
    described.write_text(json.dumps({"Archery": ["An archer."], "Apply Eye-Makeup": ["Eyeshadow."]}))
    config = tmp_path / "adapt.yaml"
    config.write_text(yaml.safe_dump(adapt_config(root, described)))
    result = CliRunner().invoke(app, ["adapt", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "has no descriptions for 2 of 3 classes: 'apply_eye_makeup' (closest: 'Apply Eye-Makeup')" in message
    assert "'apply_lipstick'" in message and "ignores case, spaces and underscores" in message
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    with pytest.raises(ClipAdaptError, match="no descriptions for 2 of 3 classes"):
        adapt_run(validate_config(adapt_config(root, described), source="test"), tmp_path / "run2", progress=False,
                  backbone=create_backbone("clipadapt-micro", None))
