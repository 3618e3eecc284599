"""Test-only ComfyUI pack for psi-sampler's host tests (never shipped).

Nodes:
  PsiTestTinyModel      tiny random-weight MODEL, VAE and conditioning of a family (tiny.py: SD1.5 to
                        Qwen-Image), optionally as stand-ins for dynamic-VRAM patchers
  PsiTestReward         a PSI_REWARD: color (weight-free), tiny_net (weights), threshold (no gradient)
  PsiTestGradCheck      the bridge's gradient against finite differences, run by the real executor
  PsiTestGradientFault  a gradient pass that fails (error, error in backward, interrupt): state before/after
  PsiTestHostState      ComfyUI's globals that a gradient pass changes, between prompts
  PsiTestLatentDigest   sha256 and statistics of a LATENT, shown in /history
  PsiTestTraceSummary   a PSI_TRACE as JSON, shown in /history
  PsiTestMemoryModes    gradients of every memory mode against fast's, and the wrapping around the passes
  PsiTestFp8Model       a MODEL rebuilt with fp8 weight storage (as UNETLoader's weight_dtype does)
  PsiTestOpaqueModel    a MODEL whose diffusion model hides its blocks
  PsiTestPartialModel   a MODEL with a weight patch, always loaded partially (ComfyUI's lowvram path)
  PsiTestAnything       a JSON value as the any type, to send wrong kinds of values past the type check
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import torch

from comfy_api.latest import ComfyExtension, io

from . import dynamic_standin as standin
from . import memory_fixtures_nodes
from . import faults, fixture_rewards, fuzz_audit, gradcheck, tiny, ungated_kitchen

if os.environ.get(ungated_kitchen.ENV) == "1":  # a test server of its own (test_kitchen_gradients.py)
    ungated_kitchen.remove_training_fallbacks()

PsiReward = io.Custom("PSI_REWARD")
PsiTrace = io.Custom("PSI_TRACE")
CATEGORY = "testing/psi"
fuzz_audit.install()


class PsiTestTinyModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestTinyModel", display_name="Ψ test: tiny model", category=CATEGORY,
            description="Tiny random-weight model, VAE and conditioning built with ComfyUI's classes (tests only).",
            inputs=[io.Combo.Input("family", options=tiny.available_families(), default="sd15",
                                           tooltip="Model family (those this host has)."),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Seed of the random weights."),
                    io.Boolean.Input("dynamic_standin", default=False, optional=True,
                                     tooltip="MODEL and VAE patchers stand in for dynamic-VRAM ones")],
            outputs=[io.Model.Output("model", tooltip="MODEL"), io.Vae.Output("vae", tooltip="VAE"),
                     io.Conditioning.Output("positive", tooltip="positive"),
                     io.Conditioning.Output("negative", tooltip="negative")])

    @classmethod
    def execute(cls, family, seed, dynamic_standin=False):
        model, vae, positive, negative = tiny.build(family, seed)
        if dynamic_standin:
            counts = Counter()
            standin.make_standin(model, lambda: tiny.build(family, seed)[0], counts, "model")
            standin.make_standin(vae.patcher, lambda: tiny.build(family, seed)[1].patcher, counts, "vae")
        return io.NodeOutput(model, vae, positive, negative)


class PsiTestReward(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestReward", display_name="Ψ test: reward", category=CATEGORY,
            description="A test reward following the PSI_REWARD contract (tests only).",
            inputs=[io.Combo.Input("kind", options=list(fixture_rewards.KINDS), default="color", tooltip="Kind."),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Seed of tiny_net's weights.")],
            outputs=[PsiReward.Output("reward", tooltip="PSI_REWARD")])

    @classmethod
    def execute(cls, kind, seed):
        return io.NodeOutput(fixture_rewards.FixtureReward(kind, seed))


def model_inputs() -> list:
    return [io.Model.Input("model", tooltip="MODEL"), io.Conditioning.Input("positive", tooltip="positive"),
            io.Conditioning.Input("negative", tooltip="negative")]


class PsiTestGradCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestGradCheck", display_name="Ψ test: gradient check", category=CATEGORY,
            description="Bridge gradient vs central finite differences, inside ComfyUI's loop (tests only).",
            inputs=[*model_inputs(),
                    io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, tooltip="cfg"),
                    io.Vae.Input("vae", tooltip="VAE"), PsiReward.Input("reward", tooltip="reward"),
                    io.Int.Input("steps", default=4, min=2, max=100, tooltip="schedule length"),
                    io.String.Input("sigma_indices", default="0,2", tooltip="schedule indices to check"),
                    io.Float.Input("rel_step", default=3e-3, min=1e-6, max=1.0, step=1e-4, round=False,
                                   tooltip="finite-difference step relative to |x|"),
                    io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="seed"),
                    io.Boolean.Input("forget_inplace", default=False, optional=True,
                                     tooltip="start without activation cloning (an unknown in-place model)")],
            outputs=[io.String.Output("report", tooltip="JSON figures")],
            is_output_node=True)

    @classmethod
    def execute(cls, model, positive, negative, cfg, vae, reward, steps, sigma_indices, rel_step, seed,
                forget_inplace=False):
        indices = [int(v) for v in sigma_indices.split(",") if v.strip()]
        report = gradcheck.run(model, positive, negative, cfg, vae, reward, steps, indices, rel_step, seed,
                               forget_inplace)
        report["ungated_modules"] = list(ungated_kitchen.PATCHED)
        report["kitchen_version"] = ungated_kitchen.kitchen_version()
        report["kitchen_backward"] = dict(gradcheck.pack_module("comfy_host.kitchen_autograd").COVERAGE)
        text = json.dumps(report)
        return io.NodeOutput(text, ui={"psi_gradcheck": [report]})


class PsiTestGradientFault(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestGradientFault", display_name="Ψ test: gradient fault", category=CATEGORY,
            description="A failing gradient pass inside ComfyUI's loop and the state around it (tests only).",
            inputs=[*model_inputs(), io.Vae.Input("vae", tooltip="VAE"),
                    io.Combo.Input("fault", options=list(faults.FAULTS), default="error", tooltip="how it fails")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, model, positive, negative, vae, fault):
        return io.NodeOutput(ui={"psi_fault": [faults.run(model, positive, negative, vae, fault)]})


class PsiTestHostState(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestHostState", display_name="Ψ test: host state", category=CATEGORY,
            description="ComfyUI's globals that a gradient pass changes, as they are now (tests only).",
            inputs=[io.Int.Input("nonce", default=0, min=0, max=2**31, tooltip="change it to run again")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, nonce):
        return io.NodeOutput(ui={"psi_host_state": [faults.host_state()]})


class PsiTestLatentDigest(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestLatentDigest", display_name="Ψ test: latent digest", category=CATEGORY,
            description="sha256 and statistics of a LATENT's samples (tests only).",
            inputs=[io.Latent.Input("latent", tooltip="LATENT"),
                    io.String.Input("label", default="", tooltip="label")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, latent, label):
        samples = latent["samples"].detach().to("cpu", torch.float32).contiguous()
        info = {"label": label, "shape": list(samples.shape),
                "sha256": hashlib.sha256(samples.numpy().tobytes()).hexdigest(),
                "finite": bool(torch.isfinite(samples).all()), "mean": float(samples.mean()),
                "std": float(samples.std()) if samples.numel() > 1 else 0.0,
                "keys": sorted(k for k in latent if k != "samples")}
        return io.NodeOutput(ui={"psi_digest": [info]})


class PsiTestTraceSummary(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PsiTestTraceSummary", display_name="Ψ test: trace summary", category=CATEGORY,
            description="A PSI_TRACE as JSON (tests only).",
            inputs=[PsiTrace.Input("trace", tooltip="PSI_TRACE"),
                    io.String.Input("label", default="", tooltip="label")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, trace, label):
        recorded = [r.step for r in trace.smc if r.x0_hat is not None]
        summary = {"label": label, "recorded_steps": recorded, "initial_x0": trace.initial_x0_hat is not None,
                   **trace.to_dict()}
        return io.NodeOutput(ui={"psi_trace": [summary]})


NODES = [PsiTestTinyModel, PsiTestReward, PsiTestGradCheck, PsiTestGradientFault, PsiTestHostState,
         PsiTestLatentDigest, PsiTestTraceSummary, *memory_fixtures_nodes.NODES, *fuzz_audit.NODES]


class FixtureExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint():
    return FixtureExtension()
