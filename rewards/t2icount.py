"""T2ICount (Qian et al., CVPR 2025) as a differentiable quantity reward.

T2ICount counts the objects a text names with a fine-tuned Stable Diffusion 1.5 UNet:

    x = resize(image, 384 x 384) * 2 - 1                       (the authors' [-1, 1] input)
    z = mean of the SD1.5 VAE posterior (unscaled: no 0.18215)  [B, 4, 48, 48]
    c = SD1.5 CLIP text hidden states of the object phrase      [1, 77, 768]
    features = the fine-tuned UNet at t = 0 with context c: outputs of output
               blocks 1, 4, 7 and 11, i.e. widths 1280, 1280, 640, 320 at
               6², 12², 24², 48²
    text = mean of c over the phrase's tokens (positions 1 .. len(phrase tokens))
    density = CountHead(features, text)                          [B, 1, 48, 48]
    count = density.sum() / 60

Ψ-Sampler's quantity reward resizes the whole image to 384² (one crop, as done
here) and scores -sum_k SmoothL1_beta=1(count_k - target_k). The released T2ICount
feature path runs the VAE encoder under no_grad and detaches the latent, so it has
no image gradient; here every step is differentiable. The UNet's cross-attention
maps are not used: in the authors' model they only feed a training loss (returned
detached), never the density.

This module holds the counting head (`CountHead`, the checkpoint's `decoder.*`
keys), the checkpoint reader and the reward. The UNet, VAE encoder and CLIP are
the host's: the reward takes callables

    encode(x [B, 3, S, S] in [-1, 1]) -> z [B, 4, S/8, S/8]
    unet_features(z [N, 4, h, w], context [N, T, D]) -> [f0, f1, f2, f3]
        (finest first: widths w0..w3 at 8x, 4x, 2x, 1x the coarsest size)

No ComfyUI import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Reward
from ..psi_core.validation import positive_finite
from .loading import RewardLoadError, check_state_dict_shapes, freeze, load_state_dict
from .preprocess import resize
from .quantity import T2ICOUNT_SOURCE, count_reward
from .targets import CountTarget

#: side of the square the image is resized to (the authors' crop; Ψ-Sampler resizes to it)
IMAGE_SIZE = 384
#: density-map sum per counted object (test.py and Ψ-Sampler divide by it)
DENSITY_PER_OBJECT = 60.0
#: SD1.5 UNet widths at the four tapped outputs, finest first (the authors' in_dim)
SD15_WIDTHS = (320, 640, 1280, 1280)
#: SD1.5 CLIP text width and the head's inner width
SD15_TEXT_DIM = 768
HEAD_DIM = 256
#: attention heads of every attention in the head
HEAD_HEADS = 8
#: output blocks of the SD1.5 UNet whose outputs are tapped (then the last block's)
TAPPED_OUTPUT_BLOCKS = (1, 4, 7)

#: key prefixes inside best_model_paper.pth (a state dict of the authors' whole model)
UNET_PREFIX = "unet.unet.diffusion_model."
HEAD_PREFIX = "decoder."
#: the frozen SD1.5 parts stored in the same file; the host's own VAE and CLIP are used instead
FROZEN_PREFIXES = ("vae.", "clip.")

Features = Sequence[torch.Tensor]
Encoder = Callable[[torch.Tensor], torch.Tensor]
UNetFeatures = Callable[[torch.Tensor, torch.Tensor], Features]


# --------------------------------------------------------------------------- the counting head


class _Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (keys q_proj ... out_proj)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q_proj(q)), self._split(self.k_proj(k)),
                                             self._split(self.v_proj(v)))
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU())


def _depthwise(dim: int) -> nn.Conv2d:
    """Positional encoding of image tokens: a 3x3 depthwise convolution."""
    return nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _image(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


class _ImageTextFusion(nn.Module):
    """The text vector attends to the image, then the image attends to the updated text."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.img_pe_transform = _depthwise(dim)
        self.txt2img = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        # keys mlp.net.0.0 / mlp.net.2: Linear, GELU, Dropout(0), Linear (4x width)
        self.mlp = nn.Module()
        self.mlp.net = nn.Sequential(nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU()), nn.Dropout(0.0),
                                     nn.Linear(4 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.img2txt = _Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        keys = _tokens(image + self.img_pe_transform(image))
        pixels = _tokens(image)
        text = text.unsqueeze(1)
        fused = self.norm1(text + self.txt2img(text, keys, pixels))
        fused = self.norm2(fused + self.mlp.net(fused))
        pixels = self.norm3(pixels + self.img2txt(keys, fused + text, fused))
        return fused.squeeze(1), _image(pixels, height, width)


class _UpBlock(nn.Module):
    """2x upsampling of the coarse map, concatenation with the finer UNet feature,
    optional similarity-map gating and (with `text`) two image-text fusions."""

    def __init__(self, low_in: int, low_out: int, cat_in: int, cat_out: int, text_dim: int | None, heads: int):
        super().__init__()
        self.conv1 = _conv_relu(low_in, low_out)
        self.conv2 = _conv_relu(cat_in, cat_out)
        self.with_text = text_dim is not None
        if self.with_text:
            self.text_conv = nn.Linear(text_dim, cat_out)
            self.norm1 = nn.LayerNorm(cat_out)
            self.img_txt_fusion1 = _ImageTextFusion(cat_out, heads)
            self.img_txt_fusion2 = _ImageTextFusion(cat_out, heads)
            self.conv3 = _conv_relu(cat_out, cat_out)

    def forward(self, low, high, text=None, similarity=None):
        low = self.conv1(_up(low))
        x = self.conv2(torch.cat([high, low], dim=1))
        if similarity is not None:
            x = x + similarity * low
        if not self.with_text:
            return x, None
        text = self.text_conv(text)
        text = text + self.norm1(text)
        text, x = self.img_txt_fusion1(x, text)
        x = self.conv3(x)
        text, x = self.img_txt_fusion2(x, text)
        return x, text


class _Regressor(nn.Module):
    """Two self-attention refinements, then convolutions to a non-negative density."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.conv = _conv_relu(dim, dim)
        self.img_pe_transform1 = _depthwise(dim)
        self.self_attn1 = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.img_pe_transform2 = _depthwise(dim)
        self.self_attn2 = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.reg_head = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1), nn.ReLU(), nn.Conv2d(dim, 128, 3, 1, 1),
                                      nn.ReLU(), nn.Conv2d(128, 1, 1), nn.ReLU())

    def _refine(self, x: torch.Tensor, pe: nn.Module, attn: nn.Module, norm: nn.Module) -> torch.Tensor:
        height, width = x.shape[-2:]
        query = _tokens(x + pe(x))
        tokens = _tokens(x)
        return _image(norm(tokens + attn(query, query, tokens)), height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self._refine(x, self.img_pe_transform1, self.self_attn1, self.norm1))
        x = self._refine(x, self.img_pe_transform2, self.self_attn2, self.norm2)
        return self.reg_head(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _similarity(feature: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel's feature with the text vector: [B, 1, H, W]."""
    return F.cosine_similarity(feature, text[:, :, None, None], dim=1).unsqueeze(1)


class CountHead(nn.Module):
    """T2ICount's counting head (the checkpoint's `decoder.*`): UNet features + text -> density.

    widths: UNet widths at the four tapped outputs, finest first (SD1.5: 320, 640, 1280, 1280)
    text_dim: width of the text hidden states (SD1.5 CLIP-L: 768); out_dim: inner width (256)
    forward(features [f0..f3], text [B, text_dim]) -> density [B, 1, H0, W0] (H0 = f0's height)
    """

    def __init__(self, widths: Sequence[int] = SD15_WIDTHS, text_dim: int = SD15_TEXT_DIM,
                 out_dim: int = HEAD_DIM, heads: int = HEAD_HEADS):
        super().__init__()
        w0, w1, w2, w3 = (int(w) for w in widths)
        self.widths = (w0, w1, w2, w3)
        self.text_dim = int(text_dim)
        self.upsample1 = _UpBlock(w3, w3 // 2, w3 // 2 + w2, w3 // 2, text_dim, heads)
        self.upsample2 = _UpBlock(w3 // 2, w3 // 4, w3 // 4 + w1, w3 // 4, text_dim, heads)
        self.upsample3 = _UpBlock(w3 // 4, out_dim, out_dim + w0, out_dim, None, heads)
        self.regressor = _Regressor(out_dim, heads)

    def forward(self, features: Features, text: torch.Tensor) -> torch.Tensor:
        f0, f1, f2, f3 = features
        feat, fused = self.upsample1(f3, f2, text)
        # two 2x steps (not one 4x); the authors resize this map to (24, 24), f1's size at their 384² input
        coarse = F.interpolate(_similarity(_up(_up(feat)), fused), size=tuple(f1.shape[-2:]), mode="bilinear",
                               align_corners=False)
        feat, fused = self.upsample2(feat, f1, text, coarse)
        feat, _ = self.upsample3(feat, f0, similarity=_similarity(_up(feat), fused))
        return self.regressor(feat)

    @staticmethod
    def dims_from_state(state: dict[str, torch.Tensor]) -> tuple[tuple[int, int, int, int], int, int]:
        """(widths, text_dim, out_dim) read from a head state dict's shapes (KeyError where absent)."""
        w3 = state["upsample1.conv1.0.weight"].shape[1]
        w2 = state["upsample1.conv2.0.weight"].shape[1] - w3 // 2
        w1 = state["upsample2.conv2.0.weight"].shape[1] - w3 // 4
        out_dim = state["upsample3.conv1.0.weight"].shape[0]
        w0 = state["upsample3.conv2.0.weight"].shape[1] - out_dim
        text_dim = state["upsample1.text_conv.weight"].shape[1]
        return (int(w0), int(w1), int(w2), int(w3)), int(text_dim), int(out_dim)

    @staticmethod
    def expected_shapes(widths: Sequence[int] = SD15_WIDTHS, text_dim: int = SD15_TEXT_DIM,
                        out_dim: int = HEAD_DIM) -> dict[str, tuple[int, ...]]:
        """Every key of the head's state dict and its shape (built on the meta device)."""
        with torch.device("meta"):
            head = CountHead(widths, text_dim, out_dim)
        return {k: tuple(v.shape) for k, v in head.state_dict().items()}


# --------------------------------------------------------------------------- the checkpoint


@dataclass(frozen=True)
class T2ICountCheckpoint:
    """best_model_paper.pth split: the fine-tuned UNet's state dict (LDM key names, prefix
    removed), the loaded counting head, and how many frozen VAE/CLIP tensors were skipped."""

    unet_state: dict[str, torch.Tensor]
    head: CountHead
    skipped: int


def read_t2icount_checkpoint(path: str | Path) -> T2ICountCheckpoint:
    """Load best_model_paper.pth (safetensors or a weights-only pickle) and check it.

    The file is a state dict of the authors' whole model: `unet.unet.diffusion_model.*`
    (the fine-tuned SD1.5 UNet), `decoder.*` (the counting head), and the frozen SD1.5
    `vae.*` encoder and `clip.*` text encoder, which are skipped (the host's are used).
    The head loads strictly after a key-and-shape check; the UNet is loaded by the host.
    """
    path = Path(path)
    state = load_state_dict(path, T2ICOUNT_SOURCE)  # RewardLoadError naming a missing file
    unet = {k[len(UNET_PREFIX):]: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    head_state = {k[len(HEAD_PREFIX):]: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    skipped = sum(1 for k in state if k.startswith(FROZEN_PREFIXES))
    other = sorted(k for k in state if not k.startswith((UNET_PREFIX, HEAD_PREFIX) + FROZEN_PREFIXES))
    if not unet or not head_state or other:
        problem = (f"not a T2ICount checkpoint: {len(unet)} keys start with {UNET_PREFIX!r}, "
                   f"{len(head_state)} with {HEAD_PREFIX!r}")
        if other:
            problem += f"; unexpected keys {other[:6]}"
        raise RewardLoadError(T2ICOUNT_SOURCE.message(problem, path))
    try:
        widths, text_dim, out_dim = CountHead.dims_from_state(head_state)
    except KeyError as err:
        raise RewardLoadError(T2ICOUNT_SOURCE.message(f"the counting head has no key {err}", path)) from None
    check_state_dict_shapes(head_state, CountHead.expected_shapes(widths, text_dim, out_dim), path, T2ICOUNT_SOURCE)
    head = CountHead(widths, text_dim, out_dim)
    head.load_state_dict(head_state, strict=True)
    return T2ICountCheckpoint(unet, freeze(head.float()), skipped)


# --------------------------------------------------------------------------- the reward


def phrase_token_mask(token_ids: Sequence[int], end_token: int) -> torch.Tensor:
    """The authors' text mask over a padded token sequence: 1 at positions 1 .. n, where n
    is the number of the phrase's own tokens (the ones between the start token and the
    first end token); [T] float32."""
    ids = list(token_ids)
    if end_token not in ids[1:]:
        raise ValueError(f"the token sequence has no end token {end_token} after the start token")
    n = ids.index(end_token, 1) - 1
    if n < 1:
        raise ValueError("the object phrase gives no tokens")
    mask = torch.zeros(len(ids), dtype=torch.float32)
    mask[1:1 + n] = 1.0
    return mask


class T2ICountReward(Reward):
    """-sum_k SmoothL1_beta(count_k - target_k) with T2ICount counts: [B, 3, H, W] in [0, 1] -> [B].

    head: CountHead; encode / unet_features: the host's SD1.5 VAE encoder and fine-tuned
    UNet (see the module docstring); contexts [K, T, D] and token_masks [K, T]: each
    object phrase's CLIP hidden states and `phrase_token_mask`; modules: the torch modules
    holding the host-side weights (moved and made gradient-ready by the host bridge).
    """

    name = "quantity"
    differentiable = True

    def __init__(self, head: CountHead, encode: Encoder, unet_features: UNetFeatures, contexts: torch.Tensor,
                 token_masks: torch.Tensor, target: CountTarget, beta: float = 1.0,
                 modules: Sequence[nn.Module] = (), image_size: int = IMAGE_SIZE):
        if not isinstance(target, CountTarget):
            raise TypeError("target must be a CountTarget (use CountTarget.build(objects, counts))")
        k = len(target.objects)
        if contexts.ndim != 3 or contexts.shape[0] != k:
            raise ValueError(f"contexts must be [K={k}, T, D] (one per object); got {tuple(contexts.shape)}")
        if contexts.shape[2] != head.text_dim:
            raise ValueError(f"the text encoder gives {contexts.shape[2]}-wide hidden states but the T2ICount head "
                             f"reads {head.text_dim} (SD1.5's CLIP ViT-L/14 text encoder)")
        if token_masks.shape != contexts.shape[:2] or bool((token_masks.sum(dim=1) <= 0).any()):
            raise ValueError(f"token_masks must be [K, T] = {tuple(contexts.shape[:2])} with at least one token per "
                             f"object; got {tuple(token_masks.shape)}")
        if int(image_size) % 64:
            raise ValueError(f"image_size must be a multiple of 64 (latent /8, three /2 levels); got {image_size}")
        self.head = head
        self.encode = encode
        self.unet_features = unet_features
        self.contexts = contexts.detach().float()
        masks = token_masks.detach().float()
        self.text = (self.contexts * masks[..., None]).sum(dim=1) / masks.sum(dim=1, keepdim=True)
        self.target = target
        self.beta = positive_finite("beta", beta)
        self.image_size = int(image_size)
        self._modules = [head, *modules]

    def modules(self) -> list[nn.Module]:
        return list(self._modules)

    def counts(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> counts [B, K] (density sum / 60 per object)."""
        batch, k = images.shape[0], len(self.target.objects)
        param = next(self.head.parameters())  # computed in the head's dtype (float32 as loaded)
        x = resize(images.to(param.device, param.dtype), (self.image_size, self.image_size), mode="bilinear")
        latents = self.encode(x * 2.0 - 1.0).to(param.dtype)
        latents = latents.repeat_interleave(k, dim=0)
        contexts = self.contexts.to(latents).repeat(batch, 1, 1)
        features = [f.to(param.dtype) for f in self.unet_features(latents, contexts)]
        text = self.text.to(latents).repeat(batch, 1)
        density = self.head(features, text)
        return density.flatten(1).sum(dim=1).reshape(batch, k) / DENSITY_PER_OBJECT

    def score(self, images: torch.Tensor) -> torch.Tensor:
        counts = self.counts(images)
        return count_reward(counts, self.target.counts.to(counts), self.beta)

    def describe(self) -> str:
        return f"quantity (T2ICount, {self.image_size}² input): {self.target.describe()}"
