"""T2ICount's UNet features: this pack's host package (ComfyUI's UNetModel) against the authors'
own classes (their LDM UNetModel with their `register_hier_output` forward), on the
same checkpoint weights. Run with the host's python (it has ComfyUI and einops):

    python compare_authors_unet.py COMFYUI_DIR REPO_DIR T2ICOUNT_CODE_DIR CHECKPOINT.pth

Prints one line `RESULT <json>`: the shapes and the largest relative difference per tap.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch


def main(comfy_dir: str, repo: str, code: str, checkpoint: str) -> None:
    sys.path.insert(0, comfy_dir)
    sys.path.insert(0, code)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comfy.cli_args import args

    args.cpu = True
    for name, path in (("psi_sampler", repo),):
        package = types.ModuleType(name)  # the pack's modules without its ComfyUI entry point
        package.__path__ = [path]
        sys.modules[name] = package
    from psi_sampler.comfy_host.t2icount import load_t2icount_model
    from psi_sampler.rewards.t2icount import UNET_PREFIX
    from tiny_parts import MODEL_CHANNELS, TEXT_WIDTH

    if "omegaconf" not in sys.modules:  # their UNet only asks whether context_dim is an omegaconf ListConfig
        shim, listconfig = types.ModuleType("omegaconf"), types.ModuleType("omegaconf.listconfig")
        listconfig.ListConfig = type("ListConfig", (list,), {})
        shim.listconfig = listconfig
        sys.modules.update({"omegaconf": shim, "omegaconf.listconfig": listconfig})
    from ldm.modules.diffusionmodules.openaimodel import UNetModel  # the authors' LDM copy

    ours, _ = load_t2icount_model(Path(checkpoint))
    theirs = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=MODEL_CHANNELS,
                       attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8,
                       use_spatial_transformer=True, transformer_depth=1, context_dim=TEXT_WIDTH,
                       use_checkpoint=False, legacy=False).eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    theirs.load_state_dict({k[len(UNET_PREFIX):]: v for k, v in state.items() if k.startswith(UNET_PREFIX)})
    source = Path(code, "models", "diff_unet.py").read_text()  # their feature forward, without its CLIP imports
    namespace = {"th": torch}
    exec(source[source.index("def register_hier_output"):source.index("class UNetWrapper")], namespace)
    namespace["register_hier_output"](types.SimpleNamespace(diffusion_model=theirs))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 48, 48, generator=generator)
    context = torch.randn(2, 77, TEXT_WIDTH, generator=generator)
    with torch.no_grad():
        mine = ours(latents, context)
        reference = theirs(latents, torch.zeros(2, dtype=torch.long), context=context)[::-1]  # UNetWrapper's order
    print("RESULT " + json.dumps({
        "shapes": [list(t.shape) for t in mine], "reference_shapes": [list(t.shape) for t in reference],
        "rel_diff": [float((a - b).abs().max() / b.abs().max()) for a, b in zip(mine, reference)]}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
