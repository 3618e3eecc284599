"""Write a random T2ICount-layout checkpoint for the host tests (run with the host's python).

    python make_checkpoint.py COMFYUI_DIR REPO_DIR OUT.pth [SEED]

Keys as in the authors' best_model_paper.pth: `unet.unet.diffusion_model.*` (ComfyUI's
own SD1.5 UNetModel class at the tiny widths of tiny_parts), `decoder.*` (the pack's
CountHead at the matching widths) and a few frozen `vae.*` / `clip.*` tensors, which the
loader skips.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch


def main(comfy_dir: str, repo: str, out: str, seed: int = 0) -> None:
    sys.path.insert(0, comfy_dir)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    package = types.ModuleType("psi_sampler")  # the pack's rewards without its ComfyUI entry point
    package.__path__ = [repo]
    sys.modules["psi_sampler"] = package
    from psi_sampler.rewards.t2icount import HEAD_PREFIX, UNET_PREFIX, CountHead
    from tiny_parts import HEAD_INNER, HEAD_WIDTHS, TEXT_WIDTH, UNET_CONFIG, init_weights_

    generator = torch.Generator().manual_seed(seed)
    unet = UNetModel(**UNET_CONFIG, operations=comfy.ops.disable_weight_init)
    init_weights_(unet, generator, std=1.0)
    torch.manual_seed(seed)
    head = CountHead(HEAD_WIDTHS, TEXT_WIDTH, HEAD_INNER)
    with torch.no_grad():
        head.regressor.reg_head[4].bias.fill_(0.05)  # a positive density on part of the map
    state = {f"{UNET_PREFIX}{k}": v for k, v in unet.state_dict().items()}
    state.update({f"{HEAD_PREFIX}{k}": v for k, v in head.state_dict().items()})
    state["vae.quant_conv.weight"] = torch.zeros(8, 8, 1, 1)
    state["clip.transformer.text_model.final_layer_norm.weight"] = torch.ones(TEXT_WIDTH)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
