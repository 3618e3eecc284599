"""Test-only ComfyUI pack for the held-out scorer host tests (never shipped).

TEST-ONLY SUBSTITUTION: where open_clip is importable, importing this pack replaces open_clip's
registered "ViT-H-14" config in the server process by a scaled-down config with the same
structure (tiny_open_clip.TINY_VIT_H_14), so PsiHPSv2Reward, which builds open_clip's
"ViT-H-14" by name, builds a tiny random model that the test saved in HPS v2's file layout.
Without open_clip nothing is replaced (the HPS v2 host tests skip).

PsiTestOpenClipConfig shows the "ViT-H-14" config the server process would build, so a test
can check that the substitution is in place there.
"""

from __future__ import annotations

import importlib.util
import logging

from comfy_api.latest import ComfyExtension, io

from . import tiny_open_clip

if importlib.util.find_spec("open_clip") is not None:
    tiny_open_clip.register()
    logging.getLogger("psi_heldout_fixtures").info(
        "psi test: open_clip 'ViT-H-14' replaced by a tiny config of the same structure (tests only)")


class PsiTestOpenClipConfig(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestOpenClipConfig", display_name="Ψ test: open_clip ViT-H-14 config", category="testing/psi",
            description="Shows open_clip's registered ViT-H-14 config in the server process (tests only).",
            inputs=[io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Unused; changes re-run the node.")],
            outputs=[], is_output_node=True)

    @classmethod
    def fingerprint_inputs(cls, seed):
        return float("nan")  # always re-run: the registry is process state

    @classmethod
    def execute(cls, seed):
        return io.NodeOutput(ui={"psi_open_clip": [{"ViT-H-14": tiny_open_clip.registered_config()}]})


class HeldoutFixtureExtension(ComfyExtension):
    async def get_node_list(self):
        return [PsiTestOpenClipConfig]


async def comfy_entrypoint():
    return HeldoutFixtureExtension()
