"""Test-only ComfyUI pack for the reward node host tests (never shipped).

PsiTestTinyClipVision: a CLIP_VISION built with ComfyUI's own class
(`comfy.clip_vision.ClipVisionModel`) from a tiny config with random weights: what
Load CLIP Vision returns, at a size that runs in milliseconds. ComfyUI's ops skip
weight initialisation, so every weight is set from a seeded generator.
"""

from __future__ import annotations

import json
import tempfile

import torch

import comfy.clip_vision
from comfy_api.latest import ComfyExtension, io


def tiny_config(projection_dim: int) -> dict:
    return {"hidden_act": "quick_gelu", "hidden_size": 32, "image_size": 32, "intermediate_size": 64,
            "layer_norm_eps": 1e-5, "model_type": "clip_vision_model", "num_attention_heads": 2, "num_channels": 3,
            "num_hidden_layers": 1, "patch_size": 8, "projection_dim": projection_dim}


def build(projection_dim: int, seed: int):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(tiny_config(projection_dim), f)
    clip = comfy.clip_vision.ClipVisionModel(f.name)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in clip.model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return clip


class PsiTestTinyClipVision(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestTinyClipVision", display_name="Ψ test: tiny CLIP vision", category="testing/psi",
            description="A tiny random-weight CLIP_VISION made with ComfyUI's ClipVisionModel (tests only).",
            inputs=[io.Int.Input("projection_dim", default=768, min=1, max=4096, tooltip="Embedding width."),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Seed of the random weights.")],
            outputs=[io.ClipVision.Output("clip_vision", tooltip="CLIP_VISION")])

    @classmethod
    def execute(cls, projection_dim, seed):
        return io.NodeOutput(build(projection_dim, seed))


class RewardFixtureExtension(ComfyExtension):
    async def get_node_list(self):
        return [PsiTestTinyClipVision]


async def comfy_entrypoint():
    return RewardFixtureExtension()
