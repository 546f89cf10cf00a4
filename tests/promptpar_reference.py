"""The PromptPAR authors' inference, re-computed step by step for the import tests.

Independent of clipadapt's PromptPAR code: a checkpoint in the authors' layout with
random tensors, their visual mask as their `build_visual_mask` computes it (part
offsets fixed for a 16-wide grid), their prompt loop (`layer < vis_depth`, over the
blocks the backbone has), no ln_post, the fusion block written out, and their
validation transform on image FILES (Resize((S, S)) with torchvision's default
interpolation, ToTensor, Normalize(0.5, 0.5)). Only open_clip's CLIP blocks are shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from clipadapt.backbone import create_backbone

GROUPS, FUSION, HEADS = 4, 64, 4
# Their part offsets, in patches, for rows 3, 7 and 11 of a 16-wide grid.
THEIR_PART_OFFSETS = (0, 48, 112, 176)


def register_grid_model(folder: Path, name: str, image_size: int, patch_size: int, layers: int = 2,
                        width: int = 64) -> str:
    """A tiny open_clip ViT config (random weights) with a grid of image_size / patch_size."""
    config = {"embed_dim": 32, "vision_cfg": {"image_size": image_size, "layers": layers, "width": width,
                                              "head_width": 32, "patch_size": patch_size},
              "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{name}.json")
    return name


def authors_file(path: Path, model: str, sentences: list[str], per_group: int, depth: int,
                 visual_key: str = "visual_embed", seed: int = 0, fusion: int = FUSION) -> dict:
    """Write a checkpoint in the authors' layout around `model`'s CLIP; returns its dict."""
    g = torch.Generator().manual_seed(seed)
    clip = create_backbone(model, None).model.state_dict()
    d, e, a = clip["visual.conv1.weight"].shape[0], clip["visual.proj"].shape[1], len(sentences)

    def rnd(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    vit = {
        "ViT_model": {
            **clip,
            "visual.transformer.prompt_deep": rnd(depth, per_group * (GROUPS + 1), 1, d),
            "visual.part_class_embedding": rnd(GROUPS, d),
            "transformer.prompt_text_deep": rnd(2, 3, a, 32, scale=1.0),
            "softmax_model.temperature": torch.tensor(0.7),
            "agg_bn.weight": torch.ones(a), "agg_bn.bias": torch.zeros(a), "agg_bn.running_mean": torch.zeros(a),
            "agg_bn.running_var": torch.ones(a), "agg_bn.num_batches_tracked": torch.tensor(0),
        },
        "model_state_dict": {
            "word_embed.weight": rnd(fusion, e), "word_embed.bias": rnd(fusion),
            f"{visual_key}.weight": rnd(fusion, e), f"{visual_key}.bias": rnd(fusion),
            "blocks.0.norm1.weight": 1 + rnd(fusion), "blocks.0.norm1.bias": rnd(fusion),
            "blocks.0.attn.qkv.weight": rnd(3 * fusion, fusion), "blocks.0.attn.qkv.bias": rnd(3 * fusion),
            "blocks.0.attn.proj.weight": rnd(fusion, fusion), "blocks.0.attn.proj.bias": rnd(fusion),
            "blocks.0.norm2.weight": 1 + rnd(fusion), "blocks.0.norm2.bias": rnd(fusion),
            "blocks.0.mlp.fc1.weight": rnd(4 * fusion, fusion), "blocks.0.mlp.fc1.bias": rnd(4 * fusion),
            "blocks.0.mlp.fc2.weight": rnd(fusion, 4 * fusion), "blocks.0.mlp.fc2.bias": rnd(fusion),
            "norm.weight": 1 + rnd(fusion), "norm.bias": rnd(fusion),
            **{f"weight_layer.{i}.weight": rnd(1, fusion, scale=0.2) for i in range(a)},
            **{f"weight_layer.{i}.bias": rnd(1, scale=1.0) for i in range(a)},
            "bn.weight": 1 + rnd(a), "bn.bias": rnd(a),
            "bn.running_mean": rnd(a, scale=1.0), "bn.running_var": 0.5 + torch.rand(a, generator=g),
            "bn.num_batches_tracked": torch.tensor(10),
        },
        "epoch": 7,
    }
    torch.save(vit, path)
    return vit


def their_visual_mask(per_group: int, grid: int, overlap: int = 2) -> torch.Tensor:
    """Their additive mask: rows of part token k and its prompts block every earlier and
    later prefix token outside their group, and every patch outside part k's span, which
    starts at THEIR_PART_OFFSETS[k] and is (grid // 4 + overlap // 2 [+ overlap // 2 for
    the inner parts]) * grid patches long."""
    group = 1 + per_group
    prefix = 1 + per_group + GROUPS * group
    length = prefix + grid * grid
    base = grid // GROUPS + overlap // 2
    rows_of_part = [base if k in (0, GROUPS - 1) else base + overlap // 2 for k in range(GROUPS)]
    mask = torch.zeros(length, length)
    for row in range(group, prefix):
        part = row // group  # 1..4
        seen = set(range(part * group, (part + 1) * group))
        span_start = prefix + THEIR_PART_OFFSETS[part - 1]
        seen |= set(range(span_start, span_start + rows_of_part[part - 1] * grid))
        blocked = [i for i in range(length) if i not in seen]
        mask[row, blocked] = float("-inf")
    return mask


def their_transform(size: int) -> T.Compose:
    """Their validation transform (dataset/AttrDataset.py get_transform)."""
    return T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])


def padded_like_their_data(image: Image.Image) -> Image.Image:
    """A crop centred on a black square, as their Pad_datasets hold them."""
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def their_pixels(files: list[Path], size: int, pad_first: bool) -> torch.Tensor:
    """Image files through their transform ([B, 3, size, size]); pad_first pads raw crops
    to a square first (what their padded data sets did on disk)."""
    transform = their_transform(size)
    out = []
    for file in files:
        image = Image.open(file).convert("RGB")
        out.append(transform(padded_like_their_data(image) if pad_first else image))
    return torch.stack(out)


@torch.no_grad()
def their_probabilities(vit: dict, model: str, sentences: list[str], images: torch.Tensor, per_group: int,
                        heads: int = HEADS) -> torch.Tensor:
    """Their inference path on preprocessed images: [B, A] probabilities."""
    added = ("visual.transformer.prompt_deep", "visual.part_class_embedding", "transformer.prompt_text_deep",
             "softmax_model", "agg_bn")
    backbone = create_backbone(model, None)
    backbone.model.load_state_dict({k: v for k, v in vit["ViT_model"].items() if not k.startswith(added)})
    m, v, h = backbone.model, backbone.model.visual, vit["model_state_dict"]
    prompts, parts = vit["ViT_model"]["visual.transformer.prompt_deep"], vit["ViT_model"]["visual.part_class_embedding"]
    vis_depth, b = prompts.shape[0], images.shape[0]
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(b, 1, -1), x], 1) + v.positional_embedding
    x = v.ln_pre(torch.cat([x[:, :1], parts.expand(b, -1, -1), x[:, 1:]], 1))
    mask = their_visual_mask(per_group, backbone.grid[0])
    for layer, block in enumerate(v.transformer.resblocks):  # the blocks there are, whatever vis_depth says
        if layer < vis_depth:
            for div in range(GROUPS + 1):
                start = 1 if div == 0 else per_group * div + div + 1
                p = prompts[layer, per_group * div:per_group * (div + 1), 0].expand(b, -1, -1)
                x = torch.cat([x[:, :start], p, x[:, start if layer == 0 else start + per_group:]], 1)
        x = block(x, attn_mask=mask)
    tokens = x @ v.proj  # no ln_post in their VisionTransformer.forward
    text = m.encode_text(backbone.tokenize(sentences))
    width = h["word_embed.weight"].shape[0]
    words = F.linear(text, h["word_embed.weight"], h["word_embed.bias"]).expand(b, -1, -1)
    vis_key = "visual_embed" if "visual_embed.weight" in h else "vis_embed"
    z = torch.cat([words, F.linear(tokens, h[f"{vis_key}.weight"], h[f"{vis_key}.bias"])], 1)

    def ln(t, name):
        return F.layer_norm(t, (width,), h[f"{name}.weight"], h[f"{name}.bias"], eps=1e-6)

    q, k, val = F.linear(ln(z, "blocks.0.norm1"), h["blocks.0.attn.qkv.weight"], h["blocks.0.attn.qkv.bias"]).chunk(3, -1)
    split = lambda t: t.reshape(b, -1, heads, width // heads).transpose(1, 2)  # noqa: E731
    att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (width // heads) ** 0.5, -1)
    z = z + F.linear((att @ split(val)).transpose(1, 2).reshape(b, -1, width), h["blocks.0.attn.proj.weight"],
                     h["blocks.0.attn.proj.bias"])
    hidden = F.gelu(F.linear(ln(z, "blocks.0.norm2"), h["blocks.0.mlp.fc1.weight"], h["blocks.0.mlp.fc1.bias"]))
    z = ln(z + F.linear(hidden, h["blocks.0.mlp.fc2.weight"], h["blocks.0.mlp.fc2.bias"]), "norm")
    logits = torch.stack([z[:, i] @ h[f"weight_layer.{i}.weight"][0] + h[f"weight_layer.{i}.bias"][0]
                          for i in range(len(sentences))], 1)
    logits = (logits - h["bn.running_mean"]) / torch.sqrt(h["bn.running_var"] + 1e-5) * h["bn.weight"] + h["bn.bias"]
    return torch.sigmoid(logits)
