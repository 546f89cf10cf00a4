"""The README's Quick start, as written, runs offline to a finished run; trying another
method is one override."""

from __future__ import annotations

import json
import re
import shlex
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.config import load_config
from clipadapt.errors import ClipAdaptWarning

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[list[str]]:
    """The first command block of the README's Quick start, one argv per line (without 'clipadapt')."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("clipadapt ")]


def image_folder(root: Path, per_class: dict[str, int]) -> None:
    """Two visibly different classes of 48-px photos-to-be: a bright disc on grey ('face')
    and dark noise ('background')."""
    rng = np.random.default_rng(0)
    for split, scale in (("train", 1), ("test", 0.4)):
        for name, count in per_class.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(max(2, int(count * scale))):
                pixels = rng.integers(0, 60, (48, 48, 3)).astype(np.uint8)
                if name == "face":
                    yy, xx = np.mgrid[:48, :48]
                    pixels[(yy - 24) ** 2 + (xx - 24) ** 2 < 200] = 220
                    pixels[pixels < 100] += 80
                Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("the Quick start must not reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_readme_quick_start_runs_offline_as_written(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(ROOT)  # the commands name configs/ relative to the clone
    image_folder(tmp_path / "photos", {"face": 20, "background": 20})
    replace = {"/data/my_images": str(tmp_path / "photos"), "/data/new_images": str(tmp_path / "photos" / "test"),
               "runs/mine": str(tmp_path / "runs" / "mine"), "predictions.parquet": str(tmp_path / "p.parquet")}
    commands = quick_start_commands()
    assert [argv[0] for argv in commands] == ["train", "eval", "predict"]
    for argv in commands:
        argv = [replace.get(a, a.replace("/data/my_images", replace["/data/my_images"])) for a in argv]
        result = CliRunner().invoke(app, [*argv, "--quiet"])
        assert result.exit_code == 0, f"clipadapt {' '.join(argv)}\n{result.output}"
    card = json.loads((tmp_path / "runs" / "mine" / "card.json").read_text())
    assert card["backbone"]["pretrained"] == "embedded"
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    assert metrics["mean"]["accuracy"] > 0.75  # the two classes are easy: the probe learns them
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "p.parquet")) == 16


def _switched(config: str, overrides: list[str]):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(ROOT / config, overrides)
    return cfg, [str(w.message) for w in caught if issubclass(w.category, ClipAdaptWarning)]


def test_switching_the_method_drops_the_other_methods_params_with_a_notice():
    cfg, notes = _switched("configs/gss/mhadapter-weather.yaml", ["method.name=linear_probe"])
    assert cfg.method.name == "linear_probe" and cfg.method.params == {}
    assert len(notes) == 1 and "dropped method.params" in notes[0] and "'mhadapter'" in notes[0]
    assert "beta" in notes[0] and "--set method.name=linear_probe" in notes[0]


def test_a_switch_keeps_params_the_new_method_takes_and_later_overrides():
    cfg, notes = _switched("configs/gss/mhadapter-weather.yaml",
                           ["method.name=clip_adapter", "method.params.blend_ratio=0.3"])
    assert cfg.method.params == {"blend_ratio": 0.3}
    cfg, notes = _switched("configs/gss/mhadapter-weather.yaml", ["method.name=mhadapter"])
    assert notes == [] and cfg.method.params  # not a switch: nothing dropped
