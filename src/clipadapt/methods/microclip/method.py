"""microCLIP (SPEC 3) as a registered Method: label-free adaptation for fine-grained classes.

Image path (every image-tower LayerNorm trained, as microCLIP's own copies run in place of the
backbone's in its passes (`layernorms.py`), so a shared backbone is never changed; all else frozen):
    x = input of the last block (embed -> pre-norm -> blocks 1..L-1)
    global:  x_L = block_L(x);  cls_token = backbone.global_token(x_L)   (CLIP: ln_post(x_L[CLS]))
             c = normalise(backbone.project(cls_token))                  (CLIP: @ proj)
    patches: P = backbone.dense_patches(x)   (MaskCLIP value path, pooled space, no projection;
             CLIP: ln_post(value_path_L(x))[patches]; SigLIP: its MAP head's value path)
    SOAP(P) -> [FG];  f_hat = normalise(project(FG));  mixed = r c + (1 - r) f_hat  (r = 0.5)
    logits = 100 * mixed @ normalise(W*)^T          (the FUSED output scores the classes)

Text side, built once from the frozen text tower:
    t_k     hand-crafted embedding: mean of the row-normalised template embeddings, normalised
            (the authors divided the whole template matrix by its Frobenius norm instead)
    W_LLM   frozen LLM head: normalise(sum_j w_kj d_kj / sum_j w_kj), w_kj = cos(d_kj, t_k)
    W*      learnable head, initialised to the CuPL prototype normalise(mean_j d_kj) (by
            default), re-normalised at every use.

The self-training step (pseudo-labels from W_LLM and W*, strong-view loss, fairness term)
lives in `selftraining.py` (the engine's `selftrain` runs its loop); its switches (gamma,
crops, fairness weight, views) are params here so that they travel with the run card.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from clipadapt.backbone import ClipBackbone, ImageFeatures
from clipadapt.errors import ClipAdaptError
from clipadapt.methods.base import FeatureNeeds, Method, MethodParams, register_method
from clipadapt.methods.microclip.fusion import TokenFusion
from clipadapt.methods.microclip.layernorms import OwnedLayerNorms, layernorm_parameters  # noqa: F401 (re-export)
from clipadapt.methods.microclip.selftraining import MICROCLIP_RECIPE, MicroCLIPSelfTraining
from clipadapt.methods.microclip.soap import SOAP, SOAPOutput
from clipadapt.task import Attribute, TaskSpec

TEXT_BATCH = 256  # sentences per text-encoder call (bounds memory for 10k-sentence files)


class MicroCLIPParams(MethodParams):
    """microCLIP settings (SPEC 3 defaults) and its ablation switches.

    Text heads:
        descriptions: a JSON/YAML file {class: [sentence, ...]} (LLM descriptions, CuPL
            style) or the same mapping inline. `clipadapt adapt` inlines the file so that
            the run card rebuilds the heads without it. None: each class is described by
            its template prompts alone (W_LLM and the CuPL prototype then equal t_k).
        templates: the data set's hand-crafted templates, each with one "{}" for the class
            words; None = the attribute's own template (data.templates / "a photo of a {}.").
        head_init: W* initialisation: "descriptions" (CuPL prototype, SPEC), "llm" (W_LLM),
            "templates" (t_k).
        learnable_head: False = W* is frozen at its initialisation (fixed-head ablation).
    Image path:
        use_soap: False = plain CLS self-training (no [FG] token, logits from c alone).
        query / pooling / null_token / threshold_rule / edge_threshold: SOAP's switches
            (SOAP vs mean pooling vs CLS-as-query; see methods.microclip.soap.SOAP).
        fusion_ratio: weight of c in the fusion (1 = CLS only, 0 = [FG] only).
        train_layernorms: False freezes the LayerNorms too (heads / SOAP only).
        logit_scale: the fixed temperature of the loss and of the predicted probabilities.
    Self-training (read by selftraining.py):
        gamma: weight of the static (crop-composite, W_LLM) scores in the pseudo-label;
            1 = crop-composite only, 0 = the current model only.
        crops: random square crops per image for the multi-view prior (0 = weak view only);
        crop_scale: their side as a fraction of min(H, W), drawn uniformly.
        fairness_weight: weight of the fairness term (MUST) on the running class marginal.
        strong_scale, randaugment: the strong view's RandomResizedCrop scale and timm
            RandAugment config string (None = no RandAugment).
    """

    descriptions: str | dict[str, list[str]] | None = None
    templates: list[str] | None = None
    head_init: Literal["descriptions", "llm", "templates"] = "descriptions"
    learnable_head: bool = True
    use_soap: bool = True
    query: Literal["ncut", "mean", "cls"] = "ncut"
    pooling: Literal["attention", "mean", "ncut_mean"] = "attention"
    null_token: Literal["zero", "learned", "none"] = "zero"
    threshold_rule: Literal["std", "mean"] = "std"
    edge_threshold: float = 0.2
    fusion_ratio: float = Field(0.5, ge=0.0, le=1.0)
    train_layernorms: bool = True
    logit_scale: float = Field(100.0, gt=0.0)
    gamma: float = Field(0.5, ge=0.0, le=1.0)
    crops: int = Field(8, ge=0)
    crop_scale: tuple[float, float] = (0.5, 0.9)
    fairness_weight: float = Field(1.0, ge=0.0)
    strong_scale: tuple[float, float] = (0.3, 1.0)
    randaugment: str | None = "rand-m9-mstd0.5"

    @field_validator("templates")
    @classmethod
    def _templates_have_a_slot(cls, value):
        if value is not None:
            if not value:
                raise ValueError("templates must name at least one template (or be null for the attribute's own)")
            bad = [t for t in value if "{}" not in t]
            if bad:
                raise ValueError(f"every template needs one '{{}}' for the class words; not: {bad[:3]}")
        return value

    @model_validator(mode="after")
    def _check_ranges(self):
        for name in ("crop_scale", "strong_scale"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(low, high)}")
        return self


@dataclass
class MicroCLIPOutput:
    """One image pass. cls_embedding: c [B, E] (normalised). fg_embedding: f_hat [B, E]
    (None without SOAP). mixed: r c + (1 - r) f_hat [B, E] (what the loss scores).
    fused: normalise(mixed) [B, E] (pseudo-labels). soap: SOAP intermediates or None."""

    cls_embedding: torch.Tensor
    fg_embedding: torch.Tensor | None
    mixed: torch.Tensor
    fused: torch.Tensor
    soap: SOAPOutput | None


# ----------------------------------------------------------------------------- text heads
def template_embedding(template_features: torch.Tensor) -> torch.Tensor:
    """Hand-crafted class embedding t_k from per-template text features [K, T, E]:
    every template's row L2-normalised first, then the mean over templates, normalised.

    (The authors divided each class's [T, E] matrix by its Frobenius norm, which leaves
    long-norm templates weighing more in the mean: a defect, fixed here.)
    """
    if template_features.dim() != 3:
        raise ValueError(f"template features must be [K, T, E], got shape {tuple(template_features.shape)}")
    rows = F.normalize(template_features.float(), dim=-1)
    return F.normalize(rows.mean(dim=1), dim=-1)


def description_prototype(descriptions: torch.Tensor) -> torch.Tensor:
    """CuPL prototype of one class: normalise(mean_j d_j) for its description embeddings
    [n, E] (each normalised first)."""
    return F.normalize(F.normalize(descriptions.float(), dim=-1).mean(dim=0), dim=-1)


def llm_head_row(descriptions: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """One row of the frozen LLM head: w_j = cos(d_j, t), normalise(sum_j w_j d_j / sum_j w_j).

    `descriptions` [n, E], `template` [E]. Where the weights sum to <= 0 (a degenerate
    text tower), dividing by the sum would flip the row; the plain mean is used instead.
    """
    d = F.normalize(descriptions.float(), dim=-1)
    t = F.normalize(template.float(), dim=-1)
    w = d @ t
    total = w.sum()
    if not bool(total > 1e-8):
        warnings.warn("LLM head: description weights cos(d, t) sum to <= 0 for a class; using the plain mean.",
                      stacklevel=2)
        return F.normalize(d.mean(dim=0), dim=-1)
    return F.normalize((w[:, None] * d).sum(dim=0) / total, dim=-1)


def resolve_descriptions(spec: str | dict | None, classes: list[str]) -> dict[str, list[str]] | None:
    """{class: [sentences]} in `classes` order from a file path or an inline mapping (keys
    matched ignoring case, spaces and underscores), or None."""
    from clipadapt.describe.files import load_descriptions, match_descriptions

    if spec is None:
        return None
    if isinstance(spec, dict):
        empty = [k for k, v in spec.items() if not v or not all(str(s).strip() for s in v)]
        if empty:
            raise ClipAdaptError(f"method.params.descriptions: class {empty[0]!r} has an empty list or an empty "
                                 "sentence; give every class at least one sentence.")
        return match_descriptions(spec, classes, source="method.params.descriptions").descriptions
    return load_descriptions(Path(spec).expanduser(), classes)


def encode_sentences(backbone: ClipBackbone, sentences: list[str]) -> torch.Tensor:
    """Unnormalised text features [n, E] of `sentences`, in chunks (frozen, no grad)."""
    parts = [backbone.encode_text(sentences[i:i + TEXT_BATCH], normalise=False)
             for i in range(0, len(sentences), TEXT_BATCH)]
    return torch.cat(parts).float()


# ----------------------------------------------------------------------------- the method
@register_method("microclip")
class MicroCLIP(Method):
    """microCLIP: SOAP [FG] token fused with [CLS], LayerNorms + SOAP + W* trained by
    label-free self-training (`selftraining.py`). One single-label attribute.

    Trainable: the image encoder's LayerNorms (`layernorms`: this method's own copies, put
    in the backbone's place only during its passes; checkpoints keep them under the
    backbone names), SOAP's W_q / W_k / W_v (identity-initialised) and the learnable head
    W* (`head`, K x E). Buffers (derived, not checkpointed): `template_head` t_k,
    `description_head` (CuPL prototype), `llm_head` W_LLM.

    The backbone itself is never changed (weights or requires_grad flags), so other
    methods may share it, before or after this one trains.
    """
    summary = ("microCLIP: label-free self-training (clipadapt adapt); a "
               "saliency-pooled patch token fused with the global one")

    Params = MicroCLIPParams
    training_plan = "self_training"  # label-free: `clipadapt adapt`, steps from `self_training()`
    explain_maps = "saliency"  # SOAP's attention over the patches and the Normalised-Cut mask
    family_notes = {"siglip": "patch features = the MAP head's value path per patch (what the pool outputs when "
                              "that patch is its only key); the global token = the MAP output",
                    "eva": "patch features = the last EVA block on its value path (rotary positions drop out)"}
    train_defaults = MICROCLIP_RECIPE  # the authors' recipe (SPEC 3) for the train.* keys a config leaves unset

    def self_training(self, autocast) -> MicroCLIPSelfTraining:
        """The parts of microCLIP's label-free step (views, pseudo-labels, loss, statistics)."""
        return MicroCLIPSelfTraining(self, autocast)

    def __init__(self, backbone: ClipBackbone, task: TaskSpec, params: MicroCLIPParams):
        super().__init__(backbone, task, params)
        if task.multilabel or len(task) != 1:
            raise ClipAdaptError("microclip classifies one single-label attribute (K classes, e.g. an image folder "
                                 f"root/train/<class>/); this task has {len(task)} attribute(s)"
                                 + (" and is multi-label." if task.multilabel else "."))
        self.attribute: Attribute = task.attributes[0]
        self.fusion: TokenFusion | None = None
        if params.use_soap:
            soap = SOAP(backbone.width, query=params.query, pooling=params.pooling, null_token=params.null_token,
                        threshold_rule=params.threshold_rule, edge_threshold=params.edge_threshold)
            self.fusion = TokenFusion(soap, fusion_ratio=params.fusion_ratio)
        self._build_heads()
        # trained copies of the tower's LayerNorms, run instead of the backbone's in this method's passes
        # only: the backbone (maybe shared with other methods) is never changed
        self.layernorms = OwnedLayerNorms(backbone) if params.train_layernorms else None

    def export_refusal(self) -> str | None:
        """The Normalised Cut (query 'ncut' or pooling 'ncut_mean') has no faithful fixed graph."""
        if self.fusion is None or not self.fusion.soap.needs_ncut:
            return None
        return ("microclip with the Normalised Cut (query 'ncut' or pooling 'ncut_mean') cannot be exported: its "
                "eigen-solve (torch.linalg.eigh) has no ONNX operator, and a fixed-graph solver cannot pick eigh's "
                "eigenvector where eigenvalues repeat (3 of 24 synthetic birds on the embedded CLIP), so the mask can "
                "differ; runs with query 'mean' or 'cls', or use_soap false, export.")

    # ------------------------------------------------------------------ text side
    def templates(self) -> list[str]:
        return list(self.params.templates) if self.params.templates else [self.attribute.template]

    def class_descriptions(self) -> dict[str, list[str]]:
        """The sentences behind W_LLM and the CuPL prototype (templates when none given)."""
        classes = list(self.attribute.classes)
        found = resolve_descriptions(self.params.descriptions, classes)
        if found is None:
            return {c: [t.format(self.attribute.words(c)) for t in self.templates()] for c in classes}
        return found

    def _build_heads(self) -> None:
        bb, attr = self.backbone, self.attribute
        templates = self.templates()
        prompts = [t.format(attr.words(c)) for c in attr.classes for t in templates]
        per_template = encode_sentences(bb, prompts).view(attr.num_classes, len(templates), -1)
        t = template_embedding(per_template)
        described = self.class_descriptions()
        counts = [len(described[c]) for c in attr.classes]
        d = encode_sentences(bb, [s for c in attr.classes for s in described[c]])
        rows = torch.split(d, counts)
        cupl = torch.stack([description_prototype(r) for r in rows])
        llm = torch.stack([llm_head_row(r, t[k]) for k, r in enumerate(rows)])
        self.register_buffer("template_head", t, persistent=False)
        self.register_buffer("description_head", cupl, persistent=False)
        self.register_buffer("llm_head", llm, persistent=False)
        init = {"descriptions": cupl, "llm": llm, "templates": t}[self.params.head_init].clone()
        self.head = nn.Parameter(init, requires_grad=self.params.learnable_head)
        self.description_counts = counts

    def classifier(self) -> torch.Tensor:
        """W*, re-normalised at every use: [K, E]."""
        return F.normalize(self.head, dim=-1)

    # ------------------------------------------------------------------ image side
    def needs(self) -> FeatureNeeds:
        # LayerNorms train, so no cached features; tap = the last block's input, which is
        # what `forward(features)` needs when a caller only has forward_features output.
        last_input = self.backbone.num_blocks - 1
        return FeatureNeeds(tap_block=last_input if last_input >= 1 else None, frozen_image_path=False)

    def _own_layernorms(self):
        """Context in which the backbone runs with this method's LayerNorms."""
        return self.layernorms.applied() if self.layernorms is not None else nullcontext()

    def last_block_input(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens [B, prefix + N, D] entering the last block (embed, pre-norm, blocks 1..L-1)."""
        bb = self.backbone
        with self._own_layernorms():
            x = bb.embed(images)
            for i in range(bb.num_blocks - 1):
                x = bb.block(i, x)
        return x

    def _fuse(self, cls_embedding: torch.Tensor, patches: torch.Tensor | None,
              cls_token: torch.Tensor | None) -> MicroCLIPOutput:
        """SOAP + TokenFusion from c (normalised, [B, E]) and the value-path patches: the one
        fusion code path (`TokenFusion.fuse`), also behind `encode`."""
        if self.fusion is None:
            return MicroCLIPOutput(cls_embedding, None, cls_embedding, cls_embedding, None)
        out = self.fusion.fuse(cls_embedding, self.fusion.soap(patches, cls_token), self.backbone.project)
        return MicroCLIPOutput(out.cls_embedding, out.fg_embedding, out.mixed, out.fused, out.soap)

    def encode(self, images: torch.Tensor) -> MicroCLIPOutput:
        """The full microCLIP image pass (SPEC 3): c, f_hat, mixed and fused embeddings."""
        bb = self.backbone
        with self._own_layernorms():
            x = self.last_block_input(images)
            final = bb.block(bb.num_blocks - 1, x)
            cls_token = bb.global_token(final)
            c = F.normalize(bb.project(cls_token), dim=-1)
            if self.fusion is None:
                return self._fuse(c, None, None)
            return self._fuse(c, bb.dense_patches(x, final=final), cls_token)

    def cls_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """c = normalise(the image embedding) with the current LayerNorms: [B, E] (crops)."""
        bb = self.backbone
        with self._own_layernorms():
            return F.normalize(bb.pool(bb.run_blocks(bb.embed(images))), dim=-1)

    def class_logits(self, mixed: torch.Tensor) -> torch.Tensor:
        """logit_scale * mixed @ normalise(W*)^T: [B, K]."""
        head = self.classifier()
        return self.params.logit_scale * mixed.to(head.dtype) @ head.t()

    def image_logits(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.class_logits(self.encode(images).mixed)]

    def forward_features(self, images: torch.Tensor):
        """`backbone.forward_features(images, needs().tap_block)` with this method's
        LayerNorms: the features `forward` expects."""
        with self._own_layernorms():
            return self.backbone.forward_features(images, self.needs().tap_block)

    def logits(self, features: ImageFeatures) -> list[torch.Tensor]:
        """Logits from `forward_features(images)` output: the patch tokens entering the last
        block, and the image embedding. (Features from the bare backbone hold its own
        LayerNorms, not the ones this method trained.)"""
        c = F.normalize(features.embedding, dim=-1)
        if self.fusion is None:
            return [self.class_logits(c)]
        if features.tokens is None or (self.fusion.soap.query_source == "cls" and self.fusion.soap.pooling == "attention"):
            raise ClipAdaptError("microclip with SOAP needs the images themselves here (forward_images); "
                                 "features without last-block-input tokens, or query='cls', cannot be scored.")
        with self._own_layernorms():
            patches = self.backbone.dense_patches(features.tokens, prefix=False)
        return [self.class_logits(self._fuse(c, patches, None).mixed)]

    # ------------------------------------------------------------------ checkpoint names
    # The LayerNorm copies are saved under the backbone names they stand for
    # ("backbone.model.visual.ln_pre.weight"), as before they were copies: old runs load.
    _OWN, _SAVED = "layernorms.", "backbone."

    def trained_state(self) -> dict[str, torch.Tensor]:
        state = super().trained_state()
        return {(self._SAVED + k[len(self._OWN):] if k.startswith(self._OWN) else k): v for k, v in state.items()}

    def checkpoint_name(self, name: str) -> str:
        """The key a parameter of this method has in `trained_state()`."""
        return self._SAVED + name[len(self._OWN):] if name.startswith(self._OWN) else name

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also takes `trained_state()` keys (backbone names for the LayerNorm copies)."""
        own = {self._SAVED + n[len(self._OWN):] for n, _ in self.named_parameters() if n.startswith(self._OWN)}
        renamed = {(self._OWN + k[len(self._SAVED):] if k in own else k): v for k, v in state_dict.items()}
        return super().load_state_dict(renamed, strict=strict, assign=assign)

    # ------------------------------------------------------------------ contract
    def no_weight_decay(self) -> set[str]:
        """LayerNorms and SOAP's identity-initialised projections (SPEC 3; W* keeps it)."""
        names = {n for n, _ in self.layernorms.named_parameters(prefix="layernorms")} if self.layernorms else set()
        if self.fusion is not None:
            names |= {f"fusion.{name}" for name in self.fusion.no_weight_decay()}
        return names

    def prompts(self) -> dict[str, list[str]]:
        words = [self.attribute.words(c) for c in self.attribute.classes]
        return {self.attribute.name: [" | ".join(t.format(w) for t in self.templates()) for w in words]}

    def text_classifier_rows(self) -> list[torch.Tensor]:
        return [self.classifier()]

    def class_sentences(self) -> list[list[list[str]]]:
        described = self.class_descriptions()
        templates = self.templates()
        return [[[t.format(self.attribute.words(c)) for t in templates] + described[c] for c in self.attribute.classes]]

    def describe_heads(self) -> dict:
        """Facts about the text heads, for the run card."""
        return {"templates": self.templates(), "descriptions_per_class": dict(zip(self.attribute.classes,
                                                                                  self.description_counts)),
                "descriptions_given": self.params.descriptions is not None, "head_init": self.params.head_init}
