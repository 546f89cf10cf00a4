"""Renaming a method or a data format must not break saved runs: the former name resolves
to the current one, with a notice that names both."""

from __future__ import annotations

import json

import pytest

from clipadapt.backbone import create_backbone
from clipadapt.engine.checkpoint import build_card, load_run, write_checkpoint
from clipadapt.errors import ClipAdaptError, ClipAdaptWarning
from clipadapt.methods import METHODS, build_method
from clipadapt.registry import Registry
from clipadapt.task import Attribute, TaskSpec


@pytest.fixture
def renamed_probe():
    """As if `linear_probe` had once been called `probe`."""
    METHODS.alias("probe", "linear_probe")
    yield
    METHODS._aliases.pop("probe")


def test_a_run_saved_under_a_former_method_name_still_loads(tmp_path, renamed_probe):
    task = TaskSpec((Attribute("weather", ("clear", "foggy")),))
    method = build_method("linear_probe", create_backbone("clipadapt-micro", None), task, {})
    write_checkpoint(tmp_path, method, build_card(method))
    card = json.loads((tmp_path / "card.json").read_text())
    card["method"] = "probe"
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.warns(ClipAdaptWarning, match="method 'probe' is now called 'linear_probe'"):
        loaded, _ = load_run(tmp_path)
    assert loaded.name == "linear_probe"
    assert "probe" in METHODS and "probe" not in METHODS.names()


def test_an_alias_must_point_at_a_registered_name_and_not_shadow_one():
    reg = Registry("format")
    reg.register("manifest", object())
    with pytest.raises(ClipAdaptError, match="'table' is not registered"):
        reg.alias("csv", "table")
    reg.register("folder", object())
    with pytest.raises(ClipAdaptError, match="cannot shadow"):
        reg.alias("folder", "manifest")
