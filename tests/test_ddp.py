"""torchrun with 2 CPU processes (DDP over gloo) trains what one process trains, with the
same global batch (36 train rows: every batch splits evenly): trained tensors and test
probabilities agree within 1e-5 (only the float summation order differs), test metrics
are computed on the full test split, and rank 1 writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from clipadapt.cli.main import app
from clipadapt.engine.distributed import DistContext, epoch_rows, local_batch_size
from clipadapt.errors import ClipAdaptError

TOLERANCE = 1e-5  # absolute, on trained tensors and test probabilities (seen: 3e-7)


def without_key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor, less an attention layer's key bias: softmax ignores a shift shared by every
    key, so that bias gets no gradient and Adam turns rounding noise into full-size steps
    there (it differs between any two summation orders and changes no output)."""
    if not name.endswith("attn.in_proj_bias"):
        return tensor
    width = len(tensor) // 3
    return torch.cat([tensor[:width], tensor[2 * width:]])


def write_config(folder: Path) -> Path:
    cfg = {
        "backbone": {"name": "clipadapt-micro", "pretrained": None},
        "data": {"format": "synthetic-gss", "root": str(folder / "gss"), "attributes": ["weather"],
                 "val_fraction": 0.3, "synthetic": {"n_train": 52, "n_test": 20, "image_size": 40}},
        # dropout 0: the masks of one process and of two are drawn differently
        "method": {"name": "mhadapter", "params": {"heads": 2, "dropout": 0.0}},
        "train": {"epochs": 3, "batch_size": 12, "warmup_epochs": 1, "patience": None, "lr": 1e-2, "device": "cpu"},
        "features": {"dir": str(folder / "cache")},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_processes_train_what_one_process_trains(tmp_path):
    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "single"), "--quiet"])
    assert result.exit_code == 0, result.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CLIPADAPT_CACHE": str(tmp_path / "cache")}
    env.pop("WORLD_SIZE", None)
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "clipadapt.cli.main", "train", str(config), "--out", str(tmp_path / "ddp"), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert json.loads((ddp / "card.json").read_text())["processes"] == 2
    assert json.loads((single / "card.json").read_text())["processes"] == 1
    a, b = load_file(str(single / "checkpoint.safetensors")), load_file(str(ddp / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        x, y = without_key_bias(key, a[key]), without_key_bias(key, b[key])
        assert torch.allclose(x, y, atol=TOLERANCE), (key, (x - y).abs().max())
    loss = lambda run: [row["train_loss"] for row in json.loads((run / "history.json").read_text())]
    assert np.allclose(loss(single), loss(ddp), atol=TOLERANCE)
    # metrics on the whole test split (20 images), not on one rank's half
    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["attributes"]["weather"]["n"] == 20
    p_single, p_ddp = (pd.read_csv(run / "predictions.csv").filter(like="weather:p(").to_numpy() for run in (single, ddp))
    assert p_ddp.shape == (20, 5) and np.allclose(p_single, p_ddp, atol=TOLERANCE)
    # rank 1 wrote nothing of its own: the two run folders hold the same files
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in ddp.iterdir())


def test_ranks_split_every_global_batch_of_one_process():
    n, batch, seed, epoch = 30, 6, 42_000, 3
    torch.manual_seed(seed + epoch)
    single = torch.randperm(n).numpy()
    ranks = [epoch_rows(n, seed, epoch, DistContext(rank=r, world=2)) for r in range(2)]
    half = local_batch_size(batch, DistContext(rank=0, world=2))
    for k in range(n // batch):
        together = np.concatenate([r[k * half:(k + 1) * half] for r in ranks])
        assert sorted(together) == sorted(single[k * batch:(k + 1) * batch])


def test_a_global_batch_that_does_not_split_is_refused():
    with pytest.raises(ClipAdaptError, match="does not split evenly over WORLD_SIZE=4"):
        local_batch_size(10, DistContext(rank=0, world=4))
