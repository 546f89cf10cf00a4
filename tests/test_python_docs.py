"""docs/python.md runs as written: every ```python block, in order, in one namespace, in a
folder laid out as the page says the reader's is. Then the results the page shows are
checked, so a block that runs but answers wrong fails too."""

from __future__ import annotations

import re
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "python.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
COLUMNS = ["path", "ok", "error", "class", "class:p(cat)", "class:p(dog)", "class:entropy"]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the block's first code line, code) for every ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def toy_photo(kind: str, rng, size: tuple[int, int]) -> Image.Image:
    """A 'cat' is a warm blob on dark noise, a 'dog' a cool one: two classes the embedded
    CLIP's features tell apart at a glance, so a probe learns them from a few images."""
    width, height = size
    pixels = rng.integers(0, 70, (height, width, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    blob = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(width, height) / 3) ** 2
    pixels[blob] = (230, 120, 40) if kind == "cat" else (40, 110, 230)
    return Image.fromarray(pixels)


def readers_folder(root: Path) -> None:
    """The folder of the page's opening: pets/{train,test}/{cat,dog}/*.png, cat.jpg (large
    enough for draft decoding) and dog.png. runs/pets is made by the test itself."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 6)):
        for kind in ("cat", "dog"):
            folder = root / "pets" / split / kind
            folder.mkdir(parents=True)
            for i in range(count):
                toy_photo(kind, rng, (48, 48)).save(folder / f"{kind}{i}.png")
    toy_photo("cat", rng, (800, 600)).save(root / "cat.jpg", quality=92)
    toy_photo("dog", rng, (96, 96)).save(root / "dog.png")


def run_page(page: Path, namespace: dict) -> int:
    """Execute the page's python blocks in order in `namespace`; the number of blocks run.
    A block that raises fails with its number, line and first line."""
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    for number, (line, code) in enumerate(blocks, 1):
        # padded to the block's place, so a traceback names the page's own line numbers
        compiled = compile("\n" * (line - 1) + code, str(page), "exec")
        try:
            exec(compiled, namespace)
        except Exception as exc:
            first = code.strip().splitlines()[0]
            raise AssertionError(f"{page.name} block {number} (line {line}: {first!r}) raised "
                                 f"{type(exc).__name__}: {exc}") from exc
    return len(blocks)


def test_the_python_page_runs_as_written(tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.setenv("MPLBACKEND", "Agg")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    readers_folder(tmp_path)
    import clipadapt

    # The page starts from a run the reader already has; it was trained like this.
    given = clipadapt.train({"data": {"format": "folder", "root": "pets"}, "method": {"name": "linear_probe"}},
                            "runs/pets", train__epochs=10)
    assert given.warnings == [] and given.metrics["accuracy"] >= 0.9
    ns: dict = {"__name__": "python_docs"}
    with warnings.catch_warnings():
        # quiet here: the page records the warnings it shows, and the runs keep theirs
        warnings.simplefilter("ignore", clipadapt.ClipAdaptWarning)
        ran = run_page(PAGE, ns)
    assert ran >= 10, "the page lost its examples"

    # the opening: the documented columns, and the two photos labelled right
    table = ns["table"]
    assert list(table.columns) == COLUMNS
    assert table["path"].tolist() == ["cat.jpg", "dog.png"] and table["class"].tolist() == ["cat", "dog"]

    # train / evaluate: the returned run is the trained folder, its metrics those evaluate gives
    run = ns["run"]
    assert run.path == Path("runs/pets-probe") and run.card.method == "linear_probe"
    assert ns["metrics"]["mean"]["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert run.metrics["accuracy"] >= 0.9 and run.warnings == []  # it learned: nothing to flag
    assert np.asarray(ns["metrics"]["attributes"]["class"]["confusion_matrix"]).sum() == 12

    # predict: 1 + 6 + 6 files; in-memory rows have no path and match the file decoded in full
    assert len(ns["predictions"]) == 13 and ns["predictions"]["ok"].all()
    in_memory = ns["in_memory"]
    assert in_memory["path"].isna().all() and list(in_memory.columns) == COLUMNS
    full = run.predict_proba("cat.jpg", decode="full")["class"][0]
    # (to the last bits only within one batch: a batch of two may round its sums otherwise)
    np.testing.assert_allclose(in_memory[["class:p(cat)", "class:p(dog)"]].to_numpy(), np.stack([full, full]),
                               atol=1e-6)
    assert ns["proba"]["class"].shape == (12, 2) and ns["vectors"].shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(ns["vectors"], axis=1), 1, atol=1e-5)

    # export: the ONNX file, opened without torch's module, gives the torch run's numbers
    onnx_run = ns["onnx_run"]
    assert onnx_run.module is None and Path(ns["onnx_file"]).is_file()
    files = sorted(str(p) for p in Path("pets/test").rglob("*.png")) + ["cat.jpg", "dog.png"]
    np.testing.assert_allclose(onnx_run.predict_proba(files)["class"], run.predict_proba(files)["class"], atol=1e-5)
    assert ns["gap"] < 1e-5

    # bench: both methods, each K, both seeds of the probe; the tables written
    results = ns["results"]
    probe = results[results["method"] == "linear_probe"]
    assert sorted(probe["shots"]) == [1, 4] and (probe["n"] == 2).all()
    assert set(results["method"]) == {"majority", "linear_probe"}
    assert (Path("runs/pets-fewshot") / "table.md").is_file() and "linear_probe" in results.attrs["tables"][0]

    # adapt: a label-free run, scored beside zero-shot
    birds = ns["birds"]
    assert birds.card.method == "microclip" and {"zeroshot_templates", "microclip"} <= set(ns["comparison"])

    # warnings: the blind zero-shot run warned, and kept the warning
    assert any(issubclass(w.category, clipadapt.ClassTextWarning) for w in ns["caught"])
    assert any("never learned" in note for note in ns["blind"].warnings)

    # errors: the bad file is a row, not a crash
    checked = ns["checked"]
    assert checked["ok"].tolist() == [True, False] and checked["error"].iloc[1]

    # threads: the pooled predictions are the sequential ones
    pooled = {row.path: row["class:p(cat)"] for part in ns["parts"] for _, row in part.iterrows()}
    alone = run.predict(ns["files"]).set_index("path")["class:p(cat)"].to_dict()
    assert sorted(pooled) == sorted(alone) and len(alone) == 12
    # (other batches may round the last bits otherwise; images differ from each other by far more)
    np.testing.assert_allclose([pooled[p] for p in alone], list(alone.values()), atol=1e-6)

    # decoding: a file decoded in full is its in-memory copy, bit for bit; draft is close
    np.testing.assert_array_equal(ns["full"], ns["memory"])
    assert 0 < np.abs(ns["draft"] - ns["full"]).max() < 0.05  # cat.jpg is large enough to be drafted
    assert len(ns["everything"]) == 32


def test_the_runner_names_the_failing_block_and_its_page_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n```text\nnot run\n```\n\n"
                    "```python\ny = x + 1\nraise ValueError('no')\n```\n")
    ns: dict = {}
    with pytest.raises(AssertionError, match=r"page.md block 2 \(line 12: 'y = x \+ 1'\) raised ValueError: no") as got:
        run_page(page, ns)
    assert ns["y"] == 2  # one namespace: the second block saw the first's x
    frames = traceback.extract_tb(got.value.__cause__.__traceback__)
    assert (frames[-1].filename, frames[-1].lineno) == (str(page), 13)
