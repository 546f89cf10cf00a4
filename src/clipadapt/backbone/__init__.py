"""CLIP backbones: creation from open_clip names/tags/files and an explicit ViT forward.

`open_backbone` is the one call that opens a backbone with its preprocessing set."""

from clipadapt.backbone.clip import ClipBackbone, ImageFeatures
from clipadapt.backbone.factory import apply_preprocessing, backbone_from_config, create_backbone, open_backbone
from clipadapt.backbone.model_names import list_backbones

__all__ = ["ClipBackbone", "ImageFeatures", "apply_preprocessing", "backbone_from_config", "create_backbone", "list_backbones",
           "open_backbone"]
