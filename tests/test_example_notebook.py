"""examples/quickstart.py, the notebook of the quick start, runs headless as a script and
produces what it promises: two figures and a summary whose numbers agree with the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "quickstart.py"


def test_the_quickstart_notebook_runs_as_a_script(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MPLBACKEND": "Agg", "CLIPADAPT_EXAMPLE_OUT": str(out),
           "CLIPADAPT_CACHE": str(tmp_path / "cache")}  # never the user's feature store
    env.pop("CLIPADAPT_EXAMPLE_DATA", None)  # the notebook's own toy set
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr

    for name, least in (("probabilities.png", (600, 300)), ("confusion.png", (250, 250))):
        with Image.open(out / name) as image:
            image.verify()  # a whole PNG, not a truncated one
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width >= least[0] and image.height >= least[1], (name, image.size)
            assert image.width <= 4000 and image.height <= 4000, (name, image.size)
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 10, f"{name} is blank"  # something was drawn on it

    summary = json.loads((out / "summary.json").read_text())
    test_images = sorted((out / "data" / "test").rglob("*.png"))
    per_class = {folder.name: len(list(folder.glob("*.png"))) for folder in (out / "data" / "test").iterdir()}
    confusion = np.asarray(summary["confusion_matrix"])
    assert sorted(summary["classes"]) == sorted(per_class) == ["blue", "red"]
    assert confusion.shape == (2, 2) and confusion.sum() == len(test_images) == summary["n_test"] == 20
    # each row holds the images of its true class, as the folders hold them
    assert dict(zip(summary["classes"], confusion.sum(axis=1).tolist())) == per_class
    assert summary["accuracy"] == np.trace(confusion) / confusion.sum()
    assert summary["accuracy"] >= 0.85  # red against blue is easy; chance is 0.5
    assert (out / "run" / "card.json").is_file() and (out / "run" / "checkpoint.safetensors").is_file()
