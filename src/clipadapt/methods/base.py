"""The Method contract: what every adaptation method provides to the engine."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn

from clipadapt.backbone import ClipBackbone, ImageFeatures
from clipadapt.errors import ClipAdaptError
from clipadapt.registry import Registry
from clipadapt.task import TaskSpec
from clipadapt.validation import describe_errors

METHODS: Registry[type["Method"]] = Registry("method")
TEMPERATURE = "temperature"  # the calibrated run's per-attribute temperatures in trained_state()
PLATT_BIAS = "platt_bias"  # a Platt-calibrated run's per-attribute bias (binary attributes) in trained_state()
DECISION_THRESHOLD = "decision_threshold"  # a multi-label run's per-attribute decision thresholds
DEFAULT_THRESHOLD = 0.5


def register_method(name: str):
    """Class decorator: make a Method available by `name` (also from outside the package)."""

    def add(cls: type["Method"]) -> type["Method"]:
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return add


class MethodParams(BaseModel):
    """Base of each method's own settings (method.params in a config)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class FeatureNeeds:
    """What a method needs from the image tower.

    tap_block: 1-based block whose output patch tokens are needed (None = embedding only).
    frozen_image_path: True when nothing on the image path is trained, so features can
        be computed once and served from the feature store.
    """

    tap_block: int | None = None
    frozen_image_path: bool = True


class Method(nn.Module):
    """An adaptation method on a frozen backbone, for the attributes of a task.

    Subclasses set `Params`, build their modules in `__init__`, and implement the hook
    `logits(features) -> list of logits [B, K_a]`, one per attribute (image-path methods:
    `image_logits(images)`, and `training_image_logits` for auxiliary outputs). `forward`,
    `forward_images` and `training_forward_images` are this class's: they call the hooks and
    divide by the calibrated temperatures, in plain sight, keeping no state. The backbone is a
    submodule (so `.to(device)` moves it) but its weights are frozen unless a method
    unfreezes some on purpose; checkpoints hold `trained_state()` only.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for `clipadapt list methods`
    Params: ClassVar[type[MethodParams]] = MethodParams
    trains: ClassVar[bool] = True  # False: no gradient training (zero-shot, majority)
    # True: the classifier is built from the class names (text) and nothing trained is per
    # class, so a trained run scores any class list, its text side rebuilt for it (another
    # data set, the novel classes). False: trained rows per class (linear probe, majority).
    scores_any_classes: ClassVar[bool] = False
    # train.* values for the keys a config does not set (clipadapt.engine.defaults)
    train_defaults: ClassVar[dict] = {}
    # What the method can do, read by the layers that serve it, so that none of them
    # compares a method's name. training_plan: "supervised" (`clipadapt train`, the
    # engine's trainer) or "self_training" (label-free, `clipadapt adapt`; the method then
    # provides `self_training()`, the parts of its step, for `engine.selftrain`).
    training_plan: ClassVar[str] = "supervised"
    # The maps `explain`, the report and the web service draw for it (`clipadapt.report`):
    # "attention" (per attribute, over the patches: the class provides `attention_maps`),
    # "parts" (part tokens over their regions), "saliency" (pooling attention and a
    # foreground mask); None: no maps.
    explain_maps: ClassVar[str | None] = None
    # Backbone families (`backbone/families.py`) it cannot run on, each with why (one
    # line), and what its parts mean on a family where that differs from CLIP.
    refused_families: ClassVar[dict[str, str]] = {}
    family_notes: ClassVar[dict[str, str]] = {}
    # False: the logits never look at the pixels (majority's prior), so a fixed graph (the
    # ONNX export) feeds `forward` an empty feature of the batch size instead of an image pass.
    reads_images: ClassVar[bool] = True
    # True: built from the training set's frozen embeddings (Tip-Adapter's cache). Before any
    # step the engine (`Runner.fit`) hands `fit_features` the training images' embeddings, each
    # the mean over `feature_views()` stored views, and after training (the kept epoch
    # restored) hands `select_on_validation` the validation split's (None without one).
    fits_features: ClassVar[bool] = False

    @classmethod
    def check_backbone(cls, backbone) -> None:
        """Raise one clear ClipAdaptError when this method is refused on `backbone`'s family."""
        family = getattr(backbone, "family", "clip")
        if family in cls.refused_families:
            raise ClipAdaptError(f"{cls.name} does not run on {backbone.name} (family {family}): "
                                 f"{cls.refused_families[family]}. Use a clip-family backbone (e.g. "
                                 f"ViT-B-16-quickgelu) for {cls.name}.")

    @classmethod
    def check_backbone_fit(cls, params: dict, arch: dict, backbone: str) -> None:
        """Raise a ClipAdaptError when method.params (`params`, as written in the config)
        cannot fit backbone `backbone` of open_clip architecture `arch` (its model config:
        embed_dim, vision_cfg ...); called before anything is built. Default: all fit."""

    def self_training(self, autocast):
        """The parts of a label-free step (training_plan "self_training") for
        `engine.selftrain.SelfTrainer`, with `autocast()` the device's mixed precision: views,
        split, pseudo_labels, loss, epoch_row, head_predictions (the model:
        `methods/microclip/selftraining.py`). Supervised methods have none."""
        raise ClipAdaptError(f"{self.name} trains with labels (`clipadapt train`); it has no self-training.")

    def __init__(self, backbone: ClipBackbone, task: TaskSpec, params: MethodParams):
        super().__init__()
        self.backbone = backbone
        self.task = task
        self.params = params
        # Temperature scaling (engine.calibrate): every attribute's logits are divided by its
        # temperature on the way out of forward / forward_images (1 until a run is calibrated),
        # so evaluation, predict, serve, explain and the ONNX graph all see the same numbers.
        self.register_buffer(TEMPERATURE, torch.ones(len(task)))
        # Platt scaling of a binary attribute: sigmoid(d / T + b), d its logit difference; the
        # bias is split as -b/2, +b/2 over the two logits so softmax gives exactly that (0: none).
        self.register_buffer(PLATT_BIAS, torch.zeros(len(task)))
        # A multi-label attribute is present when p(yes) > its threshold; the method holds them
        # so the checkpoint carries what train.thresholds chose (engine/thresholds.py).
        # (float64: a threshold reads back as the number that was set, 0.45 not 0.4499999881)
        self.register_buffer(DECISION_THRESHOLD, torch.full((len(task),), DEFAULT_THRESHOLD, dtype=torch.float64))

    # --------------------------------------------------------------- calibration
    @property
    def calibrated(self) -> bool:
        """True when some attribute's temperature is not 1 or its Platt bias not 0."""
        return bool((self.temperature != 1.0).any()) or bool((self.platt_bias != 0.0).any())

    def temperatures(self) -> list[float]:
        """The temperature of each attribute (1.0: not calibrated)."""
        return [float(t) for t in self.temperature]

    def set_temperatures(self, values) -> None:
        """Set one temperature per attribute (each > 0); all 1 undoes calibration."""
        values = torch.as_tensor(list(values), dtype=torch.float32)
        if bool((values != 1.0).any()):  # all 1 (undoing calibration) is harmless anywhere
            self._check_calibratable()
        if values.shape != self.temperature.shape or not bool((values > 0).all()) or not bool(values.isfinite().all()):
            raise ClipAdaptError(f"Temperatures must be {len(self.task)} finite positive numbers (one per attribute), "
                                 f"got {values.tolist()}.")
        self.temperature.copy_(values.to(self.temperature.device))

    def biases(self) -> list[float]:
        """The Platt bias of each attribute (0.0: none)."""
        return [float(b) for b in self.platt_bias]

    def set_biases(self, values) -> None:
        """Set one Platt bias per attribute; only a binary (two-class) attribute may have one
        that is not 0 (it shifts p(yes) = sigmoid(d / T + b))."""
        values = torch.as_tensor(list(values), dtype=torch.float32)
        if values.shape != self.platt_bias.shape or not bool(values.isfinite().all()):
            raise ClipAdaptError(f"Platt biases must be {len(self.task)} finite numbers (one per attribute), "
                                 f"got {values.tolist()}.")
        odd = [a.name for a, b in zip(self.task.attributes, values.tolist()) if b != 0.0 and a.num_classes != 2]
        if odd:
            raise ClipAdaptError(f"A Platt bias applies to two-class attributes only; these have more classes: {odd}. "
                                 "Use train.calibrate=temperature for them.")
        if bool((values != 0.0).any()):
            self._check_calibratable()
        self.platt_bias.copy_(values.to(self.platt_bias.device))

    def thresholds(self) -> list[float]:
        """Each attribute's decision threshold: a multi-label attribute is present when its
        calibrated p(yes) > threshold (single-label attributes ignore it)."""
        return [float(t) for t in self.decision_threshold]

    def set_thresholds(self, values) -> None:
        """Set one decision threshold per attribute, each in (0, 1)."""
        values = torch.as_tensor(list(values), dtype=torch.float64)
        if values.shape != self.decision_threshold.shape or not bool(((values > 0) & (values < 1)).all()):
            raise ClipAdaptError(f"Decision thresholds must be {len(self.task)} numbers in (0, 1) (one per attribute), "
                                 f"got {values.tolist()}.")
        self.decision_threshold.copy_(values.to(self.decision_threshold.device))

    def apply_temperature(self, logits: list[torch.Tensor]) -> list[torch.Tensor]:
        """logits[a] / T_a, plus the Platt bias split over a two-class attribute's logits as
        (-b/2, +b/2) (exactly the logits when T_a = 1 and b_a = 0)."""
        out = []
        for a, z in enumerate(logits):
            z = z / self.temperature[a]
            if z.shape[-1] == 2:  # adding a zero bias leaves every value as it was
                half = 0.5 * self.platt_bias[a]
                z = z + torch.stack((-half, half)).to(z.dtype)
            out.append(z)
        return out

    @classmethod
    def parse_params(cls, raw: dict) -> MethodParams:
        """Validate method.params, with the method's name in the error."""
        try:
            return cls.Params.model_validate(raw or {})
        except ValidationError as exc:
            msgs = describe_errors(exc)
            known = ", ".join(cls.Params.model_fields)
            raise ClipAdaptError(f"Invalid method.params for '{cls.name}': {msgs}. Known params: {known or 'none'}.") from None

    def needs(self) -> FeatureNeeds:
        return FeatureNeeds()

    # ------------------------------------------------------------ the passes (final)
    # Subclasses implement the hooks below, never these three: the temperature is applied
    # here, once per call, with nothing stored on the instance, so one method object answers
    # any number of threads at once (tests/test_thread_safety.py).
    def forward(self, features: ImageFeatures) -> list[torch.Tensor]:
        """Calibrated logits from image features: `logits(features)` / temperature."""
        return self.apply_temperature(self.logits(features))

    def forward_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Calibrated logits straight from images (end-to-end path): `image_logits(images)` /
        temperature."""
        return self.apply_temperature(self.image_logits(images))

    def training_forward_images(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list]:
        """Training pass from images: (calibrated logits, auxiliary outputs as (weight, logits)
        pairs, each scored with the run's loss and added with its weight). The auxiliary logits
        are training-only and never calibrated (a run is calibrated after training: T = 1 then)."""
        logits, extra = self.training_image_logits(images)
        return self.apply_temperature(logits), extra

    # ------------------------------------------------------------ the hooks
    def logits(self, features: ImageFeatures) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """The method's raw logits [B, K_a] per attribute from image features."""
        raise NotImplementedError(f"{type(self).__name__} implements no logits(features)")

    def image_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Raw logits from images. Default: the backbone's features for `needs()`, then `logits`."""
        return self.logits(self.backbone.forward_features(images, self.needs().tap_block))

    def training_image_logits(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list]:
        """Raw training logits from images and auxiliary (weight, logits) pairs. Default: none."""
        return self.image_logits(images), []

    def _check_calibratable(self) -> None:
        """A class that overrides `forward` itself skips the temperature: refuse to calibrate it
        rather than let a calibrated run answer uncalibrated."""
        if type(self).forward is not Method.forward:
            raise ClipAdaptError(f"{type(self).__name__} overrides forward(), so its temperatures would never be "
                                 "applied; implement logits(features) instead (docs/architecture.md, adding a method).")

    def export_refusal(self) -> str | None:
        """Why this method, as configured, cannot be exported faithfully to a fixed graph
        (ONNX), in one line; None (the default) when it can."""
        return None

    @contextmanager
    def frozen_for_export(self):
        """Context for tracing this method into a fixed graph (ONNX export): within it, what the
        method recomputes on every call from trained inputs that do not depend on the image
        (CoOp's prompt features through the text tower, PromptPAR's text prompts) is served as
        constants. Default: nothing to freeze."""
        yield self

    def param_group_options(self, name: str) -> dict:
        """Optimiser options of a trainable parameter: {"lr_scale": s, "warmup_epochs": n}
        (default: none, the run's lr and warm-up)."""
        return {}

    def fit_statistics(self, labels: torch.Tensor) -> None:
        """Hook for methods that learn from label statistics alone (majority class)."""

    def feature_views(self) -> int:
        """(`fits_features`) How many stored views of each training image `fit_features`
        gets the mean embedding of: 1 the test view, more the seeded augmented views."""
        return 1

    def fit_features(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """(`fits_features`) Build from the training set before any step: `embeddings` [N, E]
        (raw, not normalised), `labels` [N, A] (MISSING where unlabelled)."""

    def select_on_validation(self, embeddings: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        """(`fits_features`) After training: settle what is chosen on the validation split's
        embeddings [M, E] and labels [M, A]; both None when the data has no validation split."""

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Tensors a checkpoint must hold: trainable parameters and the method's own
        persistent buffers (never the frozen backbone weights)."""
        state = self.state_dict()
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        # An uncalibrated checkpoint with the default thresholds is what it was before
        # calibration and tuned thresholds existed (load_state_strict fills the defaults back).
        if not bool((self.temperature != 1.0).any()):
            state.pop(TEMPERATURE)
        if not bool((self.platt_bias != 0.0).any()):
            state.pop(PLATT_BIAS)
        if not bool((self.decision_threshold != DEFAULT_THRESHOLD).any()):
            state.pop(DECISION_THRESHOLD)
        return {k: v for k, v in state.items() if k in trainable or not k.startswith("backbone.")}

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def prompts(self) -> dict[str, list[str]]:
        """Class prompts per attribute, for the run card."""
        return {a.name: a.prompts() for a in self.task.attributes}

    def text_classifier_rows(self) -> list[torch.Tensor] | None:
        """The classifier rows [K, E] per attribute as built from text (before training), for
        the check that the classes are told apart (`methods.text_check`); None: the method's
        classifier does not come from class names (linear probe, majority)."""
        text = getattr(self, "text", None)
        return [text.weights(a) for a in range(len(self.task))] if isinstance(text, TextClassifier) else None

    def class_sentences(self) -> list[list[list[str]]]:
        """Per attribute, per class, the sentences its text classifier is built from."""
        return [[[p] for p in a.prompts()] for a in self.task.attributes]

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay (default: none)."""
        return set()


class TextClassifier(nn.Module):
    """Frozen, L2-normalised text features of each attribute's class prompts.

    Computed once at construction (the authors recomputed them at every step). Stored
    as non-persistent buffers: they are derived from the backbone, never checkpointed.
    """

    def __init__(self, backbone: ClipBackbone, task: TaskSpec):
        super().__init__()
        for i, attr in enumerate(task.attributes):
            self.register_buffer(f"text_{i}", backbone.encode_text(attr.prompts()), persistent=False)
        self.count = len(task)

    def weights(self, attribute: int) -> torch.Tensor:
        return getattr(self, f"text_{attribute}")


def cosine_logits(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """scale * cos(image_i, text_k): [B, K]."""
    return scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
