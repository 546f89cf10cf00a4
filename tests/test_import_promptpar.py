"""Importing the PromptPAR authors' checkpoint layout: a file built here with random
tensors in their format imports, and the imported model's probabilities equal a direct
re-computation of the authors' inference math (written out below, independently)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from clipadapt.backbone import create_backbone
from clipadapt.engine.checkpoint import load_run
from clipadapt.errors import ClipAdaptError
from clipadapt.importers.promptpar import import_promptpar_checkpoint
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

SENTENCES = ["A pedestrian wearing a hat", "A pedestrian carrying a backpack", "A woman or girl"]
GROUPS, PER_GROUP, DEPTH, FUSION, HEADS = 4, 3, 3, 64, 4


def task() -> TaskSpec:
    return TaskSpec(tuple(Attribute(f"a{i}", BINARY_CLASSES, template=s) for i, s in enumerate(SENTENCES)), multilabel=True)


def authors_file(tmp_path, visual_key="visual_embed", seed=0):
    """A checkpoint in the authors' layout around clipadapt-tiny's geometry (8 x 8 patches)."""
    g = torch.Generator().manual_seed(seed)
    clip = create_backbone("clipadapt-tiny", None).model.state_dict()
    d, e, a = clip["visual.conv1.weight"].shape[0], clip["visual.proj"].shape[1], len(SENTENCES)
    vit = {
        "ViT_model": {
            **clip,
            "visual.transformer.prompt_deep": torch.randn(DEPTH, PER_GROUP * (GROUPS + 1), 1, d, generator=g) * 0.1,
            "visual.part_class_embedding": torch.randn(GROUPS, d, generator=g) * 0.1,
            "transformer.prompt_text_deep": torch.randn(2, 3, a, 64, generator=g),
            "softmax_model.temperature": torch.tensor(0.7),
            "agg_bn.weight": torch.ones(a), "agg_bn.bias": torch.zeros(a), "agg_bn.running_mean": torch.zeros(a),
            "agg_bn.running_var": torch.ones(a), "agg_bn.num_batches_tracked": torch.tensor(0),
        },
        "model_state_dict": {
            "word_embed.weight": torch.randn(FUSION, e, generator=g) * 0.1, "word_embed.bias": torch.randn(FUSION, generator=g) * 0.1,
            f"{visual_key}.weight": torch.randn(FUSION, e, generator=g) * 0.1,
            f"{visual_key}.bias": torch.randn(FUSION, generator=g) * 0.1,
            "blocks.0.norm1.weight": 1 + 0.1 * torch.randn(FUSION, generator=g), "blocks.0.norm1.bias": 0.1 * torch.randn(FUSION, generator=g),
            "blocks.0.attn.qkv.weight": torch.randn(3 * FUSION, FUSION, generator=g) * 0.1,
            "blocks.0.attn.qkv.bias": torch.randn(3 * FUSION, generator=g) * 0.1,
            "blocks.0.attn.proj.weight": torch.randn(FUSION, FUSION, generator=g) * 0.1,
            "blocks.0.attn.proj.bias": torch.randn(FUSION, generator=g) * 0.1,
            "blocks.0.norm2.weight": 1 + 0.1 * torch.randn(FUSION, generator=g), "blocks.0.norm2.bias": 0.1 * torch.randn(FUSION, generator=g),
            "blocks.0.mlp.fc1.weight": torch.randn(4 * FUSION, FUSION, generator=g) * 0.1,
            "blocks.0.mlp.fc1.bias": torch.randn(4 * FUSION, generator=g) * 0.1,
            "blocks.0.mlp.fc2.weight": torch.randn(FUSION, 4 * FUSION, generator=g) * 0.1,
            "blocks.0.mlp.fc2.bias": torch.randn(FUSION, generator=g) * 0.1,
            "norm.weight": 1 + 0.1 * torch.randn(FUSION, generator=g), "norm.bias": 0.1 * torch.randn(FUSION, generator=g),
            **{f"weight_layer.{i}.weight": torch.randn(1, FUSION, generator=g) * 0.2 for i in range(a)},
            **{f"weight_layer.{i}.bias": torch.randn(1, generator=g) for i in range(a)},
            "bn.weight": 1 + 0.1 * torch.randn(a, generator=g), "bn.bias": 0.1 * torch.randn(a, generator=g),
            "bn.running_mean": torch.randn(a, generator=g), "bn.running_var": 0.5 + torch.rand(a, generator=g),
            "bn.num_batches_tracked": torch.tensor(10),
        },
        "epoch": 7,
    }
    path = tmp_path / "ckpt.pth"
    torch.save(vit, path)
    return path, vit


def authors_mask(rows: int, cols: int, overlap: int = 2) -> torch.Tensor:
    """Their visual mask, with their row counts [base, base+1, ..., base] generalised
    from 16 rows: part token k and its prompts see their own group and strip k only."""
    group = 1 + PER_GROUP
    prefix = 1 + PER_GROUP + GROUPS * group
    length = prefix + rows * cols
    step = rows // GROUPS
    base = step + overlap // 2
    sizes = [base if k in (0, GROUPS - 1) else base + overlap // 2 for k in range(GROUPS)]
    starts = [0] + [k * step - overlap // 2 for k in range(1, GROUPS)]
    mask = torch.zeros(length, length)
    for row in range(group, prefix):
        part = row // group
        blocked = list(range(part * group)) + list(range((part + 1) * group, prefix))
        first = prefix + starts[part - 1] * cols
        keep = set(range(first, first + sizes[part - 1] * cols))
        blocked += [i for i in range(prefix, length) if i not in keep]
        mask[row, blocked] = float("-inf")
    return mask


def authors_probabilities(vit: dict, images: torch.Tensor) -> torch.Tensor:
    """The authors' inference path, step by step, on plain tensors."""
    backbone = create_backbone("clipadapt-tiny", None)
    backbone.model.load_state_dict({k: v for k, v in vit["ViT_model"].items() if not k.startswith(
        ("visual.transformer.prompt_deep", "visual.part_class_embedding", "transformer.prompt_text_deep",
         "softmax_model", "agg_bn"))})
    m, v, h = backbone.model, backbone.model.visual, vit["model_state_dict"]
    prompts, parts = vit["ViT_model"]["visual.transformer.prompt_deep"], vit["ViT_model"]["visual.part_class_embedding"]
    b = images.shape[0]
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(b, 1, -1), x], 1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x[:, :1], parts.expand(b, -1, -1), x[:, 1:]], 1))
    rows = cols = backbone.grid[0]
    mask = authors_mask(rows, cols)
    for layer, block in enumerate(v.transformer.resblocks):
        if layer < DEPTH:
            for div in range(GROUPS + 1):
                start = 1 if div == 0 else PER_GROUP * div + div + 1
                p = prompts[layer, PER_GROUP * div:PER_GROUP * (div + 1), 0].expand(b, -1, -1)
                x = torch.cat([x[:, :start], p, x[:, start if layer == 0 else start + PER_GROUP:]], 1)
        x = block(x, attn_mask=mask)
    tokens = x @ v.proj  # no ln_post in their VisionTransformer.forward
    text = m.encode_text(backbone.tokenize(SENTENCES))
    words = F.linear(text, h["word_embed.weight"], h["word_embed.bias"]).expand(b, -1, -1)
    vis_key = "visual_embed" if "visual_embed.weight" in h else "vis_embed"
    z = torch.cat([words, F.linear(tokens, h[f"{vis_key}.weight"], h[f"{vis_key}.bias"])], 1)

    def ln(t, name):
        return F.layer_norm(t, (FUSION,), h[f"{name}.weight"], h[f"{name}.bias"], eps=1e-6)

    q, k, val = F.linear(ln(z, "blocks.0.norm1"), h["blocks.0.attn.qkv.weight"], h["blocks.0.attn.qkv.bias"]).chunk(3, -1)
    split = lambda t: t.reshape(b, -1, HEADS, FUSION // HEADS).transpose(1, 2)  # noqa: E731
    att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (FUSION // HEADS) ** 0.5, -1)
    z = z + F.linear((att @ split(val)).transpose(1, 2).reshape(b, -1, FUSION), h["blocks.0.attn.proj.weight"],
                     h["blocks.0.attn.proj.bias"])
    hidden = F.gelu(F.linear(ln(z, "blocks.0.norm2"), h["blocks.0.mlp.fc1.weight"], h["blocks.0.mlp.fc1.bias"]))
    z = ln(z + F.linear(hidden, h["blocks.0.mlp.fc2.weight"], h["blocks.0.mlp.fc2.bias"]), "norm")
    logits = torch.stack([z[:, i] @ h[f"weight_layer.{i}.weight"][0] + h[f"weight_layer.{i}.bias"][0]
                          for i in range(len(SENTENCES))], 1)
    logits = (logits - h["bn.running_mean"]) / torch.sqrt(h["bn.running_var"] + 1e-5) * h["bn.weight"] + h["bn.bias"]
    return torch.sigmoid(logits)


@pytest.mark.parametrize("visual_key", ["visual_embed", "vis_embed"])
def test_imported_model_equals_the_authors_inference(tmp_path, visual_key):
    path, vit = authors_file(tmp_path, visual_key)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny",
                                      fusion_heads=HEADS)
    method, card = load_run(run)
    assert card["params"]["text_prompts"] == 0 and card["params"]["token_norm"] is False
    assert card["params"]["global_prompts"] == PER_GROUP and card["params"]["prompt_depth"] == DEPTH
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = torch.stack([torch.softmax(lg, -1)[:, 1] for lg in method.forward_images(images)], 1)
        theirs = authors_probabilities(vit, images)
    assert ours.shape == (3, 3)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
    assert 0.05 < float(ours.std()) # not a degenerate constant


def test_unknown_key_wrong_attribute_count_and_foreign_files_are_refused(tmp_path):
    path, vit = authors_file(tmp_path)
    two = TaskSpec(task().attributes[:2], multilabel=True)
    with pytest.raises(ClipAdaptError, match="3 attributes|weight_layer.0..2"):
        import_promptpar_checkpoint(path, two, tmp_path / "r1", backbone_name="clipadapt-tiny")
    vit["model_state_dict"]["linear_layer.weight"] = torch.zeros(3, 3)
    torch.save(vit, tmp_path / "odd.pth")
    with pytest.raises(ClipAdaptError, match="linear_layer.weight"):
        import_promptpar_checkpoint(tmp_path / "odd.pth", task(), tmp_path / "r2", backbone_name="clipadapt-tiny")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(ClipAdaptError, match="not a PromptPAR checkpoint"):
        import_promptpar_checkpoint(tmp_path / "other.pth", task(), tmp_path / "r3", backbone_name="clipadapt-tiny")
    del vit["model_state_dict"]["linear_layer.weight"]
    vit["ViT_model"]["visual.ln_post.weight"] = torch.ones(7)  # a CLIP tensor of the wrong shape
    torch.save(vit, tmp_path / "bad.pth")
    with pytest.raises(ClipAdaptError, match="visual.ln_post.weight"):
        import_promptpar_checkpoint(tmp_path / "bad.pth", task(), tmp_path / "r4", backbone_name="clipadapt-tiny")


def test_run_folder_is_self_contained_and_not_overwritten(tmp_path):
    path, _ = authors_file(tmp_path)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny")
    card = json.loads((run / "card.json").read_text())
    assert card["backbone"]["pretrained"].endswith("backbone.safetensors") and (run / "backbone.safetensors").is_file()
    assert card["backbone"]["preprocess"] == "letterbox" and card["task"]["multilabel"] is True
    with pytest.raises(ClipAdaptError, match="already holds a run"):
        import_promptpar_checkpoint(path, task(), run, backbone_name="clipadapt-tiny")


def test_cli_imports_with_an_attribute_file(tmp_path):
    from typer.testing import CliRunner

    from clipadapt.cli.main import app

    path, _ = authors_file(tmp_path)
    attrs = tmp_path / "attrs.yaml"
    attrs.write_text("\n".join(f"{a.name}: {a.sentence}" for a in task().attributes) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["import-promptpar", str(path), "--attributes", str(attrs), "--out", str(tmp_path / "run"),
                                 "--backbone", "clipadapt-tiny", "--fusion-heads", str(HEADS)])
    assert result.exit_code == 0, result.output
    method, _ = load_run(tmp_path / "run")
    assert [a.sentence for a in method.task.attributes] == SENTENCES
    both = runner.invoke(app, ["import-promptpar", str(path), "--attributes", str(attrs), "--dataset", "pa100k",
                               "--out", str(tmp_path / "r2")])
    assert both.exit_code == 2 and "exactly one of --attributes" in both.output


def test_predict_runs_an_imported_promptpar_model_with_a_threshold(tmp_path):
    """Image-path methods go through forward_images in `predict` (not the frozen features)."""
    from PIL import Image
    from typer.testing import CliRunner

    from clipadapt.cli.main import app

    path, vit = authors_file(tmp_path)
    run = import_promptpar_checkpoint(path, task(), tmp_path / "run", backbone_name="clipadapt-tiny",
                                      fusion_heads=HEADS)
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = torch.Generator().manual_seed(3)
    for i in range(3):
        pixels = (torch.rand(96, 48, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(crops / f"p{i}.png")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(crops), "--checkpoint", str(run), "--out", str(out),
                                      "--threshold", "0.45", "--quiet"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns[3:]) == ["a0", "a0:p", "a1", "a1:p", "a2", "a2:p"]
    for name in ("a0", "a1", "a2"):
        assert ((table[f"{name}:p"] > 0.45).astype(int) == table[name]).all()
        assert table[f"{name}:p"].between(0, 1).all()
