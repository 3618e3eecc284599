"""ImageReward (Xu et al. 2023, "ImageReward: Learning and Evaluating Human Preferences for
Text-to-Image Generation") built from transformers' own BLIP classes (Li et al. 2022, "BLIP:
Bootstrapping Language-Image Pre-training"), loading the released THUDM/ImageReward weights.

    pixels [B, 3, S, S] -> BLIP ViT (BlipVisionModel)            -> image tokens [B, 1 + N, Dv]
    prompt tokens [1, 35] -> BLIP text encoder (BlipTextModel, self-attention over the prompt,
                             cross-attention to the image tokens) -> [CLS] feature [B, 768]
    MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1, then (x - mean) / std   -> score [B]

The released file stores the package's module names (`blip.visual_encoder.*`, a timm-style
ViT; `blip.text_encoder.*`, BLIP's med.py BertModel; `mlp.layers.*`). The ViT's names map
one to one onto BlipVisionModel's (the fused qkv projection has the same [3 * D, D] layout,
the class token [1, 1, D] and position table [1, 1 + N, D] the same shapes: no tensor is
reshaped); the text encoder's names are BlipTextModel's already, save for med.py's stored
`embeddings.position_ids` buffer (an arange, rebuilt by transformers). The mapping is a
table of name patterns, checked in both directions, so a missing or misshapen tensor is
named in the checkpoint's own terms before anything is loaded.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from ..psi_core.validation import prompt_text
from .aesthetic import AestheticHead
from .base import Reward
from .loading import (RewardLoadError, WeightsSource, check_state_dict_shapes, freeze, from_pretrained_local,
                      load_state_dict, read_json)
from .preprocess import CLIP_MEAN, CLIP_STD, clip_style, to_model

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
    origin="Hugging Face repo google-bert/bert-base-uncased (this pack never downloads)",
)
#: ImageReward's score normalisation, `(mlp(features) - mean) / std` (image-reward 1.5, ImageReward.py)
IMAGE_REWARD_MEAN = 0.16717362830052426
IMAGE_REWARD_STD = 1.0333394966054072
#: ImageReward tokenises the prompt to 35 tokens (padding="max_length", truncation)
IMAGE_REWARD_MAX_TOKENS = 35
#: BLIP's ViTs use 64-wide attention heads (base 768/12, large 1024/16); not stored in the weights
BLIP_HEAD_WIDTH = 64
#: BLIP's timm ViT normalises with LayerNorm(eps=1e-6) and uses exact (erf) GELU
BLIP_VIT_LAYER_NORM_EPS = 1e-6

VISION_PREFIX, TEXT_PREFIX, MLP_PREFIX = "blip.visual_encoder.", "blip.text_encoder.", "mlp."
#: (name in the released file, below VISION_PREFIX) <-> (BlipVisionModel name); {i} a block, {p} weight|bias
VISION_NAMES = (
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.{p}", "embeddings.patch_embedding.{p}"),
    ("blocks.{i}.norm1.{p}", "encoder.layers.{i}.layer_norm1.{p}"),
    ("blocks.{i}.attn.qkv.{p}", "encoder.layers.{i}.self_attn.qkv.{p}"),
    ("blocks.{i}.attn.proj.{p}", "encoder.layers.{i}.self_attn.projection.{p}"),
    ("blocks.{i}.norm2.{p}", "encoder.layers.{i}.layer_norm2.{p}"),
    ("blocks.{i}.mlp.fc1.{p}", "encoder.layers.{i}.mlp.fc1.{p}"),
    ("blocks.{i}.mlp.fc2.{p}", "encoder.layers.{i}.mlp.fc2.{p}"),
    ("norm.{p}", "post_layernorm.{p}"),
)
#: med.py's persistent buffers that transformers rebuilds (not weights); ignored when present
TEXT_BUFFERS = ("embeddings.position_ids",)
#: med_config.json fields the text encoder needs (BLIP's file has them all)
MED_CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings")


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(body + r"\Z")


_VISION_RULES = tuple((_pattern(ours), ours, _pattern(theirs), theirs) for ours, theirs in VISION_NAMES)


def rename_vision_key(key: str, to_transformers: bool = True) -> str | None:
    """A ViT weight's name in the released file -> BlipVisionModel's (or back, with
    `to_transformers=False`); None where no rule matches."""
    for package_re, package, hf_re, hf in _VISION_RULES:
        match = (package_re if to_transformers else hf_re).match(key)
        if match:
            return (hf if to_transformers else package).format(**match.groupdict())
    return None


def vision_config(state: dict[str, torch.Tensor], checkpoint: str | Path) -> Any:
    """BlipVisionConfig read off the `blip.visual_encoder.*` weights (the released file is BLIP's
    ViT-L/16 at 224: width 1024, 24 blocks, 16 heads of 64, MLP 4096)."""
    from transformers import BlipVisionConfig

    try:
        width = int(state[VISION_PREFIX + "cls_token"].shape[-1])
        patch = int(state[VISION_PREFIX + "patch_embed.proj.weight"].shape[-1])
        tokens = int(state[VISION_PREFIX + "pos_embed"].shape[1]) - 1
        hidden = int(state[VISION_PREFIX + "blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as err:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"not an ImageReward state dict (no {err.args[0]!r})", checkpoint)) from None
    grid = math.isqrt(tokens)
    if grid * grid != tokens or width % BLIP_HEAD_WIDTH:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"unexpected ViT geometry ({tokens} patch tokens, width {width}; want a square grid and "
            f"a width divisible by {BLIP_HEAD_WIDTH})", checkpoint))
    blocks = VISION_PREFIX + "blocks."
    depth = 1 + max(int(k[len(blocks):].split(".")[0]) for k in state if k.startswith(blocks))
    return BlipVisionConfig(hidden_size=width, intermediate_size=hidden, num_hidden_layers=depth,
                            num_attention_heads=width // BLIP_HEAD_WIDTH, image_size=grid * patch,
                            patch_size=patch, hidden_act="gelu", layer_norm_eps=BLIP_VIT_LAYER_NORM_EPS)


def text_config(med: dict[str, Any], encoder_width: int, med_config: str | Path) -> Any:
    """BlipTextConfig from BLIP's med_config.json, cross-attending to `encoder_width`-wide image
    tokens (ImageReward sets the encoder width to the ViT's, as BLIP_Pretrain does)."""
    from transformers import BlipTextConfig

    absent = [name for name in MED_CONFIG_FIELDS if not isinstance(med.get(name), int)]
    if absent:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"med_config.json lacks the integer fields {absent} (BLIP's med_config.json has "
            f"{list(MED_CONFIG_FIELDS)})", med_config))
    head = AestheticHead.expected_shapes()["layers.0.weight"][1]
    if med["hidden_size"] != head:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message(
            f"med_config hidden_size is {med['hidden_size']}; ImageReward's MLP takes {head}-wide "
            "text features", med_config))
    # is_decoder builds the cross-attention blocks; the forward runs bidirectionally (is_decoder=False)
    return BlipTextConfig(**{name: med[name] for name in MED_CONFIG_FIELDS},
                          hidden_act=med.get("hidden_act", "gelu"),
                          layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)),
                          pad_token_id=int(med.get("pad_token_id", 0)),
                          encoder_hidden_size=int(encoder_width), is_decoder=True,
                          bos_token_id=None, eos_token_id=None, sep_token_id=None)  # unused by the encoder


def _part(state: dict[str, torch.Tensor], prefix: str, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] not in skip}


def _check_part(part: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str, rename,
                checkpoint: str | Path) -> None:
    """RewardLoadError naming the checkpoint's keys (prefix included) unless `part` has exactly
    the tensors `module` needs, in the file's names and shapes."""
    expected = {prefix + rename(k): tuple(v.shape) for k, v in module.state_dict().items()}
    check_state_dict_shapes({prefix + k: v for k, v in part.items()}, expected, checkpoint, IMAGE_REWARD_SOURCE)


def image_reward_state(state: dict[str, torch.Tensor], vision: torch.nn.Module, text: torch.nn.Module,
                       mlp: torch.nn.Module, checkpoint: str | Path) -> tuple[dict, dict, dict]:
    """(vision, text, mlp) state dicts in transformers' names from the released file's `state`,
    checked against the built modules; other top-level keys (BLIP's unused projections) are ignored."""
    vision_part = _part(state, VISION_PREFIX)
    _check_part(vision_part, vision, VISION_PREFIX, lambda k: rename_vision_key(k, to_transformers=False),
                checkpoint)
    text_part = _part(state, TEXT_PREFIX, TEXT_BUFFERS)
    _check_part(text_part, text, TEXT_PREFIX, lambda k: k, checkpoint)
    mlp_part = _part(state, MLP_PREFIX)
    _check_part(mlp_part, mlp, MLP_PREFIX, lambda k: k, checkpoint)
    return {rename_vision_key(k): v for k, v in vision_part.items()}, text_part, mlp_part


class ImageRewardNetwork(torch.nn.Module):
    """forward(pixels [B, 3, S, S] normalised, input_ids [1, T], attention_mask [1, T]) -> [B].

    vision: BlipVisionModel (its last_hidden_state, after the final LayerNorm, is BLIP's
    `visual_encoder(image)`); text: BlipTextModel with cross-attention, run as an encoder;
    mlp: ImageReward's MLP (the LAION aesthetic head's layers, keys layers.{0,2,4,6,7}) on
    the un-normalised [CLS] text feature.
    """

    def __init__(self, vision: torch.nn.Module, text: torch.nn.Module, mlp: AestheticHead) -> None:
        super().__init__()
        self.vision = vision
        self.text = text
        self.mlp = mlp

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision(pixel_values=to_model(pixels, self.vision)).last_hidden_state
        batch, device = image_embeds.shape[0], image_embeds.device
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=device)
        out = self.text(input_ids=input_ids.to(device).expand(batch, -1),
                        attention_mask=attention_mask.to(device).expand(batch, -1),
                        encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts, is_decoder=False)
        features = out.last_hidden_state[:, 0, :]
        rewards = self.mlp(features.to(self.mlp.layers[0].weight.dtype)).float()
        return (rewards - IMAGE_REWARD_MEAN) / IMAGE_REWARD_STD


class ImageRewardScorer(Reward):
    """ImageReward for a fixed prompt: [B, 3, H, W] in [0, 1] -> [B], differentiable in the image
    through this pack's preprocessing (bicubic to S, centre crop, CLIP mean/std, as the
    package's `_transform(224)`)."""

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


def image_reward_tokens(folder: Path, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids [1, 35], attention_mask [1, 35]) of `prompt` with bert-base-uncased from `folder`
    and the special tokens BLIP's init_tokenizer adds ([DEC] as bos, [ENC])."""
    from transformers import BertTokenizer

    tokenizer = from_pretrained_local(BertTokenizer, folder, IMAGE_REWARD_TOKENIZER_SOURCE)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokens = tokenizer(prompt, padding="max_length", truncation=True,
                       max_length=IMAGE_REWARD_MAX_TOKENS, return_tensors="pt")
    return tokens["input_ids"], tokens["attention_mask"]


def load_image_reward(checkpoint: str | Path, med_config: str | Path, prompt: str,
                      device: torch.device | str | None = "cpu",
                      tokenizer_folder: str | Path | None = None) -> ImageRewardScorer:
    """ImageReward from `checkpoint` (ImageReward.pt, loaded weights-only), `med_config`
    (med_config.json) and the bert-base-uncased tokenizer in `tokenizer_folder` (default: the
    folder of med_config.json), on transformers' BlipVisionModel and BlipTextModel.

    The ViT's size (depth, width, patch, image size) is read off the weights; heads are 64
    wide, as in BLIP. The cheap checks (prompt, config, tokenizer files) come first.
    """
    from transformers import BlipTextModel, BlipVisionModel

    prompt = prompt_text(prompt)
    med = read_json(med_config)
    if med is None:
        raise RewardLoadError(IMAGE_REWARD_SOURCE.message("med_config.json is missing or not a JSON object",
                                                          med_config))
    folder = Path(tokenizer_folder) if tokenizer_folder is not None else Path(med_config).parent
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        raise RewardLoadError(IMAGE_REWARD_TOKENIZER_SOURCE.message("no vocab.txt or tokenizer.json", folder))
    state = load_state_dict(checkpoint, IMAGE_REWARD_SOURCE)  # ~1.7 GB: after the cheap checks

    vision = BlipVisionModel(vision_config(state, checkpoint))
    text = BlipTextModel(text_config(med, vision.config.hidden_size, med_config), add_pooling_layer=False)
    head = AestheticHead()
    parts = image_reward_state(state, vision, text, head, checkpoint)
    del state
    for module, part in zip((vision, text, head), parts):
        module.load_state_dict({k: v.float() for k, v in part.items()}, strict=True)
    network = freeze(ImageRewardNetwork(vision, text, head))
    if device is not None:
        network.to(device)
    input_ids, attention_mask = image_reward_tokens(folder, prompt)
    return ImageRewardScorer(network, input_ids, attention_mask, prompt, vision.config.image_size)
