"""A Hugging Face `transformers` CLIPModel / SiglipModel as an open_clip model.

`backbone.pretrained` may be a folder written by `save_pretrained` (config.json + the
weights: model.safetensors, shards with their index, or pytorch_model.bin) or
"hf-transformers:org/repo" (the same folder fetched from the hub). config.json says the
geometry (image size, patch, widths, layers, heads, MLP widths, context length,
vocabulary, embedding size, norm eps): with `backbone.name: auto` it picks the open_clip
architecture of that geometry, with a named architecture it is checked against it. Its
`hidden_act` sets the activation (QuickGELU for OpenAI's CLIP, the tanh GELU of SigLIP),
and preprocessor_config.json, when present, the normalisation and resize rule, as a
weights tag does (backbone/tags.py). The tensors are renamed by backbone/hf_convert.py.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from clipadapt.backbone.families import family_of
from clipadapt.backbone.hf_convert import convert_clip, convert_siglip, set_activation
from clipadapt.backbone.weights import file_fingerprint, load_strict, read_state_dict
from clipadapt.hub_access import hub_reachable
from clipadapt.errors import ClipAdaptError

AUTO_NAME = "auto"  # backbone.name that means "the architecture config.json describes"
HUB_PREFIX = "hf-transformers:"
log = logging.getLogger(__name__)

# transformers' defaults for what an older config.json may leave out (CLIPConfig, SiglipConfig)
_DEFAULTS = {
    "clip": {"vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5),
             "text": dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                          num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu",
                          layer_norm_eps=1e-5)},
    "siglip": {"vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                              image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
               "text": dict(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh",
                            layer_norm_eps=1e-6)},
}
_FAMILY = {"clip": "clip", "siglip": "siglip"}  # transformers model_type -> clipadapt family
_KIND = {"clip": "CLIPModel", "siglip": "SiglipModel"}
_CONVERT = {"clip": convert_clip, "siglip": convert_siglip}
# what save_pretrained of a tokenizer (or of a whole processor) writes
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
# PIL's resample codes transformers' image processors store
_RESAMPLE = {2: "bilinear", 3: "bicubic"}
# the open_clip config keys a plain converted tower may have (anything else changes the architecture)
_PLAIN_KEYS = {
    "clip": ({"embed_dim", "quick_gelu"}, {"image_size", "layers", "width", "head_width", "patch_size", "mlp_ratio"},
             {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}),
    "siglip": ({"embed_dim", "init_logit_bias", "custom_text"},
               {"image_size", "timm_model_name", "timm_model_pretrained", "timm_pool", "timm_proj"},
               {"context_length", "vocab_size", "hf_tokenizer_name", "tokenizer_kwargs", "width", "heads", "layers",
                "mlp_ratio", "no_causal_mask", "proj_bias", "pool_type", "norm_kwargs", "act_kwargs"}),
}


def is_transformers_source(pretrained) -> bool:
    """True for "hf-transformers:org/repo" or a folder holding a config.json."""
    if not isinstance(pretrained, str) or not pretrained:
        return False
    if pretrained.startswith(HUB_PREFIX):
        return True
    folder = Path(pretrained).expanduser()
    return folder.is_dir() and (folder / "config.json").is_file()


def _download(pretrained: str) -> Path:
    """The hub repository of "hf-transformers:org/repo" as a local folder (the hub cache);
    offline, what the cache already holds."""
    from huggingface_hub import snapshot_download

    repo = pretrained[len(HUB_PREFIX):].strip("/")
    wanted = ["config.json", "preprocessor_config.json", "model.safetensors", "model.safetensors.index.json",
              "model-*.safetensors", *_TOKENIZER_FILES, "special_tokens_map.json"]
    errors = []
    for offline in (False, True) if hub_reachable() else (True,):  # unreachable: the cache, without retries
        try:
            folder = Path(snapshot_download(repo, allow_patterns=wanted, local_files_only=offline))
            if not _weights_files(folder):  # an older repository with torch weights only
                folder = Path(snapshot_download(repo, allow_patterns=wanted + ["pytorch_model.bin"],
                                                local_files_only=offline))
            return folder
        except Exception as exc:  # no network, unknown repository, gated model ...
            errors.append(f"{type(exc).__name__}: {exc}")
    raise ClipAdaptError(f"Could not fetch '{repo}' from the Hugging Face hub ({errors[0].splitlines()[0]}). Offline? "
                         f"Download it once (huggingface-cli download {repo} --local-dir DIR) and pass DIR as "
                         "backbone.pretrained.")


def _weights_files(folder: Path) -> list[Path]:
    """The weights files of a save_pretrained folder: model.safetensors, the shards an
    index names, or pytorch_model.bin (read without running pickled code)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    return []


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipAdaptError(f"Could not read {path}: {exc}.") from None


def _tower_config(config: dict, model_type: str, tower: str) -> dict:
    """One tower's settings: transformers' defaults, then `<tower>_config`, then the legacy
    `<tower>_config_dict` (which older CLIPConfig files let override it)."""
    out = dict(_DEFAULTS[model_type][tower])
    for key in (f"{tower}_config", f"{tower}_config_dict"):
        if isinstance(config.get(key), dict):
            out.update({k: v for k, v in config[key].items() if v is not None})
    return out


def _geometry_of_config(config: dict, model_type: str) -> dict:
    """config.json's geometry, under the names `_open_clip_geometry` uses."""
    v, t = _tower_config(config, model_type, "vision"), _tower_config(config, model_type, "text")
    embed = config.get("projection_dim", 512) if model_type == "clip" else t.get("projection_size", t["hidden_size"])
    return {"image size": v["image_size"], "patch": v["patch_size"], "vision width": v["hidden_size"],
            "vision layers": v["num_hidden_layers"], "vision heads": v["num_attention_heads"],
            "vision mlp": v["intermediate_size"], "vision norm eps": v["layer_norm_eps"],
            "text width": t["hidden_size"], "text layers": t["num_hidden_layers"],
            "text heads": t["num_attention_heads"], "text mlp": t["intermediate_size"],
            "text norm eps": t["layer_norm_eps"], "context length": t["max_position_embeddings"],
            "vocab": t["vocab_size"], "embed dim": embed}


def _size(value) -> int:
    return int(value[0] if isinstance(value, (list, tuple)) else value)


@functools.lru_cache(maxsize=None)
def _open_clip_geometry(name: str) -> tuple | None:
    """(family, geometry) of an open_clip architecture a transformers CLIP / SigLIP converts
    into; None for the others (ResNets, HF text towers, layer scale, other poolings ...).
    SigLIP's image tower is timm's: built on the meta device (no memory, no init) to read it."""
    family = family_of(name)
    cfg = open_clip.get_model_config(name) or {}
    if family not in _PLAIN_KEYS:
        return None
    top, vision_keys, text_keys = _PLAIN_KEYS[family]
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if set(cfg) - top - {"vision_cfg", "text_cfg"} or set(v) - vision_keys or set(t) - text_keys:
        return None
    text = {"text width": t["width"], "text layers": t["layers"], "text heads": t["heads"],
            "text mlp": int(t["width"] * t.get("mlp_ratio", 4.0)),
            "text norm eps": t.get("norm_kwargs", {}).get("eps", 1e-5),
            "context length": t["context_length"], "vocab": t["vocab_size"], "embed dim": cfg["embed_dim"]}
    if family == "clip":
        vision = {"image size": _size(v["image_size"]), "patch": _size(v["patch_size"]), "vision width": v["width"],
                  "vision layers": v["layers"], "vision heads": v["width"] // v.get("head_width", 64),
                  "vision mlp": int(v["width"] * v.get("mlp_ratio", 4.0)), "vision norm eps": 1e-5}
        return family, {**vision, **text}
    if (not t.get("no_causal_mask") or t.get("pool_type") != "last" or not t.get("proj_bias")
            or v.get("timm_pool") != "map" or v.get("timm_proj") != "none"):
        return None
    import timm

    with torch.device("meta"):
        trunk = timm.create_model(v["timm_model_name"], pretrained=False, num_classes=0)
    block = trunk.blocks[0]
    vision = {"image size": _size(trunk.patch_embed.img_size), "patch": _size(trunk.patch_embed.patch_size),
              "vision width": trunk.embed_dim, "vision layers": len(trunk.blocks),
              "vision heads": block.attn.num_heads, "vision mlp": block.mlp.fc1.out_features,
              "vision norm eps": trunk.norm.eps}
    return family, {**vision, **text}


def _differences(want: dict, have: dict) -> list[str]:
    return [f"{k} {want[k]} vs {have[k]}" for k in want if want[k] != have.get(k)]


def _summary(geometry: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in geometry.items() if "eps" not in k)


class FolderTokenizer:
    """The tokenizer saved beside the weights, wrapped as open_clip wraps the hub tokenizer
    of the architecture (its context length and text cleaning), so a SigLIP folder needs no
    download to encode text. Built on first use (it needs `transformers`)."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name, self._tokenizer = folder, name, None

    def __call__(self, texts, context_length: int | None = None) -> torch.Tensor:
        if self._tokenizer is None:
            from open_clip.tokenizer import HFTokenizer

            text_cfg = open_clip.get_model_config(self.name)["text_cfg"]
            try:
                self._tokenizer = HFTokenizer(str(self.folder), context_length=text_cfg["context_length"],
                                              **text_cfg.get("tokenizer_kwargs", {}))
            except Exception as exc:  # transformers or sentencepiece missing, unreadable files
                raise ClipAdaptError(f"The tokenizer saved in {self.folder} could not be loaded ({type(exc).__name__}: "
                                     f"{exc}); it needs `pip install transformers` (and sentencepiece for "
                                     "spiece.model).") from None
        return self._tokenizer(texts, context_length)


@dataclass
class TransformersFolder:
    """A save_pretrained folder of a CLIPModel / SiglipModel, read but not yet loaded."""

    folder: Path
    pretrained: str  # as the user gave it (folder path or hf-transformers:org/repo)
    config: dict
    model_type: str  # "clip" | "siglip"

    @classmethod
    def open(cls, pretrained: str) -> "TransformersFolder":
        folder = _download(pretrained) if pretrained.startswith(HUB_PREFIX) else Path(pretrained).expanduser()
        config = _read_json(folder / "config.json")
        model_type = config.get("model_type")
        if model_type not in _FAMILY:
            raise ClipAdaptError(
                f"{folder / 'config.json'}: model_type '{model_type}' is not a transformers CLIPModel ('clip') or "
                "SiglipModel ('siglip'); those two convert to open_clip (Siglip2Model's NaFlex towers do not).")
        if model_type == "siglip" and not _tower_config(config, model_type, "vision").get("vision_use_head", True):
            raise ClipAdaptError(f"{folder / 'config.json'}: a SigLIP without its attention-pool head "
                                 "(vision_use_head false) has no image embedding open_clip can load.")
        return cls(folder, pretrained, config, model_type)

    @property
    def where(self) -> str:
        return str(self.folder / "config.json")

    @property
    def geometry(self) -> dict:
        return _geometry_of_config(self.config, self.model_type)

    def _candidates(self) -> list[tuple[str, dict]]:
        family, want = _FAMILY[self.model_type], self.geometry

        def plausible(cfg: dict) -> bool:  # cheap json fields first: few timm trunks get built to read them
            return (cfg.get("text_cfg", {}).get("vocab_size") == want["vocab"]
                    and _size(cfg.get("vision_cfg", {}).get("image_size", 0)) == want["image size"])

        found = [(n, _open_clip_geometry(n)) for n in open_clip.list_models()
                 if family_of(n) == family and plausible(open_clip.get_model_config(n) or {})]
        return [(n, g[1]) for n, g in found if g is not None]

    def _quick_gelu(self) -> bool:
        return _tower_config(self.config, self.model_type, "vision")["hidden_act"] == "quick_gelu"

    def architecture(self, name: str) -> str:
        """The open_clip architecture for this folder: `name` checked against config.json,
        or (name "auto") the one config.json describes; a mismatch is one error naming it."""
        if name == AUTO_NAME:
            found = self._matching()
            if found is None:
                raise ClipAdaptError(f"{self.where} ({_KIND[self.model_type]}: {_summary(self.geometry)}) "
                                     f"{self._nearest()}")
            return found
        have = _open_clip_geometry(name) if name in open_clip.list_models() else None
        if have is None or have[0] != _FAMILY[self.model_type]:
            problem = (f"is not an open_clip architecture a transformers {_KIND[self.model_type]} converts into "
                       f"({self.where})")
        else:
            wrong = _differences(self.geometry, have[1])
            if not wrong:
                return name
            problem = f"does not fit {self.where} ({'; '.join(wrong)}: config.json vs {name})"
        found = self._matching()
        hint = f"backbone.name {AUTO_NAME} picks '{found}' for it." if found else f"The folder {self._nearest()}"
        raise ClipAdaptError(f"backbone.name '{name}' {problem}. {hint}")

    def _matching(self) -> str | None:
        """The open_clip architecture of config.json's geometry; among equals the one named
        for the folder's activation (OpenAI's QuickGELU: ViT-B-16-quickgelu), then the shortest name."""
        matches = [n for n, g in self._candidates() if g == self.geometry]
        quick = self._quick_gelu()
        matches.sort(key=lambda n: (bool(open_clip.get_model_config(n).get("quick_gelu")) != quick, len(n), n))
        return matches[0] if matches else None

    def _nearest(self) -> str:
        family = _FAMILY[self.model_type]
        everyone = [(n, g[1]) for n in open_clip.list_models() if family_of(n) == family
                    and (g := _open_clip_geometry(n)) is not None]
        want = self.geometry
        text = "matches no open_clip model"
        if everyone:
            name, nearest = min(everyone, key=lambda item: (len(_differences(want, item[1])), item[0]))
            text += f"; nearest {name} ({'; '.join(_differences(want, nearest))}: config.json vs {name})"
        return text + ". Register an open_clip config of this geometry (open_clip.add_model_config) and name it."

    def state_dict(self) -> dict[str, torch.Tensor]:
        files = _weights_files(self.folder)
        if not files:
            raise ClipAdaptError(f"{self.folder} holds no weights (model.safetensors, its shards with "
                                 "model.safetensors.index.json, or pytorch_model.bin).")
        state = {}
        for path in files:
            state.update(read_state_dict(path))
        return state

    @property
    def weights_id(self) -> str:
        """Identity of the weights: the weights files' fingerprints and config.json's (it
        sets the activation)."""
        digest = hashlib.sha256()
        for path in [self.folder / "config.json", *_weights_files(self.folder)]:
            digest.update(file_fingerprint(path).encode())
        return f"transformers:{digest.hexdigest()[:16]}"

    def preprocessing(self) -> dict | None:
        """preprocessor_config.json as open_clip preprocess fields (mean, std,
        interpolation, resize_mode); None without the file."""
        path = self.folder / "preprocessor_config.json"
        if not path.is_file():
            return None
        proc = _read_json(path)
        out = {}
        if proc.get("image_mean") and proc.get("image_std"):
            out["mean"], out["std"] = tuple(proc["image_mean"]), tuple(proc["image_std"])
        if proc.get("resample") in _RESAMPLE:
            out["interpolation"] = _RESAMPLE[proc["resample"]]
        size = proc.get("size") or {}
        crops = proc.get("do_center_crop", "crop_size" in proc)
        if isinstance(size, dict) and "shortest_edge" in size and crops:
            out["resize_mode"] = "shortest"  # CLIPImageProcessor: short side, then centre crop
        elif isinstance(size, dict) and {"height", "width"} <= set(size) and not crops:
            out["resize_mode"] = "squash"  # SiglipImageProcessor: straight to the square
        final = proc.get("crop_size") if crops else size
        image_size = self.geometry["image size"]
        if isinstance(final, dict) and final.get("height", image_size) != image_size:
            log.warning("%s prepares %s px images for a %s px model; clipadapt prepares %s px.",
                        path, final.get("height"), image_size, image_size)
        return out

    def tokenizer(self, name: str) -> FolderTokenizer | None:
        """The folder's own tokenizer where architecture `name` would fetch one from the hub
        (SigLIP's); None where open_clip's shipped one serves (CLIP's BPE is transformers' too)."""
        hub_tokenizer = (open_clip.get_model_config(name) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
        has_files = any((self.folder / f).is_file() for f in _TOKENIZER_FILES)
        return FolderTokenizer(self.folder, name) if hub_tokenizer and has_files else None

    def load_into(self, model: torch.nn.Module, name: str) -> None:
        """Convert the weights into `model` (open_clip architecture `name`), strictly, with
        config.json's activations and preprocessor_config.json's preprocessing."""
        vision, text = (_tower_config(self.config, self.model_type, t) for t in ("vision", "text"))
        state = _CONVERT[self.model_type](self.state_dict(), vision["num_hidden_layers"], text["num_hidden_layers"],
                                          source=str(self.folder))
        load_strict(model, state, source=str(self.folder), what=f"model '{name}'")
        set_activation(model.visual, vision["hidden_act"], f"{self.where} vision_config")
        set_activation(getattr(model, "text", None) or model.transformer, text["hidden_act"],
                       f"{self.where} text_config")
        preprocess = self.preprocessing()
        if preprocess is not None:
            from open_clip.model import set_model_preprocess_cfg

            set_model_preprocess_cfg(model, {**(getattr(model.visual, "preprocess_cfg", None) or {}), **preprocess})
