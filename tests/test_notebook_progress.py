"""Progress in a notebook (issue 28): under a Jupyter kernel the bars are tqdm.auto's, driven
by the same calls as the terminal's rich bars, and they reach the end of the work."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from clipadapt import bars


class ZMQInteractiveShell:  # the class name IPython's kernel shell has
    pass


@pytest.fixture
def notebook(monkeypatch):
    fake = types.SimpleNamespace(get_ipython=lambda: ZMQInteractiveShell())
    monkeypatch.setitem(sys.modules, "IPython", fake)


def test_outside_a_notebook_the_bars_are_richs():
    assert not bars.in_notebook()
    assert type(bars.progress_bar(True)).__name__ == "Progress"


def test_in_a_notebook_prediction_draws_tqdm_bars_to_the_end(notebook, micro_backbone, weather_task, tmp_path, capsys):
    from clipadapt.methods import build_method
    from clipadapt.predict import predict_images

    assert bars.in_notebook()
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(paths[-1])
    method = build_method("linear_probe", micro_backbone, weather_task)
    table = predict_images(method, paths, "cpu", batch_size=2, progress=True)
    assert table["ok"].all()
    drawn = capsys.readouterr().err
    assert "predict" in drawn and "5/5" in drawn  # tqdm's text bar (no widgets here), at its end


def test_update_sets_completed_description_and_info(notebook, capsys):
    with bars.progress_bar(True) as bar:
        job = bar.add_task("train", total=4, completed=1, info="")
        bar.update(job, advance=0.5, info="loss 0.3")
        bar.update(job, completed=4, description="train done")
        assert bar.bars[job].n == 4 and bar.bars[job].desc.startswith("train done")
    assert "loss 0.3" in capsys.readouterr().err
