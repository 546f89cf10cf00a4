"""The Python API as a `pip install clipadapt` user has it (issue 28's acceptance): train a
linear probe on a class-per-folder set from a dict, load the run, predict file paths, PIL
images and numpy arrays, and compare each with `clipadapt predict` on the same files.

    python3.11 -m venv /tmp/fresh && /tmp/fresh/bin/pip install .      # no dev extras
    cd "$(mktemp -d)" && /tmp/fresh/bin/python /path/to/scripts/api_fresh_venv_check.py

It writes pets/, runs/pets and cli.csv into the current folder and prints the largest
probability difference of each route (the CSV's decimal rounding is ~1e-8).
"""
import subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
from PIL import Image
import clipadapt

rng = np.random.default_rng(7)
for split, n in (("train", 12), ("test", 5)):
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200)), ("green", (40, 190, 40))):
        folder = Path("pets") / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            px = np.clip(np.array(colour) + rng.normal(0, 50, (36 + 4 * i, 50, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(folder / f"{i}.png")

run = clipadapt.train({"data": {"format": "folder", "root": "pets"}, "method": {"name": "linear_probe"}},
                      "runs/pets", train__epochs=8)
run = clipadapt.load("runs/pets")
files = sorted(Path("pets/test").rglob("*.png"))
cli = subprocess.run([str(Path(sys.executable).parent / "clipadapt"), "predict", "pets/test", "--checkpoint", "runs/pets",
                      "--out", "cli.csv", "--quiet"], capture_output=True, text=True)
assert cli.returncode == 0, cli.stderr
command = pd.read_csv("cli.csv")
assert command["path"].tolist() == [str(f) for f in files]
columns = [c for c in command.columns if ":p(" in c]
routes = {"paths": run.predict([str(f) for f in files]),
          "PIL": run.predict([Image.open(f) for f in files]),
          "arrays": run.predict([np.asarray(Image.open(f).convert("RGB")) for f in files])}
for name, table in routes.items():
    gap = np.abs(table[columns].to_numpy(float) - command[columns].to_numpy(float)).max()
    print(f"{name:6} vs clipadapt predict: max |dp| = {gap:.2e}")
    assert gap <= 1e-6
gap = max(np.abs(routes[a][columns].to_numpy(float) - routes[b][columns].to_numpy(float)).max()
          for a in routes for b in routes)
print(f"between routes: max |dp| = {gap:.2e}; test accuracy {run.metrics['accuracy']:.3f}; {len(files)} images, "
      f"{len(columns)} classes")
import importlib.util
print("dev extras present:", [m for m in ("pytest", "onnx", "onnxruntime", "ray", "transformers", "hypothesis")
                              if importlib.util.find_spec(m)])
