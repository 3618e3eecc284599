"""Fixture nodes for the memory-mode, fp8 and opaque-model host tests (test-only)."""

from __future__ import annotations

import json

from comfy_api.latest import io

from . import memory_fixtures

PsiReward = io.Custom("PSI_REWARD")
CATEGORY = "testing/psi"


class PsiTestMemoryModes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestMemoryModes", display_name="Ψ test: memory modes", category=CATEGORY,
            description="Gradients of each memory mode against fast's inside ComfyUI's loop (tests only).",
            inputs=[io.Model.Input("model", tooltip="MODEL"), io.Conditioning.Input("positive", tooltip="positive"),
                    io.Conditioning.Input("negative", tooltip="negative"),
                    io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, tooltip="cfg"),
                    io.Vae.Input("vae", tooltip="VAE"), PsiReward.Input("reward", tooltip="reward"),
                    io.Boolean.Input("forget_inplace", default=False, tooltip="start without activation cloning")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, model, positive, negative, cfg, vae, reward, forget_inplace):
        report = memory_fixtures.compare_modes(model, positive, negative, cfg, vae, reward, forget_inplace)
        return io.NodeOutput(ui={"psi_memory": [json.loads(json.dumps(report))]})


class PsiTestFp8Model(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestFp8Model", display_name="Ψ test: fp8 model", category=CATEGORY,
            description="The MODEL rebuilt with fp8 weight storage and manual-cast compute (tests only).",
            inputs=[io.Model.Input("model", tooltip="MODEL"),
                    io.Combo.Input("weight_dtype", options=list(memory_fixtures.FP8), tooltip="storage dtype")],
            outputs=[io.Model.Output("fp8_model", tooltip="MODEL")], is_output_node=True)

    @classmethod
    def execute(cls, model, weight_dtype):
        rebuilt = memory_fixtures.fp8_model(model, weight_dtype)
        info = {"stored": memory_fixtures.stored_dtypes(rebuilt),
                "manual_cast": str(rebuilt.model.manual_cast_dtype)}
        return io.NodeOutput(rebuilt, ui={"psi_fp8": [info]})


class PsiTestOpaqueModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestOpaqueModel", display_name="Ψ test: opaque model", category=CATEGORY,
            description="A MODEL whose diffusion model registers no blocks (tests only).",
            inputs=[io.Model.Input("model", tooltip="MODEL")],
            outputs=[io.Model.Output("opaque_model", tooltip="MODEL")])

    @classmethod
    def execute(cls, model):
        return io.NodeOutput(memory_fixtures.opaque_model(model))


class PsiTestPartialModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestPartialModel", display_name="Ψ test: partially loaded model", category=CATEGORY,
            description="The MODEL with a weight patch, always loaded partially (lowvram path; tests only).",
            inputs=[io.Model.Input("model", tooltip="MODEL"),
                    io.Int.Input("budget_bytes", default=1, min=0, max=2**40, tooltip="weights loaded normally")],
            outputs=[io.Model.Output("partial_model", tooltip="MODEL")], is_output_node=True)

    @classmethod
    def execute(cls, model, budget_bytes):
        patched, lowvram = memory_fixtures.partial_model(model, budget_bytes)
        return io.NodeOutput(patched, ui={"psi_partial": [{"lowvram_modules": lowvram}]})


NODES = [PsiTestMemoryModes, PsiTestFp8Model, PsiTestOpaqueModel, PsiTestPartialModel]
