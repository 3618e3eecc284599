"""Held-out scorers (prompt-image preference models), used to judge, not to steer.

* PickScore: transformers CLIPModel (ViT-H/14) + tokenizer;
      score = logit_scale.exp() * cos(image_embedding, text_embedding)     (differentiable)
* HPSv2: an open_clip ViT-H-14 with the HPS v2 weights; score = cos(image, text)
  (differentiable; needs the optional package open_clip_torch). Images are fitted the
  way HPS v2 scores them: longest side to 224, padded with black to a square.
* ImageReward: the BLIP ViT + BLIP text encoder (cross-attention to the image) + MLP
  of the optional package `image-reward`, run on this pack's own differentiable
  preprocessing (224 bicubic, centre crop, CLIP mean/std, as the package's
  `_transform(224)`), normalised by the package's mean and std (differentiable).
  Only the package's network modules (ImageReward/models/BLIP/vit.py and med.py) are
  imported: its `__init__` also imports its training script and scorers this pack
  does not use (accelerate, datasets, diffusers, openai clip).

The optional packages are not dependencies of this pack. Where they are missing, or
cannot run with the installed transformers, the loaders raise RewardUnavailableError
saying what is needed and why.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .aesthetic import AestheticHead
from .base import Reward
from .clip import ClipImageEmbedder, ImageEmbedFn, clip_text_embedding, unit
from ..psi_core.validation import prompt_text
from .loading import (
    RewardLoadError,
    RewardUnavailableError,
    WeightsSource,
    check_model_folder,
    freeze,
    from_pretrained_local,
    import_optional,
    load_state_dict,
    read_json,
)
from .preprocess import CLIP_MEAN, CLIP_STD, clip_style, letterbox, to_model

PICKSCORE_SOURCE = WeightsSource(
    what="PickScore model",
    expected="a transformers CLIPModel folder: config.json + model.safetensors",
    origin="Hugging Face repo yuvalkirstain/PickScore_v1",
)
PICKSCORE_PROCESSOR_SOURCE = WeightsSource(
    what="PickScore processor (tokenizer + preprocessor config)",
    expected="tokenizer files (tokenizer.json or vocab.json + merges.txt) [+ preprocessor_config.json]",
    origin="Hugging Face repo laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
)
HPSV2_SOURCE = WeightsSource(
    what="HPS v2 weights",
    expected="HPS_v2.1_compressed.pt (or HPS_v2_compressed.pt): an open_clip ViT-H-14 state dict",
    origin="Hugging Face repo xswu/HPSv2",
)
IMAGE_REWARD_SOURCE = WeightsSource(
    what="ImageReward weights",
    expected="ImageReward.pt (state dict with blip.visual_encoder.*, blip.text_encoder.*, mlp.layers.*) "
    "and med_config.json",
    origin="Hugging Face repo THUDM/ImageReward",
)
IMAGE_REWARD_TOKENIZER_SOURCE = WeightsSource(
    what="ImageReward tokenizer (BERT base uncased)",
    expected="vocab.txt (or tokenizer.json) of bert-base-uncased, in tokenizer_folder "
    "(default: the folder of med_config.json)",
    origin="Hugging Face repo google-bert/bert-base-uncased (the image-reward package downloads it "
    "when first used; this pack never downloads)",
)
OPEN_CLIP_HINT = (
    "Install open_clip_torch (an optional extra, not in this pack's requirements; on ComfyUI 0.3.64 "
    "with torch 2.13 it adds timm, ftfy and wcwidth and changes no installed package)."
)
IMAGE_REWARD_HINT = (
    "Install image-reward 1.5 with `pip install --no-deps image-reward==1.5 fairscale==0.4.13` plus timm "
    "(an optional extra, not in this pack's requirements: its own pins, timm==0.6.13, clash with "
    "open_clip_torch's timm>=1.0.17), in an environment with transformers <= 4.55."
)
#: ImageReward's score normalisation, `(mlp(features) - mean) / std` (image-reward 1.5, ImageReward.py)
IMAGE_REWARD_MEAN = 0.16717362830052426
IMAGE_REWARD_STD = 1.0333394966054072
#: ImageReward tokenises the prompt to 35 tokens (padding="max_length", truncation)
IMAGE_REWARD_MAX_TOKENS = 35
#: BLIP's ViTs use 64-wide attention heads (base 768/12, large 1024/16); not stored in the weights
BLIP_HEAD_WIDTH = 64
FITS = ("crop", "pad")


class PromptSimilarityReward(Reward):
    """scale * cos(image embedding, fixed prompt embedding): [B, 3, H, W] in [0, 1] -> [B].

    vision: normalised pixels [B, 3, size, size] -> embeddings [B, D]
    text_embedding: [D] embedding of the prompt (computed once, when built)
    fit: "crop" (shortest side to size, centre crop: CLIP, PickScore) or "pad" (longest
         side to size, black padding: HPS v2)
    """

    differentiable = True

    def __init__(
        self,
        name: str,
        vision: ImageEmbedFn,
        text_embedding: torch.Tensor,
        prompt: str,
        scale: float = 1.0,
        modules: Sequence[torch.nn.Module] = (),
        image_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        fit: str = "crop",
    ) -> None:
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.name = name
        self.vision = vision
        self.text_embedding = unit(text_embedding.detach().float().cpu().reshape(-1))
        self.prompt = prompt
        self.scale = float(scale)
        self._modules = list(modules)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.fit = fit

    def modules(self) -> list[torch.nn.Module]:
        return list(self._modules)

    def score(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, torch.float32)
        if self.fit == "pad":
            pixels = letterbox(images, self.image_size, self.mean, self.std)
        else:
            pixels = clip_style(images, self.image_size, self.mean, self.std)
        embeds = unit(self.vision(pixels).float())
        return self.scale * (embeds @ self.text_embedding.to(embeds.device))

    def describe(self) -> str:
        return f"{self.name} for prompt {self.prompt!r}"


def pickscore_reward(model: torch.nn.Module, tokenizer: Any, prompt: str,
                     image_size: int = 224, mean: Sequence[float] = CLIP_MEAN,
                     std: Sequence[float] = CLIP_STD) -> PromptSimilarityReward:
    """PickScore from a built transformers CLIPModel and its tokenizer."""
    prompt = prompt_text(prompt)
    freeze(model)
    max_length = min(77, int(model.config.text_config.max_position_embeddings))
    text = clip_text_embedding(model, tokenizer, prompt, max_length)
    scale = float(model.logit_scale.detach().exp())
    return PromptSimilarityReward(
        "pickscore", ClipImageEmbedder(model), text, prompt, scale, [model], image_size, mean, std
    )


def load_pickscore(
    model_folder: str | Path,
    prompt: str,
    processor_folder: str | Path | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> PromptSimilarityReward:
    """PickScore from yuvalkirstain/PickScore_v1 (model) and the laion CLIP-ViT-H-14 processor
    folder (tokenizer, preprocessing); `processor_folder` defaults to `model_folder`."""
    from transformers import AutoTokenizer, CLIPModel

    model_folder = check_model_folder(model_folder, PICKSCORE_SOURCE)
    processor_folder = Path(processor_folder) if processor_folder is not None else model_folder
    has_tokenizer = (processor_folder / "tokenizer.json").is_file() or (
        (processor_folder / "vocab.json").is_file() and (processor_folder / "merges.txt").is_file()
    )
    if not has_tokenizer:
        raise RewardLoadError(PICKSCORE_PROCESSOR_SOURCE.message("no tokenizer files", processor_folder))
    model = from_pretrained_local(CLIPModel, model_folder, PICKSCORE_SOURCE)
    tokenizer = from_pretrained_local(AutoTokenizer, processor_folder, PICKSCORE_PROCESSOR_SOURCE)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    prep = read_json(processor_folder / "preprocessor_config.json") or {}
    crop = prep.get("crop_size")
    size = crop.get("height", 224) if isinstance(crop, dict) else (crop or 224)
    return pickscore_reward(
        model, tokenizer, prompt, int(size),
        tuple(prep.get("image_mean", CLIP_MEAN)), tuple(prep.get("image_std", CLIP_STD)),
    )


class OpenClipImageEmbedder(torch.nn.Module):
    """Normalised pixels [B, 3, S, S] -> float32 image embeddings [B, D] of an open_clip model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(to_model(pixels, self.model)).float()


def _square_size(size: Any, what: str) -> int:
    """An int image size from an int or a square (h, w) pair."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or int(size[0]) != int(size[1]):
            raise ValueError(f"{what} must be square, got image size {tuple(size)}")
        size = size[0]
    return int(size)


def load_hpsv2(checkpoint: str | Path, prompt: str, device: torch.device | str | None = None,
               architecture: str = "ViT-H-14") -> PromptSimilarityReward:
    """HPS v2: open_clip `architecture` (ViT-H-14 for the released weights) with the state dict
    in `checkpoint` (HPS_v2.1_compressed.pt; loaded weights-only); needs open_clip_torch.

    score = cos(image embedding, prompt embedding), the diagonal of HPS v2's
    `image_features @ text_features.T`, differentiable through `letterbox`.
    """
    open_clip = import_optional("open_clip", OPEN_CLIP_HINT, purpose="The HPSv2 scorer")
    prompt = prompt_text(prompt)
    known = open_clip.list_models()
    if architecture not in known:
        raise ValueError(
            f"architecture must be an open_clip model config name (HPS v2 uses 'ViT-H-14'; "
            f"{len(known)} are registered), got {architecture!r}"
        )
    state = load_state_dict(checkpoint, HPSV2_SOURCE)
    model = open_clip.create_model(architecture, pretrained=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:400]
        raise RewardLoadError(
            HPSV2_SOURCE.message(f"the state dict does not fit open_clip {architecture} ({detail})", checkpoint)
        ) from err
    freeze(model)
    if device is not None:
        model.to(device)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = _square_size(cfg.get("size", 224), f"open_clip {architecture}")
    mean, std = tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))
    tokens = open_clip.get_tokenizer(architecture)([prompt]).to(next(model.parameters()).device)
    with torch.no_grad():
        text = model.encode_text(tokens)[0].float()
    return PromptSimilarityReward(
        "hpsv2", OpenClipImageEmbedder(model), text, prompt, 1.0, [model], size, mean, std, fit="pad"
    )


# ---------------------------------------------------------------------------
# ImageReward

_BLIP_PACKAGE = "psi_sampler_image_reward_blip"


def import_image_reward_blip() -> tuple[types.ModuleType, types.ModuleType]:
    """(vit, med): image-reward's BLIP network modules, imported without the package's `__init__`.

    They load as submodules of a private package whose path is ImageReward/models/BLIP
    (`sys.modules["ImageReward"]` is left alone). Raises RewardUnavailableError where
    image-reward, timm or fairscale is missing, or where the installed transformers no
    longer has the internals med.py imports (transformers >= 4.56, so every 5.x).
    """
    spec = importlib.util.find_spec("ImageReward")
    if spec is None or not spec.submodule_search_locations:
        raise RewardUnavailableError(
            "The ImageReward scorer needs the Python package `ImageReward` (pip name image-reward), "
            f"which is not installed. {IMAGE_REWARD_HINT}"
        )
    blip_dir = Path(list(spec.submodule_search_locations)[0]) / "models" / "BLIP"
    if _BLIP_PACKAGE not in sys.modules:
        package = types.ModuleType(_BLIP_PACKAGE)
        package.__path__ = [str(blip_dir)]
        sys.modules[_BLIP_PACKAGE] = package
    modules = []
    for name in ("vit", "med"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # timm's deprecated import paths
                modules.append(importlib.import_module(f"{_BLIP_PACKAGE}.{name}"))
        except ModuleNotFoundError as err:
            raise RewardUnavailableError(
                f"The ImageReward scorer needs the Python package `{err.name}` (imported by "
                f"image-reward's {blip_dir / (name + '.py')}), which is not installed. {IMAGE_REWARD_HINT}"
            ) from err
        except ImportError as err:
            import transformers

            raise RewardUnavailableError(
                f"The ImageReward scorer cannot run with transformers {transformers.__version__}: "
                f"image-reward's BLIP {'text encoder' if name == 'med' else 'vision encoder'} "
                f"({blip_dir / (name + '.py')}) imports names that this version no longer has "
                f"({str(err).splitlines()[0]}). image-reward 1.5 needs transformers <= 4.55 "
                "(4.56 removed these names from transformers.modeling_utils); use an environment "
                "with such a transformers for ImageReward."
            ) from err
    return modules[0], modules[1]


class ImageRewardNetwork(torch.nn.Module):
    """ImageReward's scoring network: BLIP ViT -> BLIP text encoder (prompt tokens attending
    to the image tokens) -> [CLS] feature -> MLP -> (x - mean) / std.

    forward(pixels [B, 3, S, S] normalised, input_ids [1, T], attention_mask [1, T]) -> [B]

    `mlp` is image-reward's MLP, which has the LAION aesthetic head's layers
    (768 -> 1024 -> 128 -> 64 -> 16 -> 1, keys layers.{0,2,4,6,7}); here it takes the
    un-normalised [CLS] text feature.
    """

    def __init__(self, visual_encoder: torch.nn.Module, text_encoder: torch.nn.Module,
                 mlp: AestheticHead) -> None:
        super().__init__()
        self.visual_encoder = visual_encoder
        self.text_encoder = text_encoder
        self.mlp = mlp

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.visual_encoder(to_model(pixels, self.visual_encoder))
        batch = image_embeds.shape[0]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.text_encoder(
            input_ids.to(image_embeds.device).expand(batch, -1),
            attention_mask=attention_mask.to(image_embeds.device).expand(batch, -1),
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            return_dict=True,
        )
        features = out.last_hidden_state[:, 0, :]
        rewards = self.mlp(features.to(self.mlp.layers[0].weight.dtype)).float()
        return (rewards - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD


class ImageRewardScorer(Reward):
    """ImageReward for a fixed prompt: [B, 3, H, W] in [0, 1] -> [B], differentiable."""

    differentiable = True

    def __init__(self, network: ImageRewardNetwork, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, prompt: str, image_size: int = 224) -> None:
        self.name = "imagereward"
        self.network = network
        self.input_ids = input_ids.detach().cpu().reshape(1, -1)
        self.attention_mask = attention_mask.detach().cpu().reshape(1, -1)
        self.prompt = prompt
        self.image_size = int(image_size)

    def modules(self) -> list[torch.nn.Module]:
        return [self.network]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_style(images.to(self.device, torch.float32), self.image_size, CLIP_MEAN, CLIP_STD)
        return self.network(pixels, self.input_ids, self.attention_mask)

    def describe(self) -> str:
        return f"{self.name} for prompt {self.prompt!r}"


def _vit_geometry(state: dict[str, torch.Tensor], checkpoint: str | Path) -> dict[str, Any]:
    """BLIP VisionTransformer arguments read off the `blip.visual_encoder.*` weights."""
    prefix = "blip.visual_encoder."
    try:
        width = int(state[prefix + "cls_token"].shape[-1])
        patch = int(state[prefix + "patch_embed.proj.weight"].shape[-1])
        tokens = int(state[prefix + "pos_embed"].shape[1]) - 1
        hidden = int(state[prefix + "blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as err:
        raise RewardLoadError(
            IMAGE_REWARD_SOURCE.message(f"not an ImageReward state dict (no {err.args[0]!r})", checkpoint)
        ) from None
    grid = math.isqrt(tokens)
    if grid * grid != tokens or width % BLIP_HEAD_WIDTH:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"unexpected ViT geometry ({tokens} patch tokens, width {width}; want a square grid and "
            f"a width divisible by {BLIP_HEAD_WIDTH})", checkpoint))
    depth = 1 + max(int(k[len(prefix) + len("blocks."):].split(".")[0])
                    for k in state if k.startswith(prefix + "blocks."))
    return dict(img_size=grid * patch, patch_size=patch, embed_dim=width, depth=depth,
                num_heads=width // BLIP_HEAD_WIDTH, mlp_ratio=hidden / width,
                qkv_bias=prefix + "blocks.0.attn.qkv.bias" in state)


def _load_part(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str,
               checkpoint: str | Path) -> None:
    part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(part, strict=True)
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).strip().splitlines()[:3])[:400]
        raise RewardLoadError(
            IMAGE_REWARD_SOURCE.message(f"the {prefix}* weights do not fit ({detail})", checkpoint)
        ) from err


def load_image_reward(checkpoint: str | Path, med_config: str | Path, prompt: str,
                      device: torch.device | str | None = "cpu",
                      tokenizer_folder: str | Path | None = None) -> ImageRewardScorer:
    """ImageReward from `checkpoint` (ImageReward.pt, loaded weights-only), `med_config`
    (med_config.json) and the bert-base-uncased tokenizer in `tokenizer_folder` (default:
    the folder of med_config.json). Needs the optional package image-reward (import name
    ImageReward) with timm, fairscale and transformers <= 4.55.

    The ViT's size (depth, width, patch, image size) is read off the weights (the released
    file is BLIP's ViT-L/16 at 224); heads are 64 wide, as in BLIP.
    """
    vit, med = import_image_reward_blip()
    prompt = prompt_text(prompt)
    config_data = read_json(med_config)
    if config_data is None:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            "med_config.json is missing or not a JSON object", med_config))
    folder = Path(tokenizer_folder) if tokenizer_folder is not None else Path(med_config).parent
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        raise RewardLoadError(IMAGE_REWARD_TOKENIZER_SOURCE.message("no vocab.txt or tokenizer.json", folder))
    state = load_state_dict(checkpoint, IMAGE_REWARD_SOURCE)  # ~1.7 GB: after the cheap checks

    geometry = _vit_geometry(state, checkpoint)
    visual = vit.VisionTransformer(**geometry)
    config = med.BertConfig.from_dict(config_data)
    config.encoder_width = geometry["embed_dim"]
    if int(config.hidden_size) != AestheticHead.expected_shapes()["layers.0.weight"][1]:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"med_config hidden_size is {config.hidden_size}; ImageReward's MLP takes 768-wide "
            "text features", med_config))
    text = med.BertModel(config=config, add_pooling_layer=False)
    head = AestheticHead()
    for prefix, module in (("blip.visual_encoder.", visual), ("blip.text_encoder.", text), ("mlp.", head)):
        _load_part(module, state, prefix, checkpoint)
    network = freeze(ImageRewardNetwork(visual, text, head))
    if device is not None:
        network.to(device)

    from transformers import BertTokenizer

    tokenizer = from_pretrained_local(BertTokenizer, folder, IMAGE_REWARD_TOKENIZER_SOURCE)
    # the special tokens image-reward's BLIP adds to bert-base-uncased (its init_tokenizer)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokens = tokenizer(prompt, padding="max_length", truncation=True,
                       max_length=IMAGE_REWARD_MAX_TOKENS, return_tensors="pt")
    return ImageRewardScorer(network, tokens["input_ids"], tokens["attention_mask"], prompt,
                             geometry["img_size"])
