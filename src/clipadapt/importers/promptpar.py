"""Import the PromptPAR authors' released checkpoints (SPEC 2) into a clipadapt run folder.

Their file is a torch pickle holding a dict with
    ViT_model        the whole CLIP state dict (OpenAI names) plus their additions:
                     visual.transformer.prompt_deep [depth, prompts, 1, D],
                     visual.part_class_embedding [groups, D], transformer.prompt_text_deep
                     (text prompts: placed after the 77 tokens, they never reached EOT),
                     softmax_model.temperature and agg_bn.* (the aggregation branch);
    model_state_dict the fusion classifier: word_embed, visual_embed (older files:
                     vis_embed), blocks.0 (the ImageNet ViT block), norm,
                     weight_layer.<i> (Linear(768 -> 1) per attribute), bn.
It is read without running pickled code. The CLIP weights inside are written next to
the checkpoint (backbone.safetensors) so the run folder is self-contained, and the
model is built as the authors' inference computed it: text prompts off (they had no
effect), no ln_post on the output tokens, their part regions for the grid (offsets
fixed for a 16-wide grid, see methods/promptpar/regions.py), the prompts of the first
L layers when their vis_depth exceeds the backbone's L blocks (their loop runs only the
blocks there are), and their evaluation preprocessing: the crop resized straight to a
square, bilinear, mean = std = 0.5 (`preprocess="resize"`). `preprocess="letterbox"`
pads a raw crop to a centred black square first, as their padded data sets are, then
resizes the same way. Every tensor must find its place: a key nobody expects, a missing
one or a wrong shape is an error naming it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch

from clipadapt.backbone import open_backbone
from clipadapt.backbone.factory import _random_model
from clipadapt.backbone.weights import load_strict
from clipadapt.engine.checkpoint import CARD, CHECKPOINT, build_card, load_state_strict, save_state, write_checkpoint
from clipadapt.errors import ClipAdaptError
from clipadapt.safe_pickle import safe_torch_load
from clipadapt.methods import build_method
from clipadapt.task import BINARY_CLASSES, Attribute, TaskSpec

BACKBONE_FILE = "backbone.safetensors"
# ViT geometry (width, patch size, blocks) -> the open_clip name of OpenAI's weights
KNOWN_BACKBONES = {(1024, 14, 24): "ViT-L-14-quickgelu", (768, 16, 12): "ViT-B-16-quickgelu",
                   (768, 32, 12): "ViT-B-32-quickgelu"}
# whole-model metadata some CLIP state dicts carry; not tensors of the model
_CLIP_METADATA = ("input_resolution", "context_length", "vocab_size")

AUTHORS_THRESHOLD = 0.45  # PromptPAR's own evaluation decides "present" at p > 0.45


def read_promptpar_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(ViT_model, model_state_dict) of the authors' file, as plain tensors."""
    raw = safe_torch_load(path)
    missing = [k for k in ("ViT_model", "model_state_dict") if not isinstance(raw.get(k), dict)]
    if missing:
        raise ClipAdaptError(f"{path} is not a PromptPAR checkpoint: no {missing} dict (it has {sorted(raw)[:8]}).")
    return _tensors(raw["ViT_model"], path, "ViT_model"), _tensors(raw["model_state_dict"], path, "model_state_dict")


def _tensors(state: dict, path: Path, part: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if isinstance(value, torch.Tensor):
            out[key] = value
        elif key not in _CLIP_METADATA:
            raise ClipAdaptError(f"{path}: {part}['{key}'] is a {type(value).__name__}, not a tensor.")
    return out


def split_clip_state(clip: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(plain CLIP weights, the authors' additions) of the ViT_model dict."""
    added_keys = {"visual.transformer.prompt_deep", "visual.part_class_embedding", "transformer.prompt_text_deep",
                  "softmax_model.temperature"}
    added = {k: v for k, v in clip.items() if k in added_keys or k.startswith("agg_bn.")}
    return {k: v for k, v in clip.items() if k not in added}, added


def infer_backbone_name(clip: dict[str, torch.Tensor], source: str) -> str:
    conv = clip.get("visual.conv1.weight")
    if conv is None:
        raise ClipAdaptError(f"{source}: ViT_model has no visual.conv1.weight; it is not a CLIP ViT state dict.")
    blocks = len({k.split(".")[3] for k in clip if k.startswith("visual.transformer.resblocks.")})
    key = (conv.shape[0], conv.shape[-1], blocks)
    if key not in KNOWN_BACKBONES:
        raise ClipAdaptError(f"{source}: a ViT of width {key[0]}, patch {key[1]}, {key[2]} blocks is not one of "
                             f"{sorted(KNOWN_BACKBONES.values())}; pass backbone_name.")
    return KNOWN_BACKBONES[key]


def fit_prompt_depth(added: dict[str, torch.Tensor], blocks: int, source: str) -> str | None:
    """Keep the prompts of the first `blocks` layers when the file has more (the authors'
    default vis_depth is 24, also for 12-block ViT-B/16, whose loop then uses the first
    12); returns the notice to show, or None when nothing was cut."""
    key = "visual.transformer.prompt_deep"
    prompts = added.get(key)
    if prompts is None or prompts.ndim < 1 or prompts.shape[0] <= blocks:
        return None
    added[key] = prompts[:blocks]
    return (f"{source}: visual prompts for {prompts.shape[0]} layers (vis_depth {prompts.shape[0]}) on a backbone of "
            f"{blocks} blocks; using the first {blocks}, as the authors' code does.")


def promptpar_params(added: dict[str, torch.Tensor], head: dict[str, torch.Tensor], overlap: int, source: str,
                     fusion_heads: int | None = None) -> dict:
    """The method settings the file implies (counts read from the tensors' shapes)."""
    prompts = added.get("visual.transformer.prompt_deep")
    if prompts is None or prompts.ndim != 4 or prompts.shape[2] != 1:
        raise ClipAdaptError(f"{source}: expected visual.transformer.prompt_deep of shape [depth, prompts, 1, D].")
    parts = added.get("visual.part_class_embedding")
    groups = 0 if parts is None else parts.shape[0]
    total = prompts.shape[1]
    if groups and total % (groups + 1):
        raise ClipAdaptError(f"{source}: {total} prompts do not split into {groups} region groups + 1 global group.")
    per_group = total // (groups + 1) if groups else 0
    block = head.get("blocks.0.norm1.weight")
    if block is None or any(k.startswith("blocks.1.") for k in head):
        raise ClipAdaptError(f"{source}: expected exactly one fusion block (blocks.0.*) in model_state_dict.")
    width = block.shape[0]
    return {
        "regions": bool(groups), "groups": groups or 4, "global_prompts": per_group if groups else total,
        "group_prompts": per_group if groups else 0, "overlap": overlap, "prompt_depth": prompts.shape[0],
        "part_regions": "authors",
        "text_prompts": 0, "token_norm": False, "fusion_width": width,
        # heads are not visible in the weights: ViT-B/16 has 12 of width 64
        "fusion_heads": fusion_heads or max(width // 64, 1),
        "aggregation_weight": 0.5 if "softmax_model.temperature" in added else 0.0,
    }


def map_promptpar_keys(added: dict[str, torch.Tensor], head: dict[str, torch.Tensor], attributes: int,
                       source: str) -> dict[str, torch.Tensor]:
    """The authors' tensors under clipadapt's names (PromptPAR.trained_state())."""
    out = {"visual.prompts": added["visual.transformer.prompt_deep"].squeeze(2)}
    if "visual.part_class_embedding" in added:
        out["visual.parts"] = added["visual.part_class_embedding"]
    if "softmax_model.temperature" in added:
        # theirs: softmax(scale * cos / T); ours: softmax(100 * cos * exp(log_temperature))
        out["aggregation.log_temperature"] = -torch.log(added["softmax_model.temperature"].float())
        out.update({f"aggregation.bn.{k[len('agg_bn.'):]}": v for k, v in added.items() if k.startswith("agg_bn.")})
    weights, biases = {}, {}
    for key, value in head.items():
        if key.startswith(("vis_embed.", "visual_embed.")):
            out["fusion.visual_embed." + key.split(".", 1)[1]] = value
        elif key.startswith("word_embed."):
            out["fusion." + key] = value
        elif key.startswith("blocks.0."):
            out["fusion.block." + key[len("blocks.0."):]] = value
        elif key.startswith(("norm.", "bn.")):
            out["fusion." + key] = value
        elif key.startswith("weight_layer."):
            _, index, kind = key.split(".")
            (weights if kind == "weight" else biases)[int(index)] = value.reshape(-1)
        else:
            raise ClipAdaptError(f"{source}: model_state_dict has '{key}', which PromptPAR's fusion classifier "
                                 "does not have (an MLP-fusion or other variant is not supported).")
    if sorted(weights) != list(range(attributes)) or sorted(biases) != list(range(attributes)):
        raise ClipAdaptError(f"{source}: the file has heads weight_layer.0..{max(weights, default=-1)}, but "
                             f"{attributes} attributes were given. Give the attributes the checkpoint was trained on.")
    out["fusion.weight"] = torch.stack([weights[i] for i in range(attributes)])
    out["fusion.bias"] = torch.cat([biases[i] for i in range(attributes)])
    return out


IMPORT_PREPROCESSING = ("resize", "letterbox")


def import_promptpar_checkpoint(path: Path, task: TaskSpec, out_dir: Path, *, backbone_name: str | None = None,
                                overlap: int = 2, fusion_heads: int | None = None, preprocess: str = "resize",
                                normalise: str = "half", interpolation: str = "bilinear", overwrite: bool = False,
                                notify: Callable[[str], None] | None = None) -> Path:
    """Turn an authors' PromptPAR checkpoint into a clipadapt run folder; returns it.

    Args:
        path: the authors' .pth file.
        task: the multi-label attributes in the order of the checkpoint's heads, with the
            sentences it was trained with (they feed the text encoder).
        out_dir: run folder to write (checkpoint.safetensors, backbone.safetensors, card.json).
        backbone_name: open_clip name of the CLIP inside; default inferred (OpenAI ViT-L/14,
            ViT-B/16, ViT-B/32 with QuickGELU).
        overlap: patch rows shared by neighbouring strips (the authors' overlap_row).
        fusion_heads: attention heads of the fusion block (default width / 64: 12 for ViT-B).
        preprocess: "resize" (default: the authors' evaluation transform, the crop resized
            straight to the input square) or "letterbox" (a raw crop padded to a centred
            black square first, as the authors' padded data sets are).
        normalise, interpolation: the authors' mean = std = 0.5 and bilinear resizing.
        notify: called with each notice (default: a Python warning).
    """
    path, out_dir = Path(path).expanduser(), Path(out_dir).expanduser()
    notify = notify or (lambda message: warnings.warn(message, stacklevel=3))
    if preprocess not in IMPORT_PREPROCESSING:
        raise ClipAdaptError(f"preprocess {preprocess!r}: use one of {', '.join(IMPORT_PREPROCESSING)} for an "
                             "imported PromptPAR checkpoint.")
    if not task.multilabel:
        raise ClipAdaptError("A PromptPAR checkpoint predicts multi-label attributes; give a multi-label task.")
    taken = [n for n in (CARD, CHECKPOINT) if (out_dir / n).exists()]
    if taken and not overwrite:
        raise ClipAdaptError(f"{out_dir} already holds a run ({', '.join(taken)}). Choose a new output folder.")
    clip_state, head = read_promptpar_checkpoint(path)
    clip, added = split_clip_state(clip_state)
    name = backbone_name or infer_backbone_name(clip, str(path))

    # The CLIP weights inside the file become the run's backbone file (strictly checked).
    model = _random_model(name)
    load_strict(model, {k: v.float() for k, v in clip.items()}, source=f"{path} (ViT_model)", what=f"model '{name}'")
    cut = fit_prompt_depth(added, len(model.visual.transformer.resblocks), str(path))
    if cut:
        notify(cut)
    params = promptpar_params(added, head, overlap, str(path), fusion_heads)
    state = map_promptpar_keys(added, head, len(task), str(path))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_state(out_dir / BACKBONE_FILE, model.state_dict())
    backbone = open_backbone(name, str((out_dir / BACKBONE_FILE).resolve()), preprocess=preprocess,
                             normalise=normalise, interpolation=interpolation)

    method = build_method("promptpar", backbone, task, params)
    load_state_strict(method, state, source=str(path))
    method.set_thresholds([AUTHORS_THRESHOLD] * len(task))  # the authors' inference decides at 0.45
    source = {"imported_from": str(path), "format": "PromptPAR authors' checkpoint",
              "note": "text prompts off, no ln_post, the authors' part regions and evaluation preprocessing, "
                      "as in the authors' inference"}
    thresholds = {"setting": "fixed", "threshold": AUTHORS_THRESHOLD, "values": dict.fromkeys(task.names, AUTHORS_THRESHOLD),
                  "note": "the PromptPAR authors' inference threshold (SPEC 2)"}
    write_checkpoint(out_dir, method, build_card(method, source=source, thresholds=thresholds))
    return out_dir


def standard_task(dataset: str) -> TaskSpec:
    """The standard attribute set of a PAR data set, in the file order the field's
    checkpoints use, with clipadapt's sentences."""
    from clipadapt.data.par.peta import PETA_35
    from clipadapt.data.par.sentences import TABLES
    from clipadapt.data.par.wider import WIDER_14

    key = dataset.lower()
    names = {"peta": list(PETA_35), "wider": list(WIDER_14)}.get(key)
    if names is None and key in TABLES:
        names = list(TABLES[key])
    if names is None:
        raise ClipAdaptError(f"Unknown attribute set '{dataset}'; use one of pa100k, peta, rap, rap2, wider, "
                             "or --attributes FILE.")
    table = {k.lower(): v for k, v in TABLES[key].items()}
    return TaskSpec(tuple(Attribute(n, BINARY_CLASSES, template=table.get(n.lower(), n)) for n in names), multilabel=True)


__all__ = ["import_promptpar_checkpoint", "map_promptpar_keys", "read_promptpar_checkpoint", "standard_task"]
