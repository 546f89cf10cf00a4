"""Importing the CLIP-MHAdapter authors' Dassl checkpoints (clipadapt.importers).

The checkpoints here are written the way the authors' code writes them: their adapter
layout (proj.0 / proj.2 / norm / attn), saved by torch.save of Dassl's dict with a real
AdamW state and a real scheduler state (optionally wrapped in a stand-in for Dassl's
LinearWarmupScheduler, which pickles the wrapped scheduler and optimiser objects).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from clipadapt.backbone import ImageFeatures
from clipadapt.engine.checkpoint import load_run, load_state_strict
from clipadapt.errors import ClipAdaptError
from clipadapt.importers import import_mhadapter_checkpoint, safe_torch_load
from clipadapt.methods import build_method
from clipadapt.task import TaskSpec

CLIPADAPT_KEYS = {
    "adapters.0.down.weight", "adapters.0.down.bias", "adapters.0.up.weight", "adapters.0.up.bias",
    "adapters.0.norm.weight", "adapters.0.norm.bias", "adapters.0.attn.in_proj_weight",
    "adapters.0.attn.in_proj_bias", "adapters.0.attn.out_proj.weight", "adapters.0.attn.out_proj.bias",
}


class AuthorsLayoutAdapter(nn.Module):
    """Same module names and shapes as the authors' adapter (their forward is not needed)."""

    def __init__(self, width: int, embed_dim: int, bottleneck: int, heads: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(width, bottleneck), nn.ReLU(), nn.Linear(bottleneck, embed_dim), nn.ReLU())
        self.norm = nn.LayerNorm(embed_dim)
        self.attn = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        with torch.no_grad():  # no default-valued tensors: a mix-up of any two keys must show
            for p in self.parameters():
                p.normal_(0.0, 0.3)


class LinearWarmupScheduler(LRScheduler):
    """Stand-in for dassl.optim.lr_scheduler.LinearWarmupScheduler: like Dassl's, it keeps
    the wrapped scheduler as an attribute, so its state_dict pickles that object."""

    def __init__(self, optimizer, successor, warmup_epoch, min_lr):
        self.successor, self.warmup_epoch, self.min_lr = successor, warmup_epoch, min_lr
        super().__init__(optimizer)

    def get_lr(self):
        return [self.min_lr + (lr - self.min_lr) * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


LinearWarmupScheduler.__module__ = "dassl.optim.lr_scheduler"


def _fake_dassl_modules() -> dict[str, types.ModuleType]:
    """pickle saves a class by module + name and checks the module is importable."""
    mods = {n: types.ModuleType(n) for n in ("dassl", "dassl.optim", "dassl.optim.lr_scheduler")}
    mods["dassl.optim.lr_scheduler"].LinearWarmupScheduler = LinearWarmupScheduler
    return mods


def save_like_dassl(adapter: nn.Module, path, monkeypatch, warmup: bool = False, legacy: bool = False,
                    val_result=np.float64(63.25)):
    """One real AdamW step + scheduler step, then torch.save of Dassl's checkpoint dict."""
    optim = torch.optim.AdamW(adapter.parameters(), lr=5e-4, weight_decay=5e-4)
    sched = CosineAnnealingLR(optim, float(100))
    if warmup:
        sched = LinearWarmupScheduler(optim, sched, warmup_epoch=5, min_lr=1e-5)
    tokens = torch.randn(2, 3, adapter.proj[0].in_features)
    h = adapter.norm(adapter.proj(tokens))
    adapter.attn(h, h, h)[0].pow(2).mean().backward()
    optim.step()
    sched.step()
    checkpoint = {
        "state_dict": adapter.state_dict(),
        "epoch": 7,
        "optimizer": optim.state_dict(),
        "scheduler": sched.state_dict(),
        "val_result": val_result,  # Dassl stores the metric as computed (numpy from sklearn)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as m:
        for name, module in _fake_dassl_modules().items():
            m.setitem(sys.modules, name, module)
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return path


def authors_logits(raw: dict, tokens, embedding, text, scale: float, beta: float, heads: int):
    """The authors' forward, by hand from their tensors (plain torch ops, eval mode)."""
    x = F.relu(F.linear(tokens, raw["proj.0.weight"], raw["proj.0.bias"]))
    x = F.relu(F.linear(x, raw["proj.2.weight"], raw["proj.2.bias"]))
    x = F.layer_norm(x, x.shape[-1:], raw["norm.weight"], raw["norm.bias"])
    b, n, e = x.shape
    q, k, v = F.linear(x, raw["attn.in_proj_weight"], raw["attn.in_proj_bias"]).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, n, heads, e // heads).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(e // heads), dim=-1)
    attended = (weights @ v).transpose(1, 2).reshape(b, n, e)
    a = F.linear(attended, raw["attn.out_proj.weight"], raw["attn.out_proj.bias"]).mean(dim=1)
    f = beta * a + (1 - beta) * embedding
    f = f / f.norm(dim=-1, keepdim=True)
    t = text / text.norm(dim=-1, keepdim=True)
    return scale * f @ t.t()


def _micro_adapter(backbone, heads: int = 4) -> AuthorsLayoutAdapter:
    return AuthorsLayoutAdapter(backbone.width, backbone.embed_dim, 16, heads)


@pytest.mark.parametrize(
    "warmup,legacy,val_result",
    [(False, False, 63.25), (True, False, np.float64(63.25)), (True, True, np.float64(63.25))],
    ids=["plain-data", "dassl-warmup-numpy-score", "dassl-warmup-legacy-format"],
)
def test_import_reproduces_authors_logits(tmp_path, monkeypatch, micro_backbone, warmup, legacy, val_result):
    beta, heads = 0.8, 4
    adapter = _micro_adapter(micro_backbone, heads)
    ckpt = save_like_dassl(adapter, tmp_path / "dassl" / "clip_mhadapter" / "model.pth.tar-7", monkeypatch,
                           warmup, legacy, val_result)
    raw = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
    # the plain file is read by weights_only=True; the Dassl warm-up one needs the restricted unpickler
    if warmup:
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt, weights_only=True)
    else:
        torch.load(ckpt, weights_only=True)

    out = import_mhadapter_checkpoint(ckpt, "weather", None, "clipadapt-micro", None, beta, heads, tmp_path / "run")

    assert "dassl" not in sys.modules  # nothing of Dassl was imported to read the file
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "checkpoint.safetensors"]
    state = load_file(str(out / "checkpoint.safetensors"))
    assert set(state) == CLIPADAPT_KEYS
    card = json.loads((out / "card.json").read_text())
    assert card["method"] == "mhadapter" and card["params"]["beta"] == beta and card["params"]["heads"] == heads
    assert card["backbone"]["name"] == "clipadapt-micro" and card["backbone"]["pretrained"] is None
    assert card["task"]["attributes"][0]["classes"] == ["clear", "cloudy", "foggy", "rainy", "snowy"]
    assert card["source"]["imported_from"] == str(ckpt) and card["source"]["epoch"] == 7
    assert card["source"]["val_result"] == pytest.approx(63.25)

    task = TaskSpec.from_dict(card["task"])
    method = build_method("mhadapter", micro_backbone, task, {"beta": beta, "heads": heads, "bottleneck": 16}).eval()
    load_state_strict(method, state, source="imported")  # missing / unexpected / mis-shaped keys raise
    assert set(method.trained_state()) == CLIPADAPT_KEYS

    tokens = torch.randn(3, micro_backbone.num_patches, micro_backbone.width)
    embedding = torch.randn(3, micro_backbone.embed_dim)
    text = micro_backbone.encode_text(task.attributes[0].prompts(), normalise=False)
    scale = float(micro_backbone.model.logit_scale.exp())
    with torch.no_grad():
        ours = method(ImageFeatures(tokens, embedding))[0]
        reloaded = load_run(out, backbone=micro_backbone)[0](ImageFeatures(tokens, embedding))[0]
    expected = authors_logits(raw, tokens, embedding, text, scale, beta, heads)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(reloaded, expected, atol=1e-5, rtol=0)


class RunsShell:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class ArbitraryObject:
    """A class defined here: not on the allow-list, so its import must be refused."""

    def __init__(self):
        self.value = 1


@pytest.mark.parametrize("payload", ["shell", "class"])
def test_pickled_code_is_refused(tmp_path, micro_backbone, payload):
    marker = tmp_path / "marker"
    evil = RunsShell(marker) if payload == "shell" else ArbitraryObject()
    adapter = _micro_adapter(micro_backbone)
    path = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": adapter.state_dict(), "epoch": 1, "scheduler": {"successor": evil}}, path)
    wanted = "system" if payload == "shell" else "ArbitraryObject"

    with pytest.raises(ClipAdaptError, match=rf"wants to run \S*{wanted} while loading; refused"):
        safe_torch_load(path)
    with pytest.raises(ClipAdaptError, match="refused"):
        import_mhadapter_checkpoint(path, "weather", None, "clipadapt-micro", None, 0.2, 4, tmp_path / "run",
                                    backbone=micro_backbone)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; still a format to refuse
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(ClipAdaptError, match="TorchScript"):
        safe_torch_load(path)


def test_wrong_backbone_is_named(tmp_path, monkeypatch, micro_backbone):
    vit_b16 = AuthorsLayoutAdapter(768, 512, 256, 4)  # the paper's sizes, on a 64/32 backbone
    path = save_like_dassl(vit_b16, tmp_path / "model-best.pth.tar", monkeypatch)
    with pytest.raises(ClipAdaptError) as err:
        import_mhadapter_checkpoint(path, "glare", None, "clipadapt-micro", None, 0.8, 4, tmp_path / "run",
                                    backbone=micro_backbone)
    message = str(err.value)
    assert "'clipadapt-micro'" in message and "768" in message and "512" in message and "ViT-B-16" in message


def test_heads_must_be_given_and_folder_name_is_a_hint(tmp_path, monkeypatch, micro_backbone):
    run = tmp_path / "clip-vitb16-mh_8-ce-inverse-br_0.8"
    save_like_dassl(_micro_adapter(micro_backbone, 8), run / "clip_mhadapter" / "model-best.pth.tar", monkeypatch)
    with pytest.raises(ClipAdaptError, match=r"heads.*suggests 8"):
        import_mhadapter_checkpoint(run, "glare", None, "clipadapt-micro", None, 0.8, None, tmp_path / "out",
                                    backbone=micro_backbone)
    with pytest.raises(ClipAdaptError, match="divisor"):
        import_mhadapter_checkpoint(run, "glare", None, "clipadapt-micro", None, 0.8, 5, tmp_path / "out",
                                    backbone=micro_backbone)
    # the Dassl output folder itself is accepted: its clip_mhadapter/model-best.pth.tar is read
    out = import_mhadapter_checkpoint(run, "glare", ["No", "yes"], "clipadapt-micro", None, 0.8, 8, tmp_path / "out",
                                      backbone=micro_backbone)
    card = json.loads((out / "card.json").read_text())
    assert card["params"]["heads"] == 8 and card["task"]["attributes"][0]["classes"] == ["no", "yes"]


def test_unrecognised_layout_lists_the_keys(tmp_path, micro_backbone):
    path = tmp_path / "model.pth.tar-3"
    torch.save({"state_dict": {"fc.weight": torch.zeros(5, 32), "fc.bias": torch.zeros(5)}, "epoch": 3}, path)
    with pytest.raises(ClipAdaptError, match=r"missing \['proj\.0\.weight'.*fc\.weight \(5, 32\)"):
        import_mhadapter_checkpoint(path, "weather", None, "clipadapt-micro", None, 0.2, 4, tmp_path / "run",
                                    backbone=micro_backbone)
