# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # clipadapt quick start
#
# Train a linear probe on a frozen CLIP, load the run, label a few images and look at
# what it learned: the probabilities of a few test images and the confusion matrix of
# the test split. Open it as a notebook with `jupytext --to notebook examples/quickstart.py`
# (or jupytext's Jupyter plugin), or run it as a script: `python examples/quickstart.py`.
#
# - `CLIPADAPT_EXAMPLE_DATA`: a class-per-folder set of your own
#   (`root/train/<class>/*`, `root/test/<class>/*`); without it the notebook draws a
#   toy one (red against blue shapes).
# - `CLIPADAPT_EXAMPLE_OUT`: where the run, the figures and `summary.json` go
#   (default `./quickstart-out`).
#
# It uses the embedded tiny CLIP, so it runs offline in seconds; it is a test fixture,
# not a model of photographs. For real photos set `backbone.name` / `backbone.pretrained`
# (docs/backbones.md). The Python API: docs/python.md.

# %%
import json
import os
import shutil
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

import clipadapt

OUT = Path(os.environ.get("CLIPADAPT_EXAMPLE_OUT", "quickstart-out"))
OUT.mkdir(parents=True, exist_ok=True)


def show(figure, name: str) -> None:
    """Save the figure beside the run and show it (a no-op where nothing can show it)."""
    figure.savefig(OUT / name, dpi=100, bbox_inches="tight")
    if matplotlib.get_backend().lower() != "agg":  # Agg (headless) would warn that it cannot show
        plt.show()
    plt.close(figure)


# %% [markdown]
# ## The images
#
# A toy set unless you name your own: on dark noise, a red or a blue shape of a random
# size and place, 20 training and 10 test images per class.

# %%
def draw_toy_set(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    colours = {"red": (220, 40, 40), "blue": (40, 70, 220)}
    for split, count in per_class.items():
        for name, colour in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
                radius = rng.integers(10, 22)
                cy, cx = rng.integers(radius, 64 - radius, 2)
                yy, xx = np.mgrid[:64, :64]
                pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = colour
                Image.fromarray(pixels).save(folder / f"{name}{i:02d}.png")
    return root


given = os.environ.get("CLIPADAPT_EXAMPLE_DATA")
DATA = Path(given) if given else draw_toy_set(OUT / "data", {"train": 20, "test": 10})
test_images = sorted(p for p in (DATA / "test").rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
print(f"data: {DATA} ({len(test_images)} test images)")

# %% [markdown]
# ## Train a linear probe
#
# One call: train, pick the best epoch on a validation split, score the test split, write
# the run folder. A second run of the notebook starts afresh (a folder that holds a
# finished run is refused, so that nothing is overwritten by accident).

# %%
RUN = OUT / "run"
shutil.rmtree(RUN, ignore_errors=True)
clipadapt.train(
    {"data": {"format": "folder", "root": str(DATA)}, "method": {"name": "linear_probe"}},
    RUN,
    train__epochs=15,
)

# %% [markdown]
# ## Load it and predict
#
# `clipadapt.load` opens a run folder (or an exported `.onnx` file). `predict` takes
# files, folders, globs, PIL images or arrays and returns a table: one row per image, the
# predicted class and every class probability.

# %%
run = clipadapt.load(RUN)
print(run)
print("test metrics recorded by training:", run.metrics)
table = run.predict(test_images)
table["true"] = [Path(p).parent.name for p in table["path"]]
table.head()

# %% [markdown]
# ## What it says about a few images

# %%
(attribute,) = run.classes  # a class-folder set has one attribute, "class"
classes = run.classes[attribute]
by_class = [list(rows.index) for _, rows in table.groupby("true")]
picked = [index for group in zip(*by_class) for index in group][:4]  # the classes in turn

figure, axes = plt.subplots(2, len(picked), figsize=(3 * len(picked), 5.5),
                            gridspec_kw={"height_ratios": [3, 2]}, squeeze=False)
for column, index in enumerate(picked):
    row = table.loc[index]
    axes[0, column].imshow(Image.open(row["path"]).convert("RGB"))
    axes[0, column].set_title(f"true: {row['true']}\npredicted: {row[attribute]}", fontsize=10)
    axes[0, column].axis("off")
    probabilities = [row[f"{attribute}:p({c})"] for c in classes]
    colours = ["tab:green" if c == row["true"] else "tab:grey" for c in classes]
    axes[1, column].bar(classes, probabilities, color=colours)
    axes[1, column].set_ylim(0, 1)
    axes[1, column].set_ylabel("probability" if column == 0 else "")
    axes[1, column].tick_params(axis="x", labelrotation=30)
figure.suptitle("predicted probabilities (green: the true class)")
show(figure, "probabilities.png")

# %% [markdown]
# ## Confusion matrix on the test split

# %%
position = {c: k for k, c in enumerate(classes)}
confusion = np.zeros((len(classes), len(classes)), dtype=int)
for true, predicted in zip(table["true"], table[attribute]):
    confusion[position[true], position[predicted]] += 1
accuracy = float(np.trace(confusion) / confusion.sum())

figure, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2.5))
ax.imshow(confusion, cmap="Blues")
for (i, j), count in np.ndenumerate(confusion):
    ax.text(j, i, str(count), ha="center", va="center",
            color="white" if count > confusion.max() / 2 else "black")
ax.set_xticks(range(len(classes)), classes, rotation=30)
ax.set_yticks(range(len(classes)), classes)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title(f"test accuracy {accuracy:.1%} ({confusion.sum()} images)")
show(figure, "confusion.png")

# %%
summary = {"classes": classes, "confusion_matrix": confusion.tolist(), "accuracy": accuracy,
           "n_test": len(test_images), "run": str(RUN)}
(OUT / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary))
