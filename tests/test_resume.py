"""An interrupted training run, resumed, ends exactly where an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clipadapt.config import validate_config
from clipadapt.data.dataset import DataSplits, LabelledImages
from clipadapt.engine.trainer import Runner, SupervisedSteps
from clipadapt.methods import build_method


@pytest.fixture()
def splits(tmp_path, weather_task):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(40):
        label = i % 5
        pixels = rng.integers(0, 60, (32, 32, 3)) + label * 40  # brightness encodes the class
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(path)
        labels.append(label)
    data = LabelledImages(paths, np.array(labels)[:, None], weather_task)
    return DataSplits(data.subset(np.arange(30)), data.subset(np.arange(30, 40)), None)


class Interrupt(Exception):
    pass


def make_runner(micro_backbone, task, tmp_path):
    cfg = validate_config({"train": {"epochs": 6, "batch_size": 8, "warmup_epochs": 1, "patience": None, "lr": 1e-2},
                           "features": {"dir": str(tmp_path / "cache")}})
    torch.manual_seed(0)
    return Runner(build_method("mhadapter", micro_backbone, task, {}), cfg, progress=False)


def test_resume_matches_uninterrupted(tmp_path, micro_backbone, weather_task, splits, monkeypatch):
    straight = make_runner(micro_backbone, weather_task, tmp_path)
    result = straight.fit(splits, tmp_path / "straight")

    broken = make_runner(micro_backbone, weather_task, tmp_path)
    original = SupervisedSteps.start_epoch

    def stop_at_epoch_3(self, epoch):
        if epoch == 3:
            raise Interrupt()
        return original(self, epoch)

    monkeypatch.setattr(SupervisedSteps, "start_epoch", stop_at_epoch_3)
    with pytest.raises(Interrupt):
        broken.fit(splits, tmp_path / "resumed")
    monkeypatch.setattr(SupervisedSteps, "start_epoch", original)
    resumed = make_runner(micro_backbone, weather_task, tmp_path)
    said = []
    result2 = resumed.fit(splits, tmp_path / "resumed", resume=True, notify=said.append)
    assert said == [f"resuming from epoch 4 of 6 (3 done; {tmp_path / 'resumed' / 'resume.safetensors'})"]

    assert [round(r["train_loss"], 6) for r in result2.history] == [round(r["train_loss"], 6) for r in result.history]
    a = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_resumed_run_continues_at_the_thread_count_it_started_with(tmp_path, micro_backbone, weather_task, splits,
                                                                       monkeypatch):
    """torch's reductions split sums by thread, so the count changes a result's last bits:
    a resumed run keeps the count of its first part, whatever the machine's load is now."""
    from clipadapt import threads

    saved = torch.get_num_threads()
    share = threads.ThreadShare()
    share.setting, share.cores = "auto", [0, 1]
    monkeypatch.setattr(threads, "SHARE", share)
    monkeypatch.setattr(threads, "resolve_setting", lambda configured=None: "auto")
    try:
        share._apply(1)  # the first part ran on a busy machine
        broken = make_runner(micro_backbone, weather_task, tmp_path)
        original = SupervisedSteps.start_epoch
        seen, first_part = [], [True]

        def record(self, epoch):
            if epoch == 2 and first_part[0]:
                raise Interrupt()
            seen.append(torch.get_num_threads())
            return original(self, epoch)

        monkeypatch.setattr(SupervisedSteps, "start_epoch", record)
        with pytest.raises(Interrupt):
            broken.fit(splits, tmp_path / "resumed")
        share._apply(2)  # the machine is quiet now: auto would take both cores
        seen.clear()
        first_part[0] = False
        make_runner(micro_backbone, weather_task, tmp_path).fit(splits, tmp_path / "resumed", resume=True)
        assert seen == [1] * 4  # epochs 3-6 at the first part's count
    finally:
        torch.set_num_threads(saved)
