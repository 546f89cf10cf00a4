"""Issue 27: a run folder's files are named once (clipadapt.run_files) and written by one
writer (RunFolder, which the engine writes through)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from clipadapt.engine.run_state import RunState
from clipadapt.run_files import RunFiles

SRC = Path(__file__).resolve().parents[1] / "src" / "clipadapt"
NAMES = {value for key, value in vars(RunFiles).items() if key.isupper()}


def _string_constants(path: Path) -> set[str]:
    """The plain string literals of a module that are exactly a run-folder file name."""
    tree = ast.parse(path.read_text())
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in NAMES}


@pytest.mark.parametrize("module", ["workflow/run_folder.py", "workflow/train.py", "engine/trainer.py",
                                    "engine/loop.py", "engine/checkpoint.py", "engine/run_state.py",
                                    "protocols/runner.py", "data/bad_images.py"])
def test_the_writers_and_the_engine_spell_no_file_name(module):
    assert _string_constants(SRC / module) == set(), f"{module} spells a run-folder file name: use RunFiles"


def test_a_run_state_writes_best_and_resume_under_the_one_names(tmp_path):
    files = RunState(tmp_path)
    files.save_best({"w": torch.ones(2)})
    files.save_resume({"model.w": torch.zeros(2)}, {"epoch": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([RunFiles.CHECKPOINT, RunFiles.RESUME_STATE])
    assert torch.equal(files.read_best()["w"], torch.ones(2))
    assert files.read_resume()[1] == {"epoch": 3}


def test_a_rank_that_does_not_write_writes_nothing(tmp_path):
    files = RunState(tmp_path, write=False)
    files.save_best({"w": torch.ones(2)})
    files.save_resume({"w": torch.ones(2)}, {"epoch": 1})
    files.record_skipped([])
    assert list(tmp_path.iterdir()) == []


# A card as today's code wrote it before cards had a version (an untyped dict in card.json).
VERSION_1 = {
    "method": "linear_probe", "params": {}, "backbone": {"name": "clipadapt-micro", "weights_id": "random"},
    "task": {"attributes": [{"name": "weather", "classes": ["clear", "rainy"]}]}, "prompts": [],
    "preprocessing": {"image_size": 32, "test": "Resize(32)"}, "seed": 3,
    "config": {"train": {"threshold": 0.45}}, "source": {"imported_from": "x.pth"},
}


def test_a_card_without_a_version_is_read_as_version_1(tmp_path):
    import json

    from clipadapt.engine.card import CARD_VERSION
    from clipadapt.engine.checkpoint import read_card

    (tmp_path / RunFiles.CARD).write_text(json.dumps(VERSION_1))
    card = read_card(tmp_path)
    assert card.version == 1 and card.method == "linear_probe" and card.seed == 3
    assert card.threshold == 0.45 and card.extra == {"source": {"imported_from": "x.pth"}}
    assert card.to_dict() == {**VERSION_1, "version": CARD_VERSION}  # written back, nothing lost


def test_the_typed_card_round_trips_and_reads_like_the_dict(tmp_path):
    from clipadapt.engine.card import RunCard

    card = RunCard.from_dict(VERSION_1)
    card["metrics"] = {"accuracy": 0.5}  # code written against the dict card still works
    again = RunCard.from_dict(card.to_dict())
    assert again == RunCard.from_dict(card.to_dict()) and again.metrics == {"accuracy": 0.5}
    assert again["backbone"]["name"] == "clipadapt-micro" and again.get("calibration") is None
    assert RunCard.from_dict({k: v for k, v in VERSION_1.items() if k != "config"}).threshold == 0.5
