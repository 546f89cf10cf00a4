"""Import a CLIP-MHAdapter checkpoint trained with the authors' Dassl code.

The authors (You et al., github.com/SpaceTimeLab/CLIP-MHAdapter, code published as
Qi-YOU/CEGE0049-GSS-Dassl-CoOp, file `clip_mhadapter.py`) train a module `Adapter`:

    proj = Sequential(Linear(768, 256), ReLU, Linear(256, 512), ReLU)
    norm = LayerNorm(512)
    attn = MultiheadAttention(512, heads, batch_first=True)
    dropout = Dropout(0.1)

and register it with Dassl as `register_model("clip_mhadapter", model.adapter, ...)`.
Dassl's `save_checkpoint` then writes `<output-dir>/clip_mhadapter/model.pth.tar-<epoch>`
(and `model-best.pth.tar`) = torch.save({"state_dict", "epoch", "optimizer",
"scheduler", "val_result"}), with a leading "module." stripped from the keys. The state
dict therefore holds the `AUTHORS_KEYS` below. Neither the number of heads nor the blend
ratio is stored (they live in the Dassl config), so both are arguments here.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from clipadapt.backbone import ClipBackbone, open_backbone
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.engine.checkpoint import CARD, CHECKPOINT, build_card, load_state_strict, write_checkpoint
from clipadapt.errors import ClipAdaptError
from clipadapt.safe_pickle import safe_torch_load
from clipadapt.methods import build_method
from clipadapt.task import TaskSpec, normalise_class_name

# authors' Adapter key -> key inside clipadapt's MHAdapterHead
AUTHORS_KEYS: dict[str, str] = {
    "proj.0.weight": "down.weight",
    "proj.0.bias": "down.bias",
    "proj.2.weight": "up.weight",
    "proj.2.bias": "up.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
    "attn.in_proj_weight": "attn.in_proj_weight",
    "attn.in_proj_bias": "attn.in_proj_bias",
    "attn.out_proj.weight": "attn.out_proj.weight",
    "attn.out_proj.bias": "attn.out_proj.bias",
}
# a checkpoint of the single adapter is imported into attribute slot 0 of MHAdapter
HEAD_PREFIX = "adapters.0."
# prefixes other savers add: DataParallel ("module."), a save of the whole CustomCLIP ("adapter.")
_OPTIONAL_PREFIXES = ("module.", "adapter.")
DASSL_MODEL_NAME = "clip_mhadapter"
_DASSL_FILES = ("model-best.pth.tar", f"{DASSL_MODEL_NAME}/model-best.pth.tar")
# (width, embed dim) -> backbones with those sizes, for error messages
_KNOWN_SIZES = {(768, 512): "ViT-B-16 / ViT-B-32", (1024, 768): "ViT-L-14", (1280, 1024): "ViT-H-14"}


@dataclass(frozen=True)
class DasslCheckpoint:
    """What an import needs from a Dassl checkpoint file."""

    path: Path
    state: dict[str, torch.Tensor]  # the adapter's tensors, keys in the authors' names
    epoch: int | None
    val_result: float | None


# ---------------------------------------------------------------------- reading
def resolve_checkpoint_path(path: Path) -> Path:
    """Accept the checkpoint file itself, or a Dassl output folder holding the best model."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in _DASSL_FILES:
            if (path / name).is_file():
                return path / name
        raise ClipAdaptError(
            f"{path} is a folder without {' or '.join(_DASSL_FILES)}. Pass the checkpoint file itself "
            f"(e.g. <dassl output>/{DASSL_MODEL_NAME}/model.pth.tar-<epoch>)."
        )
    if not path.is_file():
        raise ClipAdaptError(
            f"Checkpoint not found: {path}. Pass a Dassl model.pth.tar-<epoch> or model-best.pth.tar file."
        )
    return path


def _plain_number(value) -> float | int | None:
    """Epoch / validation score as a JSON number (numpy scalars and 1-element tensors too)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if math.isfinite(value) else None


def _tensor_state(raw: dict, path: Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors: Dassl nests them under "state_dict"; a bare state dict also works."""
    state = raw.get("state_dict", raw)
    if not isinstance(state, dict):
        raise ClipAdaptError(f"{path}: 'state_dict' is a {type(state).__name__}, not a dict of tensors.")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ClipAdaptError(
            f"{path} holds no tensors (top-level keys: {sorted(map(str, raw))}). Is it a Dassl model checkpoint?"
        )
    # fp32 CPU copies: the authors train in fp32, and safetensors wants contiguous CPU tensors
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}


def read_dassl_checkpoint(path: Path) -> DasslCheckpoint:
    """Read a Dassl checkpoint (or a .safetensors of the adapter's state dict) safely."""
    path = resolve_checkpoint_path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return DasslCheckpoint(path, _tensor_state(load_file(str(path)), path), None, None)
    raw = safe_torch_load(path)
    epoch, score = _plain_number(raw.get("epoch")), _plain_number(raw.get("val_result"))
    return DasslCheckpoint(path, _tensor_state(raw, path), epoch, score)


# ---------------------------------------------------------------------- key mapping
def _strip_prefixes(key: str) -> str:
    for prefix in _OPTIONAL_PREFIXES:
        key = key.removeprefix(prefix)
    return key


def map_authors_keys(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Authors' adapter keys -> MHAdapterHead keys; anything else is a clear error."""
    stripped = {_strip_prefixes(k): k for k in state}
    missing = [k for k in AUTHORS_KEYS if k not in stripped]
    unexpected = sorted(k for k in stripped if k not in AUTHORS_KEYS)
    if missing or unexpected:
        found = ", ".join(f"{k} {tuple(state[k].shape)}" for k in sorted(state))
        raise ClipAdaptError(
            f"{source} does not hold the CLIP-MHAdapter adapter layout. Expected exactly the keys "
            f"{list(AUTHORS_KEYS)}; missing {missing or 'none'}, unexpected {unexpected or 'none'}. "
            f"The file holds: {found}."
        )
    return {AUTHORS_KEYS[k]: state[original] for k, original in stripped.items()}


# ---------------------------------------------------------------------- checks
def expected_shapes(width: int, bottleneck: int, embed_dim: int) -> dict[str, tuple[int, ...]]:
    """Shapes of MHAdapterHead's tensors for token width D, bottleneck and embed dim E."""
    e = embed_dim
    return {
        "down.weight": (bottleneck, width), "down.bias": (bottleneck,),
        "up.weight": (e, bottleneck), "up.bias": (e,),
        "norm.weight": (e,), "norm.bias": (e,),
        "attn.in_proj_weight": (3 * e, e), "attn.in_proj_bias": (3 * e,),
        "attn.out_proj.weight": (e, e), "attn.out_proj.bias": (e,),
    }


def check_against_backbone(head: dict[str, torch.Tensor], backbone: ClipBackbone, source: str) -> int:
    """Every tensor must fit the backbone's width D and embed dim E; returns the bottleneck."""
    file_width, bottleneck = head["down.weight"].shape[1], head["down.weight"].shape[0]
    file_embed = head["up.weight"].shape[0]
    want = expected_shapes(backbone.width, bottleneck, backbone.embed_dim)
    wrong = [k for k in want if tuple(head[k].shape) != want[k]]
    if wrong:
        k = wrong[0]
        likely = _KNOWN_SIZES.get((file_width, file_embed))
        hint = f" (sizes of {likely}; the authors used ViT-B-16 with pretrained='openai')" if likely else ""
        raise ClipAdaptError(
            f"{source} holds an adapter for token width {file_width} and embedding size {file_embed}{hint}, "
            f"but backbone '{backbone.name}' has width {backbone.width} and embedding size {backbone.embed_dim} "
            f"(first mismatch: {k} is {tuple(head[k].shape)}, expected {want[k]}). "
            "Import with the backbone the adapter was trained on."
        )
    bad = [k for k, v in head.items() if not torch.isfinite(v).all()]
    if bad:
        raise ClipAdaptError(
            f"{source} has non-finite values (NaN/inf) in {bad}; the training run diverged. Use another epoch's file."
        )
    return bottleneck


def resolve_heads(heads: int | None, embed_dim: int, source: Path) -> int:
    """The number of attention heads: given by the user (Dassl files do not store it).

    Heads cannot be read from the tensors (in_proj is [3E, E] whatever the head count).
    The authors' grid-search folders are named `...-mh_<heads>-...`; that is offered as
    a hint, never silently trusted.
    """
    if heads is None:
        match = re.search(r"mh_(\d+)", str(source))
        hint = f" The folder name suggests {match.group(1)} (...mh_{match.group(1)}...)." if match else ""
        raise ClipAdaptError(
            f"The number of attention heads is not stored in {source} and cannot be read from tensor shapes. "
            f"Pass heads (the run's MODEL.NUM_HEADS; the authors used 4, 8 or 16).{hint}"
        )
    if heads < 1 or embed_dim % heads:
        raise ClipAdaptError(f"heads must be a positive divisor of the embedding size {embed_dim}; got {heads}.")
    return heads


def gss_task(attribute: str, classes: list[str] | None) -> TaskSpec:
    """A one-attribute GSS task; classes default to the attribute's full GSS class list."""
    if attribute not in GSS_SCHEMA:
        raise ClipAdaptError(f"Unknown GSS attribute '{attribute}'. Known: {sorted(GSS_SCHEMA)}.")
    known = GSS_SCHEMA[attribute][1]
    chosen = tuple(normalise_class_name(c) for c in classes) if classes else known
    unknown = [c for c in chosen if c not in known]
    if unknown or len(set(chosen)) != len(chosen) or not chosen:
        raise ClipAdaptError(
            f"classes {list(chosen)} are not distinct classes of GSS attribute '{attribute}' (unknown: {unknown}); "
            f"its classes are {list(known)}."
        )
    return TaskSpec((gss_attribute(attribute, chosen),))


def _refuse_overwrite(out_dir: Path, overwrite: bool) -> None:
    taken = [n for n in (CARD, CHECKPOINT) if (out_dir / n).exists()]
    if taken and not overwrite:
        raise ClipAdaptError(
            f"{out_dir} already holds a run ({', '.join(taken)}). Choose a new output folder or pass overwrite=True."
        )


# ---------------------------------------------------------------------- entry point
def import_mhadapter_checkpoint(
    path: Path,
    attribute: str,
    classes: list[str] | None,
    backbone_name: str,
    pretrained: str | None,
    beta: float,
    heads: int | None,
    out_dir: Path,
    *,
    backbone: ClipBackbone | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn the authors' Dassl checkpoint into a clipadapt run folder; returns `out_dir`.

    Args:
        path: `model.pth.tar-N` / `model-best.pth.tar` (or the Dassl folder holding it).
        attribute: the GSS attribute the adapter was trained for (e.g. "weather").
        classes: class names in the order of the authors' logits; default: all GSS
            classes of the attribute, sorted (the order of their label map).
        backbone_name, pretrained: the CLIP it was trained on (authors: "ViT-B-16", "openai").
        beta: the run's MODEL.BLEND_RATIO; heads: its MODEL.NUM_HEADS (not in the file).
        out_dir: run folder to write (checkpoint.safetensors + card.json).
        backbone: an already built backbone to reuse (must be backbone_name/pretrained).

    The folder loads with `clipadapt.engine.checkpoint.load_run` like a trained run.
    """
    ckpt = read_dassl_checkpoint(path)
    head = map_authors_keys(ckpt.state, str(ckpt.path))
    # everything that needs only the file and the arguments is checked before the
    # (possibly slow) backbone is built; E here is the file's, checked against the backbone below
    heads = resolve_heads(heads, head["up.weight"].shape[0], ckpt.path)
    task = gss_task(attribute, classes)
    out_dir = Path(out_dir).expanduser()
    _refuse_overwrite(out_dir, overwrite)
    if backbone is not None and backbone.name != backbone_name:
        raise ClipAdaptError(f"The backbone passed is '{backbone.name}' but backbone_name is '{backbone_name}'.")
    backbone = backbone if backbone is not None else open_backbone(backbone_name, pretrained)
    bottleneck = check_against_backbone(head, backbone, str(ckpt.path))

    method = build_method("mhadapter", backbone, task, {"beta": beta, "heads": heads, "bottleneck": bottleneck})
    load_state_strict(method, {HEAD_PREFIX + k: v for k, v in head.items()}, source=str(ckpt.path))
    source = {
        "imported_from": str(ckpt.path),
        "format": "dassl (authors' CLIP-MHAdapter)",
        "epoch": ckpt.epoch,
        "val_result": ckpt.val_result,
    }
    write_checkpoint(out_dir, method, build_card(method, source=source))
    return out_dir
