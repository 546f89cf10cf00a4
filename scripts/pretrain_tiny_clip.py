"""Pretrain clipadapt's embedded default model: a tiny CLIP (open_clip 'clipadapt-tiny':
64 px, 8 px patches, embed dim 64) learned contrastively on three synthetic worlds
(scripts/tiny_clip_domains.py): street views captioned in the words of the Global
StreetScapes prompts, pedestrian crops captioned with attribute sentences, and
look-alike fine-grained specimens captioned by name or description. Seeded, CPU only,
offline.

    # the shipped recipe, two stages:
    .venv/bin/python scripts/pretrain_tiny_clip.py --out /tmp/stage1
    .venv/bin/python scripts/pretrain_tiny_clip.py --init /tmp/stage1/clipadapt-tiny.safetensors \
        --images streets=2000,pedestrians=8000,specimens=4000 --epochs 6 --lr 5e-4 --test-images 400
    .venv/bin/python scripts/pretrain_tiny_clip.py --images streets=100,pedestrians=100,specimens=100 --epochs 1 --out /tmp/t

Writes <out>/clipadapt-tiny.safetensors (the fp16 open_clip state dict, every key of
`model.state_dict()`) and <out>/clipadapt-tiny.json (recipe, timings, and zero-shot
accuracy / macro-F1 per attribute on a fresh synthetic test set).

It is meant to be "clearly above chance, with room to adapt", not perfect: captions name
only part of what is in a picture, and training stops after a few epochs.

`--images ...,birds=N` (not in the shipped recipe) adds made-up birds captioned by their
parts and never by a class name (scripts/tiny_clip_domains.py); their zero-shot is still
scored on the named look-alike classes.

`--dense-weight` / `--patch-weight` (not in the shipped recipe) add the same contrastive
loss on the last block's value-path patch embeddings (their mean / one random patch per
image), so that microCLIP's SOAP pools text-aligned features as it does in a web-scale
CLIP; docs/experiments/microclip-demo.md gives what a third stage with them measured.
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
from PIL import Image
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score
from torchvision.transforms import v2

from tiny_clip_domains import DOMAINS, TEST_WORLD, ZERO_SHOT, letterboxed

from clipadapt.backbone.clip import ClipBackbone

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "src" / "clipadapt" / "backbone" / "model_configs"
ASSETS = ROOT / "src" / "clipadapt" / "assets"
NAME = "clipadapt-tiny"
INPUT = 64  # the model's input size
STORE = 72  # training images are kept with this short side, so random crops have room
DEFAULT_MIX = "streets=5000,pedestrians=6000,specimens=3000"
MEAN = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
BICUBIC = v2.InterpolationMode.BICUBIC


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=DEFAULT_MIX,
                        help="training images per world, rendered once and kept in memory")
    parser.add_argument("--test-images", type=int, default=600, help="fresh images per world for the zero-shot report")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS)
    parser.add_argument("--dense-weight", type=float, default=0.0,
                        help="weight of a second contrastive loss on the mean of the last block's value-path patch "
                             "features (MaskCLIP's dense path, which microCLIP's SOAP pools); 0 = CLS loss only")
    parser.add_argument("--patch-weight", type=float, default=0.0,
                        help="weight of the same loss on ONE random value-path patch feature per image (every "
                             "patch text-aligned, as MaskCLIP finds in web-scale CLIP); 0 = none")
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from these weights (a clipadapt-tiny .safetensors) instead of random init")
    return parser.parse_args()


# ----------------------------------------------------------------------------- data
def resize_short(img: Image.Image, short: int) -> Image.Image:
    w, h = img.size
    scale = short / min(w, h)
    return img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BICUBIC)


def eval_pixels(img: Image.Image) -> torch.Tensor:
    """The evaluation preprocessing: short side to 64 (bicubic), centre crop 64; uint8 CHW."""
    img = resize_short(img, INPUT)
    w, h = img.size
    left, top = (w - INPUT) // 2, (h - INPUT) // 2
    return torch.from_numpy(np.asarray(img.crop((left, top, left + INPUT, top + INPUT))).copy()).permute(2, 0, 1)


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        name, _, count = part.partition("=")
        if name.strip() not in DOMAINS:
            raise SystemExit(f"--images: unknown world '{name}'; known: {sorted(DOMAINS)}")
        mix[name.strip()] = int(count)
    return mix


def render_corpus(mix: dict[str, int], rng: np.random.Generator, for_training: bool):
    """Images of every world with prior-distributed labels, rendered at random sizes;
    pedestrian crops are letter-boxed to a square (as clipadapt's PAR preprocessing
    does). Training images keep short side STORE; test images are preprocessed for eval.
    Returns (images, [(world, labels)])."""
    images, labels = [], []
    for name, count in mix.items():
        domain = DOMAINS[name]
        for _ in range(count):
            lab = domain.sample(rng)
            img = domain.render(lab, rng)
            img = letterboxed(img) if domain.letterbox else img
            pixels = resize_short(img, STORE) if for_training else None
            images.append(torch.from_numpy(np.asarray(pixels).copy()).permute(2, 0, 1) if for_training else eval_pixels(img))
            labels.append((name, lab))
    return images, labels


def normalise(batch_uint8: torch.Tensor) -> torch.Tensor:
    return (batch_uint8.float() / 255 - MEAN) / STD


def augmented_batch(images: list[torch.Tensor], augment) -> torch.Tensor:
    return normalise(torch.stack([augment(img) for img in images]))


# ----------------------------------------------------------------------------- training
def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay the weight matrices only: gains, biases, embeddings and the temperature are
    left alone (the usual CLIP recipe)."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        no_decay = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (keep if no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
              caption_ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE. Short captions repeat within a batch ("a photo taken during
    day." many times), so every image whose caption is identical counts as a positive:
    the target is spread evenly over them instead of forcing one arbitrary match."""
    logits = logit_scale.exp().clamp(max=100) * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).t()
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def image_embeddings(backbone, pixels: torch.Tensor, dense: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(CLIP image embedding [B, E], value-path patch embeddings [B, N, E] or None) in one pass.

    The patch embeddings are ln_post(value_path_L(x))[patches] @ proj, x the input of the
    last block: the features microCLIP's SOAP pools (MaskCLIP). A CLS-only loss leaves
    them untrained in a 4-block model (a logistic probe on them sits at chance), while in
    a web-scale CLIP they are text-aligned; the dense losses give the tiny model that
    property."""
    if not dense:
        return backbone.model.encode_image(pixels), None
    x = backbone.embed(pixels)
    last = backbone.num_blocks - 1
    for i in range(last):
        x = backbone.block(i, x)
    cls = backbone.pool(backbone.block(last, x))
    return cls, backbone.project_tokens(backbone.value_path_block(last, x)[:, 1:])


def dense_losses(patches: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, caption_ids: torch.Tensor,
                 args, generator: torch.Generator) -> torch.Tensor:
    """dense_weight x the loss on the mean patch embedding + patch_weight x the loss on one
    random patch embedding per image."""
    loss = patches.new_zeros(())
    if args.dense_weight > 0:
        loss = loss + args.dense_weight * clip_loss(patches.mean(dim=1), text, logit_scale, caption_ids)
    if args.patch_weight > 0:
        pick = torch.randint(0, patches.shape[1], (patches.shape[0],), generator=generator)
        one = patches[torch.arange(patches.shape[0]), pick]
        loss = loss + args.patch_weight * clip_loss(one, text, logit_scale, caption_ids)
    return loss


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine to zero."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def train(model, tokenizer, images, labels, args, rng: np.random.Generator, watch) -> tuple[int, set[int], list[dict]]:
    """The contrastive loop; returns (steps, token ids seen, per-epoch log). `watch()`
    gives the zero-shot headline of every world after each epoch (for the log only:
    nothing is selected on it)."""
    augment = v2.Compose([v2.RandomResizedCrop(INPUT, scale=(0.5, 1.0), interpolation=BICUBIC, antialias=True),
                          v2.RandomHorizontalFlip()])  # a flip changes no label
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = len(images) // args.batch_size  # drop the ragged last batch
    total = steps_per_epoch * args.epochs
    warmup = max(1, total // 20)
    seen: set[int] = set()
    log, step = [], 0
    backbone = ClipBackbone(model, name=NAME, pretrained=None, weights_id="pretraining")  # the explicit forward
    model.requires_grad_(True)  # ClipBackbone freezes what it wraps
    patch_rng = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images))
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size].tolist()
            # a fresh caption every epoch: another subset of what the picture shows
            captions = [DOMAINS[labels[i][0]].caption(labels[i][1], rng) for i in idx]
            tokens = tokenizer(captions)
            seen.update(tokens.unique().tolist())
            index: dict[str, int] = {}
            caption_ids = torch.tensor([index.setdefault(c, len(index)) for c in captions])
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, args.lr, warmup)
            cls, patches = image_embeddings(backbone, augmented_batch([images[i] for i in idx], augment),
                                            args.dense_weight > 0 or args.patch_weight > 0)
            text = model.encode_text(tokens)
            loss = clip_loss(cls, text, model.logit_scale, caption_ids)
            if patches is not None:
                loss = loss + dense_losses(patches, text, model.logit_scale, caption_ids, args, patch_rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            step += 1
        log.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                    "logit_scale": round(model.logit_scale.exp().item(), 2), "zero_shot": watch()})
        print(f"epoch {epoch + 1}/{args.epochs}: loss {log[-1]['loss']:.3f}, logit scale {log[-1]['logit_scale']}, "
              f"zero-shot {log[-1]['zero_shot']}", flush=True)
    return step, seen, log


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def zero_shot(model, tokenizer, images: list[torch.Tensor], labels: list) -> dict[str, dict]:
    """Zero-shot report of every world (tiny_clip_domains.ZERO_SHOT)."""
    model.eval()

    def encode_images(imgs):
        batch = normalise(torch.stack(imgs))
        return torch.cat([F.normalize(model.encode_image(b), dim=-1) for b in batch.split(256)])

    def encode_text(texts):
        return F.normalize(model.encode_text(tokenizer(texts)), dim=-1)

    report = {}
    for name in dict.fromkeys(world for world, _ in labels):
        rows = [i for i, (world, _) in enumerate(labels) if world == name]
        report[name] = ZERO_SHOT[name](encode_images, encode_text, [images[i] for i in rows], [labels[i][1] for i in rows])
    return report


def headline(report: dict) -> dict[str, float]:
    """One number per world: streets mean macro-F1, pedestrians mA, specimens accuracy."""
    out = {}
    if "streets" in report:
        out["streets_mean_macro_f1"] = round(float(np.mean([r["macro_f1"] for r in report["streets"].values()])), 4)
    if "pedestrians" in report:
        out["pedestrians_mA"] = round(float(np.mean([r["balanced_accuracy"] for r in report["pedestrians"].values()])), 4)
    if "specimens" in report:
        out["specimens_accuracy"] = report["specimens"]["accuracy"]
    return out


# ----------------------------------------------------------------------------- saving
def shippable_state(model: torch.nn.Module, seen: set[int]) -> dict[str, torch.Tensor]:
    """The full state dict in fp16, with never-trained token rows zeroed (they are random
    init that no caption ever touched; zeros compress in git and in wheels)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    unused = torch.ones(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    unused[sorted(seen)] = False
    state["token_embedding.weight"][unused] = 0.0
    return {k: v.half().contiguous() for k, v in state.items()}


def main() -> None:
    args = parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random init
    torch.manual_seed(args.seed)
    start = time.time()

    open_clip.add_model_config(CONFIG_DIR)
    model = open_clip.create_model(NAME)
    tokenizer = open_clip.get_tokenizer(NAME)
    already_trained: set[int] = set()
    if args.init is not None:
        init = load_file(str(args.init))
        model.load_state_dict({k: v.float() for k, v in init.items()})
        # token rows a previous stage trained stay shipped (the others were zeroed then)
        already_trained = set(init["token_embedding.weight"].abs().sum(1).nonzero().flatten().tolist())

    mix = parse_mix(args.images)
    images, labels = render_corpus(mix, np.random.default_rng([args.seed, 0]), for_training=True)
    test_mix = {TEST_WORLD[name]: args.test_images for name in mix}
    test_images, test_labels = render_corpus(test_mix, np.random.default_rng([args.seed, 1]), for_training=False)
    render_s = time.time() - start
    print(f"rendered {len(images)} training and {len(test_images)} test images in {render_s:.0f}s", flush=True)

    def watch() -> dict[str, float]:
        return headline(zero_shot(model, tokenizer, test_images, test_labels))

    steps, seen, log = train(model, tokenizer, images, labels, args, np.random.default_rng([args.seed, 2]), watch)
    seen |= already_trained
    train_s = time.time() - start - render_s
    report = zero_shot(model, tokenizer, test_images, test_labels)

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{NAME}.safetensors"
    save_file(shippable_state(model, seen), str(weights))
    weights.chmod(0o644)  # safetensors writes owner-only files; package data must be world-readable
    record = {
        "model": NAME,
        "init": str(args.init.name) if args.init else "random",
        "seed": args.seed,
        "images": mix,
        "epochs": args.epochs,
        "steps": steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "loss": "symmetric InfoNCE, identical captions as shared positives, logit scale clamped at 100"
                + (f"; plus {args.dense_weight} x the same loss on the mean value-path patch embedding and "
                   f"{args.patch_weight} x on one random value-path patch embedding per image"
                   if args.dense_weight > 0 or args.patch_weight > 0 else ""),
        "dense_weight": args.dense_weight,
        "patch_weight": args.patch_weight,
        "augmentation": "RandomResizedCrop(64, scale=(0.5, 1), bicubic) + horizontal flip",
        "preprocess": "resize short side 64 (bicubic) + centre crop 64 (pedestrians letter-boxed first), OpenAI CLIP mean/std",
        "captions": "streets: 1-4 random attributes in GSS prompt words; pedestrians: half list every attribute "
                    "shown in short words, half 1-2 attribute sentences (sometimes a negated absent one); "
                    "specimens: class name or one description"
                    + ("; birds: made-up part combinations, a kind word and one or two parts, never a class name"
                       if "birds" in mix else ""),
        "trained_token_ids": len(seen),
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1),
        "wall_time_seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "epoch_log": log,
        "zero_shot_test": {"images_per_world": args.test_images, "seed": [args.seed, 1], "report": report},
        "zero_shot": headline(report),
    }
    (args.out / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["zero_shot"]))


if __name__ == "__main__":
    main()
