"""Build the shipped example workflows (workflows/*.json, UI format) and their thumbnails (*.jpg).

The workflows are written from a real server's GET /object_info, so every node's inputs, outputs and
widgets_values follow the schema the frontend will see (values in schema order, a control value after
each seed). Run it after a node schema changes, with a host at COMFYUI_PATH (a server is started with
the pack loaded) or with a saved object_info:

    COMFYUI_PATH=/path/to/ComfyUI .venv/bin/python tests/workflows/make_workflows.py
    .venv/bin/python tests/workflows/make_workflows.py --object-info object_info.json

tests/workflows/test_workflows.py checks that the files equal what this script builds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workflow_convert import combo_options, has_control, input_specs, is_widget  # noqa: E402

REPO = HERE.parents[1]
WORKFLOWS = REPO / "workflows"

# --------------------------------------------------------------------------------------------- model files


@dataclass(frozen=True)
class ModelFile:
    """A file (or a transformers folder, `folder_kind` set) a workflow names, and where it goes."""

    name: str
    folder: str  # ComfyUI model folder under models/
    origin: str
    folder_kind: str | None = None  # model_type of a transformers folder (its config.json)


FLUX_UNET = ModelFile("flux1-schnell.safetensors", "diffusion_models",
                      "black-forest-labs/FLUX.1-schnell on Hugging Face (flux1-schnell.safetensors)")
FLUX_CLIP_L = ModelFile("clip_l.safetensors", "text_encoders", "comfyanonymous/flux_text_encoders on Hugging Face")
FLUX_T5 = ModelFile("t5xxl_fp8_e4m3fn.safetensors", "text_encoders",
                    "comfyanonymous/flux_text_encoders on Hugging Face (or t5xxl_fp16.safetensors)")
FLUX_VAE = ModelFile("ae.safetensors", "vae", "black-forest-labs/FLUX.1-schnell on Hugging Face (ae.safetensors)")
SD15_CKPT = ModelFile("v1-5-pruned-emaonly.safetensors", "checkpoints",
                      "Comfy-Org/stable-diffusion-v1-5-archive on Hugging Face (any SD1.5 checkpoint works)")
AESTHETIC_HEAD = ModelFile("sac+logos+ava1-l14-linearMSE.pth", "psi_rewards",
                           "christophschuhmann/improved-aesthetic-predictor on GitHub")
CLIP_L14 = ModelFile("clip-vit-large-patch14", "psi_rewards",
                     "openai/clip-vit-large-patch14 on Hugging Face (config.json + model.safetensors)", "clip")
GROUNDING_DINO = ModelFile("grounding-dino-base", "psi_rewards",
                           "IDEA-Research/grounding-dino-base on Hugging Face (config, model.safetensors, tokenizer)",
                           "grounding-dino")

FLUX_DEV_UNET = ModelFile("flux1-dev.safetensors", "diffusion_models",
                          "black-forest-labs/FLUX.1-dev on Hugging Face (flux1-dev.safetensors; gated: accept its licence)")
SDXL_CKPT = ModelFile("sd_xl_base_1.0.safetensors", "checkpoints",
                      "stabilityai/stable-diffusion-xl-base-1.0 on Hugging Face (any SDXL checkpoint works)")
SD35_CKPT = ModelFile("sd3.5_medium.safetensors", "checkpoints",
                      "stabilityai/stable-diffusion-3.5-medium on Hugging Face (or sd3.5_large.safetensors)")
SD35_CLIP_G = ModelFile("clip_g.safetensors", "text_encoders",
                        "stabilityai/stable-diffusion-3.5-medium on Hugging Face (text_encoders/clip_g.safetensors)")
ZIMAGE_UNET = ModelFile("z_image_turbo_bf16.safetensors", "diffusion_models",
                        "Comfy-Org/z_image_turbo on Hugging Face (split_files/diffusion_models)")
ZIMAGE_TE = ModelFile("qwen_3_4b.safetensors", "text_encoders",
                      "Comfy-Org/z_image_turbo on Hugging Face (split_files/text_encoders)")

MODEL_FILES = {f.name: f for f in (FLUX_UNET, FLUX_CLIP_L, FLUX_T5, FLUX_VAE, SD15_CKPT, AESTHETIC_HEAD, CLIP_L14,
                                     GROUNDING_DINO, FLUX_DEV_UNET, SDXL_CKPT, SD35_CKPT, SD35_CLIP_G, ZIMAGE_UNET,
                                     ZIMAGE_TE)}

#: (node type, input name) -> the model folder of the file or folder that widget names (the test host gets
#: placeholders of these, so a real server validates the workflows with their model choices present)
MODEL_INPUTS = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("PsiAestheticReward", "head"): "psi_rewards",
    ("PsiAestheticReward", "clip_folder"): "psi_rewards",
    ("PsiLayoutReward", "grounding_dino_folder"): "psi_rewards",
    ("PsiQuantityReward", "grounding_dino_folder"): "psi_rewards",
}

# --------------------------------------------------------------------------------------------- paper settings

#: the paper's FLUX.1-schnell runs (Ψ-Sampler, arXiv 2506.01320; the authors' released configs): pCNL δ = 0.5, 25 SMC steps,
#: 512², ESS threshold 0.5, 5 chains. mcmc_steps counts burn-in too (the released code runs burn-in + N steps),
#: so the MCMC uses chains × mcmc_steps gradient evaluations = the SMC's K × 25: half the budget each.
PAPER = {
    "layout": {"particles": 20, "chains": 5, "burn_in": 50, "mcmc_steps": 100, "alpha_mcmc": 0.1, "alpha": 0.02},
    "quantity": {"particles": 20, "chains": 5, "burn_in": 50, "mcmc_steps": 100, "alpha_mcmc": 0.03, "alpha": 0.03},
    "aesthetic": {"particles": 10, "chains": 5, "burn_in": 25, "mcmc_steps": 50, "alpha_mcmc": 0.1, "alpha": 0.1},
}
SMC_STEPS = 25
STEP_SIZE = 0.5
SIZE = 512
NATIVE_SIZE = 1024  # SDXL, SD3.5 and Z-Image-Turbo are trained at 1024²

# the paper's first prompt of each task (its released benchmark data), boxes normalised from 512 px
LAYOUT_PROMPT = "a horse beneath a cat."
LAYOUT_BOXES = [("cat", [250, 50, 400, 200]), ("horse", [230, 220, 430, 480])]
QUANTITY_PROMPT = "rubies"
QUANTITY_COUNTS = [("rubies", 5)]
AESTHETIC_PROMPT = "cat"
SD15_NEGATIVE = "blurry, low quality, deformed, watermark, text"


def boxes_json(boxes: list[tuple[str, list[int]]], size: int = SIZE) -> str:
    entries = [{"phrase": phrase, "box": [round(v / size, 4) for v in box]} for phrase, box in boxes]
    return "[" + ",\n ".join(json.dumps(e) for e in entries) + "]"


def counts_json(counts: list[tuple[str, int]]) -> str:
    return json.dumps([{"object": name, "count": count} for name, count in counts])


# --------------------------------------------------------------------------------------------- graph builder

#: sizes the frontend gives nodes whose extensions add drawn widgets (live chart, box editor), measured in
#: comfyui-frontend-package 1.27.10 with this pack's js/; the test "nodes do not overlap" catches drift
FRONTEND_MIN_SIZE = {"PsiInitialSampler": (380, 750), "PsiSMCSampler": (360, 734), "PsiLayoutReward": (420, 470)}
TITLE_HEIGHT = 30

GROUP_COLORS = {"models": "#3f789e", "reward": "#a1309b", "psi": "#b58b2a", "prior": "#8a8a8a",
                "output": "#3f8f5f", "notes": "#8a7a55"}
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"
NODE_WIDTH = 340
GAP = 34


@dataclass
class Node:
    data: dict
    info: dict | None

    @property
    def id(self) -> int:
        return self.data["id"]

    def output_slot(self, name: str) -> int:
        names = self.info["output_name"]
        types = self.info["output"]
        for i, (n, t) in enumerate(zip(names, types)):
            if n == name:
                return i
        matches = [i for i, t in enumerate(types) if t == name]
        if len(matches) == 1:
            return matches[0]
        raise KeyError(f"{self.data['type']} has no output {name!r} (outputs {names})")


@dataclass
class Graph:
    object_info: dict
    nodes: list[Node] = field(default_factory=list)
    links: list[list] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)

    def add(self, node_type: str, widgets: dict | None = None, title: str | None = None, width: int = NODE_WIDTH,
            height: int | None = None) -> Node:
        info = self.object_info.get(node_type)
        if info is None:
            raise KeyError(f"node type {node_type!r} is not in /object_info (is the pack loaded?)")
        widgets = dict(widgets or {})
        values, inputs, widget_height = [], [], 0
        for name, spec in input_specs(info):
            if is_widget(spec):
                values.append(widgets.pop(name) if name in widgets else default_value(spec))
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                widget_height += 118 if options.get("multiline") else 24
                if has_control(name, spec):
                    values.append("fixed")
                    widget_height += 24
            else:
                slot = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": None}
                if name in (info.get("input_order") or {}).get("optional", []):
                    slot["shape"] = 7
                inputs.append(slot)
        if widgets:
            raise KeyError(f"{node_type} has no widgets {sorted(widgets)}")
        outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                   for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))]
        estimate = widget_height + 22 * max(len(inputs), len(outputs)) + 14
        min_width, min_height = FRONTEND_MIN_SIZE.get(node_type, (0, 0))
        width, height = max(width, min_width), max(height or estimate, min_height)
        data = {"id": len(self.nodes) + 1, "type": node_type, "pos": [0.0, 0.0],
                "size": [float(width), float(height)], "flags": {}, "order": 0, "mode": 0,
                "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": node_type}, "widgets_values": values}
        if title:
            data["title"] = title
        node = Node(data, info)
        self.nodes.append(node)
        return node

    def note(self, text: str, width: int = 440) -> Node:
        lines = sum(max(1, len(line) // 60 + 1) for line in text.splitlines())
        height = 30 + 15 * lines
        data = {"id": len(self.nodes) + 1, "type": "Note", "pos": [0.0, 0.0],
                "size": [float(width), float(height)], "flags": {}, "order": 0, "mode": 0,
                "inputs": [], "outputs": [], "properties": {}, "widgets_values": [text],
                "color": NOTE_COLOR, "bgcolor": NOTE_BGCOLOR}
        node = Node(data, None)
        self.nodes.append(node)
        return node

    def connect(self, source: Node, output: str, target: Node, input_name: str) -> None:
        slot = source.output_slot(output)
        target_slots = [i for i, s in enumerate(target.data["inputs"]) if s["name"] == input_name]
        if not target_slots:
            raise KeyError(f"{target.data['type']} has no socket input {input_name!r}")
        link_id = len(self.links) + 1
        link_type = source.data["outputs"][slot]["type"]
        target.data["inputs"][target_slots[0]]["link"] = link_id
        source.data["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, source.id, slot, target.id, target_slots[0], link_type])

    def stack(self, nodes: list[Node], x: float, y: float, gap: float = GAP) -> float:
        """Place nodes one under the other from (x, y) (the top of the first title bar); the y below the last."""
        for node in nodes:
            node.data["pos"] = [float(x), float(y + TITLE_HEIGHT)]
            y += TITLE_HEIGHT + node.data["size"][1] + gap
        return y

    def bottom(self, nodes: list[Node]) -> float:
        return max(n.data["pos"][1] + n.data["size"][1] for n in nodes)

    def group(self, title: str, members: list[Node], color: str, pad: int = 16) -> None:
        x0 = min(n.data["pos"][0] for n in members) - pad
        y0 = min(n.data["pos"][1] for n in members) - TITLE_HEIGHT - pad - 36
        x1 = max(n.data["pos"][0] + n.data["size"][0] for n in members) + pad
        y1 = max(n.data["pos"][1] + n.data["size"][1] for n in members) + pad
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                            "color": color, "font_size": 22, "flags": {}})

    def to_json(self, workflow_id: str) -> dict:
        self._set_order()
        for node in self.nodes:
            for out in node.data["outputs"]:
                if not out["links"]:
                    out["links"] = None
        return {"id": workflow_id, "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
                "nodes": [n.data for n in self.nodes], "links": self.links, "groups": self.groups, "config": {},
                "extra": {"ds": {"scale": 0.62, "offset": [40.0, 90.0]}, "frontendVersion": "1.27.10"},
                "version": 0.4}

    def _set_order(self) -> None:
        parents = {n.id: {link[1] for link in self.links if link[3] == n.id} for n in self.nodes}
        order, done = [], set()
        while len(order) < len(self.nodes):
            ready = [n for n in self.nodes if n.id not in done and parents[n.id] <= done]
            if not ready:
                raise ValueError("the workflow has a cycle")
            for n in ready:
                order.append(n)
                done.add(n.id)
        for index, node in enumerate(order):
            node.data["order"] = index


def default_value(spec: list):
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in options:
        return options["default"]
    choices = combo_options(spec)
    if choices is not None:
        return choices[0] if choices else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec[0]]


# --------------------------------------------------------------------------------------------- shared parts

COL = {"notes": 0, "models": 500, "cond": 900, "psi": 1380, "smc": 1820, "out": 2240, "out2": 2640}


@dataclass
class Models:
    model: tuple[Node, str]
    vae: tuple[Node, str]
    positive: tuple[Node, str]
    negative: tuple[Node, str]
    latent: tuple[Node, str]
    family: str
    cfg: float
    scheduler: str
    nodes: list[Node]
    cond_nodes: list[Node]


def flux_models(g: Graph, prompt: str, unet: ModelFile = FLUX_UNET, label: str = "FLUX.1-schnell",
                guidance: float | None = None) -> Models:
    """FLUX.1-schnell, or with `guidance` FLUX.1-dev's graph: FLUX Guidance on the prompt (dev's distilled
    guidance embedding); cfg 1 with a zeroed negative either way."""
    unet = g.add("UNETLoader", {"unet_name": unet.name, "weight_dtype": "default"},
                 title=f"{label} ← models/{unet.folder}/")
    clip = g.add("DualCLIPLoader", {"clip_name1": FLUX_CLIP_L.name, "clip_name2": FLUX_T5.name, "type": "flux"},
                 title=f"CLIP-L + T5-XXL ← models/{FLUX_CLIP_L.folder}/")
    vae = g.add("VAELoader", {"vae_name": FLUX_VAE.name}, title=f"FLUX VAE ← models/{FLUX_VAE.folder}/")
    text = g.add("CLIPTextEncode", {"text": prompt}, title="Prompt", width=420, height=150)
    positive, cond_nodes = text, [text]
    if guidance is not None:
        positive = g.add("FluxGuidance", {"guidance": guidance}, title=f"FLUX guidance {guidance}", width=420)
        g.connect(text, "CONDITIONING", positive, "conditioning")
        cond_nodes.append(positive)
    negative = g.add("ConditioningZeroOut", title="Negative: zeroed (cfg 1.0)", width=420)
    latent = g.add("EmptySD3LatentImage", {"width": SIZE, "height": SIZE, "batch_size": 1},
                   title="Size 512 × 512, batch 1", width=420)
    g.connect(clip, "CLIP", text, "clip")
    g.connect(positive, "CONDITIONING", negative, "conditioning")
    return Models((unet, "MODEL"), (vae, "VAE"), (positive, "CONDITIONING"), (negative, "CONDITIONING"),
                  (latent, "LATENT"), "flux", 1.0, "simple", [unet, clip, vae], cond_nodes + [negative, latent])


def checkpoint_models(g: Graph, prompt: str, ckpt: ModelFile, family: str, cfg: float, scheduler: str, title: str,
                      size: int = SIZE, text_encoders: Callable[[Graph], Node] | None = None,
                      latent_type: str = "EmptyLatentImage") -> Models:
    """A checkpoint (its own CLIP, or `text_encoders` loaded beside it), prompt, negative prompt, empty latent."""
    loader = g.add("CheckpointLoaderSimple", {"ckpt_name": ckpt.name}, title=title)
    clip = text_encoders(g) if text_encoders is not None else loader
    positive = g.add("CLIPTextEncode", {"text": prompt}, title="Prompt", width=420, height=150)
    negative = g.add("CLIPTextEncode", {"text": SD15_NEGATIVE}, title="Negative prompt", width=420, height=150)
    latent = g.add(latent_type, {"width": size, "height": size, "batch_size": 1},
                   title=f"Size {size} × {size}, batch 1", width=420)
    g.connect(clip, "CLIP", positive, "clip")
    g.connect(clip, "CLIP", negative, "clip")
    loaders = [loader] if clip is loader else [loader, clip]
    return Models((loader, "MODEL"), (loader, "VAE"), (positive, "CONDITIONING"), (negative, "CONDITIONING"),
                  (latent, "LATENT"), family, cfg, scheduler, loaders, [positive, negative, latent])


def sd15_models(g: Graph, prompt: str, title: str | None = None) -> Models:
    return checkpoint_models(g, prompt, SD15_CKPT, "sd15", 7.0, "normal",
                             title or f"SD1.5 checkpoint ← models/{SD15_CKPT.folder}/")


def sdxl_models(g: Graph, prompt: str) -> Models:
    return checkpoint_models(g, prompt, SDXL_CKPT, "sdxl", 7.0, "normal",
                             f"SDXL checkpoint ← models/{SDXL_CKPT.folder}/", NATIVE_SIZE)


def sd35_models(g: Graph, prompt: str) -> Models:
    """SD3.5: a checkpoint without text encoders, CLIP-L + CLIP-G + T5-XXL loaded beside it."""
    def text_encoders(g: Graph) -> Node:
        return g.add("TripleCLIPLoader", {"clip_name1": FLUX_CLIP_L.name, "clip_name2": SD35_CLIP_G.name,
                                          "clip_name3": FLUX_T5.name},
                     title=f"CLIP-L + CLIP-G + T5-XXL ← models/{SD35_CLIP_G.folder}/")

    return checkpoint_models(g, prompt, SD35_CKPT, "sd35", 4.5, "sgm_uniform",
                             f"SD3.5 checkpoint ← models/{SD35_CKPT.folder}/", NATIVE_SIZE, text_encoders,
                             "EmptySD3LatentImage")


def zimage_models(g: Graph, prompt: str) -> Models:
    unet = g.add("UNETLoader", {"unet_name": ZIMAGE_UNET.name, "weight_dtype": "default"},
                 title=f"Z-Image-Turbo ← models/{ZIMAGE_UNET.folder}/")
    clip = g.add("CLIPLoader", {"clip_name": ZIMAGE_TE.name, "type": "lumina2"},
                 title=f"Qwen3-4B text encoder ← models/{ZIMAGE_TE.folder}/")
    vae = g.add("VAELoader", {"vae_name": FLUX_VAE.name}, title=f"FLUX VAE ← models/{FLUX_VAE.folder}/")
    positive = g.add("CLIPTextEncode", {"text": prompt}, title="Prompt", width=420, height=150)
    negative = g.add("ConditioningZeroOut", title="Negative: zeroed (cfg 1.0)", width=420)
    latent = g.add("EmptySD3LatentImage", {"width": NATIVE_SIZE, "height": NATIVE_SIZE, "batch_size": 1},
                   title=f"Size {NATIVE_SIZE} × {NATIVE_SIZE}, batch 1", width=420)
    g.connect(clip, "CLIP", positive, "clip")
    g.connect(positive, "CONDITIONING", negative, "conditioning")
    return Models((unet, "MODEL"), (vae, "VAE"), (positive, "CONDITIONING"), (negative, "CONDITIONING"),
                  (latent, "LATENT"), "zimage", 1.0, "simple", [unet, clip, vae], [positive, negative, latent])


def psi_initial(g: Graph, m: Models, reward: Node, settings: dict, seed: int = 0,
                title: str = "Ψ Initial Sampler (pCNL)") -> Node:
    node = g.add("PsiInitialSampler", {
        "cfg": m.cfg, "seed": seed, "steps": settings.get("steps", SMC_STEPS), "scheduler": m.scheduler,
        "denoise": 1.0, "method": "pcnl", "particles": settings["particles"], "chains": settings["chains"],
        "burn_in": settings["burn_in"], "mcmc_steps": settings["mcmc_steps"], "step_size": STEP_SIZE,
        "alpha_mcmc": settings["alpha_mcmc"], "grad_batch_size": settings.get("grad_batch_size", 1)}, title=title)
    for name, (src, out) in (("model", m.model), ("positive", m.positive), ("negative", m.negative),
                             ("vae", m.vae), ("latent_image", m.latent)):
        g.connect(src, out, node, name)
    g.connect(reward, "reward", node, "reward")
    return node


def psi_smc(g: Graph, m: Models, reward: Node, settings: dict, latent: tuple[Node, str], seed: int = 0,
            title: str = "Ψ SMC Sampler") -> Node:
    node = g.add("PsiSMCSampler", {
        "seed": seed, "steps": settings.get("steps", SMC_STEPS), "scheduler": m.scheduler, "denoise": 1.0,
        "cfg": m.cfg, "particles": settings["particles"], "alpha": settings["alpha"], "ess_threshold": 0.5,
        "resampling": "systematic", "eta": 1.0, "guidance": 1.0, "gradient_free": False,
        "grad_batch_size": settings.get("grad_batch_size", 1), "output": "best", "trace_steps": 6,
        "kernel": settings.get("kernel", "ancestral")}, title=title)
    for name, (src, out) in (("model", m.model), ("positive", m.positive), ("negative", m.negative),
                             ("vae", m.vae), ("latent_image", latent)):
        g.connect(src, out, node, name)
    g.connect(reward, "reward", node, "reward")
    return node


def outputs(g: Graph, m: Models, smc: Node, initial: Node | None, y: float, prefix: str,
            label: str = "") -> list[Node]:
    """VAE Decode → Save Image, and the visualizer → two Preview Image nodes, in two columns from y."""
    decode = g.add("VAEDecode", title="VAE Decode")
    vis = g.add("PsiParticleVisualizer", {"filename_prefix": prefix + "_trace"}, title=f"Ψ Particle Visualizer{label}")
    save = g.add("SaveImage", {"filename_prefix": prefix}, title=f"Result{label}", width=400, height=440)
    grid = g.add("PreviewImage", title=f"Particles × steps{label}", width=400, height=400)
    curves = g.add("PreviewImage", title=f"ESS, reward, acceptance{label}", width=400, height=300)
    g.stack([decode, vis], COL["out"], y)
    g.stack([save, grid, curves], COL["out2"], y)
    g.connect(smc, "latent", decode, "samples")
    g.connect(m.vae[0], m.vae[1], decode, "vae")
    g.connect(decode, "IMAGE", save, "images")
    g.connect(smc, "trace", vis, "smc_trace")
    if initial is not None:
        g.connect(initial, "trace", vis, "initial_trace")
    g.connect(m.vae[0], m.vae[1], vis, "vae")
    g.connect(m.model[0], m.model[1], vis, "model")
    g.connect(vis, "grid", grid, "images")
    g.connect(vis, "curves", curves, "images")
    return [decode, save, vis, grid, curves]


def model_files_text(files: list[ModelFile]) -> str:
    lines = ["MODEL FILES (never downloaded by this pack; put them here):"]
    for f in files:
        kind = "folder" if f.folder_kind else "file"
        lines.append(f"• models/{f.folder}/{f.name}{'/' if f.folder_kind else ''} ({kind})\n  from {f.origin}")
    lines.append("Reward models go in models/psi_rewards (see docs/model_folders.md of the pack)."
                 + (" Grounding DINO runs at 512 px here (detector_size), as in the authors' code."
                    if GROUNDING_DINO in files else "")
                 + " Other file names are fine: pick your files in the loader nodes.")
    return "\n".join(lines)


def settings_text(task: str, settings: dict, size: int = SIZE) -> str:
    steps = settings.get("steps", SMC_STEPS)
    nfe_mcmc = settings["chains"] * settings["mcmc_steps"]
    nfe_smc = settings["particles"] * steps
    return (f"SETTINGS (paper, {task}): K = {settings['particles']} particles, {settings['chains']} pCNL chains, "
            f"burn-in {settings['burn_in']}, {settings['mcmc_steps']} MCMC iterations per chain (burn-in "
            f"included), step size δ = {STEP_SIZE}, α_mcmc = {settings['alpha_mcmc']}, α = {settings['alpha']}, "
            f"{steps} SMC steps ({settings.get('kernel', 'ancestral')} kernel), ESS threshold 0.5, {size} × {size}.\n"
            f"Budget: MCMC {settings['chains']} × {settings['mcmc_steps']} = {nfe_mcmc} gradient evaluations + SMC "
            f"{settings['particles']} × {steps} = {nfe_smc}" + (": about half each, as in the paper.\n"
                                                                  if steps == SMC_STEPS else ".\n") +
            "Steps, scheduler and denoise must be the same on both Ψ nodes.")


MEMORY_TEXT = ("MEMORY AND SPEED: every MCMC iteration and SMC step runs a forward and backward pass through the "
               "model, the VAE decoder and the reward. grad_batch_size = particles per pass: 1 is the safest; "
               "raise it on large GPUs. Fewer MCMC iterations or particles are the quickest way to a first result; "
               "keep δ = 0.5 for pCNL (MALA/ULA need about 0.05).")


# --------------------------------------------------------------------------------------------- workflows

TASK_TEXT = {
    "layout": ("LAYOUT-TO-IMAGE: Ψ-Sampler steers the model so that Grounding DINO finds each phrase inside its "
               "target box (reward = mean IoU, 0–1). Edit the boxes in the Ψ Layout Reward node (JSON, "
               "normalised [x0, y0, x1, y1]; the box editor draws them) and keep the phrases in the prompt."),
    "quantity": ("QUANTITY-AWARE GENERATION: the reward is minus the SmoothL1 error between a soft Grounding DINO "
                 "count and the target count of each object (0 when every count is right). Edit the counts in "
                 "the Ψ Quantity Reward node. (The paper counted with T2ICount: set the node's backend to t2icount, "
                 "with best_model_paper.pth and the VAE and CLIP of an SD1.5 checkpoint connected; the default "
                 "counts with the layout reward's Grounding DINO.)"),
    "aesthetic": ("AESTHETIC GENERATION: the reward is the LAION improved aesthetic predictor (CLIP ViT-L/14 "
                  "embedding into an MLP head, about 1–10)."),
}


#: the optional backends' files, named explicitly: a listing's default depends on what the folder holds
GDINO_PY_FILES = {"groundingdino_checkpoint": "groundingdino_swint_ogc.pth",
                  "groundingdino_bert_folder": "bert-base-uncased"}


def reward_node(g: Graph, task: str) -> tuple[Node, list[ModelFile]]:
    if task == "layout":
        node = g.add("PsiLayoutReward", {"grounding_dino_folder": GROUNDING_DINO.name,
                                         "boxes": boxes_json(LAYOUT_BOXES), "units": "normalized",
                                         "width": SIZE, "height": SIZE, "detector_size": SIZE, **GDINO_PY_FILES},
                     title="Ψ Layout Reward ← models/psi_rewards/", width=420)
        return node, [GROUNDING_DINO]
    if task == "quantity":
        node = g.add("PsiQuantityReward", {"grounding_dino_folder": GROUNDING_DINO.name,
                                           "counts": counts_json(QUANTITY_COUNTS), "detector_size": SIZE,
                                           "t2icount_checkpoint": "best_model_paper.pth", **GDINO_PY_FILES},
                     title="Ψ Quantity Reward ← models/psi_rewards/", width=420)
        return node, [GROUNDING_DINO]
    node = g.add("PsiAestheticReward", {"head": AESTHETIC_HEAD.name, "clip_folder": CLIP_L14.name},
                 title="Ψ Aesthetic Reward ← models/psi_rewards/", width=420)
    return node, [AESTHETIC_HEAD, CLIP_L14]


PROMPTS = {"layout": LAYOUT_PROMPT, "quantity": QUANTITY_PROMPT, "aesthetic": AESTHETIC_PROMPT}
TASK_TITLES = {"layout": "layout-to-image", "quantity": "quantity-aware generation",
               "aesthetic": "aesthetic generation"}
HOW_IT_WORKS = ("HOW IT WORKS: the Ψ Initial Sampler runs pCNL MCMC on the starting noise towards "
                "N(0, I)·exp(reward/α_mcmc) and hands K particles to the Ψ SMC Sampler, which runs reward-guided "
                "SMC (ESS-triggered resampling) and outputs the particle with the highest final reward. The "
                "visualizer shows particles over steps, ESS, rewards and MCMC acceptance.")


def read_me(g: Graph, texts: list[str]) -> list[Node]:
    notes = [g.note(text) for text in texts]
    g.stack(notes, COL["notes"], 0)
    g.group("Read me", notes, GROUP_COLORS["notes"])
    return notes


START_TEXT = ("WHERE TO START (equal-NFE toy evidence, docs/benchmarks.md of the pack): the SMC's kernel follows "
              "the model: ancestral for ordinary models, lcm for step-distilled few-step models. On the exact-target "
              "toy, prior-initialised SMC (initial method prior) was ahead of Ψ (pcnl) at equal evaluations with "
              "both kinds of model; pcnl, as here, reproduces the paper.")


@dataclass(frozen=True)
class Family:
    """A model family's graph, files and text for the task workflows."""

    models: Callable[[Graph, str], Models]
    files: list[ModelFile]
    label: str
    text: str
    settings: dict = field(default_factory=dict)  # overrides of the paper settings (steps, kernel)
    size: int = SIZE


FAMILIES = {
    "flux": Family(flux_models, [FLUX_UNET, FLUX_CLIP_L, FLUX_T5, FLUX_VAE], "FLUX.1-schnell",
                   "MODEL: FLUX.1-schnell (flow model) with cfg 1.0 and the simple scheduler; the negative "
                   "conditioning is zeroed and unused at cfg 1.0."),
    "sd15": Family(sd15_models, [SD15_CKPT], "SD1.5",
                   "MODEL: a Stable Diffusion 1.5 checkpoint (EPS model) with cfg 7.0 and the normal scheduler. "
                   "The paper ran FLUX.1-schnell; its particle, chain and α settings are kept here as a start."),
    "sdxl": Family(sdxl_models, [SDXL_CKPT], "SDXL",
                   "MODEL: an SDXL base checkpoint (EPS model, pooled text and size conditioning) with cfg 7.0, the "
                   "normal scheduler and the ancestral kernel, at 1024 × 1024. The paper ran FLUX.1-schnell; its "
                   "particle, chain and α settings are kept here as a start. For SDXL-Turbo or an LCM checkpoint "
                   "set the SMC's kernel to lcm, cfg 1.0 and 4–8 steps.\n\n" + START_TEXT, size=NATIVE_SIZE),
    "sd35": Family(sd35_models, [SD35_CKPT, FLUX_CLIP_L, SD35_CLIP_G, FLUX_T5], "SD3.5",
                   "MODEL: Stable Diffusion 3.5 Medium (flow model, MMDiT) with cfg 4.5, the sgm_uniform scheduler "
                   "and the ancestral kernel, at 1024 × 1024; the checkpoint holds no text encoders, so CLIP-L, "
                   "CLIP-G and T5-XXL load beside it (SD3.5 Large works the same way).\n\n" + START_TEXT,
                   size=NATIVE_SIZE),
    "flux_dev": Family(lambda g, prompt: flux_models(g, prompt, FLUX_DEV_UNET, "FLUX.1-dev", guidance=3.5),
                       [FLUX_DEV_UNET, FLUX_CLIP_L, FLUX_T5, FLUX_VAE], "FLUX.1-dev",
                       "MODEL: FLUX.1-dev (flow model, guidance-distilled: FLUX Guidance 3.5 on the prompt "
                       "replaces cfg, so cfg stays 1.0 and the negative is zeroed) with the simple scheduler and "
                       "the ancestral kernel (dev is not step-distilled).\n\n" + START_TEXT),
    "zimage_turbo": Family(zimage_models, [ZIMAGE_UNET, ZIMAGE_TE, FLUX_VAE], "Z-Image-Turbo",
                           "MODEL: Z-Image-Turbo (flow model, Lumina 2 / NextDiT, step-distilled to 8 steps) with "
                           "cfg 1.0, the simple scheduler and the lcm kernel, the few-step sampler distilled models "
                           "are made for, at 1024 × 1024. Needs a ComfyUI with Z-Image support (0.3.64 has none).\n\n"
                           + START_TEXT, settings={"steps": 8, "kernel": "lcm"}, size=NATIVE_SIZE),
}


def task_workflow(object_info: dict, family: str, task: str) -> tuple[dict, str]:
    g = Graph(object_info)
    spec = FAMILIES[family]
    settings = {**PAPER[task], **spec.settings}
    m = spec.models(g, PROMPTS[task])
    reward, reward_files = reward_node(g, task)
    psi_pipeline(g, m, reward, settings, f"psi/{family}_{task}")
    title = f"Ψ-Sampler · {TASK_TITLES[task]} · {spec.label}"
    read_me(g, [f"{title}\n\n{TASK_TEXT[task]}\n\n{spec.text}\n\n{HOW_IT_WORKS}",
                model_files_text(spec.files + reward_files),
                settings_text(task, settings, spec.size) + "\n\n" + MEMORY_TEXT])
    return g.to_json(stem_id(family, task)), title


def psi_pipeline(g: Graph, m: Models, reward: Node, settings: dict, prefix: str) -> None:
    """Ψ Initial Sampler → Ψ SMC Sampler → outputs, laid out in columns and grouped."""
    initial = psi_initial(g, m, reward, settings)
    smc = psi_smc(g, m, reward, settings, (initial, "particles"))
    g.stack(m.nodes, COL["models"], 0)
    g.stack(m.cond_nodes + [reward], COL["cond"], 0)
    g.stack([initial], COL["psi"], 0)
    g.stack([smc], COL["smc"], 0)
    outs = outputs(g, m, smc, initial, 0, prefix)
    g.group("1 · Models", m.nodes, GROUP_COLORS["models"])
    g.group("2 · Prompt, size and reward", m.cond_nodes + [reward], GROUP_COLORS["reward"])
    g.group("3 · Ψ initial particles", [initial], GROUP_COLORS["psi"])
    g.group("4 · SMC", [smc], GROUP_COLORS["psi"])
    g.group("5 · Output and particles", outs, GROUP_COLORS["output"])


def stem_id(*parts: str) -> str:
    """A fixed workflow id (the frontend wants a UUID string) derived from the workflow's name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "psi-sampler/workflows/" + "_".join(parts)))


def comparison_workflow(object_info: dict) -> tuple[dict, str]:
    """Prior-initialised SMC (TDS-style) beside Ψ-Sampler at equal NFE, aesthetic reward, FLUX.1-schnell."""
    g = Graph(object_info)
    task = "aesthetic"
    psi_settings = dict(PAPER[task])
    budget = psi_settings["chains"] * psi_settings["mcmc_steps"] + psi_settings["particles"] * SMC_STEPS
    prior_settings = {**psi_settings, "particles": budget // SMC_STEPS}
    m = flux_models(g, PROMPTS[task])
    reward, reward_files = reward_node(g, task)
    g.stack(m.nodes, COL["models"], 0)
    g.stack(m.cond_nodes + [reward], COL["cond"], 0)

    prior = psi_smc(g, m, reward, prior_settings, m.latent,
                    title=f"Prior-initialised SMC, K = {prior_settings['particles']}")
    g.stack([prior], COL["smc"], 0)
    prior_out = outputs(g, m, prior, None, 0, "psi/compare_prior_smc", " · prior SMC")
    prior_score = g.add("PsiScoreImages", {"summary": "best"}, title="Aesthetic score · prior SMC", width=400)
    g.stack([prior_score], COL["out"], g.bottom(prior_out[1:3]) + GAP)
    y_psi = g.bottom([prior, prior_score, *prior_out]) + 160
    initial = psi_initial(g, m, reward, psi_settings)
    smc = psi_smc(g, m, reward, psi_settings, (initial, "particles"), title=f"Ψ SMC Sampler, K = "
                  f"{psi_settings['particles']}")
    g.stack([initial], COL["psi"], y_psi)
    g.stack([smc], COL["smc"], y_psi)
    psi_out = outputs(g, m, smc, initial, y_psi, "psi/compare_psi", " · Ψ-Sampler")
    psi_score = g.add("PsiScoreImages", {"summary": "best"}, title="Aesthetic score · Ψ-Sampler", width=400)
    g.stack([psi_score], COL["out"], g.bottom(psi_out[1:3]) + GAP)
    for score, out in ((prior_score, prior_out), (psi_score, psi_out)):
        g.connect(out[0], "IMAGE", score, "images")
        g.connect(reward, "reward", score, "reward")

    title = "Ψ-Sampler vs prior-initialised SMC at equal NFE · aesthetic · FLUX.1-schnell"
    about = (
        f"{title}\n\nBoth branches spend the same number of function evaluations (NFE; one forward + backward "
        f"pass through model, VAE decoder and reward each): {budget}.\n"
        f"• Top: prior-initialised SMC (TDS/DAS-style: particles start from N(0, I)) with "
        f"{prior_settings['particles']} particles × {SMC_STEPS} steps = {prior_settings['particles'] * SMC_STEPS}.\n"
        f"• Bottom: Ψ-Sampler: {psi_settings['chains']} pCNL chains × {psi_settings['mcmc_steps']} iterations = "
        f"{psi_settings['chains'] * psi_settings['mcmc_steps']} on the initial particles, then "
        f"{psi_settings['particles']} particles × {SMC_STEPS} steps = {psi_settings['particles'] * SMC_STEPS}.\n"
        "Same model, prompt, reward, α, steps and seeds. Each visualizer's title line shows the NFE its run "
        "counted, and the Ψ Score Images nodes show each result's aesthetic score. The paper reports 7.012 for Ψ "
        "against 6.853 for TDS (mean over its prompts; FLUX.1-schnell, 512²): one prompt and seed can go either "
        "way.")
    read_me(g, [about, model_files_text([FLUX_UNET, FLUX_CLIP_L, FLUX_T5, FLUX_VAE] + reward_files), MEMORY_TEXT])
    g.group("1 · Models (shared)", m.nodes, GROUP_COLORS["models"])
    g.group("2 · Prompt, size and reward (shared)", m.cond_nodes + [reward], GROUP_COLORS["reward"])
    g.group(f"A · prior-initialised SMC: {budget} NFE", [prior, prior_score] + prior_out, GROUP_COLORS["prior"])
    g.group(f"B · Ψ-Sampler: {budget} NFE", [initial, smc, psi_score] + psi_out, GROUP_COLORS["psi"])
    return g.to_json(stem_id("compare")), title


ZERO_DOWNLOAD = {"particles": 4, "chains": 4, "burn_in": 5, "mcmc_steps": 10, "alpha_mcmc": 0.05, "alpha": 0.02,
                 "steps": 20, "grad_batch_size": 2}


def zero_download_workflow(object_info: dict) -> tuple[dict, str]:
    """The image-statistics reward (no reward weights) on whatever SD1.5 checkpoint the user has."""
    g = Graph(object_info)
    settings = dict(ZERO_DOWNLOAD)
    m = sd15_models(g, "a bouquet of flowers in a vase on a wooden table",
                    title=f"Your SD1.5 ← models/{SD15_CKPT.folder}/")
    reward = g.add("PsiImageStatsReward", {"statistic": "colorfulness", "goal": "maximize"},
                   title="Ψ Image Statistics Reward (no weights)", width=420)
    psi_pipeline(g, m, reward, settings, "psi/zero_download")
    title = "Ψ-Sampler · no reward downloads · image-statistics reward · any SD1.5 checkpoint"
    about = (
        f"{title}\n\nThe reward is a simple image statistic (here colourfulness, maximised) computed from the "
        "pixels: it needs no reward model, so nothing beyond a checkpoint is needed.\n\n"
        "ZERO DOWNLOAD? Not quite: a diffusion model cannot be made from nothing, so this workflow uses "
        "whatever SD1.5 checkpoint you already have. Select it in the checkpoint loader (any file in "
        f"models/{SD15_CKPT.folder}/; {SD15_CKPT.name} is only the usual name). SD2.x and SDXL checkpoints also "
        "run (use 1024 × 1024 for SDXL).\n\n"
        "Try other statistics (brightness, contrast, saturation, sharpness, or color with a target #rrggbb) and "
        "goals (maximize, minimize, target).")
    settings_note = (
        f"SETTINGS (small, for a quick first run): K = {settings['particles']} particles, {settings['chains']} "
        f"pCNL chains, burn-in {settings['burn_in']} of {settings['mcmc_steps']} iterations, δ = {STEP_SIZE}, "
        f"α_mcmc = {settings['alpha_mcmc']}, α = {settings['alpha']}, {settings['steps']} SMC steps. Colourfulness "
        "lies around 0–0.5, so α of a few hundredths already tilts strongly.\n\n" + MEMORY_TEXT)
    read_me(g, [about, settings_note])
    return g.to_json(stem_id("zero_download")), title


#: file stem -> builder(object_info) -> (workflow, title)
WORKFLOW_BUILDERS = {
    "psi_flux_layout_to_image": lambda oi: task_workflow(oi, "flux", "layout"),
    "psi_flux_quantity_aware": lambda oi: task_workflow(oi, "flux", "quantity"),
    "psi_flux_aesthetic": lambda oi: task_workflow(oi, "flux", "aesthetic"),
    "psi_sd15_layout_to_image": lambda oi: task_workflow(oi, "sd15", "layout"),
    "psi_sd15_quantity_aware": lambda oi: task_workflow(oi, "sd15", "quantity"),
    "psi_sd15_aesthetic": lambda oi: task_workflow(oi, "sd15", "aesthetic"),
    "psi_sdxl_aesthetic": lambda oi: task_workflow(oi, "sdxl", "aesthetic"),
    "psi_sd35_layout_to_image": lambda oi: task_workflow(oi, "sd35", "layout"),
    "psi_zimage_turbo_aesthetic": lambda oi: task_workflow(oi, "zimage_turbo", "aesthetic"),
    "psi_flux_dev_aesthetic": lambda oi: task_workflow(oi, "flux_dev", "aesthetic"),
    "psi_compare_prior_smc_vs_psi": comparison_workflow,
    "psi_zero_download_image_stats": zero_download_workflow,
}
ZERO_DOWNLOAD_STEM = "psi_zero_download_image_stats"


def build_all(object_info: dict) -> dict[str, tuple[dict, str]]:
    return {stem: build(object_info) for stem, build in WORKFLOW_BUILDERS.items()}


def workflow_text(workflow: dict) -> str:
    return json.dumps(workflow, indent=1, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------- thumbnails

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def _font(size: int, bold: bool = False):
    from PIL import ImageFont

    try:
        return ImageFont.truetype(FONT_BOLD if bold else FONT, size)
    except OSError:
        return ImageFont.load_default(size)


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    if len(color) == 3:
        color = "".join(c * 2 for c in color)
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def thumbnail(workflow: dict, title: str, size: tuple[int, int] = (512, 384)):
    """A miniature of the graph itself (groups, nodes, links at their real positions) under its title.

    It is a diagram of the workflow, labelled as such, never a picture the workflow made."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, (28, 30, 34))
    draw = ImageDraw.Draw(image)
    words, lines, line = title.split(" "), [], ""
    title_font = _font(17, bold=True)
    for word in words:
        trial = (line + " " + word).strip()
        if draw.textlength(trial, font=title_font) > width - 24 and line:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    header = 16 + 21 * len(lines[:3])
    draw.rectangle([0, 0, width, header], fill=(44, 47, 54))
    for i, text in enumerate(lines[:3]):
        draw.text((12, 8 + 21 * i), text, fill=(240, 240, 240), font=title_font)

    boxes = [n for n in workflow["nodes"]]
    xs = [n["pos"][0] for n in boxes] + [n["pos"][0] + n["size"][0] for n in boxes]
    ys = [n["pos"][1] for n in boxes] + [n["pos"][1] + n["size"][1] for n in boxes]
    for group in workflow["groups"]:
        x, y, w, h = group["bounding"]
        xs += [x, x + w]
        ys += [y, y + h]
    margin, footer = 10, 20
    room_w, room_h = width - 2 * margin, height - header - footer - 2 * margin
    span_w, span_h = max(xs) - min(xs), max(ys) - min(ys)
    scale = min(room_w / span_w, room_h / span_h)
    ox = margin - min(xs) * scale + (room_w - span_w * scale) / 2
    oy = header + margin - min(ys) * scale + (room_h - span_h * scale) / 2

    def map_rect(x, y, w, h):
        return [ox + x * scale, oy + y * scale, ox + (x + w) * scale, oy + (y + h) * scale]

    for group in workflow["groups"]:
        r, gg, b = _hex(group["color"])
        rect = map_rect(*group["bounding"])
        draw.rectangle(rect, fill=(r // 3 + 20, gg // 3 + 20, b // 3 + 20), outline=(r, gg, b))
        label = group["title"]
        while label and draw.textlength(label, font=_font(9)) > rect[2] - rect[0] - 4:
            label = label[:-1]
        draw.text((rect[0] + 2, rect[1] + 1), label, fill=(min(255, r + 90), min(255, gg + 90), min(255, b + 90)),
                  font=_font(9))
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for _, src, _, dst, _, _ in workflow["links"]:
        a, b = by_id[src], by_id[dst]
        start = (ox + (a["pos"][0] + a["size"][0]) * scale, oy + (a["pos"][1] + 12) * scale)
        end = (ox + b["pos"][0] * scale, oy + (b["pos"][1] + 12) * scale)
        draw.line([start, end], fill=(150, 160, 175), width=1)
    label_font = _font(8)
    for node in workflow["nodes"]:
        rect = map_rect(node["pos"][0], node["pos"][1] - 30, node["size"][0], node["size"][1] + 30)
        psi = node["type"].startswith("Psi")
        fill = _hex(NOTE_BGCOLOR) if node["type"] == "Note" else ((120, 86, 20) if psi else (58, 62, 70))
        draw.rectangle(rect, fill=fill, outline=(210, 210, 210) if psi else (120, 124, 132))
        label = node.get("title") or node["type"]
        if node["type"] == "Note":
            label = "Note"
        while label and draw.textlength(label, font=label_font) > rect[2] - rect[0] - 4:
            label = label[:-1]
        if rect[3] - rect[1] > 10:
            draw.text((rect[0] + 2, rect[1] + 1), label, fill=(235, 235, 235), font=label_font)
    draw.text((12, height - 16), "workflow diagram (nodes and links), not a generated image",
              fill=(150, 150, 150), font=_font(10))
    return image


ICON = REPO / "js" / "docs" / "psi_sampler_icon.png"  # [tool.comfy] Icon of pyproject.toml points here


def icon(size: int = 400):
    """The registry icon: a Ψ over a few particle paths that split and merge (drawn, square)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (28, 30, 34))
    draw = ImageDraw.Draw(image)
    lanes = [0.22, 0.38, 0.5, 0.62, 0.78]
    for i, start in enumerate(lanes):
        end = lanes[[1, 1, 2, 3, 3][i]]  # five particles resampled onto three
        points = [(size * (0.08 + 0.84 * t / 20), size * (0.12 + 0.76 * (start + (end - start) * (t / 20) ** 2)))
                  for t in range(21)]
        draw.line(points, fill=(120, 130, 150), width=max(2, size // 100))
        x, y = points[-1]
        r = size // 45
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(240, 190, 60))
    font = _font(int(size * 0.62), bold=True)
    draw.text((size / 2, size * 0.47), "Ψ", fill=(255, 255, 255), font=font, anchor="mm")
    return image


# --------------------------------------------------------------------------------------------- main


def fetch_object_info() -> dict:
    """GET /object_info from a server started with the frontend tests' harness (COMFYUI_PATH)."""
    from workflow_testing import frontend_harness

    harness = frontend_harness()
    if not os.environ.get("COMFYUI_PATH"):
        raise SystemExit("set COMFYUI_PATH (a ComfyUI checkout with its .venv) or pass --object-info FILE")
    root = Path(os.environ["COMFYUI_PATH"])
    python = Path(os.environ.get("COMFYUI_PYTHON") or root / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory(prefix="psi-make-workflows-") as work:
        server = harness.Server(root, python, Path(work))
        try:
            server.start()
            return server.get("/object_info")
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--object-info", type=Path, help="a saved GET /object_info (default: start a server)")
    parser.add_argument("--out", type=Path, default=WORKFLOWS)
    options = parser.parse_args(argv)
    object_info = json.loads(options.object_info.read_text()) if options.object_info else fetch_object_info()
    options.out.mkdir(parents=True, exist_ok=True)
    for stem, (workflow, title) in build_all(object_info).items():
        (options.out / f"{stem}.json").write_text(workflow_text(workflow), encoding="utf-8")
        thumbnail(workflow, title).save(options.out / f"{stem}.jpg", quality=88)
        print(f"wrote {stem}.json and {stem}.jpg ({len(workflow['nodes'])} nodes, {len(workflow['links'])} links)")
    icon().save(ICON, optimize=True)
    print(f"wrote {ICON.relative_to(REPO)}")


if __name__ == "__main__":
    main()
