"""Test-only ComfyUI pack for the T2ICount host tests (never shipped).

PsiTestTinySD1Clip: a CLIP (text encoder + ComfyUI's real SD1 tokenizer) built with
ComfyUI's own SD1 classes (`comfy.sd.CLIP`, `sd1_clip.SD1ClipModel` / `SDClipModel`) from a tiny
CLIP-L-shaped config with random weights, so text widths match the tiny T2ICount
checkpoint written by make_checkpoint.py. ComfyUI's ops skip weight initialisation,
so every weight is set from a seeded generator.
"""

from __future__ import annotations

import functools
import json
import tempfile

import torch

import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
from comfy_api.latest import ComfyExtension, io

from .tiny_parts import TEXT_WIDTH, clip_config, init_weights_


def build_clip(seed: int) -> comfy.sd.CLIP:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(clip_config(), f)
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    target.params = {"clip_model": functools.partial(comfy.sd1_clip.SDClipModel, textmodel_json_config=f.name,
                                                     return_projected_pooled=False)}
    clip = comfy.sd.CLIP(target)
    init_weights_(clip.cond_stage_model, torch.Generator().manual_seed(int(seed)), std=0.5)
    return clip


class PsiTestTinySD1Clip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestTinySD1Clip", display_name="Ψ test: tiny SD1 CLIP", category="testing/psi",
            description=f"A tiny random-weight SD1 CLIP ({TEXT_WIDTH}-wide) made with ComfyUI's classes (tests only).",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Seed of the random weights.")],
            outputs=[io.Clip.Output("clip", tooltip="CLIP")])

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(build_clip(seed))


class T2ICountFixtureExtension(ComfyExtension):
    async def get_node_list(self):
        return [PsiTestTinySD1Clip]


async def comfy_entrypoint():
    return T2ICountFixtureExtension()
