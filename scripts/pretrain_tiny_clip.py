"""Pretrain the embedded default model: a tiny CLIP learned contrastively on synthetic
captioned street views (seeded, reproducible, CPU only).

    .venv/bin/python scripts/pretrain_tiny_clip.py [--images 6000] [--epochs 8]

Writes src/clipadapt/assets/clipadapt-tiny.safetensors (fp16 open_clip state dict) and
clipadapt-tiny.json (recipe, wall time, zero-shot figures on a fresh synthetic test set).
It is trained only to be "clearly above chance, with room to adapt": the captions name
a random 1-3 of the eight attributes, and training stops early on purpose.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from clipadapt.backbone.factory import CONFIG_DIR
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.data.synthetic.streets import ATTRIBUTES, caption_for, render_street_scene, sample_scene_labels
from clipadapt.data.transforms import CLIP_MEAN, CLIP_STD, test_transform

ASSETS = Path(__file__).resolve().parent.parent / "src" / "clipadapt" / "assets"
NAME = "clipadapt-tiny"


def render(n: int, seed: int, size: int) -> tuple[torch.Tensor, list[dict]]:
    """n rendered scenes, preprocessed like clipadapt's test transform (64 px)."""
    rng = np.random.default_rng(seed)
    transform = test_transform(size, CLIP_MEAN, CLIP_STD)
    images, labels = [], []
    for _ in range(n):
        scene = sample_scene_labels(rng)
        images.append(transform(render_street_scene(scene, rng, size=96)))
        labels.append(scene)
    return torch.stack(images), labels


@torch.no_grad()
def zero_shot(model, tokenizer, images: torch.Tensor, labels: list[dict]) -> dict:
    """Per attribute accuracy and macro-F1 of zero-shot prediction with the GSS prompts."""
    model.eval()
    feats = torch.cat([F.normalize(model.encode_image(b), dim=-1) for b in images.split(256)])
    out = {}
    for a in ATTRIBUTES:
        attr = gss_attribute(a, GSS_SCHEMA[a][1])
        text = F.normalize(model.encode_text(tokenizer(attr.prompts())), dim=-1)
        pred = (feats @ text.t()).argmax(1).numpy()
        true = np.array([attr.classes.index(lab[a]) for lab in labels])
        out[a] = {"accuracy": round(float((pred == true).mean()), 4),
                  "macro_f1": round(float(f1_score(true, pred, average="macro")), 4),
                  "chance_accuracy": round(1 / attr.num_classes, 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Pretrain clipadapt's embedded tiny CLIP.")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(args.seed)
    start = time.time()

    open_clip.add_model_config(CONFIG_DIR)
    model = open_clip.create_model(NAME)
    tokenizer = open_clip.get_tokenizer(NAME)
    size = model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    images, labels = render(args.images, args.seed, size)
    test_images, test_labels = render(1000, args.seed + 1, size)
    print(f"rendered {len(images)} + {len(test_images)} images in {time.time() - start:.0f}s")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    total = steps_per_epoch * args.epochs
    rng = np.random.default_rng(args.seed)
    seen_tokens: set[int] = set()
    step = 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images))
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            batch = images[idx]
            flip = torch.rand(len(idx)) < 0.5  # flips never change a label
            batch[flip] = batch[flip].flip(-1)
            tokens = tokenizer([caption_for(labels[i], rng) for i in idx.tolist()])
            seen_tokens.update(tokens.unique().tolist())
            for group in opt.param_groups:  # cosine per step, short warm-up
                group["lr"] = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / total))
            img = F.normalize(model.encode_image(batch), dim=-1)
            txt = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
            # Captions repeat across images (same words, same scene classes): targets are
            # every caption identical to the image's own, not just the diagonal.
            same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
            target = same / same.sum(1, keepdim=True)
            loss = 0.5 * (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.t().log_softmax(1)).sum(1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        zs = zero_shot(model, tokenizer, test_images, test_labels)
        mean_f1 = np.mean([v["macro_f1"] for v in zs.values()])
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, zero-shot mean macro-F1 {mean_f1:.3f}, {time.time() - start:.0f}s")

    state = model.state_dict()
    unused = torch.ones(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    unused[list(seen_tokens)] = False
    state["token_embedding.weight"][unused] = 0.0  # never trained; zeros compress in git and wheels
    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in state.items()}, str(args.out / f"{NAME}.safetensors"))
    zs = zero_shot(model, tokenizer, test_images, test_labels)
    record = {
        "model": NAME, "seed": args.seed, "images": args.images, "epochs": args.epochs, "steps": step,
        "batch_size": args.batch_size, "lr": args.lr, "wall_time_s": round(time.time() - start, 1),
        "torch": torch.__version__, "trained_token_ids": len(seen_tokens),
        "zero_shot_test": zs, "zero_shot_mean_macro_f1": round(float(np.mean([v["macro_f1"] for v in zs.values()])), 4),
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
