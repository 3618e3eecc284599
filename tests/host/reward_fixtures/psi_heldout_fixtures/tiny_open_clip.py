"""A scaled-down open_clip "ViT-H-14" for the held-out host tests (plain Python, no ComfyUI imports).

TEST-ONLY SUBSTITUTION: `register()` replaces open_clip's registered "ViT-H-14" model config
in the calling process by TINY_VIT_H_14, which has ViT-H-14's structure (the same keys:
embed_dim, a ViT image tower, a 77-token text transformer over the 49408-token BPE) with
the embedding width, layers, heads and image size shrunk. The real HPS v2 node builds
open_clip's "ViT-H-14" by name, so a server that has loaded the heldout fixture pack
builds this tiny model instead. It is never shipped and never used outside tests/host.

`save_hps_checkpoint()` writes random weights of that tiny model in HPS v2's file layout
(`{"state_dict": ...}`, as HPS_v2.1_compressed.pt).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

NAME = "ViT-H-14"
#: open_clip's model_configs/ViT-H-14.json with every size shrunk (same keys and structure)
TINY_VIT_H_14 = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register():
    """Make open_clip's "ViT-H-14" the tiny config in this process (test only); returns open_clip.

    Uses open_clip's public `add_model_config`: a file named ViT-H-14.json added after the
    built-in configs wins the name on every rescan."""
    import open_clip

    folder = Path(tempfile.mkdtemp(prefix="psi_tiny_open_clip_"))
    path = folder / f"{NAME}.json"
    path.write_text(json.dumps(TINY_VIT_H_14))
    open_clip.add_model_config(path)
    return open_clip


def registered_config() -> dict | None:
    """open_clip's current "ViT-H-14" config in this process (None where open_clip is missing)."""
    try:
        import open_clip
    except ImportError:
        return None
    return copy.deepcopy(open_clip.get_model_config(NAME))


def save_hps_checkpoint(path: str | Path, seed: int = 0) -> list[str]:
    """Random weights of the tiny "ViT-H-14" saved as HPS v2 stores them; returns the keys."""
    import torch

    open_clip = register()
    torch.manual_seed(seed)
    model = open_clip.create_model(NAME, pretrained=None).eval()
    state = model.state_dict()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)
    return sorted(state)


def hps_reference(model, tokenizer_name: str, prompt: str, images, size: int):
    """HPS v2's own scoring of images [B, 3, H, W] in [0, 1] with open_clip (the reference the
    pack's HPSv2 reward is compared with): ResizeMaxSize(size, fill=0) with torchvision ops,
    OPENAI mean/std, then the diagonal of normalised image_features @ normalised text_features.T."""
    import open_clip
    import torch
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    pixels = []
    for image in images:
        h, w = image.shape[-2:]
        scale = size / float(max(h, w))
        nh, nw = round(h * scale), round(w * scale)
        x = TF.resize(image, [nh, nw], interpolation=InterpolationMode.BICUBIC, antialias=True)
        ph, pw = size - nh, size - nw
        x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
        pixels.append(TF.normalize(x, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD))
    tokens = open_clip.get_tokenizer(tokenizer_name)([prompt])
    with torch.no_grad():
        image_features = model.encode_image(torch.stack(pixels), normalize=True)
        text_features = model.encode_text(tokens, normalize=True)
    return (image_features @ text_features.T)[:, 0]


def hps_scores(checkpoint: str | Path, prompt: str, images: list[str | Path]) -> list[float]:
    """hps_reference on image files, with the tiny model's weights from `checkpoint`."""
    import torch
    import torchvision.transforms.functional as TF
    from PIL import Image

    open_clip = register()
    model = open_clip.create_model(NAME, pretrained=None).eval()
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    tensors = [TF.to_tensor(Image.open(file).convert("RGB")) for file in images]
    return hps_reference(model, NAME, prompt, tensors, TINY_VIT_H_14["vision_cfg"]["image_size"]).tolist()


if __name__ == "__main__":  # host python: tiny_open_clip.py save OUT.pt SEED | score CHECKPOINT PROMPT IMAGE...
    import sys

    if sys.argv[1] == "save":
        print(json.dumps({"keys": save_hps_checkpoint(sys.argv[2], int(sys.argv[3]))}))
    else:
        print(json.dumps({"scores": hps_scores(sys.argv[2], sys.argv[3], sys.argv[4:])}))
