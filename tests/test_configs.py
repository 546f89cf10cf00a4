"""Every shipped config loads, names a registered method and data format, and its
method parameters validate; relative paths resolve against the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipadapt.config import load_config
from clipadapt.data.attribute_sets import read_attribute_file
from clipadapt.data.formats import DATA_FORMATS
from clipadapt.methods import METHODS

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))
PROTOCOLS = [p for p in CONFIGS if p.name.endswith("-protocol.yaml")]  # `clipadapt bench` files
RUN_CONFIGS = [p for p in CONFIGS if not p.name.endswith(("-attributes.yaml", "-protocol.yaml"))]


def test_configs_exist():
    names = {p.relative_to(p.parents[1]).as_posix() for p in RUN_CONFIGS}
    assert {"par/pa100k.yaml", "par/peta.yaml", "par/rapv1.yaml", "par/rapv2.yaml", "par/wider.yaml",
            "par/peta-zs.yaml", "par/rap-zs.yaml", "gss/mhadapter-weather.yaml"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_config_validates(path):
    cfg = load_config(path)
    assert cfg.data.format in DATA_FORMATS.names()
    METHODS.get(cfg.method.name).parse_params(cfg.method.params)


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_bench_protocol_validates(path, tmp_path):
    from clipadapt.protocols import read_protocol

    protocol = read_protocol(path, [f"data.root={tmp_path}"])  # every cell's config, nothing rendered
    assert protocol.cells and all(cell.config.data.format in DATA_FORMATS.names() for cell in protocol.cells)


def test_custom_attribute_file_is_found_next_to_its_config():
    cfg = load_config(Path(__file__).parent.parent / "configs" / "par" / "custom-manifest.yaml")
    attributes = read_attribute_file(cfg.data.attribute_file)
    assert [a.name for a in attributes][:2] == ["hard_hat", "hi_vis"]
    assert attributes[0].prompts() == ["A worker with a bare head", "A worker wearing a hard hat"]
    assert attributes[1].prompts()[0] == "Not a worker wearing a high-visibility vest"
