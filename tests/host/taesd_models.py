"""Tiny random-weight TAESD decoders made with ComfyUI's own classes, saved as users store the real ones.

Run with the host's python in the host's folder (by test_taesd_lookahead.py, while the server boots):
    python taesd_models.py FOLDER
writes FOLDER/taesd_decoder.safetensors (4-channel latents, SD1.5) and FOLDER/taef1_decoder.safetensors
(16-channel, FLUX.1) from `comfy.taesd.taesd.TAESD(latent_channels=...).taesd_decoder` (the real
architecture: its size is fixed, about 1.2 M parameters), and prints one JSON line. ComfyUI's ops
skip weight initialisation, so every weight is drawn from a seeded generator with a fan-in scale that
keeps activations of order one through the decoder's ReLU blocks.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from probe_setup import import_host

#: file stem → latent channels
DECODERS = {"taesd_decoder": 4, "taef1_decoder": 16}


def main() -> None:
    folder = Path(sys.argv[1])
    import_host()
    import torch
    from safetensors.torch import save_file

    import comfy.taesd.taesd

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for seed, (stem, channels) in enumerate(DECODERS.items()):
        generator = torch.Generator().manual_seed(100 + seed)
        decoder = comfy.taesd.taesd.TAESD(latent_channels=channels).taesd_decoder
        with torch.no_grad():
            for name, p in decoder.named_parameters():
                if name.endswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
                else:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=generator) * math.sqrt(1.0 / fan_in))
        state = {k: v.contiguous() for k, v in decoder.state_dict().items()}
        save_file(state, str(folder / f"{stem}.safetensors"))
        written[stem] = sum(v.numel() for v in state.values())
    print(json.dumps(written))


if __name__ == "__main__":
    main()
