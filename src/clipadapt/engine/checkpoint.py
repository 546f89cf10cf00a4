"""Checkpoints: safetensors of the trained tensors plus a JSON run card; strict loading.

The card holds everything needed to rebuild the model (method and params, backbone
name and weights, task with class names and prompts, preprocessing) so a run folder
is self-describing. No pickle is ever read.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file

import clipadapt
from clipadapt.backbone import apply_preprocessing, open_backbone
from clipadapt.backbone.weights import load_strict
from clipadapt.data.transforms import describe_transform
from clipadapt.engine.card import CARD_VERSION, RunCard, as_card
from clipadapt.io import atomic_write, write_json
from clipadapt.errors import ClipAdaptError
from clipadapt.methods import Method, build_method
from clipadapt.methods.base import DECISION_THRESHOLD, PLATT_BIAS, TEMPERATURE
from clipadapt.run_files import RunFiles
from clipadapt.task import TaskSpec

CHECKPOINT, CARD = RunFiles.CHECKPOINT, RunFiles.CARD  # named in clipadapt.run_files; imported from here too


def versions() -> dict:
    return {
        "clipadapt": clipadapt.__version__,
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "python": platform.python_version(),
    }


def build_card(method: Method, **extra) -> RunCard:
    """The run card of `method`; `extra` adds run facts (seed, config, metrics ...)."""
    bb = method.backbone
    card = {
        "method": method.name,
        "params": method.params.model_dump(mode="json"),
        # describe() is also the feature store's key; the card adds what a reader wants named
        "backbone": {**bb.describe(), "family": bb.family, "tokenizer": bb.tokenizer_name},
        "task": method.task.to_dict(),
        "prompts": method.prompts(),
        "preprocessing": {
            "image_size": bb.image_size,
            "mean": list(bb.image_mean),
            "std": list(bb.image_std),
            "test": describe_transform("test", bb.image_size, bb.image_mean, bb.image_std, bb.transform_kind(False),
                                       bb.interpolation)["steps"],
        },
        "tap": {"block": method.needs().tap_block, "of_blocks": bb.num_blocks, "tokens": "patches (CLS dropped), before ln_post"},
        "trainable_parameters": method.num_trainable(),
        "versions": versions(),
    }
    card.update(extra)
    return RunCard.from_dict({**card, "version": CARD_VERSION})


def save_state(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors, atomically (tensors made contiguous and moved to CPU); `metadata`
    (strings) travels in the same file, so tensors and facts about them can never be
    half-updated by a crash."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    atomic_write(path, lambda p: save_file(clean, str(p), metadata=metadata), durable=True)


def read_state(path: Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a damaged file is one clear error."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as exc:  # truncated / overwritten file: safetensors raises its own error types
        raise ClipAdaptError(f"{path} is damaged or not a safetensors file ({exc}). Delete it and re-run.") from None


def write_checkpoint(run_dir: Path, method: Method, card: RunCard | dict,
                     state: dict[str, torch.Tensor] | None = None) -> None:
    """Write checkpoint.safetensors (trained state) and card.json into `run_dir`."""
    save_state(Path(run_dir) / CHECKPOINT, state if state is not None else method.trained_state())
    write_json(Path(run_dir) / CARD, as_card(card).to_dict())


def read_card(run_dir: Path) -> RunCard:
    """The card of a run folder (any version written so far), with a clear error when it is not one."""
    path = Path(run_dir) / CARD
    if not path.is_file():
        raise ClipAdaptError(f"{run_dir} is not a clipadapt run folder (no {CARD}). Pass the --out folder of a `clipadapt train` run.")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipAdaptError(f"{path} is not valid JSON ({exc}).") from None
    _check_card(card, path)
    return RunCard.from_dict(card)


def _check_card(card, path: Path) -> None:
    """The fields load_run relies on, with their types: a damaged or hand-made card is one
    clear error, not a KeyError deep inside the model code."""
    problems = []
    if not isinstance(card, dict):
        problems.append(f"it holds a {type(card).__name__}, not an object")
    else:
        if not isinstance(card.get("method"), str):
            problems.append("'method' is not a method name")
        if not isinstance(card.get("backbone"), dict) or not isinstance(card["backbone"].get("name"), str):
            problems.append("'backbone' has no 'name'")
        if not isinstance(card.get("task"), dict):
            problems.append("'task' is missing")
        if not isinstance(card.get("params", {}), dict):
            problems.append("'params' is not an object")
    if problems:
        raise ClipAdaptError(f"{path} is not a clipadapt run card: {'; '.join(problems)}. Re-run `clipadapt train`, "
                             "or restore the run folder from where it was written.")


def load_state_strict(method: Method, state: dict[str, torch.Tensor], source: str, threshold: float = 0.5) -> None:
    """Load a method's trained tensors with the one strict loader (`backbone.weights.load_strict`)
    against what the method trains (`trained_state`). Three keys are optional, because a run
    at their defaults does not write them (nor did runs written before they existed):
    `temperature` [A] (1), `platt_bias` [A] (0) and `decision_threshold` [A] (`threshold`,
    the card's train.threshold, for every attribute)."""
    count = len(method.task)
    state = {TEMPERATURE: torch.ones(count), PLATT_BIAS: torch.zeros(count),
             DECISION_THRESHOLD: torch.full((count,), float(threshold), dtype=torch.float64), **state}
    expected = {**method.trained_state(), TEMPERATURE: method.temperature, PLATT_BIAS: method.platt_bias,
                DECISION_THRESHOLD: method.decision_threshold}
    load_strict(method, state, source, what=f"method '{method.name}' on backbone '{method.backbone.name}'",
                expected=expected, fix="It was trained with other settings, classes or backbone.")


def load_run(run_dir: Path, device: str | torch.device = "cpu", backbone=None) -> tuple[Method, RunCard]:
    """Rebuild the method of a run folder from its card and load its checkpoint strictly.

    `backbone` may be passed to reuse one already built; it must be the card's backbone.
    """
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        raise ClipAdaptError(f"{run_dir} has a card but no {CHECKPOINT}; the run did not finish. Re-run or resume it.")
    want = card.backbone
    passed = backbone is not None
    backbone = backbone if passed else open_backbone(want)
    check_backbone(card, backbone, source=str(run_dir))
    if passed:  # one opened here has the card's preprocessing already; one passed in takes it now
        apply_preprocessing(backbone, want)
    try:
        task = TaskSpec.from_dict(card.task)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ClipAdaptError(f"{run_dir / CARD}: its 'task' cannot be read ({type(exc).__name__}: {exc}).") from None
    method = build_method(card.method, backbone, task, card.params)
    state, _ = read_state(ckpt)  # a truncated or foreign file is one clear error
    load_state_strict(method, state, source=str(ckpt), threshold=card.threshold)
    return method.to(device).eval(), card


def check_backbone(card: RunCard | dict, backbone, source: str) -> None:
    """The backbone must be the one the checkpoint was trained on (name and weights)."""
    want = as_card(card).backbone
    if want["name"] != backbone.name or want.get("weights_id") != backbone.weights_id:
        raise ClipAdaptError(
            f"{source} was trained on backbone {want['name']} (weights {want.get('weights_id')}), but the backbone "
            f"given is {backbone.name} (weights {backbone.weights_id}). Use the same backbone and weights."
        )
